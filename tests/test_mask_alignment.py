"""benchmarks/mask_alignment.py: predictions moved by (fractions of) pixels, scored. The
move itself must go the way it says, and the script must run end to end on a checkpoint."""
from pathlib import Path

import torch

from script_import import load_script

REPO = Path(__file__).resolve().parents[1]
alignment = load_script(REPO / "benchmarks" / "mask_alignment.py")


def test_whole_pixel_shift_moves_a_map_down_and_right():
    maps = torch.zeros(1, 1, 12, 16)
    maps[0, 0, 5, 5] = 1.0
    moved = alignment.shifted(maps, 2, -1)
    assert moved[0, 0, 7, 4] == 1.0 and moved.sum() == 1.0


def test_half_pixel_shift_splits_a_value_between_the_two_neighbours():
    maps = torch.zeros(1, 1, 12, 16)
    maps[0, 0, 5, 5] = 1.0
    moved = alignment.shifted(maps, 0.5, 0)[0, 0]
    assert torch.allclose(moved[5:7, 5], torch.tensor([0.5, 0.5])) and torch.isclose(moved.sum(), torch.tensor(1.0))


def test_shift_grid_covers_both_axes_with_no_shift_once():
    grid = alignment.shift_grid(0.5, 1.0)
    assert grid.count((0.0, 0.0)) == 1 and len(grid) == 9
    assert (-1.0, 0.0) in grid and (0.0, 1.0) in grid


def test_script_scores_the_shipped_model_at_each_shift(synthetic_camvid, capsys):
    checkpoint = REPO / "seglab" / "pretrained" / "camvid_unet.pt"
    alignment.main([str(checkpoint), "--root", str(synthetic_camvid), "--step", "1", "--max", "1"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith("down")]
    assert len(rows) == 5 and "best: down" in out
    scores = [float(line.split()[4]) for line in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
