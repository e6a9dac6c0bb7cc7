#!/usr/bin/env python3
"""Do seglab's speed settings change the scores? The same checkpoint scored in plain fp32,
in fp32 with BatchNorm folded into the convolutions (seglab's CPU inference), and under bf16
autocast, on the same images, at the labels' full resolution.

seglab turns bf16 on only where it makes the convolutions faster (AMX: about 3x; native
AVX512-BF16 where a quick timing says so, see ``seglab.hardware.cpu_bf16_pays_off``). Its
*numbers* do not depend on the CPU: on a CPU without native bf16 the same rounding is emulated (about
11x slower), so this script measures the accuracy question on any machine, slowly on an AVX2
one.

    python benchmarks/precision.py                       # the shipped pretrained model, test split
    python benchmarks/precision.py --checkpoint runs/course/best.pt --split val --subset 50

Training is the other half of the question: rounding every activation and gradient to bf16
for hundreds of steps could drift where one forward pass does not. ``--train EPOCHS`` trains
the course's 15-minute recipe (``course``, a fixed number of epochs instead of its budget) in fp32
and under bf16 autocast, with the same seed, data order and augmentation, for each seed
given, and scores every model the same way (fp32, on the validation split; the test split
stays for the final figures). The spread between seeds is the noise that a difference
between precisions is measured against.

    python benchmarks/precision.py --train 15 --seeds 0,1          # about 20 minutes on a bf16 CPU
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seglab.checkpoint import PRETRAINED_FILE  # noqa: E402
from seglab.config import TrainConfig  # noqa: E402
from seglab.evaluation import evaluate_checkpoint  # noqa: E402
from seglab.train import fit  # noqa: E402
from seglab.hardware import SpeedSettings, bf16_choice, cpu_info, describe  # noqa: E402
from seglab.recipes import get_recipe  # noqa: E402

FP32_SCORING = SpeedSettings(channels_last=True, fold_batchnorm=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=PRETRAINED_FILE, help="default: the shipped model")
    parser.add_argument("--split", default="test")
    parser.add_argument("--subset", type=int, help="score only this many images (spread over the split)")
    parser.add_argument("--root", help="data folder (default $SEGLAB_DATA or data/camvid)")
    parser.add_argument("--train", type=int, metavar="EPOCHS",
                        help="compare training in fp32 and bf16 instead: the course recipe for EPOCHS epochs")
    parser.add_argument("--seeds", default="0,1", help="with --train: comma-separated seeds (default 0,1)")
    parser.add_argument("--out", type=Path, help="with --train: run folders (default: a temporary folder)")
    args = parser.parse_args(argv)

    info = cpu_info()
    print(f"device: {describe('cpu')}; native bf16: {info['bf16']}"
          + ("" if info["bf16"] else " (bf16 is emulated here: slow, same numbers)"))
    if args.train:
        seeds = [int(s) for s in args.seeds.split(",")]
        if args.out:
            compare_training(args.train, seeds, args.root, args.out)
        else:
            with tempfile.TemporaryDirectory(prefix="seglab-precision-") as tmp:
                compare_training(args.train, seeds, args.root, Path(tmp))
        return
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


def compare_training(epochs: int, seeds: list[int], root: str | None, out: Path,
                     recipe_name: str = "course") -> dict[str, list[dict]]:
    """Train ``recipe_name`` for ``epochs`` epochs per seed in fp32 and in bf16; score all in
    fp32 on val. Returns the scores per precision, in the order of ``seeds``."""
    recipe = {**get_recipe(recipe_name), "budget": None, "epochs": epochs, "val_every": epochs}
    scores: dict[str, list[dict]] = {"fp32": [], "bf16": []}
    for seed in seeds:
        for name, flag in (("fp32", "0"), ("bf16", "1")):
            os.environ["SEGLAB_CPU_BF16"] = flag          # what choose_settings reads (hardware.bf16_choice)
            bf16_choice.cache_clear()
            run = fit(TrainConfig(**{**recipe, "seed": seed, "root": root, "device": "cpu", "progress": False,
                                     "out_dir": str(out / f"{name}-seed{seed}")}))
            assert (run.settings.amp_dtype == "bfloat16") == (name == "bf16"), run.settings
            score = evaluate_checkpoint(run.last_path, "val", root, device="cpu", settings=FP32_SCORING)
            steps = run.history[-1]["step"]
            scores[name].append(score)
            print(f"seed {seed} {name}: trained {run.seconds / 60:.1f} min, val mIoU {score['miou']:.4f}, "
                  f"pixel accuracy {score['pixel_accuracy']:.4f} ({steps} steps)", flush=True)
    os.environ.pop("SEGLAB_CPU_BF16", None)
    bf16_choice.cache_clear()
    print(f"\n{recipe_name} for {epochs} epochs, seeds {seeds}, val ({scores['fp32'][0]['images']} images at "
          f"{'x'.join(map(str, scores['fp32'][0]['resolution']))}), all scored in fp32")
    for key, label in (("miou", "mIoU"), ("pixel_accuracy", "pixel accuracy")):
        fp32, bf16 = [r[key] for r in scores["fp32"]], [r[key] for r in scores["bf16"]]
        diffs = [b - a for a, b in zip(fp32, bf16)]
        seed_spread = max(fp32) - min(fp32) if len(fp32) > 1 else float("nan")
        print(f"{label}: fp32 mean {statistics.mean(fp32):.4f}, bf16 mean {statistics.mean(bf16):.4f}; "
              f"bf16 - fp32 per seed {', '.join(f'{d:+.4f}' for d in diffs)}; "
              f"fp32 between seeds {seed_spread:.4f}")
    return scores


if __name__ == "__main__":
    main()
