"""Training: :func:`train_step`, the step the course teaches, and :func:`fit`, the loop
that runs it for every notebook and ``seglab train``.

``fit(TrainConfig(...))`` reads top to bottom: resume, set up (device, data, model, loss,
optimiser), plan, loop over steps calling :func:`train_step`, and the end of each epoch
(validate, record, checkpoint) in :func:`end_of_epoch`. What lives across steps is one
:class:`~seglab.checkpoint.Progress`, which is also what a checkpoint saves.
"""
from __future__ import annotations

import json
import math
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset

from .batches import SeededAugment, epoch_batches, iterate
from .budget import BudgetPlanner, HalfResolutionCost, half_resolution
from .checkpoint import Progress, code_version, load_checkpoint, restore_training, save_checkpoint, training_state
from .config import TrainConfig
from .data import SegmentationDataset, make_loader
from .datasets import DatasetSpec, get_spec
from .distributed import (agreed_cpu_precision, all_reduce_sum, dist_env, finish_distributed, init_distributed,
                          shard)
from .errors import SeglabError, TrainingError
from .evaluation import evaluate
from .hardware import SpeedSettings, autocast, choose_settings, describe, get_device
from .inference import as_plain, prepare_model
from .losses import class_frequencies, class_weights, logit_offsets, make_loss
from .models import UNet
from .optim import lr_factor, make_optimizer, set_lr
from .outputs import write_text
from .sizing import Choice, choose_for_budget
from .transforms import eval_transforms, train_transforms

FP32 = SpeedSettings()
NO_SCALING = torch.amp.GradScaler("cpu", enabled=False)   # scale() and step() pass straight through


def train_step(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, loss_fn: nn.Module,
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler = NO_SCALING,
               settings: SpeedSettings = FP32) -> float:
    """One optimisation step: forward, loss (void ignored by ``loss_fn``), backward, update.
    Returns the loss as a float. ``settings`` may run the forward pass in lower precision
    (autocast); ``scaler`` keeps fp16 gradients from underflowing. A step whose loss is not
    finite leaves the weights as they were (the caller decides what to do about it)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast(images.device, settings):
        logits = model(images)
    loss = loss_fn(logits.float(), masks)
    if not math.isfinite(value := loss.item()):
        return value
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return value


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so that a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Run:
    """What :func:`fit` returns."""

    model: nn.Module
    history: list[dict]
    config: TrainConfig
    out_dir: Path | None
    best_path: Path | None = None
    last_path: Path | None = None
    interrupted: bool = False
    settings: SpeedSettings = field(default_factory=SpeedSettings)
    seconds: float = 0.0
    # A rebalanced run's per-class logit offsets (None otherwise): give them to
    # predict_logits / evaluate with ``model``; load_model(last_path) includes them.
    offsets: torch.Tensor | None = None
    plans: list = field(default_factory=list)   # a budget run's plans (seglab.budget.Plan)
    sizing: Choice | None = None                # what --sizing auto picked, and why

    @property
    def best_miou(self) -> float:
        values = [h["val_miou"] for h in self.history if h.get("val_miou") is not None]
        return max(values) if values else float("nan")


class Interrupt:
    """Turns Ctrl-C (SIGINT) into a flag checked between steps, so the loop can save a
    resumable checkpoint instead of dying half-way through an update."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C is not ours to catch
            self._previous = None
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def build_datasets(config: TrainConfig):
    """The training set (cached at ``config.size``, augmented) and the validation set
    (native resolution, so validation mIoU means what test mIoU means)."""
    spec = get_spec(config.dataset)
    transform = train_transforms(spec, config.crop, config.scale, config.hflip, config.color_jitter,
                                 config.rotate, config.vflip, config.elastic, config.augment)
    parts = [SegmentationDataset(spec, config.root, s, config.size, transform, config.subset,
                                 progress=config.progress) for s in config.train_splits]
    train = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    val = SegmentationDataset(spec, config.root, config.val_split, None, eval_transforms(spec),
                              config.val_subset, progress=config.progress)
    return spec, parts, train, val


