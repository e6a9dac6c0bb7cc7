"""Training, evaluation and prediction: the loop every notebook and command shares.

``fit(TrainConfig(...))`` is the whole recipe: data, model, loss, optimiser, learning-rate
schedule, a tqdm bar, per-epoch validation, best/last checkpoints, resume, Ctrl-C, a
wall-clock budget, and torchrun. It is long only because it handles the real cases; the
step at its heart is :func:`train_step`, six lines a learner can read in one go.
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from ._version import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .data import SegmentationDataset, quick_mode
from .datasets import DatasetSpec, get_spec
from .errors import SeglabError, TrainingError
from .hardware import SpeedSettings, autocast, choose_settings, describe, get_device, reuse_freed_memory
from .losses import class_frequencies, class_weights, logit_offsets, make_loss
from .metrics import ConfusionMatrix
from .models import UNet, fold_batchnorm
from .outputs import write_text
from .transforms import eval_transforms, train_transforms


# --------------------------------------------------------------------------- configuration

@dataclass
class TrainConfig:
    """Every option of a training run. The defaults are the course's CamVid recipe."""

    dataset: str = "camvid"
    root: str | None = None                  # data root (None: $SEGLAB_DATA or data/<name>)
    train_splits: tuple[str, ...] = ("train",)
    val_split: str = "val"
    size: tuple[int, int] = (180, 240)       # working resolution (the cache stores it)
    crop: tuple[int, int] | None = (176, 240)
    augment: bool = True
    scale: tuple[float, float] = (0.75, 1.5)
    hflip: bool = True
    vflip: bool = False
    rotate: float = 0.0
    elastic: float = 0.0
    color_jitter: float = 0.2
    low_res: float = 0.0                     # share of the steps trained first at half resolution
                                             # (progressive resizing; 0 = off)
    # model
    width: int = 16
    depth: int = 4
    batchnorm: bool = True
    bilinear: bool = True
    skip: bool = True
    stem_stride: int = 1
    # optimisation
    epochs: int = 30
    max_steps: int | None = None             # stop after this many steps (short experiments)
    budget: float | None = None              # seconds of wall clock; sizes epochs to fit
    batch_size: int = 8
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"                 # 'cosine' (with warm-up) or 'constant'
    warmup_steps: int = 50
    loss: str = "ce"                         # "ce", "dice" or "ce+dice"
    class_weights: str = "none"              # 'none', 'median', 'sqrt' or 'inverse'
    rebalance: float = 0.0                   # with class weights: share of the weighting taken back at
                                             # inference (0 to 1, see losses.logit_offsets)
    eval_scales: tuple[float, ...] = (1.0,)  # test-time input scales (of size) whose predictions are
                                             # averaged, in validation and in every later scoring
    # run
    seed: int = 0
    device: str | None = None
    fast: bool = True                        # per-device speed settings (hardware.choose_settings)
    compile: bool = False
    workers: int | None = None
    subset: int | None = None                # use only this many training images
    val_subset: int | None = None
    val_every: int = 1
    out_dir: str | None = "runs/camvid"
    resume: str | None = None
    more_epochs: int = 0                     # with resume: extend the saved plan by this many epochs
    progress: bool = True

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        clean = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in names}
        return cls(**clean)

    def validate(self) -> None:
        """Raise ``SeglabError`` with a one-line message for an impossible option."""
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"--batch-size must be at least 1 (got {self.batch_size})"),
            (self.lr > 0, f"--lr must be positive (got {self.lr})"),
            (self.max_steps is None or self.max_steps >= 1, f"--max-steps must be at least 1 (got {self.max_steps})"),
            (self.budget is None or self.budget > 0, f"--budget must be positive (got {self.budget})"),
            (self.width >= 2 and self.depth >= 1, f"--width must be >= 2 and --depth >= 1"),
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})"),
            (self.schedule in ("cosine", "constant"), f"--schedule must be 'cosine' or 'constant' (got {self.schedule!r})"),
            (self.loss in LOSSES, f"--loss must be one of {', '.join(LOSSES)} (got {self.loss!r})"),
            (self.class_weights in CLASS_WEIGHTS,
             f"--class-weights must be one of {', '.join(CLASS_WEIGHTS)} (got {self.class_weights!r})"),
            (0.0 <= self.rebalance <= 1.0, f"--rebalance must be between 0 and 1 (got {self.rebalance})"),
            (0.0 <= self.low_res < 1.0, f"--low-res must be at least 0 and below 1 (got {self.low_res})"),
            (len(self.eval_scales) >= 1 and all(EVAL_SCALE_RANGE[0] <= s <= EVAL_SCALE_RANGE[1]
                                                for s in self.eval_scales),
             f"--eval-scales must be one or more factors between {EVAL_SCALE_RANGE[0]:g} and "
             f"{EVAL_SCALE_RANGE[1]:g}, such as 0.75,0.875,1 (got {self.eval_scales})"),
            (self.rebalance == 0 or self.class_weights != "none",
             "--rebalance takes back part of the class weighting: give it with --class-weights"),
            (all(s > 0 for s in self.size), f"--size must be positive (got {self.size})"),
            (self.weight_decay >= 0, f"--weight-decay must be 0 or more (got {self.weight_decay})"),
            (self.workers is None or self.workers >= 0, f"--workers must be 0 or more (got {self.workers})"),
            (self.more_epochs >= 0, f"--more-epochs must be 0 or more (got {self.more_epochs})"),
            (self.more_epochs == 0 or self.resume is not None,
             "--more-epochs extends a saved run: give it with --resume RUN/last.pt"),
            # every down-sampling step halves the image: the smallest side must survive them all
            (min(*(self.crop or self.size), *self.size) >= self.stem_stride * 2 ** self.depth,
             f"--depth {self.depth} halves the image {self.depth} times, too often for --size "
             f"{self.size[0]}x{self.size[1]}" + (f" / --crop {self.crop[0]}x{self.crop[1]}" if self.crop else "")
             + ": use a smaller --depth or a larger --size"),
            (self.low_res == 0 or min(*(self.crop or self.size)) >= 2 * self.stem_stride * 2 ** self.depth,
             f"--low-res trains at half of {'x'.join(map(str, self.crop or self.size))}, too small for --depth "
             f"{self.depth}: use a smaller --depth or --low-res 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise SeglabError(message)
        try:
            get_spec(self.dataset)
        except ValueError as err:  # an unknown name: one line for the command line, not a traceback
            raise SeglabError(f"--dataset: {err}") from None


# --------------------------------------------------------------------------- small pieces

def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so that a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw")
CLASS_WEIGHTS = ("none", "median", "sqrt", "inverse")
LOSSES = ("ce", "dice", "ce+dice")
EVAL_SCALE_RANGE = (0.25, 4.0)   # test-time scales outside it would shrink a street scene to a few
                                 # pixels or blow it up past memory: refused by the config and the CLI


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    """'sgd', 'sgd-momentum', 'adam' or 'adamw'. Adam adds ``weight_decay`` to the gradient (L2);
    AdamW decays the weights directly and uses at least 0.01, its usual strength (a decoupled decay
    of 1e-4, the course's default for the others, would do next to nothing)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=max(weight_decay, 1e-2))
    raise ValueError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total`` (or flat)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train_step(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, loss_fn: nn.Module,
               optimizer: torch.optim.Optimizer) -> float:
    """One optimisation step: forward, loss (void ignored by ``loss_fn``), backward, update.
    Returns the loss as a float."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    logits = model(images)
    loss = loss_fn(logits, masks)
    loss.backward()
    optimizer.step()
    return loss.item()


def parse_duration(text: str | float | int) -> float:
    """'15m' -> 900.0, '90s' -> 90.0, '1.5h' -> 5400.0, '300' -> 300.0 (seconds)."""
    if isinstance(text, (int, float)):
        return float(text)
    value = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        seconds = float(value[:-1]) * units[value[-1]] if value and value[-1] in units else float(value)
    except ValueError:
        raise SeglabError(f"cannot read the duration {text!r}: write it like 15m, 90s or 1h") from None
    if not math.isfinite(seconds):  # 'inf' and 'nan' parse as floats but size no schedule
        raise SeglabError(f"the duration {text!r} is not a finite time: write it like 15m, 90s or 1h")
    return seconds


def code_version() -> str:
    """seglab's version plus the git commit when run from a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


# --------------------------------------------------------------------------- distributed

def _dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment, (0, 0, 1) otherwise."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def _init_distributed(device: torch.device) -> bool:
    """Join torchrun's process group; True when this call created it (and so must end it)."""
    import torch.distributed as dist
    if dist.is_initialized():
        return False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def _all_reduce_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _agreed_cpu_precision(amp_dtype: str | None, world: int) -> str | None:
    """bf16 on every process or on none: each process times bf16 for itself
    (hardware.cpu_bf16_pays_off), and processes sharing the cores can disagree."""
    votes = _all_reduce_sum(torch.tensor([1.0 if amp_dtype else 0.0]), world)
    return amp_dtype if int(votes.item()) == world else None


# --------------------------------------------------------------------------- data feeding

class SeededAugment(torch.utils.data.Dataset):
    """Gives every sample's random augmentation its own seed, made from the run's seed, the
    epoch and the sample's index. The same image then gets the same random crop whether a
    worker process or the main process loads it, and whether the run was resumed or not:
    that is what makes an interrupted-and-resumed run end with exactly the same weights."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index) % 2**63)
            return self.dataset[index]


def iterate(loader: DataLoader):
    """Iterate a DataLoader; with 0 workers, fetch each batch with one thread. Per-sample
    transforms are many tiny tensor ops, and spreading each over several threads costs
    more in synchronisation than it saves (measured: a horizontal flip of one 180x240
    image took 36 ms with 2 threads on a busy 2-core machine, 0.1 ms with 1)."""
    it = iter(loader)
    while True:
        if loader.num_workers == 0:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                batch = next(it, None)
            finally:
                torch.set_num_threads(threads)
        else:
            batch = next(it, None)
        if batch is None:
            return
        yield batch


# --------------------------------------------------------------------------- evaluation

def _as_plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_subclass(torch.Tensor) if type(t) is not torch.Tensor else t


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``size`` times ``scale``, each side rounded to a multiple of 8 (at least 8)."""
    return tuple(max(8, round(side * scale / 8) * 8) for side in size)


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, work_size: tuple[int, int] | None = None,
                   settings: SpeedSettings | None = None, flip: bool = False,
                   offsets: torch.Tensor | None = None, scales: tuple[float, ...] = (1.0,)) -> torch.Tensor:
    """Logits for normalised images ``[N, C, H, W]`` at their own size: the images are
    resized to ``work_size`` (the resolution the model was trained at), and the logits
    resized back, so a label of any size can be scored pixel for pixel.

    ``flip=True`` is test-time augmentation: the model also sees each image mirrored
    left to right, and the two answers (the second mirrored back) are averaged. A street
    scene mirrored is still a street scene, so this smooths out some of the model's
    mistakes for twice the compute.

    ``offsets``: per-class constants added to the logits (see
    :func:`seglab.losses.logit_offsets`); a model from :func:`seglab.load_model` already
    carries its run's offsets in its last layer's bias.

    ``scales`` other than ``(1.0,)`` is multi-scale test-time augmentation: the model
    sees the images at each scale of ``work_size`` (rounded to a multiple of 8), and the
    class probabilities of all scales, each resized to ``work_size``, are averaged. The
    result is the log of those averaged probabilities, resized to the images' size, so
    ``argmax`` and ``cross_entropy`` work on it as on logits. Each scale makes partly
    different mistakes, and the average cancels some of them: for the 15-minute recipe,
    scales 0.75, 0.875 and 1 added about 0.01 val mIoU (``seglab/recipes.py``)."""
    settings = settings or SpeedSettings()
    x = _as_plain(images).to(next(model.parameters()).device, non_blocking=True)
    size = tuple(x.shape[-2:])
    if tuple(scales) == (1.0,):
        return _resized(_model_logits(model, x, work_size, settings, flip, offsets), size)
    # Averaged at the working size (cheaper than at the images' size), then resized once.
    base = tuple(work_size) if work_size is not None else size
    probs = sum(_resized(_model_logits(model, x, scaled_size(base, s), settings, flip, offsets), base).softmax(1)
                for s in scales) / len(scales)
    return _resized(probs.clamp_min(1e-12).log(), size)


