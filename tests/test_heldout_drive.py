"""benchmarks/heldout_drive.py: the validation that chose the course recipe's augmentation. It must
hold exactly one drive out (its frames in val, never in train), leave the data folder as
it was, refuse a drive that is not there, and run end to end as a learner would."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from script_import import load_script
from seglab.config import parse_overrides
from seglab.datasets import CAMVID
from seglab.errors import SeglabError

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "heldout_drive.py"


heldout = load_script(SCRIPT)


@pytest.fixture
def two_drives(synthetic_camvid, tmp_path) -> Path:
    """The synthetic CamVid with its 12 training frames renamed into drives AAA (4) and BBB (8)."""
    root = tmp_path / "camvid"
    for split in ("train", "val", "test"):
        names = sorted(p.name for p in (synthetic_camvid / split).iterdir())
        new_names = [(f"AAA_{i:04d}.png" if i < 4 else f"BBB_{i:04d}.png") if split == "train" else name
                     for i, name in enumerate(names)]
        for sub in CAMVID.layout[split]:
            (root / sub).mkdir(parents=True)
            for name, new in zip(names, new_names):
                shutil.copy(synthetic_camvid / sub / name, root / sub / new)
        (root / f"{split}.txt").write_text("".join(f"/SegNet/CamVid/{split}/{n} /SegNet/CamVid/{split}annot/{n}\n"
                                                   for n in new_names))
    return root


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_held_out_drive_is_in_val_and_never_in_train(two_drives, tmp_path):
    before = {sub: _names(two_drives / sub) for sub in ("train", "trainannot", "val", "test")}
    counts = heldout.build_heldout_root(two_drives, "AAA", tmp_path / "held")
    held = tmp_path / "held"
    assert counts == {"train": 8, "val": 4, "test": 4}
    assert {heldout.drive_of(n) for n in _names(held / "train")} == {"BBB"}
    assert {heldout.drive_of(n) for n in _names(held / "val")} == {"AAA"}
    assert _names(held / "val") == _names(held / "valannot")
    assert _names(held / "test") == before["test"]
    # the source keeps every file where it was
    assert {sub: _names(two_drives / sub) for sub in before} == before
    # a link shows the same pixels as its source file
    name = sorted(_names(held / "val"))[0]
    assert (held / "val" / name).read_bytes() == (two_drives / "train" / name).read_bytes()


def test_a_recipe_that_trains_on_val_gets_the_val_frames_in_train_only(two_drives, tmp_path):
    counts = heldout.build_heldout_root(two_drives, "AAA", tmp_path / "held", with_val=True)
    held = tmp_path / "held"
    val_names = _names(two_drives / "val")
    assert counts == {"train": 8 + len(val_names), "val": 4, "test": 4}
    assert _names(held / "train") == _names(held / "trainannot") == val_names | {f"BBB_{i:04d}.png" for i in range(4, 12)}
    assert {heldout.drive_of(n) for n in _names(held / "val")} == {"AAA"}   # the held-out drive stays out


def test_holding_out_a_drive_that_val_also_has_is_refused_when_training_on_val(two_drives, tmp_path):
    drive = heldout.drive_of(sorted(_names(two_drives / "val"))[0])
    shutil.copy(two_drives / "train" / "AAA_0000.png", two_drives / "train" / f"{drive}_9999.png")
    shutil.copy(two_drives / "trainannot" / "AAA_0000.png", two_drives / "trainannot" / f"{drive}_9999.png")
    with open(two_drives / "train.txt", "a") as f:
        f.write(f"/SegNet/CamVid/train/{drive}_9999.png /SegNet/CamVid/trainannot/{drive}_9999.png\n")
    with pytest.raises(SeglabError, match="also in the val split"):
        heldout.build_heldout_root(two_drives, drive, tmp_path / "held", with_val=True)
    assert not (tmp_path / "held").exists()


def test_building_again_replaces_the_earlier_layout(two_drives, tmp_path):
    heldout.build_heldout_root(two_drives, "AAA", tmp_path / "held")
    counts = heldout.build_heldout_root(two_drives, "AAA", tmp_path / "held")
    assert counts["train"] == 8 and len(_names(tmp_path / "held" / "train")) == 8


def test_unknown_drive_is_refused_naming_the_drives(two_drives, tmp_path):
    with pytest.raises(SeglabError, match="AAA, BBB"):
        heldout.build_heldout_root(two_drives, "0001TP", tmp_path / "held")
    assert not (tmp_path / "held").exists()


def test_settings_are_parsed_and_unknown_names_refused():
    assert parse_overrides(["color_jitter=0.3", "scale=(0.75, 1.5)"]) == {
        "color_jitter": 0.3, "scale": (0.75, 1.5)}
    with pytest.raises(SeglabError, match="colour_jitter"):
        parse_overrides(["colour_jitter=0.3"])


def test_script_trains_and_scores_the_held_out_drive(two_drives, tmp_path):
    results = tmp_path / "rows.jsonl"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--drive", "AAA", "--budget", "30s", "--root", str(two_drives),
         "--out", str(tmp_path / "run"), "--results", str(results), "--device", "cpu",
         "--set", "max_steps=2", "size=(48, 64)", "crop=(48, 64)", "width=4", "color_jitter=0.3"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = json.loads(results.read_text().splitlines()[-1])
    assert row["drive"] == "AAA" and row["set"][-1] == "color_jitter=0.3"
    assert 0.0 <= row["val_miou"] <= 1.0 and 0.0 <= row["val_pixel_accuracy"] <= 1.0
    assert "val on the held-out drive: mIoU" in proc.stdout and "CPU class" in proc.stdout
    # a size given with --set is kept (the budget's choice is off), and the script says so
    assert "configuration: 48x64, width 4, stem stride 2 (fixed)" in proc.stdout and row["sizing"] is None
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["color_jitter"] == 0.3 and config["stem_stride"] == 2  # the course recipe, with the change
    assert Path(config["root"]).name == "camvid-AAA"  # trained on the held-out layout, not the source


def test_script_refuses_a_bad_setting_in_one_line(two_drives, tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--root", str(two_drives), "--set", "colour_jitter=1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error: --set 'colour_jitter=1'")
    assert "Traceback" not in proc.stderr
