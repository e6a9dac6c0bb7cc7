"""Choosing the model's cost for a budget (``TrainConfig.sizing = "auto"``).

A fixed budget buys few epochs of a costly model on a slow machine and many on a fast one.
Below some number of epochs a smaller input trains better than a starved large one, so
with ``--sizing auto`` the budget picks among :data:`CONFIGURATIONS`, configurations of the
same U-Net ordered from the costliest to the cheapest. Before the data set is built, each
candidate's model takes a few real training steps on a random batch of the run's batch
size and crop, on the run's device, precision and memory layout; :func:`expected_epochs`
turns that pace into the epochs the budget holds (the budget planner's own rule,
:func:`seglab.budget.plan_steps`). The rule, in :func:`pick`: the costliest configuration
whose expected epochs reach its ``min_epochs``; if none does, the cheapest.

The time spent measuring counts against the budget, and the chosen run is then sized by
:class:`seglab.budget.BudgetPlanner` from its own measured pace, as any budget run is.
Every reading of time goes through ``clock``, so tests run a "15-minute" choice at once.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from .budget import plan_steps
from .config import TrainConfig
from .data import list_pairs
from .datasets import DatasetSpec, resolve_root
from .distributed import agreed_min
from .hardware import SpeedSettings
from .inference import prepare_model
from .losses import make_loss
from .models import UNet
from .optim import make_optimizer

# Where 240x320 starts to beat 180x240 lies between two measured paces; 65 is between them
# (benchmarks/RESULTS.md, "The budget picks the input size").
MIN_EPOCHS_240X320 = 65
FORWARD_SHARE = 1 / 3     # a forward pass costs about a third of a training step (backward about twice the forward)
TIMED_STEPS = 3           # steps timed per candidate, after one warm-up step that is not counted


@dataclass(frozen=True)
class Configuration:
    """One cost of the U-Net: the options it sets, and the epochs it needs to be preferred."""

    name: str
    size: tuple[int, int]
    crop: tuple[int, int]
    stem_stride: int
    width: int
    eval_scales: tuple[float, ...]
    min_epochs: int

    def options(self) -> dict:
        """The :class:`~seglab.config.TrainConfig` fields this configuration sets."""
        return {name: getattr(self, name) for name in SIZED_OPTIONS}


SIZED_OPTIONS = ("size", "crop", "stem_stride", "width", "eval_scales")   # one given by the user turns auto off

CONFIGURATIONS: tuple[Configuration, ...] = (
    # the course recipe's own size: three-quarters of the labels' 360x480, the U-Net working at half that
    Configuration("240x320", (240, 320), (224, 320), 2, 16, (0.75, 0.875, 1.0), MIN_EPOCHS_240X320),
    # the same network on 0.56x the pixels; 30 epochs is what the `lessons` recipe trains it for
    Configuration("180x240", (180, 240), (176, 240), 2, 16, (0.75, 0.875, 1.0), 30),
)


@dataclass
class Candidate:
    """A configuration as measured on this machine."""

    name: str
    step_seconds: float   # one training step of the synthetic batch
    epochs: float         # expected within the budget
    min_epochs: int


@dataclass
class Choice:
    """What ``--sizing auto`` picked and why (``Run.sizing``; config.json's ``"sizing"``)."""

    budget: float
    picked: str
    candidates: list[Candidate] = field(default_factory=list)
    measuring_seconds: float = 0.0   # spent timing the candidates, out of the budget
    agreed: bool = False             # torchrun: a slower process needed a cheaper configuration

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def line(self) -> str:
        """One line: the configuration picked, and the epochs and paces that decided it."""
        names = [c.name for c in self.candidates]
        chosen = self.candidates[names.index(self.picked)]
        costlier = self.candidates[:names.index(self.picked)]
        passed = [f"{c.name} would get {_epochs(c.epochs)} epochs (needs {c.min_epochs})" for c in costlier]
        short = (": the cheapest, as none gets its epochs"
                 if chosen is self.candidates[-1] and chosen.epochs < chosen.min_epochs else "")
        others = ", ".join(f"{c.step_seconds * 1000:.0f} for {c.name}" for c in self.candidates if c is not chosen)
        paces = f"{chosen.step_seconds * 1000:.0f} ms per step" + (f" against {others}" if others else "")
        agreed = " (a slower process's choice)" if self.agreed else ""
        return (f"budget {self.budget:.0f} s: {'; '.join(passed)}{': ' if passed else ''}training {self.picked} "
                f"({_epochs(chosen.epochs)} epochs expected, needs {chosen.min_epochs}{short}; {paces}, "
                f"measured in {self.measuring_seconds:.1f} s){agreed}")


def _epochs(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"   # a short budget's fraction of an epoch shows


def pick(table: Iterable[Configuration], epochs: Iterable[float]) -> int:
    """The index of the costliest configuration of ``table`` (costliest first) whose
    expected ``epochs`` reach its ``min_epochs``; the last (cheapest) if none does."""
    table = list(table)
    for index, (configuration, expected) in enumerate(zip(table, epochs)):
        if expected >= configuration.min_epochs:
            return index
    return len(table) - 1


def apply(config: TrainConfig, configuration: Configuration) -> TrainConfig:
    """``config`` with ``configuration``'s options (what the checkpoint then records)."""
    return dataclasses.replace(config, **configuration.options())


def user_sizes_win(values: dict, given: Iterable[str]) -> dict:
    """The options of a run whose user gave some of :data:`SIZED_OPTIONS` (``given``, on
    the command line or a benchmark's ``--set``): auto sizing is turned off, in one line."""
    mine = [name for name in SIZED_OPTIONS if name in set(given)]
    if values.get("sizing") == "auto" and mine:
        print(f"sizing: fixed, since {', '.join('--' + n.replace('_', '-') for n in mine)} "
              f"{'was' if len(mine) == 1 else 'were'} given", file=sys.stderr)
        return {**values, "sizing": "fixed"}
    return values


def describe_choice(config: TrainConfig, choice: Choice | None) -> str:
    """A run's size in one line, with the budget's reasons where ``--sizing auto`` chose it
    (what the benchmarks print)."""
    size = f"{config.size[0]}x{config.size[1]}, width {config.width}, stem stride {config.stem_stride}"
    return f"{size}, chosen: {choice.line()}" if choice is not None else f"{size} (fixed)"


def count_images(config: TrainConfig, spec: DatasetSpec) -> tuple[int, int]:
    """(training images, validation images) of ``config``, from the file lists (nothing decoded)."""
    root = resolve_root(spec, config.root)

    def kept(split: str, subset: int | None) -> int:
        n = len(list_pairs(spec, root, split))
        return min(n, subset) if subset is not None else n

    return sum(kept(s, config.subset) for s in config.train_splits), kept(config.val_split, config.val_subset)


def expected_epochs(budget: float, elapsed: float, step_seconds: float, configuration: Configuration,
                    config: TrainConfig, images: tuple[int, int], world: int = 1) -> float:
    """Epochs of ``configuration`` that fit what is left of ``budget``, at ``step_seconds``
    per training step. A validation pass is estimated in proportion: each validation image
    costs :data:`FORWARD_SHARE` of a training image's step, times the pixels of every eval
    scale of ``size`` against the crop. Loading and augmentation are not in the pace, so
    the estimate runs a little high, the same way for every candidate."""
    n_train, n_val = images
    batch = max(1, config.batch_size // world)
    steps_per_epoch = max(1, n_train // (batch * world))
    (h, w), (ch, cw) = configuration.size, configuration.crop
    pixels = sum(s * s for s in configuration.eval_scales) * h * w / (ch * cw)
    val_seconds = step_seconds / batch * FORWARD_SHARE * pixels * n_val / world
    total = plan_steps(budget, elapsed, step_seconds, val_seconds, steps_per_epoch, 0, config.val_every)
    return total / steps_per_epoch


def measure_step_seconds(configuration: Configuration, config: TrainConfig, spec: DatasetSpec,
                         device: torch.device, settings: SpeedSettings, world: int = 1,
                         clock: Callable[[], float] = time.perf_counter, steps: int = TIMED_STEPS) -> float:
    """Seconds per training step (forward, loss, backward, optimizer) of ``configuration``'s
    U-Net on a random batch of this process's size at its crop: one warm-up step, then the
    mean of ``steps``. The run's loss and optimizer, without class weights (they cost
    nothing measurable); torch.compile is left out (compiling takes longer than measuring)."""
    from .train import train_step   # train imports this module
    model = UNet(spec.in_channels, spec.num_classes, configuration.width, config.depth, config.batchnorm,
                 config.bilinear, config.skip, configuration.stem_stride)
    model = prepare_model(model.to(device), settings)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, config.weight_decay, config.momentum)
    scaler = torch.amp.GradScaler(device.type, enabled=settings.amp_dtype == "float16")
    loss_fn = make_loss(config.loss, None, spec.ignore_index)
    generator = torch.Generator().manual_seed(0)
    batch = max(1, config.batch_size // world)
    images = torch.rand(batch, spec.in_channels, *configuration.crop, generator=generator).to(device)
    masks = torch.randint(0, spec.num_classes, (batch, *configuration.crop), generator=generator).to(device)
    if settings.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    train_step(model, images, masks, loss_fn, optimizer, scaler, settings)   # warm-up: allocation, kernel choice
    _wait_for(device)
    start = clock()
    for _ in range(steps):
        train_step(model, images, masks, loss_fn, optimizer, scaler, settings)
    _wait_for(device)
    return (clock() - start) / steps


def _wait_for(device: torch.device) -> None:
    """Let a GPU finish its queued work, so that the clock reads the work's end."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def choose_for_budget(config: TrainConfig, spec: DatasetSpec, device: torch.device, settings: SpeedSettings,
                      world: int = 1, clock: Callable[[], float] = time.perf_counter, start: float | None = None,
                      table: tuple[Configuration, ...] | None = None, measure: Callable[..., float] | None = None,
                      images: tuple[int, int] | None = None) -> tuple[TrainConfig, Choice]:
    """Measure every configuration of ``table`` (default :data:`CONFIGURATIONS`), pick one
    with :func:`pick`, and return ``config`` with it, and the :class:`Choice`. ``start``:
    the clock when the run began (the measuring is counted from there); ``measure``: how a
    configuration's step is timed (default :func:`measure_step_seconds`); ``images``:
    (training, validation) image counts (default: counted in the data folder). Under
    torchrun every process measures for itself and all take the cheapest pick of any."""
    table = CONFIGURATIONS if table is None else table
    measure = measure_step_seconds if measure is None else measure
    began = clock()
    start = began if start is None else start
    images = count_images(config, spec) if images is None else images
    seconds = [measure(c, config, spec, device, settings, world, clock) for c in table]
    elapsed = clock() - start
    epochs = [expected_epochs(config.budget, elapsed, s, c, config, images, world) for s, c in zip(seconds, table)]
    own = pick(table, epochs)
    index = -agreed_min(-own, world, device)   # the cheapest (last) any process needs
    choice = Choice(config.budget, table[index].name,
                    [Candidate(c.name, s, e, c.min_epochs) for c, s, e in zip(table, seconds, epochs)],
                    clock() - began, agreed=index != own)
    return apply(config, table[index]), choice