def _resized(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=list(size), mode="bilinear", align_corners=False)


def _model_logits(model: nn.Module, x: torch.Tensor, work_size: tuple[int, int] | None,
                  settings: SpeedSettings, flip: bool, offsets: torch.Tensor | None) -> torch.Tensor:
    """fp32 logits of plain images ``x`` seen at ``work_size``, at the size the model returns."""
    if work_size is not None and tuple(x.shape[-2:]) != tuple(work_size):
        x = F.interpolate(x, size=list(work_size), mode="bilinear", align_corners=False, antialias=True)
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(x.device, settings):
        logits = model(x)
        if flip:
            mirrored = model(x.flip(-1)).flip(-1)
    logits = logits.float()
    if flip:
        logits = (logits + mirrored.float()) / 2
    if offsets is not None:
        logits = logits + offsets.to(logits.device).view(1, -1, 1, 1)
    return logits


@torch.inference_mode()
def evaluate(model: nn.Module, dataset, num_classes: int, ignore_index: int | None,
             work_size: tuple[int, int] | None = None, batch_size: int = 8,
             settings: SpeedSettings | None = None, class_names=None, loader: DataLoader | None = None,
             world: int = 1, flip: bool = False, offsets: torch.Tensor | None = None,
             scales: tuple[float, ...] = (1.0,)) -> dict:
    """Score ``model`` on ``dataset`` (pairs of normalised image and int64 mask at the
    labels' own resolution). Returns the metrics of :func:`seglab.metrics.scores` plus
    ``loss`` (mean cross-entropy over non-void pixels) and ``confusion`` (the matrix).
    ``flip``: average with the mirrored image's prediction; ``offsets``: per-class logit
    offsets; ``scales``: multi-scale averaging (all three see :func:`predict_logits`).
    With ``settings.fold_batchnorm`` the scoring runs on a copy with BatchNorm folded into
    the convolutions (the same logits, faster; :func:`seglab.models.fold_batchnorm`);
    ``model`` is left as it was."""
    was_training = model.training
    model.eval()
    net = fold_batchnorm(model) if settings is not None and settings.fold_batchnorm else model
    device = next(model.parameters()).device
    cm = ConfusionMatrix(num_classes, ignore_index)
    ignore = -100 if ignore_index is None else ignore_index
    loss_sum = torch.zeros(2, dtype=torch.float64)
    loader = loader or DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    for images, masks in iterate(loader):
        masks = _as_plain(masks).to(device)
        logits = predict_logits(net, images, work_size, settings, flip, offsets, scales)
        loss_sum[0] += F.cross_entropy(logits, masks, ignore_index=ignore, reduction="sum").double().cpu()
        loss_sum[1] += (masks != ignore).sum().cpu()
        cm.update(logits.argmax(1), masks)
    _all_reduce_sum(cm.matrix, world)
    _all_reduce_sum(loss_sum, world)
    model.train(was_training)
    result = cm.compute(class_names)
    result["loss"] = float(loss_sum[0] / loss_sum[1].clamp(min=1))
    result["confusion"] = cm.matrix.tolist()
    return result


