"""Bad input never yields a confident wrong answer: every Pillow mode is read by a declared
policy (converted correctly or refused with a reason), and a split file is the truth
about which pairs belong to a split."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seglab.data import CamVid, ISBIEM, read_image
from seglab.datasets import CAMVID
from seglab.errors import DataError
from seglab.predict import image_to_input
from seglab.synthetic import make_synthetic_camvid

RAMP = np.arange(0, 65536, 257 * 5, dtype=np.uint16).reshape(4, -1)  # 0 .. 65535, 52 values


def _save(path: Path, image: Image.Image) -> Path:
    image.save(path)
    return path


# --------------------------------------------------------------------------- image modes

def test_16_bit_image_is_scaled_to_8_bit_not_clipped_to_white(tmp_path):
    path = _save(tmp_path / "depth.png", Image.fromarray(RAMP))
    assert Image.open(path).mode == "I;16"
    pixels = read_image(path).numpy()
    expected = np.round(RAMP.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(pixels[0], expected) and np.array_equal(pixels[1], expected)
    assert 0 < np.mean(pixels == 255) < 0.1, "a ramp is not white"


def test_16_bit_image_reaches_the_model_as_the_same_grey_levels(tmp_path):
    path = _save(tmp_path / "depth.png", Image.fromarray(RAMP))
    with Image.open(path) as image:
        image.load()
        x = image_to_input(image, CAMVID)
    expected = torch.from_numpy(np.round(RAMP.astype(np.float64) * 255 / 65535) / 255).float()
    mean, std = CAMVID.mean[0], CAMVID.std[0]
    assert torch.allclose(x[0, 0] * std + mean, expected, atol=1e-5)


def test_32_bit_integer_image_is_read_as_16_bit(tmp_path):
    path = _save(tmp_path / "counts.tif", Image.fromarray(RAMP.astype(np.int32), "I"))
    assert Image.open(path).mode == "I"
    assert int(read_image(path)[0].max()) == 255 and int(read_image(path)[0, 0, 1]) == 5


def test_32_bit_integer_image_beyond_16_bits_is_refused(tmp_path):
    path = _save(tmp_path / "counts.tif", Image.fromarray(np.full((4, 4), 70000, np.int32), "I"))
    with pytest.raises(DataError, match="outside the 16-bit range") as info:
        read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("mode", ["F", "LAB"])
def test_mode_without_one_right_8_bit_reading_is_refused(tmp_path, mode):
    image = Image.new(mode, (8, 6))
    path = _save(tmp_path / f"odd-{mode}.tif", image)
    assert Image.open(path).mode == mode
    with pytest.raises(DataError) as info:
        read_image(path)
    assert str(path) in str(info.value) and f"mode {mode}" in str(info.value) and "\n" not in str(info.value)


def test_palette_alpha_cmyk_and_bilevel_images_follow_the_declared_policy(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[:, :4] = (200, 30, 60)
    rgb[:, 4:] = (10, 220, 90)
    cases = {
        "palette.png": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4),
        "alpha.png": Image.fromarray(np.dstack([rgb, np.zeros((6, 8), np.uint8)]), "RGBA"),
    }
    for name, image in cases.items():
        assert np.array_equal(read_image(_save(tmp_path / name, image)).permute(1, 2, 0).numpy(), rgb), name
    cmyk = read_image(_save(tmp_path / "print.tif", Image.fromarray(rgb).convert("CMYK")))
    assert np.abs(cmyk.permute(1, 2, 0).numpy().astype(int) - rgb).max() <= 1
    bilevel = read_image(_save(tmp_path / "mask.png", Image.fromarray(rgb[..., 0] > 100).convert("1")))
    assert set(np.unique(bilevel.numpy())) == {0, 255}
    grey_alpha = read_image(_save(tmp_path / "la.png", Image.fromarray(rgb[..., 1]).convert("LA")))
    assert np.array_equal(grey_alpha[0].numpy(), rgb[..., 1])


def test_colour_image_for_a_one_channel_data_set_becomes_luma(tmp_path):
    rgb = np.full((4, 4, 3), (255, 0, 0), np.uint8)
    pixels = read_image(_save(tmp_path / "red.png", Image.fromarray(rgb)), "isbi-em")
    assert pixels.shape == (1, 4, 4) and int(pixels[0, 0, 0]) == 76  # ITU-R 601-2: 0.299 * 255


# --------------------------------------------------------------------------- split files

@pytest.fixture
def camvid_copy(tmp_path) -> Path:
    return make_synthetic_camvid(tmp_path / "camvid", n_train=3, n_val=2, n_test=2)


def test_pair_in_the_split_folder_but_not_in_its_list_is_left_out_with_a_notice(camvid_copy, capsys):
    val_name = sorted((camvid_copy / "val").iterdir())[0].name
    for folder in ("", "annot"):  # a validation pair copied into training
        (camvid_copy / f"train{folder}" / "leak.png").write_bytes((camvid_copy / f"val{folder}" / val_name).read_bytes())
    train = CamVid(camvid_copy, "train", progress=False)
    assert "leak.png" not in train.names and len(train) == 3
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and str(camvid_copy / "train.txt") in notice[0] and "leak.png" in notice[0]


@pytest.mark.parametrize("damage", ["empty", "missing"])
def test_empty_or_missing_split_file_is_an_error_naming_it(camvid_copy, damage):
    split_file = camvid_copy / "train.txt"
    if damage == "empty":
        split_file.write_text("\n")
    else:
        split_file.unlink()
    with pytest.raises(DataError) as info:
        CamVid(camvid_copy, "train", progress=False)
    message = str(info.value)
    assert f"split file {split_file}" in message and damage in message and "seglab download camvid" in message
    assert "\n" not in message


def test_data_sets_whose_splits_are_listed_in_the_code_need_no_split_file(synthetic_isbi, capsys):
    assert len(ISBIEM(synthetic_isbi, "train", progress=False)) == 20
    assert capsys.readouterr().err == ""
