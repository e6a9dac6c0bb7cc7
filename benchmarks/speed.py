#!/usr/bin/env python3
"""Speed benchmark: the plain loop a learner would write vs seglab's defaults.

One process, one run, the same U-Net (width 16) and the same CamVid images:

- *plain*: PNG files decoded and transformed per sample every epoch (PIL), fp32, NCHW,
  a DataLoader with 0 workers, ``model(x)`` in ``torch.no_grad`` for inference;
- *seglab*: the decoded cache, the joint v2 transforms, and the settings that
  ``seglab.hardware.choose_settings`` picks for this device (channels_last, bf16
  autocast where it makes convolutions faster, freed buffers kept for reuse on Linux, BatchNorm
  folded into the convolutions for inference, ...), ``seglab.inference.predict_logits``.

Training and inference are timed in alternating rounds (plain, seglab, plain, ...) so
that a change in machine load hits both sides alike; the figures are medians. It prints
images/s for each side, the ratios, the loaders' images/s alone, and the CPU class.

On a CPU it then asks how far any setting could go: ``torch.profiler`` times the
convolutions alone (forward and backward) in seglab's training step and inference batch.
Convolutions are the one cost no data pipeline or memory layout removes, so their time
gives the ceiling: the ratio seglab would reach if everything else took no time at all.
Where the CPU has native bf16 it also times the convolutions under the other precision
(fp32 vs bf16 autocast), the measurement behind ``seglab.hardware.choose_settings``.

    python benchmarks/speed.py                 # real CamVid ($SEGLAB_DATA or data/camvid)
    python benchmarks/speed.py --steps 4 --rounds 1   # a smoke run
    python benchmarks/speed.py --device cuda   # a GPU: both sides move batches there; no target is set
    python benchmarks/speed.py --no-ceiling    # skip the convolution timings (CPU only anyway)
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import seglab  # noqa: E402
from seglab.data import SegmentationDataset, list_pairs, resolve_root  # noqa: E402
from seglab.datasets import CAMVID  # noqa: E402
from seglab.inference import predict_logits, prepare_model  # noqa: E402
from seglab.train import train_step  # noqa: E402
from seglab.hardware import (SpeedSettings, choose_settings, cpu_bf16_supported,  # noqa: E402
                             cpu_info, describe, reuse_freed_memory)
from seglab.models import UNet  # noqa: E402
from seglab.transforms import eval_transforms, train_transforms  # noqa: E402

SIZE, CROP, WIDTH, BATCH = (180, 240), (176, 240), 16, 8


class PlainCamVid(Dataset):
    """What a learner writes first: open both PNGs, resize, crop, flip, normalise, per sample."""

    def __init__(self, pairs, train: bool):
        self.pairs, self.train = pairs, train
        self.mean = np.array(CAMVID.mean, np.float32)
        self.std = np.array(CAMVID.std, np.float32)

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        image = Image.open(self.pairs[i][0]).convert("RGB").resize(SIZE[::-1], Image.BILINEAR)
        label = Image.open(self.pairs[i][1]).resize(SIZE[::-1], Image.NEAREST)
        x = (np.asarray(image, np.float32) / 255.0 - self.mean) / self.std
        y = np.asarray(label, np.int64)
        if self.train:
            top = np.random.randint(0, SIZE[0] - CROP[0] + 1)
            x, y = x[top:top + CROP[0]], y[top:top + CROP[0]]
            if np.random.rand() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
        return torch.from_numpy(x.transpose(2, 0, 1).copy()), torch.from_numpy(y.copy())


def batches(loader, n):
    """n batches from a loader, cycling through it."""
    out, it = [], iter(loader)
    while len(out) < n:
        try:
            out.append(next(it))
        except StopIteration:
            it = iter(loader)
    return out


def time_loader(loader, n) -> float:
    start = time.perf_counter()
    count = sum(x.shape[0] for x, _ in batches(loader, n))
    return count / (time.perf_counter() - start)


def finish(device) -> None:
    """Wait for queued GPU work, so that the clock stops when the work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_plain(model, opt, loader, steps, device) -> float:
    model.train()
    start, count = time.perf_counter(), 0
    for x, y in batches(loader, steps):
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y, ignore_index=11)
        loss.backward()
        opt.step()
        count += x.shape[0]
    finish(device)
    return count / (time.perf_counter() - start)


LOSS = torch.nn.CrossEntropyLoss(ignore_index=11)   # void ignored, as in make_loss("ce")


def seglab_step(model, opt, x, y, settings, device) -> None:
    """One training step as seglab's fit takes it (:func:`seglab.train.train_step`): autocast
    as ``settings`` say, loss in fp32."""
    train_step(model, x, y, LOSS, opt, settings=settings)


def train_seglab(model, opt, loader, steps, settings, device) -> float:
    model.train()
    start, count = time.perf_counter(), 0
    for x, y in batches(loader, steps):
        x = x.as_subclass(torch.Tensor).to(device, non_blocking=True)
        y = y.as_subclass(torch.Tensor).to(device, non_blocking=True)
        if settings.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        seglab_step(model, opt, x, y, settings, device)
        count += x.shape[0]
    finish(device)
    return count / (time.perf_counter() - start)


