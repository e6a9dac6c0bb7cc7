"""Bad data gives a clear DataError that names the file and the fix, loses nothing, and
never writes next to the data (the decoded cache lives in SEGLAB_CACHE).

Every test that damages data works on its own small synthetic copy (3/2/2 pairs of
60x80 PNGs in the real CamVid layout), so nothing shared is ever modified.
"""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seglab.data import CamVid, load_split, resolve_root
from seglab.datasets import CAMVID
from seglab.errors import DataError
from seglab.synthetic import make_synthetic_camvid

DOWNLOAD = "seglab download camvid"


@pytest.fixture
def camvid_copy(tmp_path) -> Path:
    """A private, damageable CamVid look-alike."""
    return make_synthetic_camvid(tmp_path / "camvid", n_train=3, n_val=2, n_test=2)


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    """A cache folder of this test alone, so its files can be counted and damaged."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SEGLAB_CACHE", str(folder))
    return folder


def _load(root: Path, split: str = "train"):
    return CamVid(root, split, progress=False)


def _first(root: Path, split: str = "train") -> tuple[Path, Path]:
    name = sorted((root / split).iterdir())[0].name
    return root / split / name, root / f"{split}annot" / name


def _error(root: Path, split: str = "train") -> str:
    with pytest.raises(DataError) as info:
        _load(root, split)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


def _snapshot(root: Path) -> dict:
    """Every file and folder under root with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# --------------------------------------------------------------------------- folders

def test_missing_data_folder_names_it_and_the_download_command(tmp_path):
    missing = tmp_path / "nowhere"
    message = _error(missing)
    assert str(missing) in message and "does not exist" in message
    assert f"{DOWNLOAD} --root {missing}" in message


def test_missing_data_folder_from_the_environment_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLAB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"\$SEGLAB_DATA") as info:
        resolve_root("camvid")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_empty_data_folder_says_it_is_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    message = _error(tmp_path / "empty")
    assert "is empty" in message and DOWNLOAD in message


def test_data_root_that_is_a_file_says_so(tmp_path):
    (tmp_path / "camvid").write_text("not a folder")
    message = _error(tmp_path / "camvid")
    assert "is a file" in message and DOWNLOAD in message


def test_missing_split_folder_names_the_split_and_the_folder(camvid_copy):
    for f in (camvid_copy / "val").iterdir():
        f.unlink()
    (camvid_copy / "val").rmdir()
    message = _error(camvid_copy)  # the whole root is checked, whichever split is asked for
    assert "val split" in message and str(camvid_copy / "val") in message and DOWNLOAD in message


def test_missing_label_folder_names_it(camvid_copy):
    for f in (camvid_copy / "trainannot").iterdir():
        f.unlink()
    (camvid_copy / "trainannot").rmdir()
    message = _error(camvid_copy)
    assert str(camvid_copy / "trainannot") in message and "missing" in message and DOWNLOAD in message


def test_empty_label_folder_names_it(camvid_copy):
    for f in (camvid_copy / "testannot").iterdir():
        f.unlink()
    message = _error(camvid_copy, "test")
    assert str(camvid_copy / "testannot") in message and "empty" in message


# --------------------------------------------------------------------------- pairs and split files

def test_image_without_label_names_both_files(camvid_copy):
    image, label = _first(camvid_copy)
    label.unlink()
    message = _error(camvid_copy)
    assert str(image) in message and str(label) in message and "has no label" in message
    assert DOWNLOAD in message
    assert image.exists(), "the stray image is reported, not deleted"


def test_label_without_image_names_both_files(camvid_copy):
    image, label = _first(camvid_copy)
    image.unlink()
    message = _error(camvid_copy)
    assert str(label) in message and str(image) in message and "has no image" in message
    assert label.exists()


def test_split_file_listing_a_missing_pair_names_the_line(camvid_copy):
    with open(camvid_copy / "train.txt", "a") as f:
        f.write("/SegNet/CamVid/train/gone_0001.png /SegNet/CamVid/trainannot/gone_0001.png\n")
    message = _error(camvid_copy)
    assert str(camvid_copy / "train.txt") in message and "line 4" in message
    assert str(camvid_copy / "train" / "gone_0001.png") in message and DOWNLOAD in message


# --------------------------------------------------------------------------- file contents

def test_truncated_image_names_the_file_and_the_download_command(camvid_copy):
    image, _ = _first(camvid_copy)
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    message = _error(camvid_copy)
    assert f"image file {image}" in message and "truncated" in message and DOWNLOAD in message


def test_non_image_png_label_names_the_file(camvid_copy):
    _, label = _first(camvid_copy, "val")
    label.write_text("<html>404 Not Found</html>")  # what a failed download often leaves behind
    message = _error(camvid_copy, "val")
    assert f"label file {label}" in message and "not an image" in message and DOWNLOAD in message