def evaluate_checkpoint(checkpoint: str | os.PathLike, split: str = "test", root: str | None = None,
                        batch_size: int = 8, device: str | None = None, fast: bool = True,
                        subset: int | None = None, settings: SpeedSettings | None = None,
                        flip: bool = False, rebalance: float | None = None,
                        scales: tuple[float, ...] | None = None) -> dict:
    """Score a saved model on a split at the data's native resolution (CamVid: 360x480),
    the way published CamVid numbers are computed. ``settings`` overrides the per-device
    choice (``fast``), for example to compare precisions on one machine. ``flip``: flip
    test-time augmentation (twice the compute; the result records it). ``rebalance``: the
    share of the class weighting taken back (see :func:`seglab.load_model`; ``None``: the
    run's own setting). ``scales``: multi-scale test-time averaging (see
    :func:`predict_logits`; ``None``: the run's own ``eval_scales``, 1.0 for older runs)."""
    from .checkpoint import load_model
    state = load_checkpoint(checkpoint)
    spec = get_spec(state.get("dataset", "camvid"))
    model, state = load_model(checkpoint, num_classes=spec.num_classes, rebalance=rebalance)
    dev = get_device(device)
    settings = settings or choose_settings(dev, fast, training=False)
    model = prepare_model(model.to(dev), settings)
    data = SegmentationDataset(spec, root, split, None, eval_transforms(spec), subset=subset)
    work = run_work_size(state, spec)
    scales = tuple(scales or run_eval_scales(state))
    start = time.perf_counter()
    result = evaluate(model, data, spec.num_classes, spec.ignore_index, work, batch_size, settings,
                      spec.class_names, flip=flip, scales=scales)
    result.update(flip=flip, scales=list(scales), rebalance=state["rebalance"], split=split, images=len(data),
                  seconds=time.perf_counter() - start, resolution=list(data.size), work_size=list(work),
                  device=describe(dev), checkpoint=str(checkpoint))
    return result