def infer_plain(model, loader, n, device) -> float:
    model.eval()
    start, count = time.perf_counter(), 0
    with torch.no_grad():
        for x, _ in batches(loader, n):
            model(x.to(device)).argmax(1)
            count += x.shape[0]
    finish(device)
    return count / (time.perf_counter() - start)


def infer_seglab(model, loader, n, settings, device) -> float:
    model.eval()
    start, count = time.perf_counter(), 0
    model = prepare_model(model, settings, inference=True)   # BatchNorm folded: timed too
    for x, _ in batches(loader, n):
        predict_logits(model, x, None, settings).argmax(1)
        count += x.shape[0]
    finish(device)
    return count / (time.perf_counter() - start)


@contextlib.contextmanager
def quiet_stderr():
    """Send the process's stderr to the null device for a while: the profiler's C++ side
    logs its every start and stop there, which says nothing about the figures."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def convolution_seconds(work, calls: int = 3) -> tuple[float, float]:
    """Per call of ``work()``: the seconds spent inside convolutions (every profiler event
    whose name has 'conv' in it, forward and backward, self time only, so nothing is
    counted twice), and the seconds the call took in all (profiler overhead included)."""
    from torch.profiler import ProfilerActivity, profile
    work()   # first call under a new setting: oneDNN creates its kernels
    start = time.perf_counter()
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            work()
    total = (time.perf_counter() - start) / calls
    conv = sum(e.self_cpu_time_total for e in prof.key_averages() if "conv" in e.key.lower())
    return conv / 1e6 / calls, total


def convolution_ceiling(model, opt, train_batch, infer_batch, settings, device) -> dict:
    """Convolution seconds per training step and per inference batch under ``settings``."""
    x, y = (t.as_subclass(torch.Tensor) for t in train_batch)
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def train_once():
        model.train()
        seglab_step(model, opt, x, y, settings, device)

    folded = prepare_model(model, settings, inference=True)
    images = infer_batch.as_subclass(torch.Tensor)

    def infer_once():
        predict_logits(folded, images, None, settings).argmax(1)

    train_conv, train_all = convolution_seconds(train_once)
    infer_conv, infer_all = convolution_seconds(infer_once)
    return {"train_conv": train_conv, "train_all": train_all, "infer_conv": infer_conv, "infer_all": infer_all}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="CamVid folder (default $SEGLAB_DATA or data/camvid)")
    parser.add_argument("--steps", type=int, default=8, help="training steps per round and side")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    parser.add_argument("--infer-batch", type=int, default=16, help="seglab's evaluation batch size")
    parser.add_argument("--device", default="cpu", help="cpu (default; the targets are set for CPUs) or cuda")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the convolution timings")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    np.random.seed(0)
    device = torch.device(args.device)
    settings = choose_settings(device, fast=True)
    root = resolve_root("camvid", args.root)
    print(f"device: {describe(device)}")
    print(f"cpu: {cpu_info()}")
    print(f"seglab settings: {settings.as_dict()}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    train_pairs, val_pairs = list_pairs(CAMVID, root, "train"), list_pairs(CAMVID, root, "val")
    plain_train = DataLoader(PlainCamVid(train_pairs, True), batch_size=BATCH, shuffle=True, num_workers=0)
    plain_val = DataLoader(PlainCamVid(val_pairs, False), batch_size=BATCH, shuffle=False, num_workers=0)
    fast_train_set = SegmentationDataset(CAMVID, root, "train", SIZE, train_transforms(CAMVID, CROP), progress=False)
    fast_val_set = SegmentationDataset(CAMVID, root, "val", SIZE, eval_transforms(CAMVID), progress=False)
    fast_train = DataLoader(fast_train_set, batch_size=BATCH, shuffle=True, num_workers=0)
    fast_val = DataLoader(fast_val_set, batch_size=args.infer_batch, shuffle=False, num_workers=0)

    base = UNet(3, 11, width=WIDTH)
    plain_model = UNet(3, 11, width=WIDTH).to(device)
    plain_model.load_state_dict(base.state_dict())
    fast_model = prepare_model(UNet(3, 11, width=WIDTH).to(device), settings)
    fast_model.load_state_dict(base.state_dict())
    plain_opt = torch.optim.Adam(plain_model.parameters(), 1e-3)
    fast_opt = torch.optim.Adam(fast_model.parameters(), 1e-3)

    # warm-up (first calls allocate and pick kernels)
    train_plain(plain_model, plain_opt, plain_train, 1, device)
    train_seglab(fast_model, fast_opt, fast_train, 1, settings, device)
    infer_plain(plain_model, plain_val, 1, device)
    infer_seglab(fast_model, fast_val, 1, settings, device)

    infer_batches = max(2, args.steps * BATCH // args.infer_batch)
    results = {k: [] for k in ("train_plain", "train_seglab", "infer_plain", "infer_seglab",
                               "loader_plain", "loader_seglab")}
    # glibc's allocator setting is process-wide: on for seglab's side, back to the defaults
    # for the plain side, switched before each timed part
    reuse = settings.reuse_memory
    for r in range(args.rounds):
        reuse_freed_memory(False)
        results["train_plain"].append(train_plain(plain_model, plain_opt, plain_train, args.steps, device))
        reuse_freed_memory(reuse)
        results["train_seglab"].append(train_seglab(fast_model, fast_opt, fast_train, args.steps, settings, device))
        reuse_freed_memory(False)
        results["infer_plain"].append(infer_plain(plain_model, plain_val, args.steps, device))
        reuse_freed_memory(reuse)
        results["infer_seglab"].append(infer_seglab(fast_model, fast_val, infer_batches, settings, device))
        results["loader_plain"].append(time_loader(plain_train, args.steps))
        results["loader_seglab"].append(time_loader(fast_train, args.steps))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in results.items()), flush=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    train_ratio = med["train_seglab"] / med["train_plain"]
    infer_ratio = med["infer_seglab"] / med["infer_plain"]
    bf16 = cpu_info()["bf16"]
    targets = (2.5, 3.0) if bf16 else (1.25, 1.5)
    print()
    print(f"CPU class: {describe('cpu')}" + (f", device: {describe(device)}" if device.type != "cpu" else ""))
    print(f"U-Net width {WIDTH}, train crops {CROP[0]}x{CROP[1]}, inference {SIZE[0]}x{SIZE[1]}, batch {BATCH}")
    print(f"{'':<22}{'plain loop':>12}{'seglab':>12}{'ratio':>9}{'target':>9}")
    print(f"{'training img/s':<22}{med['train_plain']:>12.2f}{med['train_seglab']:>12.2f}"
          f"{train_ratio:>8.2f}x{targets[0]:>8.2f}x")
    print(f"{'inference img/s':<22}{med['infer_plain']:>12.2f}{med['infer_seglab']:>12.2f}"
          f"{infer_ratio:>8.2f}x{targets[1]:>8.2f}x")
    print(f"{'loader alone img/s':<22}{med['loader_plain']:>12.1f}{med['loader_seglab']:>12.1f}"
          f"{med['loader_seglab'] / med['loader_plain']:>8.1f}x")
    print(f"seglab loader vs seglab training: {med['loader_seglab'] / med['train_seglab']:.0f}x faster than "
          f"training consumes (the loader is {'not ' if med['loader_seglab'] > 3 * med['train_seglab'] else ''}the bottleneck)")
    ok = train_ratio >= targets[0] and infer_ratio >= targets[1]
    if device.type == "cpu" and not args.no_ceiling:
        print_ceiling(fast_model, fast_opt, fast_train, fast_val, settings, device, med, args.infer_batch)
    if device.type == "cpu":
        print(f"targets ({'bf16-capable' if bf16 else 'AVX2-only'} CPU): {'met' if ok else 'NOT met'}")
    else:
        print("(the targets are set for CPUs; on a GPU these figures are a record, not a check)")


def print_ceiling(model, opt, train_loader, val_loader, settings, device, med: dict, infer_batch: int) -> None:
    """The convolution-only ceiling of seglab's ratios on this CPU (see the module docstring)."""
    train_batch, (val_images, _) = next(iter(train_loader)), next(iter(val_loader))
    chosen = convolution_ceiling(model, opt, train_batch, val_images, settings, device)
    name = settings.amp_dtype or "fp32"
    train_cap = BATCH / chosen["train_conv"] / med["train_plain"]
    infer_cap = infer_batch / chosen["infer_conv"] / med["infer_plain"]
    print(f"convolutions alone ({name}, torch.profiler): {chosen['train_conv'] * 1e3:.0f} of "
          f"{chosen['train_all'] * 1e3:.0f} ms per training step ({chosen['train_conv'] / chosen['train_all']:.0%}), "
          f"{chosen['infer_conv'] * 1e3:.0f} of {chosen['infer_all'] * 1e3:.0f} ms per inference batch of {infer_batch}")
    print(f"ceiling (everything but the convolutions free): training {train_cap:.2f}x, inference {infer_cap:.2f}x "
          f"the plain loop")
    if cpu_bf16_supported():
        other = SpeedSettings(**{**settings.as_dict(), "amp_dtype": None if settings.amp_dtype else "bfloat16"})
        alt = convolution_ceiling(model, opt, train_batch, val_images, other, device)
        print(f"the same convolutions in {other.amp_dtype or 'fp32'}: {alt['train_conv'] * 1e3:.0f} ms per training "
              f"step, {alt['infer_conv'] * 1e3:.0f} ms per inference batch ({name}: {chosen['train_conv'] * 1e3:.0f} "
              f"and {chosen['infer_conv'] * 1e3:.0f}); seglab uses {name} here")


if __name__ == "__main__":
    main()
