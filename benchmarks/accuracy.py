#!/usr/bin/env python3
"""Accuracy benchmark: the 15-minute CamVid recipe, scored on the test set.

Trains with ``seglab train --recipe budget15`` settings (the schedule is sized to the
wall-clock budget, data loading and validation included), then scores the last
checkpoint on the 233 test images at their full 360x480 (predictions resized back to
each label's size, void ignored). Prints test mIoU, pixel accuracy, the wall times and
the CPU class, the configuration the budget chose (``--sizing auto``: the input size, from
the measured step times it prints), per-class test IoU, and the targets for this class of
CPU. Writes all of it to ``--out``/accuracy.json.

    python benchmarks/accuracy.py                  # 15 minutes
    python benchmarks/accuracy.py --budget 2m      # a shorter smoke run
    python benchmarks/accuracy.py --seed 1 --set lr=3e-3   # another seed, one setting changed
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seglab.checkpoint import code_version  # noqa: E402
from seglab.config import TrainConfig, parse_duration, parse_overrides  # noqa: E402
from seglab.errors import SeglabError  # noqa: E402
from seglab.evaluation import evaluate_checkpoint  # noqa: E402
from seglab.train import fit  # noqa: E402
from seglab.hardware import cpu_info, describe, get_device  # noqa: E402
from seglab.recipes import get_recipe  # noqa: E402
from seglab.sizing import describe_choice, user_sizes_win  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="15m", help="wall-clock training budget (default 15m)")
    parser.add_argument("--root", help="CamVid folder (default $SEGLAB_DATA or data/camvid)")
    parser.add_argument("--out", default="runs/budget15", help="run folder")
    parser.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--seed", type=int, help="random seed (default: the recipe's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="changes to the budget15 recipe, e.g. lr=3e-3 'size=(180,240)' (a size, crop, "
                             "stem stride, width or eval scales given here turns the budget's choice off)")
    args = parser.parse_args(argv)
    try:
        settings = parse_overrides(args.set)
        if args.seed is not None:
            settings["seed"] = args.seed
        values = user_sizes_win({**get_recipe("budget15"), **settings}, settings)
        values.update(budget=parse_duration(args.budget), root=args.root, out_dir=args.out, device=args.device)
        config = TrainConfig.from_dict(values, source="--set")
        device = get_device(args.device)
        print(f"device: {describe(device)}; code {code_version()}", flush=True)
        start = time.perf_counter()
        run = fit(config)
        train_seconds = time.perf_counter() - start
        result = evaluate_checkpoint(run.last_path, "test", args.root, device=args.device)
    except SeglabError as error:
        sys.exit(f"error: {error}")
    bf16 = cpu_info()["bf16"] if device.type == "cpu" else True
    target = (0.52, 0.86) if bf16 else (0.45, 0.84)
    summary = {
        "recipe": "budget15", "set": args.set, "seed": run.config.seed, "budget_s": config.budget,
        "size": list(run.config.size), "width": run.config.width, "stem_stride": run.config.stem_stride,
        "sizing": run.sizing.as_dict() if run.sizing is not None else None, "train_wall_s": round(train_seconds, 1),
        "epochs": len(run.history), "test_eval_s": round(result["seconds"], 1),
        "test_miou": round(result["miou"], 4), "test_pixel_accuracy": round(result["pixel_accuracy"], 4),
        "device": describe(device), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(), "target_miou": target[0], "target_pixel_accuracy": target[1],
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "accuracy.json").write_text(json.dumps({**summary, "iou": result["iou"]}, indent=2))
    print()
    print(f"CPU class / device: {summary['device']}")
    print(f"configuration: {describe_choice(run.config, run.sizing)}")
    print(f"training wall time: {train_seconds / 60:.1f} min for a {config.budget / 60:.0f}-min budget "
          f"({summary['epochs']} epochs, loading and validation included)")
    print(f"test (233 images at 360x480): mIoU {result['miou']:.4f}, pixel accuracy {result['pixel_accuracy']:.4f} "
          f"(scored in {result['seconds']:.0f} s)")
    for name, value in result["iou"].items():
        print(f"  IoU {name:<12} {value:.3f}" if value is not None else f"  IoU {name:<12} n/a")
    met = result["miou"] >= target[0] and result["pixel_accuracy"] >= target[1]
    print(f"target for this CPU class: mIoU >= {target[0]}, pixel accuracy >= {target[1]}: "
          f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