def loss_weights(config: TrainConfig, spec, parts) -> torch.Tensor | None:
    """The class weights of ``config.class_weights`` from the training parts' label
    frequencies (None for ``"none"``), and so the logit offsets of ``config.rebalance``."""
    if config.class_weights == "none":
        return None
    masks = torch.cat([p.masks.reshape(-1) for p in parts])
    return class_weights(class_frequencies(masks, spec.num_classes, spec.ignore_index), config.class_weights)


def resolve_resume(config: TrainConfig) -> tuple[TrainConfig, dict | None]:
    """For ``config.resume``: the saved run's config (with this call's output folder, data
    root, progress bar and extra epochs) and the checkpoint; otherwise ``config`` as it is."""
    if not config.resume:
        return config, None
    state = load_checkpoint(config.resume)
    saved = TrainConfig.from_checkpoint(state)
    saved.resume, saved.progress = config.resume, config.progress
    saved.epochs, saved.more_epochs = saved.epochs + config.more_epochs, 0   # the plan now includes them
    saved.out_dir = config.out_dir if config.out_dir else saved.out_dir
    if config.root:
        saved.root = config.root
    return saved, state


@dataclass
class Setup:
    """Everything the loop needs, built before it starts."""

    config: TrainConfig
    spec: DatasetSpec
    device: torch.device
    settings: SpeedSettings
    model: nn.Module              # the model itself (checkpoints, validation)
    run_model: nn.Module          # what the steps call: the model, wrapped for torchrun / torch.compile
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    weights: torch.Tensor | None  # class weights (saved: load_model makes logit offsets of them)
    offsets: torch.Tensor | None  # the logit offsets validation applies (rebalance)
    train_set: object
    val_set: object
    rank: int = 0
    world: int = 1
    batch: int = 8                # images per step on this process
    steps_per_epoch: int = 1
    out_dir: Path | None = None
    own_group: bool = False
    sizing: Choice | None = None  # what --sizing auto picked, and why

    @property
    def last_path(self) -> Path | None:
        return self.out_dir / "last.pt" if self.out_dir else None

    @property
    def best_path(self) -> Path | None:
        return self.out_dir / "best.pt" if self.out_dir else None

    def checkpoint(self, progress: Progress) -> dict:
        """What a checkpoint of this run holds now (see :func:`seglab.checkpoint.training_state`)."""
        return training_state(self.model, self.optimizer, self.config.as_dict(), self.spec.name,
                              self.spec.class_names, progress, self.weights, self.device)