def run_work_size(state: dict, spec: DatasetSpec) -> tuple[int, int]:
    """The (H, W) a checkpoint's run trained at, where the model should see images (the data
    set's native size for a run that did not resize)."""
    return tuple(state.get("train_config", {}).get("size") or spec.native_size)


def run_eval_scales(state: dict) -> tuple[float, ...]:
    """The test-time scales a checkpoint's run was validated with (``(1.0,)`` before they existed)."""
    return tuple(state.get("train_config", {}).get("eval_scales") or (1.0,))


def prepare_model(model: nn.Module, settings: SpeedSettings, inference: bool = False) -> nn.Module:
    """Apply the memory layout of ``settings`` (channels_last keeps pixels of one location
    together, which oneDNN and cuDNN convolutions prefer) and, on a Linux CPU, keep freed
    buffers for reuse (:func:`seglab.hardware.reuse_freed_memory`, process-wide); on CUDA,
    let cuDNN pick the fastest convolution algorithm per input shape (process-wide too).
    ``inference=True`` (a model that will only predict): also fold BatchNorm into the
    convolutions where ``settings.fold_batchnorm`` says so, returning an eval-mode copy."""
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if settings.reuse_memory:
        reuse_freed_memory(True)
    if settings.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True   # process-wide, like the allocator setting above
    if inference and settings.fold_batchnorm:
        model = fold_batchnorm(model)
    return model


# --------------------------------------------------------------------------- training

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

    @property
    def best_miou(self) -> float:
        values = [h["val_miou"] for h in self.history if h.get("val_miou") is not None]
        return max(values) if values else float("nan")


class _Interrupt:
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


