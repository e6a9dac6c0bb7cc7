"""Every option of a training run, defined once.

:class:`TrainConfig` is the only list of training options. Each field carries its help
text (and, where a plain type is not enough, how the command line reads it) in its
metadata; ``seglab train`` builds one flag per field from that, and recipes are checked
against the same list, so a misspelt option is an error, never silently dropped.
"""
from __future__ import annotations

import ast
import math
from dataclasses import MISSING, asdict, dataclass, field, fields

from .datasets import get_spec
from .errors import SeglabError

OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw")
SCHEDULES = ("cosine", "constant")
CLASS_WEIGHTS = ("none", "median", "sqrt", "inverse")
LOSSES = ("ce", "dice", "ce+dice")
SIZINGS = ("fixed", "auto")
EVAL_SCALE_RANGE = (0.25, 4.0)   # test-time scales outside it would shrink a street scene to a few
                                 # pixels or blow it up past memory: refused by the config and the CLI


def option(default, help: str, read: str | None = None, choices: tuple | None = None, flag: str | None = None):
    """A dataclass field with its command-line help. ``read``: how the CLI parses the value
    (see ``seglab.cli``; default: from the default's type); ``flag``: the flag's name when it
    is not ``--`` plus the field name with dashes."""
    meta = {"help": help, "read": read, "choices": choices, "flag": flag}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every option of a training run. The defaults are the course's CamVid recipe."""

    # data
    dataset: str = option("camvid", "camvid or isbi-em", read="str")
    root: str | None = option(None, "data folder (default: $SEGLAB_DATA or data/<name>)", read="str")
    train_splits: tuple[str, ...] = option(("train",), "splits to train on, comma-separated, e.g. train,val",
                                           read="names")
    val_split: str = option("val", "split to validate on", read="str")
    size: tuple[int, int] = option((180, 240), "working resolution HxW (the cache stores it)", read="size")
    crop: tuple[int, int] | None = option((176, 240), "random crop HxW during training", read="size")
    augment: bool = option(True, "training augmentation on/off")
    scale: tuple[float, float] = option((0.75, 1.5), "random rescaling range of the augmentation, e.g. 0.75,1.5",
                                        read="pair")
    hflip: bool = option(True, "random horizontal flips on/off")
    vflip: bool = option(False, "random vertical flips on/off")
    rotate: float = option(0.0, "random rotation up to this many degrees", read="non_negative_float")
    elastic: float = option(0.0, "elastic deformation strength (0 = off)", read="non_negative_float")
    color_jitter: float = option(0.2, "brightness/contrast/saturation jitter strength", read="non_negative_float")
    low_res: float = option(0.0, "share (0 to 1) of the steps trained first at half resolution (progressive "
                                 "resizing: cheaper early steps, so more of them fit in a budget)",
                            read="non_negative_float")
    # model
    width: int = option(16, "U-Net channels at the first level", read="positive_int")
    depth: int = option(4, "U-Net down-sampling steps", read="positive_int")
    batchnorm: bool = option(True, "BatchNorm on/off")
    bilinear: bool = option(True, "bilinear upsampling (on) or transposed convolutions (off)")
    skip: bool = option(True, "skip connections on/off")
    stem_stride: int = option(1, "2: run the U-Net at half resolution", read="int", choices=(1, 2))
    # optimisation
    epochs: int = option(30, "passes over the training set", read="positive_int")
    max_steps: int | None = option(None, "stop after this many optimisation steps", read="positive_int")
    budget: float | None = option(None, "wall-clock budget such as 15m or 900s: the schedule is sized to fit",
                                  read="duration")
    sizing: str = option("fixed", "with --budget: auto measures a few training steps of each input size and width "
                                  "in seglab/sizing.py and trains the costliest one the budget gives enough epochs; "
                                  "fixed keeps --size, --crop, --stem-stride, --width and --eval-scales (giving "
                                  "any of them also means fixed)", choices=SIZINGS)
    batch_size: int = option(8, "images per step (global, across processes)", read="positive_int")
    optimizer: str = option("adam", "optimiser", choices=OPTIMIZERS)
    lr: float = option(1e-3, "peak learning rate", read="positive_float")
    momentum: float = option(0.9, "momentum of sgd-momentum", read="non_negative_float")
    weight_decay: float = option(1e-4, "weight decay (adamw uses at least 0.01)", read="non_negative_float")
    schedule: str = option("cosine", "learning-rate schedule after warm-up", choices=SCHEDULES)
    warmup_steps: int = option(50, "steps of linear learning-rate warm-up", read="non_negative_int")
    loss: str = option("ce", "loss (ce: cross-entropy, void ignored)", choices=LOSSES)
    class_weights: str = option("none", "class weighting against imbalance", choices=CLASS_WEIGHTS)
    rebalance: float = option(0.0, "with --class-weights: share (0 to 1) of the weighting taken back at "
                                   "inference by a per-class logit offset (see losses.logit_offsets): more "
                                   "pixel accuracy, fewer rare-class detections", read="non_negative_float")
    eval_scales: tuple[float, ...] = option((1.0,), "test-time scales (of --size) whose predictions are averaged "
                                                    "in validation and in later scoring, e.g. 0.75,0.875,1 "
                                                    "(1: one scale)", read="scales")
    # run
    seed: int = option(0, "random seed (a CPU run with the same seed repeats exactly)", read="int")
    device: str | None = option(None, "cpu, cuda, cuda:1 or mps (default: the best available)", read="device")
    fast: bool = option(True, "per-device speed settings (channels_last, bf16/fp16 autocast where the hardware "
                              "has it); off = plain fp32")
    compile: bool = option(False, "torch.compile the model (pays off only for long runs)")
    workers: int | None = option(None, "DataLoader worker processes (default: 0 on <= 2 cores)",
                                 read="non_negative_int")
    subset: int | None = option(None, "train on this many images only", read="positive_int")
    val_subset: int | None = option(None, "validate on this many images only", read="positive_int")
    val_every: int = option(1, "validate every this many epochs (and after the last)", read="positive_int")
    out_dir: str | None = option("runs/camvid", "run folder (default runs/<recipe>)", read="str", flag="--out")
    resume: str | None = option(None, "checkpoint (last.pt) to continue from; its settings are reused",
                                read="str")
    more_epochs: int = option(0, "with --resume: train this many epochs beyond the saved plan (the cosine "
                                 "learning-rate schedule is stretched over the longer plan)",
                              read="positive_int")
    progress: bool = option(True, "progress bar on/off")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, strict: bool = True, source: str = "the options") -> "TrainConfig":
        """A config from plain values (lists become tuples). ``strict`` (recipes, the command
        line) refuses a key that is not an option, naming it; ``strict=False`` (a checkpoint
        written by another version of seglab) drops it."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown and strict:
            raise SeglabError(f"{source}: unknown training option{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(map(repr, unknown))}: use the names of seglab train --help "
                              f"with underscores, such as batch_size")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in names})

    @classmethod
    def from_checkpoint(cls, state: dict) -> "TrainConfig":
        """The config a checkpoint was trained with (lenient: older files may hold other keys)."""
        return cls.from_dict(state["train_config"], strict=False)

    def validate(self) -> None:
        """Raise ``SeglabError`` with a one-line message for an impossible option."""
        for ok, message in self._checks():
            if not ok:
                raise SeglabError(message)
        try:
            get_spec(self.dataset)
        except ValueError as err:  # an unknown name: one line for the command line, not a traceback
            raise SeglabError(f"--dataset: {err}") from None

    def _checks(self) -> list[tuple[bool, str]]:
        low, high = EVAL_SCALE_RANGE
        crop = self.crop or self.size
        return [
            (self.epochs >= 1, f"--epochs must be at least 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"--batch-size must be at least 1 (got {self.batch_size})"),
            (self.lr > 0, f"--lr must be positive (got {self.lr})"),
            (self.max_steps is None or self.max_steps >= 1, f"--max-steps must be at least 1 (got {self.max_steps})"),
            (self.budget is None or (self.budget > 0 and math.isfinite(self.budget)),
             f"--budget must be positive (got {self.budget})"),
            (self.width >= 2 and self.depth >= 1, "--width must be >= 2 and --depth >= 1"),
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})"),
            (self.schedule in SCHEDULES, f"--schedule must be 'cosine' or 'constant' (got {self.schedule!r})"),
            (self.sizing in SIZINGS, f"--sizing must be 'fixed' or 'auto' (got {self.sizing!r})"),
            (self.loss in LOSSES, f"--loss must be one of {', '.join(LOSSES)} (got {self.loss!r})"),
            (self.class_weights in CLASS_WEIGHTS,
             f"--class-weights must be one of {', '.join(CLASS_WEIGHTS)} (got {self.class_weights!r})"),
            (0.0 <= self.rebalance <= 1.0, f"--rebalance must be between 0 and 1 (got {self.rebalance})"),
            (0.0 <= self.low_res < 1.0, f"--low-res must be at least 0 and below 1 (got {self.low_res})"),
            (len(self.eval_scales) >= 1 and all(low <= s <= high for s in self.eval_scales),
             f"--eval-scales must be one or more factors between {low:g} and {high:g}, such as "
             f"0.75,0.875,1 (got {self.eval_scales})"),
            (self.rebalance == 0 or self.class_weights != "none",
             "--rebalance takes back part of the class weighting: give it with --class-weights"),
            (all(s > 0 for s in self.size), f"--size must be positive (got {self.size})"),
            (self.weight_decay >= 0, f"--weight-decay must be 0 or more (got {self.weight_decay})"),
            (self.workers is None or self.workers >= 0, f"--workers must be 0 or more (got {self.workers})"),
            (self.more_epochs >= 0, f"--more-epochs must be 0 or more (got {self.more_epochs})"),
            (self.more_epochs == 0 or self.resume is not None,
             "--more-epochs extends a saved run: give it with --resume RUN/last.pt"),
            # every down-sampling step halves the image: the smallest side must survive them all
            (min(*crop, *self.size) >= self.stem_stride * 2 ** self.depth,
             f"--depth {self.depth} halves the image {self.depth} times, too often for --size "
             f"{self.size[0]}x{self.size[1]}" + (f" / --crop {self.crop[0]}x{self.crop[1]}" if self.crop else "")
             + ": use a smaller --depth or a larger --size"),
            (self.low_res == 0 or min(*crop) >= 2 * self.stem_stride * 2 ** self.depth,
             f"--low-res trains at half of {'x'.join(map(str, crop))}, too small for --depth "
             f"{self.depth}: use a smaller --depth or --low-res 0"),
        ]


def options() -> list:
    """The fields of :class:`TrainConfig`, in order (what ``seglab train`` makes flags of)."""
    return list(fields(TrainConfig))


def default_of(f) -> object:
    return f.default_factory() if f.default is MISSING else f.default


def parse_overrides(pairs: list[str], flag: str = "--set") -> dict:
    """``["color_jitter=0.3", "scale=(0.75, 1.5)"]`` -> ``{"color_jitter": 0.3, "scale": (0.75, 1.5)}``
    (a benchmark's ``--set``): each value read as a Python literal (else kept as text, such
    as ``optimizer=adamw``), each name checked by :meth:`TrainConfig.from_dict`."""
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise SeglabError(f"{flag} {pair!r}: expected NAME=VALUE with NAME a TrainConfig field "
                              f"(for example color_jitter=0.3)")
        try:
            values[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            values[key] = text
        TrainConfig.from_dict({key: values[key]}, source=f"{flag} {pair!r}")
    return values


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