def set_up(config: TrainConfig, model: nn.Module | None, saved: dict | None,
           clock: Callable[[], float] = time.perf_counter, start: float | None = None) -> tuple[Setup, Progress]:
    """Device and processes, the model's size (``--sizing auto``), data, model, loss and
    optimiser; the saved state put back."""
    rank, local_rank, world = dist_env()
    device = get_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
    own_group = init_distributed(device) if world > 1 else False
    settings = choose_settings(device, config.fast)
    if world > 1 and device.type == "cpu":
        settings.amp_dtype = agreed_cpu_precision(settings.amp_dtype, world)
    settings.compile = bool(config.compile)
    config, choice = size_model(config, model, saved, device, settings, rank, world, clock, start)
    set_seed(config.seed)
    spec, parts, train_set, val_set = build_datasets(config)
    if model is None:
        model = UNet(spec.in_channels, spec.num_classes, config.width, config.depth, config.batchnorm,
                     config.bilinear, config.skip, config.stem_stride)
    model = prepare_model(model.to(device), settings)
    weights = loss_weights(config, spec, parts)
    weights = weights.to(device) if weights is not None else None
    # Training sees the weighted loss; validation and the saved model see the offsets.
    offsets = logit_offsets(weights, config.rebalance) if weights is not None and config.rebalance else None
    loss_fn = make_loss(config.loss, weights, spec.ignore_index)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, config.weight_decay, config.momentum)
    scaler = torch.amp.GradScaler(device.type, enabled=settings.amp_dtype == "float16")
    progress = restore_training(saved, model, optimizer, device) if saved is not None else Progress()
    run_model = model
    if world > 1:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        run_model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    run_model = torch.compile(run_model) if settings.compile else run_model
    batch = max(1, config.batch_size // world)
    if len(train_set) < batch * world:
        raise SeglabError(f"--batch-size {config.batch_size} is larger than the training set ({len(train_set)} "
                          f"images{', --subset ' + str(config.subset) if config.subset else ''}): use "
                          f"--batch-size {max(1, len(train_set) // world) * world} or less")
    steps_per_epoch = max(1, len(train_set) // (batch * world))
    out_dir = Path(config.out_dir) if (config.out_dir and rank == 0) else None
    return Setup(config, spec, device, settings, model, run_model, optimizer, scaler, loss_fn, weights, offsets,
                 train_set, val_set, rank, world, batch, steps_per_epoch, out_dir, own_group, choice), progress


def size_model(config: TrainConfig, model: nn.Module | None, saved: dict | None, device: torch.device,
               settings: SpeedSettings, rank: int, world: int, clock: Callable[[], float],
               start: float | None) -> tuple[TrainConfig, Choice | None]:
    """With ``--sizing auto`` and a budget: ``config`` with the configuration the budget
    picks (seglab/sizing.py), said in one line. A resumed run keeps the size it has; a
    model given to ``fit`` keeps its own."""
    if config.sizing != "auto" or config.budget is None or saved is not None:
        return config, None
    if model is not None:
        print("sizing: fixed, since fit was given a model", file=sys.stderr)
        return config, None
    config, choice = choose_for_budget(config, get_spec(config.dataset), device, settings, world, clock, start)
    config.validate()
    if rank == 0:
        print(choice.line(), file=sys.stderr, flush=True)
    return config, choice


def plan(s: Setup, progress: Progress, resumed: bool, more_epochs: int) -> None:
    """The run's length in steps and epochs, and where half resolution ends (``low_res``)."""
    config = s.config
    if not resumed or progress.total_steps is None:
        progress.total_steps = s.steps_per_epoch * (config.epochs - more_epochs)
        if config.max_steps is not None:
            progress.total_steps = min(progress.total_steps, config.max_steps)
    if more_epochs:
        # A longer plan: the cosine schedule is stretched over the new total, so the
        # learning rate rises again where the resumed run stands in it and then decays.
        progress.total_steps += more_epochs * s.steps_per_epoch
    progress.epochs = math.ceil(progress.total_steps / s.steps_per_epoch)
    # A budget plan moves low_end with the total, but never back into the full-resolution
    # phase once that has begun, and a resumed run (--more-epochs included) keeps its own.
    if not resumed:
        progress.low_end = int(config.low_res * progress.total_steps)


def write_run_config(s: Setup) -> None:
    """The run folder and its config.json (the options, settings, machine and code version)."""
    if s.out_dir is None:
        return
    if s.out_dir.exists() and not s.out_dir.is_dir():
        raise SeglabError(f"output folder {s.out_dir} is a file; choose another --out")
    s.out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"config": s.config.as_dict(), "settings": s.settings.as_dict(), "device": describe(s.device),
            "code_version": code_version(), "command": " ".join(sys.argv), "world_size": s.world,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if s.sizing is not None:
        meta["sizing"] = s.sizing.as_dict()
    write_text(s.out_dir / "config.json", json.dumps(meta, indent=2))


def fit(config: TrainConfig, callbacks=(), model: nn.Module | None = None,
        clock: Callable[[], float] = time.perf_counter) -> Run:
    """Train a U-Net as ``config`` says and return the :class:`Run`.

    - ``callbacks``: functions called with each epoch's history record (live plots).
    - ``model``: train this model instead of building one from the config.
    - ``config.resume``: continue from a checkpoint exactly where it stopped (on CPU with
      0 workers the resumed run ends with the same weights as an uninterrupted one).
      With ``config.more_epochs`` the saved plan is extended by that many epochs (a
      finished run trains on, its cosine schedule stretched over the longer plan).
    - ``config.budget``: seconds of wall clock; the first steps measure the machine's speed
      and the number of epochs (and so the learning-rate schedule) is sized to fit. With
      ``config.sizing = "auto"`` the budget first picks the input size and width
      (:mod:`seglab.sizing`; ``run.sizing`` says what and why).
    - Ctrl-C saves ``last.pt`` and returns with ``run.interrupted = True``.
    - ``clock``: where time is read (tests pass a fast one to run a budget in a moment).
    """
    start = clock()
    more_epochs = config.more_epochs
    config, saved = resolve_resume(config)
    config.validate()
    s, p = set_up(config, model, saved, clock, start)
    config = s.config   # with the size --sizing auto chose
    plan(s, p, resumed=saved is not None, more_epochs=more_epochs)
    planner = (BudgetPlanner(config.budget, s.steps_per_epoch, config.val_every, config.low_res, config.max_steps,
                             s.world, s.device, clock, start, calibrating=saved is None)
               if config.budget is not None else None)
    write_run_config(s)
    seeded = SeededAugment(s.train_set, config.seed)
    bar = None
    if config.progress and s.rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=p.total_steps, initial=p.step, desc="training", unit="step", dynamic_ncols=True)
    interrupted = False
    with Interrupt() as stop:
        while p.step < p.total_steps:
            epoch_start = clock()
            seeded.epoch = p.epoch
            batches = epoch_batches(len(s.train_set), config.seed, p.epoch, s.steps_per_epoch, s.batch, s.rank,
                                    s.world, p.batches_done)
            loader = make_loader(seeded, s.batch, False, config.workers, seed=p.epoch, batches=batches)
            if planner is not None:
                planner.start_epoch()
            for images, masks in iterate(loader):
                full_batch = _step(s, p, images, masks)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=f"{p.epoch + 1}/{p.epochs}", loss=f"{p.last_loss:.3f}")
                if planner is not None:
                    planner.step_done()
                    if planner.due(p.step, p.total_steps):
                        _replan(s, p, planner, full_batch, clock, bar)
                if stop.requested or p.step >= p.total_steps:
                    break
            if stop.requested and p.batches_done < s.steps_per_epoch and p.step < p.total_steps:
                interrupted = True
                if s.last_path is not None:
                    save_checkpoint(s.last_path, s.checkpoint(p))
                break
            end_of_epoch(s, p, planner, epoch_start, clock, bar, callbacks)
            if stop.requested:
                interrupted = p.step < p.total_steps
                break
    if bar is not None:
        bar.close()
    if s.world > 1:
        finish_distributed(s.own_group)
    return Run(model=s.model, history=p.history, config=config, out_dir=s.out_dir, best_path=s.best_path,
               last_path=s.last_path, interrupted=interrupted, settings=s.settings, seconds=clock() - start,
               offsets=s.offsets, plans=planner.plans if planner is not None else [], sizing=s.sizing)