def fit(config: TrainConfig, callbacks=(), model: nn.Module | None = None) -> Run:
    """Train a U-Net as ``config`` says and return the :class:`Run`.

    - ``callbacks``: functions called with each epoch's history record (live plots).
    - ``model``: train this model instead of building one from the config.
    - ``config.resume``: continue from a checkpoint exactly where it stopped (on CPU with
      0 workers the resumed run ends with the same weights as an uninterrupted one).
      With ``config.more_epochs`` the saved plan is extended by that many epochs (a
      finished run trains on, its cosine schedule stretched over the longer plan).
    - ``config.budget``: seconds of wall clock; the first steps measure the machine's speed
      and the number of epochs (and so the learning-rate schedule) is sized to fit.
    - Ctrl-C saves ``last.pt`` and returns with ``run.interrupted = True``.
    """
    wall_start = time.perf_counter()
    resume_state = None
    more_epochs = 0
    if config.resume:
        resume_state = load_checkpoint(config.resume)
        saved = TrainConfig.from_dict(resume_state["train_config"])
        saved.resume, saved.progress = config.resume, config.progress
        more_epochs, saved.more_epochs = config.more_epochs, 0
        saved.epochs += more_epochs
        saved.out_dir = config.out_dir if config.out_dir else saved.out_dir
        if config.root:
            saved.root = config.root
        config = saved
    config.validate()
    rank, local_rank, world = _dist_env()
    device = get_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
    own_group = _init_distributed(device) if world > 1 else False
    settings = choose_settings(device, config.fast)
    if world > 1 and device.type == "cpu":
        settings.amp_dtype = _agreed_cpu_precision(settings.amp_dtype, world)
    settings.compile = bool(config.compile)
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

    history: list[dict] = []
    step, start_epoch, skip_batches = 0, 0, 0
    partial_epoch = [0.0, 0, 0]  # loss sum, samples, images of an epoch cut by Ctrl-C
    best = -1.0
    total_steps = None
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        history = list(resume_state.get("history", []))
        step = int(resume_state["step"])
        start_epoch = int(resume_state["epoch"])
        skip_batches = int(resume_state.get("batches_done", 0))
        partial_epoch = resume_state.get("partial_epoch", [0.0, 0, 0])
        best = float(resume_state.get("best_miou", -1.0))
        total_steps = resume_state.get("total_steps")
        torch.set_rng_state(resume_state["rng_torch"])
        if "rng_cuda" in resume_state and device.type == "cuda":
            torch.cuda.set_rng_state(resume_state["rng_cuda"])

    ddp_model = model
    if world > 1:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    run_model = torch.compile(ddp_model) if settings.compile else ddp_model

    per_rank_batch = max(1, config.batch_size // world)
    if len(train_set) < per_rank_batch * world:
        raise SeglabError(f"--batch-size {config.batch_size} is larger than the training set ({len(train_set)} "
                          f"images{', --subset ' + str(config.subset) if config.subset else ''}): use "
                          f"--batch-size {max(1, len(train_set) // world) * world} or less")
    steps_per_epoch = max(1, len(train_set) // (per_rank_batch * world))
    if total_steps is None:
        total_steps = steps_per_epoch * config.epochs
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
    if more_epochs:
        # A longer plan: the cosine schedule is stretched over the new total, so the
        # learning rate rises again where the resumed run stands in it and then decays.
        total_steps += more_epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    calibrating = config.budget is not None and resume_state is None
    # Steps before ``low_end`` run at half resolution (config.low_res). A budget plan moves it
    # with the total, but never back into the full-resolution phase once that has begun, and
    # a resumed run (--more-epochs included) keeps the one it saved.
    low_end = int(resume_state.get("low_end", 0)) if resume_state is not None else int(config.low_res * total_steps)

    out_dir = Path(config.out_dir) if (config.out_dir and rank == 0) else None
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise SeglabError(f"output folder {out_dir} is a file; choose another --out")
        out_dir.mkdir(parents=True, exist_ok=True)
        meta = {"config": config.as_dict(), "settings": settings.as_dict(), "device": describe(device),
                "code_version": code_version(), "command": " ".join(sys.argv), "world_size": world,
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        write_text(out_dir / "config.json", json.dumps(meta, indent=2))
    best_path = out_dir / "best.pt" if out_dir else None
    last_path = out_dir / "last.pt" if out_dir else None

    def checkpoint_state(epoch: int, batches_done: int, partial=(0.0, 0, 0)) -> dict:
        state = {"model_config": model.config if hasattr(model, "config") else {},
                 "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                 # epochs: the plan (a budget run sizes it; the config asked for another number)
                 "optimizer": optimizer.state_dict(), "train_config": {**config.as_dict(), "epochs": epochs},
                 "dataset": spec.name, "class_names": list(spec.class_names),
                 "epoch": epoch, "batches_done": batches_done, "step": step, "total_steps": total_steps,
                 "low_end": low_end, "history": history, "best_miou": best, "rng_torch": torch.get_rng_state(),
                 "partial_epoch": list(partial),
                 "code_version": code_version()}
        if weights is not None:  # load_model turns them into logit offsets (rebalance)
            state["class_weights"] = weights.detach().cpu()
        if device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(device)
        return state

    seeded_train = SeededAugment(train_set, config.seed)
    interrupted = False
    bar = None
    if config.progress and rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=total_steps, initial=step, desc="training", unit="step", dynamic_ncols=True)
    step_times: list[float] = []   # wall seconds from one step's end to the next (data loading included)
    replan_step = None             # after the first plan: the next step at which it is checked again
    plan_mark = None               # (step, wall clock, seconds validated) at the last plan, for the pace since
    val_seconds, last_val = 0.0, None  # wall seconds spent validating so far, and in the last pass
    half = None                    # with low_res: the cost of a half-resolution step (_HalfResolutionCost)
    last_end = time.perf_counter()
    with _Interrupt() as stop:
        epoch = start_epoch
        while step < total_steps:
            epoch_start = time.perf_counter()
            order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
            usable = order[: steps_per_epoch * per_rank_batch * world].view(steps_per_epoch, world, per_rank_batch)
            batches = [b[rank].tolist() for b in usable][skip_batches:]
            seeded_train.epoch = epoch
            loader = DataLoader(seeded_train, batch_sampler=batches, num_workers=_workers(config),
                                generator=torch.Generator().manual_seed(epoch))
            loss_sum, seen, images_seen = float(partial_epoch[0]), int(partial_epoch[1]), int(partial_epoch[2])
            partial_epoch = [0.0, 0, 0]
            done_in_epoch = skip_batches
            skip_batches = 0
            last_end = time.perf_counter()
            for images, masks in iterate(loader):
                factor = lr_factor(step, total_steps, min(config.warmup_steps, total_steps // 10), config.schedule)
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * factor
                x = _as_plain(images).to(device, non_blocking=True)
                y = _as_plain(masks).to(device, non_blocking=True)
                full_batch = (x, y)
                if step < low_end:
                    x, y = half_resolution(x, y)
                if settings.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                run_model.train()
                optimizer.zero_grad(set_to_none=True)
                try:
                    with autocast(device, settings):
                        logits = run_model(x)
                    loss = loss_fn(logits.float(), y)
                    value = loss.item()
                    if not math.isfinite(value):
                        kept = f" The last good checkpoint is kept at {last_path}." if last_path and last_path.exists() else ""
                        raise TrainingError(
                            f"the loss became {value} at epoch {epoch + 1}, step {step + 1}: training diverged. "
                            f"Try a lower learning rate (--lr {config.lr / 10:g}), --fast off (full fp32), "
                            f"or check the labels for invalid values.{kept}")
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                except torch.OutOfMemoryError:
                    raise TrainingError(f"out of memory on {describe(device)} with batch size {config.batch_size} "
                                        f"at {config.size[0]}x{config.size[1]}: try --batch-size "
                                        f"{max(1, config.batch_size // 2)} or a smaller --size.") from None
                step += 1
                done_in_epoch += 1
                loss_sum += value * x.shape[0]
                seen += x.shape[0]
                images_seen += x.shape[0] * world
                now = time.perf_counter()
                step_times.append(now - last_end)
                last_end = now
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{value:.3f}")
                # (the triggers depend on step counts only under torchrun, so all processes agree)
                if calibrating and (len(step_times) >= 12 or (world == 1 and len(step_times) >= 3 and
                                                              sum(step_times) > 0.05 * config.budget)):
                    if config.low_res > 0:
                        half = _HalfResolutionCost(model, *full_batch, loss_fn, settings, device)
                    total_steps, epochs, low_end = _size_to_budget(
                        config, run_model, val_set, spec, settings, device, wall_start, step_times[1:],
                        steps_per_epoch, step, world, half=half, low_end=low_end, since=step - 1)
                    calibrating = False
                    replan_step = max(step + 24, int(0.3 * total_steps))
                    plan_mark = (step, time.perf_counter(), val_seconds)
                    if bar is not None:
                        bar.total = total_steps
                        bar.refresh()
                elif step == replan_step and step < total_steps:
                    # the first plan rests on a dozen steps; at 30, 60 and 85 % of the run the
                    # pace since the last plan (loading, epoch starts, checkpoints, a busier
                    # machine) re-sizes what is left. Validation is taken out of the pace and
                    # planned on its own, from the last pass: a validation every 10th epoch may or
                    # may not fall into a window of a few dozen steps, and inside one it would make
                    # every remaining step look far dearer (321 instead of about 190 ms, measured).
                    pace = ((time.perf_counter() - plan_mark[1] - (val_seconds - plan_mark[2]))
                            / max(1, step - plan_mark[0]))
                    total_steps, epochs, low_end = _size_to_budget(
                        config, run_model, val_set, spec, settings, device, wall_start, step_times[-50:],
                        steps_per_epoch, step, world, pace=pace, half=half, low_end=low_end, since=plan_mark[0],
                        val_measured=last_val)
                    plan_mark = (step, time.perf_counter(), val_seconds)
                    later = [int(f * total_steps) for f in (0.6, 0.85)]
                    replan_step = next((at for at in later if at > step + 24), None)
                    if bar is not None:
                        bar.total = total_steps
                        bar.refresh()
                if stop.requested or step >= total_steps:
                    break
            if stop.requested and done_in_epoch < steps_per_epoch and step < total_steps:
                interrupted = True
                if last_path is not None:
                    save_checkpoint(last_path, checkpoint_state(epoch, done_in_epoch, (loss_sum, seen, images_seen)))
                break
            # ---- end of epoch: validate, record, checkpoint
            epoch += 1
            stats = torch.tensor([loss_sum, seen], dtype=torch.float64)
            _all_reduce_sum(stats, world)
            record = {"epoch": epoch, "step": step, "train_loss": float(stats[0] / max(stats[1], 1)),
                      "lr": optimizer.param_groups[0]["lr"]}
            if config.low_res > 0:  # the epoch ended in the half-resolution phase (validation is always full)
                record["half_resolution"] = step <= low_end
            if epoch % config.val_every == 0 or step >= total_steps:
                val_sampler = list(range(rank, len(val_set), world))
                val_loader = DataLoader(torch.utils.data.Subset(val_set, val_sampler), batch_size=per_rank_batch,
                                        shuffle=False, num_workers=0)
                val_start = time.perf_counter()
                try:
                    scores = evaluate(model, val_set, spec.num_classes, spec.ignore_index, config.size,
                                      per_rank_batch, settings, spec.class_names, loader=val_loader, world=world,
                                      offsets=offsets, scales=config.eval_scales)
                except torch.OutOfMemoryError:
                    raise TrainingError(f"out of memory on {describe(device)} while validating with batch size "
                                        f"{per_rank_batch}: try --batch-size {max(1, config.batch_size // 2)} "
                                        f"or a smaller --size.") from None
                record.update(val_loss=scores["loss"], val_miou=scores["miou"],
                              val_pixel_accuracy=scores["pixel_accuracy"])
                last_val = time.perf_counter() - val_start
                val_seconds += last_val
            record["seconds"] = time.perf_counter() - epoch_start
            record["images_per_second"] = images_seen / max(record["seconds"], 1e-9)
            history.append(record)
            if bar is not None and record.get("val_miou") is not None:
                bar.set_postfix(epoch=f"{epoch}/{epochs}", val_miou=f"{record['val_miou']:.3f}")
            improved = record.get("val_miou") is not None and record["val_miou"] > best
            if improved:
                best = record["val_miou"]
            if out_dir is not None:
                # A finite loss can still leave NaN weights after the update; never let them
                # overwrite the last good checkpoint.
                if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()):
                    kept = f" The last good checkpoint is kept at {last_path}." if last_path.exists() else ""
                    raise TrainingError(
                        f"the weights became NaN or infinite in epoch {epoch}: training diverged. Try a lower "
                        f"learning rate (--lr {config.lr / 10:g}) or --fast off (full fp32).{kept}")
                state = checkpoint_state(epoch, 0)
                save_checkpoint(last_path, state)
                if improved:
                    save_checkpoint(best_path, state)
                _write_history(out_dir, history)
            for callback in callbacks:
                callback(record)
            if stop.requested:
                interrupted = step < total_steps
                break
    if bar is not None:
        bar.close()
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
        if own_group:  # left to exit, gloo's threads can abort a process ("terminate called ...")
            dist.destroy_process_group()
    return Run(model=model, history=history, config=config, out_dir=out_dir, best_path=best_path,
               last_path=last_path, interrupted=interrupted, settings=settings,
               seconds=time.perf_counter() - wall_start, offsets=offsets)


def half_resolution(images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch at half its height and width: images averaged (antialiased bilinear), labels
    sampled at the nearest pixel (a label is a category: it cannot be averaged)."""
    small = F.interpolate(images, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)
    labels = F.interpolate(masks[:, None].float(), size=small.shape[-2:], mode="nearest-exact")
    return small, labels[:, 0].to(masks.dtype)


def _workers(config: TrainConfig) -> int:
    if config.workers is not None:
        return config.workers
    cores = os.cpu_count() or 1
    return 0 if ("ipykernel" in sys.modules or cores <= 2) else min(4, cores // 2)


def plan_steps(budget: float, elapsed: float, step_time: float, val_time: float, steps_per_epoch: int,
               steps_done: int, val_every: int = 1, margin: float = 0.04,
               low_res: float = 0.0, low_step_time: float | None = None) -> int:
    """How many optimisation steps in total fit in ``budget`` seconds, given what is already
    spent (``elapsed``, ``steps_done``) and the measured seconds per training step and per
    validation pass (run every ``val_every`` epochs, and once at the very end). Keeps
    ``margin`` of the budget (4 %) for checkpoints and the unexpected; the last epoch may be
    partial, so no time is lost to rounding down to whole epochs. ``low_res``: the share of
    all steps run at half resolution first, each costing ``low_step_time`` (the plan moves
    where that phase ends, so the two kinds of step are counted together)."""
    per_val = val_time / (steps_per_epoch * val_every)
    full = step_time + per_val
    low = (step_time if low_step_time is None else low_step_time) + per_val
    # validation is owed for the steps done since the last one (``elapsed`` holds the earlier
    # ones), plus one final pass
    owed = steps_done % (steps_per_epoch * val_every)
    remaining = budget * (1 - margin) - elapsed - val_time - owed * per_val

    def cost(total: int) -> float:  # seconds from here to step ``total``
        low_steps = max(0, int(low_res * total) - steps_done)
        return low_steps * low + (total - steps_done - low_steps) * full

    # cost grows with every step added, so bisect for the largest total that fits
    fits, too_many = steps_done, steps_done + int(max(remaining, 0) // min(full, low)) + 2
    while too_many - fits > 1:
        middle = (fits + too_many) // 2
        fits, too_many = (middle, too_many) if cost(middle) <= remaining else (fits, middle)
    return max(steps_done + 1, fits)


def _size_to_budget(config, model, val_set, spec, settings, device, wall_start, step_times, steps_per_epoch,
                    step, world, pace: float | None = None, half: "_HalfResolutionCost | None" = None,
                    low_end: int = 0, since: int = 0, val_measured: float | None = None) -> tuple[int, int, int]:
    """Measure the machine: wall seconds per training step (from the steps just run, data
    loading included) and per validation pass (timed on a few images, or ``val_measured``,
    the last real pass, when there was one), then size the run with :func:`plan_steps`. A
    re-plan passes ``pace``, the wall seconds per step since the last plan (step ``since``)
    with every cost but validation included (loading, epoch starts, checkpoints, a busier
    machine), which is what the rest of the run's steps will cost. With ``config.low_res``,
    steps before ``low_end`` run at half resolution and ``half`` knows what such a step costs
    next to a full one; while that phase lasts, the plan moves its end to the same share of
    the new total (it never moves back once full resolution has begun). Returns (total steps,
    epochs, low_end). Under torchrun every process takes the smallest plan, so all stop at the
    same step."""
    low_share = max(0, min(step, low_end) - since) / max(1, step - since)  # of the timed steps
    low_res = config.low_res if step < low_end else 0.0
    step_time = float(np.median(step_times)) * 1.02  # epoch starts and checkpoints between steps
    if val_measured is not None:
        val_time = val_measured
    else:
        probe = torch.utils.data.Subset(val_set, list(range(min(len(val_set), 2 * config.batch_size))))
        t0 = time.perf_counter()
        evaluate(model, probe, spec.num_classes, spec.ignore_index, config.size, config.batch_size, settings,
                 scales=config.eval_scales)
        val_time = (time.perf_counter() - t0) / max(1, len(probe)) * len(val_set) / world
    measured = pace if pace is not None else step_time
    full_time, low_time = half.split(measured, low_share) if half is not None else (measured, None)
    total = plan_steps(config.budget, time.perf_counter() - wall_start, full_time, val_time, steps_per_epoch,
                       step, config.val_every, low_res=low_res, low_step_time=low_time)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    if world > 1:
        import torch.distributed as dist
        agreed = torch.tensor([total], dtype=torch.long, device=device)
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
        total = int(agreed.item())
    low = f" ({low_time * 1000:.0f} at half resolution)" if low_time is not None else ""
    print(f"budget {config.budget:.0f} s on {describe(device)}{' (checked again)' if pace else ''}: "
          f"{full_time * 1000:.0f} ms/step{low}{' (all but validation)' if pace else ''}, "
          f"validation {val_time:.1f} s -> "
          f"{total} steps ({total / steps_per_epoch:.1f} epochs)", file=sys.stderr)
    if step < low_end:
        low_end = max(step, int(config.low_res * total))
    return total, math.ceil(total / steps_per_epoch), low_end


class _HalfResolutionCost:
    """What a full-resolution training step costs next to a half-resolution one, for
    planning a budget with ``low_res`` (the steps timed so far may be of either kind).

    Measured once: one forward and backward pass of the same batch at both resolutions
    (batch-norm statistics and gradients are put back, so training is unchanged). The
    difference is pure compute; loading and the optimizer cost the same in both phases."""

    def __init__(self, model: nn.Module, images: torch.Tensor, masks: torch.Tensor, loss_fn, settings, device):
        saved = [b.detach().clone() for b in model.buffers()]
        small = half_resolution(images, masks)
        seconds = []
        for x, y in [(images, masks), small, (images, masks), small]:   # the first two warm up
            if settings.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            t0 = time.perf_counter()
            with autocast(device, settings):
                logits = model(x)
            loss_fn(logits.float(), y).backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for buffer, value in zip(model.buffers(), saved):
                buffer.copy_(value)
        self.extra = max(0.0, seconds[2] - seconds[3])  # seconds a full step costs on top of a half one
        self.ratio: float | None = None                 # full / half, once a step time is known

    def split(self, seconds: float, low_share: float) -> tuple[float, float]:
        """(full, half) seconds per step, from ``seconds`` per step measured over steps of
        which the share ``low_share`` ran at half resolution."""
        if self.ratio is None:  # the first plan: the extra compute measured above
            low = seconds if low_share >= 0.5 else max(seconds - self.extra, 1e-6)
            self.ratio = (low + self.extra) / low
        low = seconds / (low_share + self.ratio * (1 - low_share))
        return low * self.ratio, low


def _write_history(out_dir: Path, history: list[dict]) -> None:
    write_text(out_dir / "history.json", json.dumps(history, indent=2))
    keys = list(dict.fromkeys(k for h in history for k in h))
    lines = [",".join(keys)] + [",".join("" if h.get(k) is None else f"{h[k]}" for k in keys) for h in history]
    write_text(out_dir / "history.csv", "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- learning-rate range test

def lr_range_test(model: nn.Module, loader: DataLoader, loss_fn: nn.Module, optimizer_name: str = "adam",
                  start_lr: float = 1e-6, end_lr: float = 1.0, steps: int = 60,
                  device: str | torch.device | None = None) -> dict:
    """Leslie Smith's learning-rate range test: raise the learning rate exponentially from
    ``start_lr`` to ``end_lr`` over ``steps`` steps and record the (smoothed) loss. The
    model is modified in place: pass a fresh copy."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    optimizer = make_optimizer(optimizer_name, model.parameters(), start_lr)
    gamma = (end_lr / start_lr) ** (1 / max(1, steps - 1))
    lrs, losses, smooth = [], [], None
    batches = iter(loader)
    for i in range(steps):
        try:
            images, masks = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, masks = next(batches)
        lr = start_lr * gamma ** i
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = train_step(model, _as_plain(images).to(device), _as_plain(masks).to(device), loss_fn, optimizer)
        smooth = loss if smooth is None else 0.8 * smooth + 0.2 * loss
        lrs.append(lr)
        losses.append(smooth)
        if not math.isfinite(loss) or smooth > 4 * min(losses):
            break
    return {"lr": lrs, "loss": losses, "suggested_lr": suggest_lr(lrs, losses)}


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """A learning rate from a range test: one tenth of the rate at which the smoothed loss
    was lowest (the usual rule: a bit before the loss turns up, where it still falls)."""
    if not lrs:
        raise ValueError("empty range test")
    best = int(np.nanargmin(np.asarray(losses, dtype=float)))
    return float(lrs[best] / 10)
