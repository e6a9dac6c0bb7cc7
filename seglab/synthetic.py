"""Small synthetic data sets in the real layouts, for tests and offline demos.

The scenes are simple (sky above, road below, a few rectangles of other classes, a
void border), but the files are real PNGs in exactly the folders the real data sets
use, so every code path from ``list_pairs`` to ``fit`` runs on them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .datasets import CAMVID, ISBI_EM


def _scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    label = np.full((height, width), 0, np.uint8)             # sky
    horizon = int(height * rng.uniform(0.35, 0.55))
    label[horizon:] = 3                                          # road
    label[horizon:, : width // 6] = 4                            # pavement
    for cls in rng.choice([1, 2, 5, 6, 7, 8, 9, 10], size=3, replace=False):
        h, w = rng.integers(height // 8, height // 3), rng.integers(width // 10, width // 3)
        top, left = rng.integers(0, height - h), rng.integers(0, width - w)
        label[top:top + h, left:left + w] = cls
    label[:2, :] = CAMVID.ignore_index                           # a void border, as in CamVid
    palette = np.array(CAMVID.palette, np.float32)
    image = palette[label] + rng.normal(0, 12, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_synthetic_camvid(root: str | Path, n_train: int = 12, n_val: int = 4, n_test: int = 4,
                          size: tuple[int, int] = (60, 80), seed: int = 0) -> Path:
    """Write a tiny CamVid look-alike (RGB images, 8-bit index labels, split files) into
    ``root`` and return it."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("val", n_val), ("test", n_test)):
        image_dir, label_dir = (root / d for d in CAMVID.layout[split])
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(count):
            name = f"synth_{split}_{i:04d}.png"
            image, label = _scene(rng, *size)
            Image.fromarray(image, "RGB").save(image_dir / name)
            Image.fromarray(label, "L").save(label_dir / name)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_synthetic_isbi(root: str | Path, size: int = 64, seed: int = 0) -> Path:
    """Write 30 tiny EM look-alikes (grayscale cells with dark membranes; labels 255 =
    interior, 0 = membrane, as in the real files) into ``root/image`` and ``root/label``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "image").mkdir(parents=True, exist_ok=True)
    (root / "label").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(30):
        centres = rng.uniform(0, size, (12, 2))
        d = np.sqrt((yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2)
        d.sort(axis=-1)
        membrane = (d[..., 1] - d[..., 0]) < 2.0                 # Voronoi edges
        label = np.where(membrane, 0, 255).astype(np.uint8)
        image = np.where(membrane, 60, 190) + rng.normal(0, 20, (size, size))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "L").save(root / "image" / f"{i}.png")
        Image.fromarray(label, "L").save(root / "label" / f"{i}.png")
    assert len(ISBI_EM.split_members["train"]) == 20
    return root