def test_image_and_label_of_different_sizes_names_both(camvid_copy):
    image, label = _first(camvid_copy)
    small = Image.open(label).resize((40, 30), Image.NEAREST)
    small.save(label)
    message = _error(camvid_copy)
    assert str(image) in message and str(label) in message
    assert "(60, 80)" in message and "(30, 40)" in message and "same size" in message


def test_label_values_outside_the_classes_are_listed(camvid_copy):
    _, label = _first(camvid_copy)
    array = np.array(Image.open(label))
    array[10:20, 10:20] = 200
    array[0, 0] = 12
    Image.fromarray(array, "L").save(label)
    message = _error(camvid_copy)
    assert str(label) in message and "[12, 200]" in message and "outside 0-11" in message
    assert "one class number per pixel" in message


def test_rgb_colour_coded_label_is_detected_and_the_conversion_named(camvid_copy):
    _, label = _first(camvid_copy)
    index = np.array(Image.open(label))
    colours = np.array(CAMVID.palette, np.uint8)[index]       # the label as the usual colour picture
    Image.fromarray(colours, "RGB").save(label)
    message = _error(camvid_copy)
    assert str(label) in message and "colour-coded RGB" in message
    assert "8-bit index map" in message and "rgb_to_index" in message


def test_grey_rgb_label_is_read_as_an_index_map(camvid_copy):
    """An index map saved as RGB with three equal channels is not an error: it holds the same numbers."""
    _, label = _first(camvid_copy)
    index = np.array(Image.open(label))
    Image.fromarray(np.stack([index] * 3, -1), "RGB").save(label)
    data = _load(camvid_copy)
    assert torch.equal(data.masks[0], torch.from_numpy(index))


# --------------------------------------------------------------------------- nothing written next to the data

def test_read_only_data_folder_loads_and_gains_no_files(camvid_copy, own_cache):
    before = _snapshot(camvid_copy)
    paths = sorted(camvid_copy.rglob("*"), key=lambda p: -len(p.parts))
    for p in paths + [camvid_copy]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        for split in ("train", "val", "test"):
            assert len(_load(camvid_copy, split)) > 0
            assert len(CamVid(camvid_copy, split, size=(30, 40), progress=False)) > 0
        _load(camvid_copy)  # a second time: served from the cache
    finally:
        for p in [camvid_copy] + paths[::-1]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert _snapshot(camvid_copy) == before, "loading wrote into the data folder"
    assert len(list((own_cache / "camvid").glob("*.pt"))) == 6, "the cache went to SEGLAB_CACHE"


def test_unwritable_cache_only_costs_speed(camvid_copy, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("SEGLAB_CACHE", str(blocker))
    before = _snapshot(camvid_copy)
    data = _load(camvid_copy)
    assert len(data) == 3
    err = capsys.readouterr().err
    assert "could not write the decoded cache" in err and "SEGLAB_CACHE" in err
    assert _snapshot(camvid_copy) == before


# --------------------------------------------------------------------------- the decoded cache

def _cache_files(folder: Path) -> list[Path]:
    return sorted((folder / "camvid").glob("train-*"))


def test_damaged_cache_file_is_rebuilt_not_trusted(camvid_copy, own_cache):
    good = load_split("camvid", camvid_copy, "train", progress=False)
    (cache,) = _cache_files(own_cache)
    cache.write_bytes(cache.read_bytes()[:100])  # a cache file cut short (disk full, killed process)
    again = load_split("camvid", camvid_copy, "train", progress=False)
    assert torch.equal(again.images, good.images) and torch.equal(again.masks, good.masks)
    (rebuilt,) = _cache_files(own_cache)
    assert torch.load(rebuilt, weights_only=True)["names"] == good.names


def test_cache_that_loads_but_holds_other_data_is_rebuilt(camvid_copy, own_cache):
    good = load_split("camvid", camvid_copy, "train", progress=False)
    (cache,) = _cache_files(own_cache)
    torch.save({"images": good.images[:1], "masks": good.masks[:1], "names": good.names[:1]}, cache)
    again = load_split("camvid", camvid_copy, "train", progress=False)
    assert again.names == good.names and torch.equal(again.masks, good.masks)


def test_changed_source_file_rebuilds_the_cache(camvid_copy, own_cache):
    first = load_split("camvid", camvid_copy, "train", progress=False)
    (old_cache,) = _cache_files(own_cache)
    _, label = _first(camvid_copy)
    edited = np.array(Image.open(label))
    edited[20:40, 20:40] = 8  # someone fixes a label: a car here
    Image.fromarray(edited, "L").save(label)
    st = label.stat()
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = load_split("camvid", camvid_copy, "train", progress=False)
    assert torch.equal(second.masks[0], torch.from_numpy(edited))
    assert not torch.equal(second.masks[0], first.masks[0])
    (new_cache,) = _cache_files(own_cache)  # the stale file is replaced, not left to pile up
    assert new_cache != old_cache and not old_cache.exists()
    assert not list((own_cache / "camvid").glob("*.tmp*")), "no half-written cache file left"

