#!/usr/bin/env python3
"""Held-out-drive benchmark: how well a recipe carries over to a drive it never saw.

CamVid's val split is 101 frames of the drive 0016E5, which is also in train, so a
choice made on val cannot see what the test set asks for: other drives at other times
of day (test = 62 frames of the dusk drive 0001TP and 171 of Seq05VD). This script holds
one training drive out (default 0001TP, the dusk drive). It builds, in seglab's cache
folder, a CamVid-layout copy made of links (no pixel copied, the data folder untouched)
whose train split is the training images of the other drives and whose val split is
the held-out drive's training images; trains the ``budget15`` recipe (with the changes
given by ``--set``) for the budget; and scores that val split. The test split is never
scored. Prints val mIoU, pixel accuracy, per-class IoU and the CPU class, and appends one
JSON line to ``--results``. A recipe that trains on train + val (``--set
"train_splits=('train','val')"``) gets the real val frames in the layout's train split; its
val split stays the held-out drive.

Hold out a drive that differs from training the way your real data will. A warning from
our own use (seglab/recipes.py, budget15): holding out 0001TP asks how the model copes with
an *unseen* dusk drive, but CamVid's test dusk frames come from 0001TP, which is in the
real training set. Colour jitter 0.5 won this check clearly and then lost on the test set,
on the daylight drive the test does not share with training.

    python benchmarks/heldout_drive.py                               # budget15 as it is, 15 min
    python benchmarks/heldout_drive.py --set color_jitter=0.1        # one setting changed
    python benchmarks/heldout_drive.py --drive 0006R0 --budget 5m    # another drive, shorter
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seglab.data import cache_dir, check_root, list_pairs, resolve_root  # noqa: E402
from seglab.datasets import CAMVID  # noqa: E402
from seglab.checkpoint import code_version  # noqa: E402
from seglab.config import TrainConfig, parse_duration, parse_overrides  # noqa: E402
from seglab.evaluation import evaluate_checkpoint  # noqa: E402
from seglab.train import fit  # noqa: E402
from seglab.errors import SeglabError  # noqa: E402
from seglab.hardware import describe, get_device  # noqa: E402
from seglab.recipes import get_recipe  # noqa: E402
from seglab.sizing import describe_choice, user_sizes_win  # noqa: E402


def drive_of(name: str) -> str:
    """The drive (sequence) a CamVid frame comes from: the file name up to its first '_'."""
    return name.split("_", 1)[0]


def _link(source: Path, target: Path) -> None:
    try:
        os.symlink(source.resolve(), target)
    except OSError:  # no symlinks (some Windows set-ups): copy instead
        shutil.copy2(source, target)


def build_heldout_root(source: str | os.PathLike, drive: str, dest: str | os.PathLike,
                       with_val: bool = False) -> dict[str, int]:
    """Write into ``dest`` a CamVid layout whose train split is ``source``'s train images of
    every drive but ``drive`` and whose val split is that drive's train images; test is
    linked as it is (the layout needs it; this benchmark never scores it). ``with_val``:
    the train split also gets ``source``'s val images (for a recipe that trains on train +
    val). Returns the number of images per split. Raises ``SeglabError`` naming the drives
    if ``drive`` has no training images."""
    source, dest = Path(source), Path(dest)
    check_root(CAMVID, source)
    images, labels = (source / d for d in CAMVID.layout["train"])
    names = [image.name for image, _ in list_pairs(CAMVID, source, "train")]  # every image has its label
    drives = sorted({drive_of(n) for n in names})
    held = [n for n in names if drive_of(n) == drive]
    kept = [n for n in names if drive_of(n) != drive]
    if not held or not kept:
        raise SeglabError(f"--drive {drive!r}: the train split of {source} has drives {', '.join(drives)}; "
                          f"hold out one of them (at least two are needed)")
    extra = [(image.name, image, label) for image, label in list_pairs(CAMVID, source, "val")] if with_val else []
    if drive in {drive_of(name) for name, _, _ in extra}:
        raise SeglabError(f"--drive {drive!r} is also in the val split of {source}: with a recipe that trains on "
                          f"val, hold out a drive that val does not have")
    if dest.exists():  # links (or copies) from an earlier run: start afresh
        shutil.rmtree(dest)
    plan = {"train": [(n, images / n, labels / n) for n in kept] + extra,
            "val": [(n, images / n, labels / n) for n in held]}
    for split, chosen in plan.items():
        image_dir, label_dir = (dest / sub for sub in CAMVID.layout[split])
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for name, image, label in chosen:
            _link(image, image_dir / name)
            _link(label, label_dir / label.name)
    for sub in CAMVID.layout["test"]:
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for path in (source / sub).iterdir():
            _link(path, dest / sub / path.name)
    for split, chosen in plan.items():  # the split files say which pairs belong to each split
        (dest / f"{split}.txt").write_text("".join(f"/SegNet/CamVid/{split}/{n} /SegNet/CamVid/{split}annot/{n}\n"
                                                   for n, _, _ in chosen))
    _link(source / "test.txt", dest / "test.txt")
    return {"train": len(plan["train"]), "val": len(held), "test": len(list((dest / CAMVID.layout["test"][0]).iterdir()))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drive", default="0001TP", help="training drive to hold out (default 0001TP, dusk)")
    parser.add_argument("--budget", default="15m", help="wall-clock training budget (default 15m)")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="changes to the budget15 recipe, e.g. color_jitter=0.1 'scale=(0.75,1.5)'")
    parser.add_argument("--root", help="CamVid folder (default $SEGLAB_DATA or data/camvid)")
    parser.add_argument("--out", default="runs/heldout_drive", help="run folder")
    parser.add_argument("--results", default="runs/heldout_drive.jsonl", help="JSON lines file to append to")
    parser.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    args = parser.parse_args(argv)
    try:
        settings = parse_overrides(args.set)
        source = resolve_root(CAMVID, args.root)
        # a fixed folder (not a temporary one), so the decoded-data cache is reused run to run
        values = user_sizes_win({**get_recipe("budget15"), **settings}, settings)
        # A recipe that trains on val gets the real val images in the layout's train split: the
        # layout's own val split is the held-out drive, scored in full and never trained on.
        with_val = "val" in values.get("train_splits", ("train",))
        values.update(train_splits=("train",), val_subset=None)
        held_root = cache_dir() / "heldout" / f"camvid-{args.drive}{'-with-val' if with_val else ''}"
        counts = build_heldout_root(source, args.drive, held_root, with_val)
        values.update(budget=parse_duration(args.budget), root=str(held_root), out_dir=args.out, device=args.device)
        config = TrainConfig.from_dict(values)
        device = get_device(args.device)
        print(f"device: {describe(device)}; code {code_version()}; held out {args.drive}: "
              f"train {counts['train']} images, val {counts['val']} (links in {held_root})", flush=True)
        start = time.perf_counter()
        run = fit(config)
        train_seconds = time.perf_counter() - start
        result = evaluate_checkpoint(run.last_path, "val", held_root, device=args.device)
    except SeglabError as error:
        sys.exit(f"error: {error}")
    row = {
        "drive": args.drive, "set": args.set, "train_images": counts["train"], "with_val": with_val,
        "budget_s": config.budget, "train_wall_s": round(train_seconds, 1),
        "epochs": len(run.history), "sizing": run.sizing.as_dict() if run.sizing else None,
        "size": list(run.config.size), "val_miou": round(result["miou"], 4),
        "val_pixel_accuracy": round(result["pixel_accuracy"], 4),
        "iou": {k: (round(v, 4) if v is not None else None) for k, v in result["iou"].items()},
        "device": describe(device), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
    }
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print()
    print(f"CPU class / device: {row['device']}")
    print(f"held-out drive {args.drive} ({counts['val']} images), recipe budget15 "
          f"{' '.join(args.set) or '(as it is)'}: {train_seconds / 60:.1f} min, {row['epochs']} epochs")
    print(f"configuration: {describe_choice(run.config, run.sizing)}")
    print(f"val on the held-out drive: mIoU {result['miou']:.4f}, pixel accuracy {result['pixel_accuracy']:.4f}")
    for name, value in result["iou"].items():
        print(f"  IoU {name:<12} {value:.3f}" if value is not None else f"  IoU {name:<12} n/a")


if __name__ == "__main__":
    main()
