#!/usr/bin/env python3
"""Do seglab's speed settings change the scores? The same checkpoint scored in plain fp32,
in fp32 with BatchNorm folded into the convolutions (seglab's CPU inference), and under bf16
autocast, on the same images, at the labels' full resolution.

seglab turns bf16 on only where the CPU has AMX, where it is about 3x faster. Its *numbers*
do not depend on the CPU: on a CPU without native bf16 the same rounding is emulated (about
11x slower), so this script measures the accuracy question on any machine, slowly on an AVX2
one.

    python benchmarks/precision.py                       # the shipped pretrained model, test split
    python benchmarks/precision.py --checkpoint runs/course/best.pt --split val --subset 50
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seglab.checkpoint import PRETRAINED_FILE  # noqa: E402
from seglab.engine import evaluate_checkpoint  # noqa: E402
from seglab.hardware import SpeedSettings, cpu_info, describe  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=PRETRAINED_FILE, help="default: the shipped model")
    parser.add_argument("--split", default="test")
    parser.add_argument("--subset", type=int, help="score only this many images (spread over the split)")
    parser.add_argument("--root", help="data folder (default $SEGLAB_DATA or data/camvid)")
    args = parser.parse_args(argv)

    info = cpu_info()
    print(f"device: {describe('cpu')}; native bf16: {info['bf16']}"
          + ("" if info["bf16"] else " (bf16 is emulated here: slow, same numbers)"))
    results = {}
    for name, settings in (("fp32", SpeedSettings(channels_last=True)),
                           ("fp32, BN folded", SpeedSettings(channels_last=True, fold_batchnorm=True)),
                           ("bf16 autocast", SpeedSettings(channels_last=True, amp_dtype="bfloat16"))):
        results[name] = evaluate_checkpoint(args.checkpoint, args.split, args.root, device="cpu",
                                            subset=args.subset, settings=settings)
        print(f"{name:<16} mIoU {results[name]['miou']:.4f}  pixel accuracy {results[name]['pixel_accuracy']:.4f}"
              f"  ({results[name]['seconds']:.0f} s)", flush=True)
    a = results["fp32"]
    size = "x".join(map(str, a["resolution"]))
    print(f"\n{a['images']} {args.split} images at {size}, checkpoint {args.checkpoint}")
    for name in ("fp32, BN folded", "bf16 autocast"):
        b = results[name]
        worst = max(a["iou"], key=lambda c: abs((b["iou"][c] or 0) - (a["iou"][c] or 0)))
        print(f"{name} - fp32: mIoU {b['miou'] - a['miou']:+.4f}, pixel accuracy "
              f"{b['pixel_accuracy'] - a['pixel_accuracy']:+.4f}, largest per-class change: "
              f"{worst} {(b['iou'][worst] or 0) - (a['iou'][worst] or 0):+.4f}")


if __name__ == "__main__":
    main()
