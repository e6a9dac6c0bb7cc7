#!/usr/bin/env python3
"""Does a model draw its boundaries in the right place? Scores a checkpoint on a split
with its predictions moved by fractions of a pixel, up/down and left/right.

A model whose training masks sat a little off their images (resizing a mask with plain
``"nearest"`` does that: :func:`seglab.data.resize_mask`) learns to draw every boundary
that far off, and scores better with its predictions moved back. A model trained on
aligned masks scores best where it is (shift 0). The predictions are the class
log-probabilities at the labels' size, exactly as ``seglab evaluate`` computes them
(the run's own test-time scales), moved with bilinear resampling (edges repeated).

    python benchmarks/mask_alignment.py runs/acc/last.pt               # val, shifts -1.5 to 1.5
    python benchmarks/mask_alignment.py runs/acc/last.pt --step 0.25 --max 1

Uses val by default: a check on how a model was trained has no business with the test set.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seglab.batches import iterate  # noqa: E402
from seglab.data import SegmentationDataset  # noqa: E402
from seglab.hardware import describe, get_device  # noqa: E402
from seglab.inference import LoadedModel  # noqa: E402
from seglab.metrics import ConfusionMatrix  # noqa: E402
from seglab.transforms import eval_transforms  # noqa: E402


def shifted(maps: torch.Tensor, down: float, right: float) -> torch.Tensor:
    """``maps`` ``[N, C, H, W]`` moved ``down`` rows and ``right`` columns (fractions allowed):
    output pixel (y, x) takes the value at (y - down, x - right), bilinear, edges repeated."""
    n, _, h, w = maps.shape
    ys = (torch.arange(h, dtype=torch.float32) - down + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float32) - right + 0.5) / w * 2 - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([grid_x, grid_y], -1)[None].expand(n, h, w, 2).to(maps.device)
    return F.grid_sample(maps.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def shift_grid(step: float, largest: float) -> list[tuple[float, float]]:
    """Vertical shifts -largest..largest (horizontal 0), then horizontal ones (vertical 0)."""
    k = round(largest / step)
    offsets = [i * step for i in range(-k, k + 1)]
    return [(d, 0.0) for d in offsets] + [(0.0, d) for d in offsets if d != 0]


@torch.inference_mode()
def alignment_scores(checkpoint: str | Path, split: str = "val", root: str | None = None,
                     shifts: list[tuple[float, float]] | None = None, batch_size: int = 8,
                     device: str | None = None) -> list[dict]:
    """mIoU and pixel accuracy of ``checkpoint`` on ``split`` for each (down, right) shift."""
    shifts = shifts or shift_grid(0.5, 1.5)
    loaded = LoadedModel.load(checkpoint, device)
    spec = loaded.spec
    data = SegmentationDataset(spec, root, split, None, eval_transforms(spec), progress=False)
    matrices = {s: ConfusionMatrix(spec.num_classes, spec.ignore_index) for s in shifts}
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    for images, masks in iterate(loader):
        log_probs = loaded.logits(images)
        masks = masks.as_subclass(torch.Tensor).to(log_probs.device)
        for down, right in shifts:
            matrices[(down, right)].update(shifted(log_probs, down, right).argmax(1), masks)
    rows = []
    for (down, right), cm in matrices.items():
        result = cm.compute(spec.class_names)
        rows.append(dict(down=down, right=right, miou=result["miou"], pixel_accuracy=result["pixel_accuracy"]))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default="val")
    parser.add_argument("--root", default=None, help="data folder (default: SEGLAB_DATA or data/camvid)")
    parser.add_argument("--step", type=float, default=0.5, help="pixels between shifts (at the labels' size)")
    parser.add_argument("--max", type=float, default=1.5, help="largest shift in pixels")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    rows = alignment_scores(args.checkpoint, args.split, args.root, shift_grid(args.step, args.max),
                            device=args.device)
    print(f"{args.checkpoint} on {args.split}, {describe(get_device(args.device))}")
    print("predictions moved   mIoU    pixel acc.")
    for row in rows:
        print(f"  down {row['down']:+.2f} right {row['right']:+.2f}  {row['miou']:.4f}  {row['pixel_accuracy']:.4f}")
    best = max(rows, key=lambda r: r["miou"])
    unmoved = next(r for r in rows if r["down"] == r["right"] == 0)
    print(f"best: down {best['down']:+.2f}, right {best['right']:+.2f} "
          f"({best['miou'] - unmoved['miou']:+.4f} mIoU over no shift)")


if __name__ == "__main__":
    main()