def _step(s: Setup, p: Progress, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``fit`` adds around :func:`train_step`: the learning rate of this step, the batch
    on the device (at half resolution early in a ``low_res`` run, channels_last where that
    is faster), and one-line errors for a diverged loss or a full memory. Returns the
    full-resolution batch (a budget plan times it)."""
    config = s.config
    set_lr(s.optimizer, config.lr * lr_factor(p.step, p.total_steps, min(config.warmup_steps, p.total_steps // 10),
                                              config.schedule))
    x = as_plain(images).to(s.device, non_blocking=True)
    y = as_plain(masks).to(s.device, non_blocking=True)
    full_batch = (x, y)
    if p.step < p.low_end:
        x, y = half_resolution(x, y)
    if s.settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        value = train_step(s.run_model, x, y, s.loss_fn, s.optimizer, s.scaler, s.settings)
    except torch.OutOfMemoryError:
        raise TrainingError(f"out of memory on {describe(s.device)} with batch size {config.batch_size} "
                            f"at {config.size[0]}x{config.size[1]}: try --batch-size "
                            f"{max(1, config.batch_size // 2)} or a smaller --size.") from None
    if not math.isfinite(value):
        kept = f" The last good checkpoint is kept at {s.last_path}." if s.last_path and s.last_path.exists() else ""
        raise TrainingError(f"the loss became {value} at epoch {p.epoch + 1}, step {p.step + 1}: training diverged. "
                            f"Try a lower learning rate (--lr {config.lr / 10:g}), --fast off (full fp32), "
                            f"or check the labels for invalid values.{kept}")
    p.step += 1
    p.batches_done += 1
    p.partial_epoch[0] += value * x.shape[0]
    p.partial_epoch[1] += x.shape[0]
    p.partial_epoch[2] += x.shape[0] * s.world
    p.last_loss = value
    return full_batch


def _replan(s: Setup, p: Progress, planner: BudgetPlanner, full_batch, clock, bar) -> None:
    """Size (or re-size) the run to its budget; the progress bar follows."""
    config, val_set = s.config, s.val_set

    def time_validation() -> float:  # a full pass, estimated from a few images
        probe = torch.utils.data.Subset(val_set, list(range(min(len(val_set), 2 * config.batch_size))))
        t0 = clock()
        evaluate(s.run_model, probe, s.spec.num_classes, s.spec.ignore_index, config.size, config.batch_size,
                 s.settings, scales=config.eval_scales)
        return (clock() - t0) / max(1, len(probe)) * len(val_set) / s.world

    half = ((lambda: HalfResolutionCost(s.model, *full_batch, s.loss_fn, s.settings, s.device, clock))
            if config.low_res > 0 else None)
    p.total_steps, p.epochs, p.low_end = planner.replan(p.step, p.low_end, time_validation, half)
    if bar is not None:
        bar.total = p.total_steps
        bar.refresh()


def end_of_epoch(s: Setup, p: Progress, planner: BudgetPlanner | None, epoch_start: float,
                 clock: Callable[[], float], bar, callbacks) -> None:
    """Validate (every ``val_every`` epochs and after the last), record the epoch in the
    history, write the checkpoints (never NaN weights), and call the callbacks."""
    config = s.config
    p.epoch += 1
    stats = all_reduce_sum(torch.tensor(p.partial_epoch[:2], dtype=torch.float64), s.world)
    record = {"epoch": p.epoch, "step": p.step, "train_loss": float(stats[0] / max(stats[1], 1)),
              "lr": s.optimizer.param_groups[0]["lr"]}
    if config.low_res > 0:  # the epoch ended in the half-resolution phase (validation is always full)
        record["half_resolution"] = p.step <= p.low_end
    if p.epoch % config.val_every == 0 or p.step >= p.total_steps:
        val_start = clock()
        try:
            scores = evaluate(s.model, shard(s.val_set, s.rank, s.world), s.spec.num_classes, s.spec.ignore_index,
                              config.size, s.batch, s.settings, s.spec.class_names, world=s.world,
                              offsets=s.offsets, scales=config.eval_scales)
        except torch.OutOfMemoryError:
            raise TrainingError(f"out of memory on {describe(s.device)} while validating with batch size "
                                f"{s.batch}: try --batch-size {max(1, config.batch_size // 2)} "
                                f"or a smaller --size.") from None
        record.update(val_loss=scores["loss"], val_miou=scores["miou"], val_pixel_accuracy=scores["pixel_accuracy"])
        if planner is not None:
            planner.validated(clock() - val_start)
    record["seconds"] = clock() - epoch_start
    record["images_per_second"] = p.partial_epoch[2] / max(record["seconds"], 1e-9)
    p.history.append(record)
    p.batches_done, p.partial_epoch = 0, [0.0, 0, 0]
    if bar is not None and record.get("val_miou") is not None:
        bar.set_postfix(epoch=f"{p.epoch}/{p.epochs}", val_miou=f"{record['val_miou']:.3f}")
    improved = record.get("val_miou") is not None and record["val_miou"] > p.best_miou
    if improved:
        p.best_miou = record["val_miou"]
    if s.out_dir is not None:
        # A finite loss can still leave NaN weights after the update; never let them
        # overwrite the last good checkpoint.
        if not all(bool(torch.isfinite(t).all()) for t in s.model.state_dict().values() if t.is_floating_point()):
            kept = f" The last good checkpoint is kept at {s.last_path}." if s.last_path.exists() else ""
            raise TrainingError(f"the weights became NaN or infinite in epoch {p.epoch}: training diverged. Try a "
                                f"lower learning rate (--lr {config.lr / 10:g}) or --fast off (full fp32).{kept}")
        state = s.checkpoint(p)
        save_checkpoint(s.last_path, state)
        if improved:
            save_checkpoint(s.best_path, state)
        write_history(s.out_dir, p.history)
    for callback in callbacks:
        callback(record)


def write_history(out_dir: Path, history: list[dict]) -> None:
    """The run's history as history.json and history.csv (one row per epoch)."""
    write_text(out_dir / "history.json", json.dumps(history, indent=2))
    keys = list(dict.fromkeys(k for h in history for k in h))
    lines = [",".join(keys)] + [",".join("" if h.get(k) is None else f"{h[k]}" for k in keys) for h in history]
    write_text(out_dir / "history.csv", "\n".join(lines) + "\n")
