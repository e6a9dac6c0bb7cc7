"""Sizing a run to a wall-clock budget (``TrainConfig.budget``).

The first steps measure the machine; :class:`BudgetPlanner` then sizes the run (and so
its learning-rate schedule) with :func:`plan_steps`, and checks the plan again at 30, 60
and 85 % of the run against the pace since the last plan. Every reading of time goes
through the planner's ``clock``, so tests can run a "30-second" budget in a moment.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .distributed import agreed_min
from .hardware import autocast, describe


def half_resolution(images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch at half its height and width: images averaged (antialiased bilinear), labels
    sampled at the nearest pixel (a label is a category: it cannot be averaged)."""
    small = F.interpolate(images, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)
    labels = F.interpolate(masks[:, None].float(), size=small.shape[-2:], mode="nearest-exact")
    return small, labels[:, 0].to(masks.dtype)


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


class HalfResolutionCost:
    """What a full-resolution training step costs next to a half-resolution one, for
    planning a budget with ``low_res`` (the steps timed so far may be of either kind).

    Measured once: one forward and backward pass of the same batch at both resolutions
    (batch-norm statistics and gradients are put back, so training is unchanged). The
    difference is pure compute; loading and the optimizer cost the same in both phases."""

    def __init__(self, model: nn.Module, images: torch.Tensor, masks: torch.Tensor, loss_fn, settings, device,
                 clock: Callable[[], float] = time.perf_counter):
        saved = [b.detach().clone() for b in model.buffers()]
        small = half_resolution(images, masks)
        seconds = []
        for x, y in [(images, masks), small, (images, masks), small]:   # the first two warm up
            if settings.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            t0 = clock()
            with autocast(device, settings):
                logits = model(x)
            loss_fn(logits.float(), y).backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(clock() - t0)
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


@dataclass
class Plan:
    """One sizing of the run: at ``step``, ``total_steps`` fit; measured from ``step_seconds``
    per full step (``low_step_seconds`` at half resolution) and ``val_seconds`` per pass."""

    step: int
    total_steps: int
    step_seconds: float
    val_seconds: float
    low_step_seconds: float | None = None
    pace: float | None = None          # a re-plan: wall seconds per step since the last plan, validation left out
    val_measured: float | None = None  # a re-plan: the last real validation pass, in seconds


@dataclass
class BudgetPlanner:
    """Sizes a run to ``budget`` seconds and keeps the plan honest as it runs.

    ``fit`` calls :meth:`start_epoch` and :meth:`step_done` around its steps,
    :meth:`validated` after each validation pass, and :meth:`replan` whenever :meth:`due`
    says so. ``plans`` records every plan made."""

    budget: float
    steps_per_epoch: int
    val_every: int = 1
    low_res: float = 0.0
    max_steps: int | None = None
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    clock: Callable[[], float] = time.perf_counter
    start: float | None = None          # the clock when the run began (default: now)
    calibrating: bool = True            # False for a resumed run: it keeps its saved plan
    plans: list[Plan] = field(default_factory=list)

    def __post_init__(self):
        self.start = self.clock() if self.start is None else self.start
        self.step_times: list[float] = []  # seconds from one step's end to the next (loading included)
        self.last_end = self.clock()
        self.replan_step: int | None = None  # after the first plan: the next step at which it is checked again
        self.mark: tuple[int, float, float] | None = None  # (step, clock, seconds validated) at the last plan
        self.val_seconds, self.last_val = 0.0, None        # seconds spent validating so far, and in the last pass
        self.half: HalfResolutionCost | None = None

    def start_epoch(self) -> None:
        self.last_end = self.clock()

    def step_done(self) -> None:
        now = self.clock()
        self.step_times.append(now - self.last_end)
        self.last_end = now

    def validated(self, seconds: float) -> None:
        self.val_seconds += seconds
        self.last_val = seconds

    def due(self, step: int, total_steps: int) -> bool:
        """Whether to plan now. (The triggers depend on step counts only under torchrun, so
        all processes agree.)"""
        if self.calibrating:
            times = self.step_times
            return len(times) >= 12 or (self.world == 1 and len(times) >= 3 and sum(times) > 0.05 * self.budget)
        return step == self.replan_step and step < total_steps

    def replan(self, step: int, low_end: int, time_validation: Callable[[], float],
               half: Callable[[], HalfResolutionCost] | None = None) -> tuple[int, int, int]:
        """A plan at ``step``: returns (total steps, epochs, where half resolution ends).
        ``time_validation``: seconds a full validation pass takes on this process (the first
        plan's estimate; later ones use the last real pass). ``half``: builds the
        :class:`HalfResolutionCost` at the first plan of a ``low_res`` run."""
        if self.calibrating:
            if half is not None:
                self.half = half()
            total, epochs, low_end = self._size(step, self.step_times[1:], low_end, since=step - 1,
                                                val_time=time_validation())
            self.calibrating = False
            self.replan_step = max(step + 24, int(0.3 * total))
        else:
            # the first plan rests on a dozen steps; at 30, 60 and 85 % of the run the pace since
            # the last plan (loading, epoch starts, checkpoints, a busier machine) re-sizes what is
            # left. Validation is taken out of the pace and planned on its own, from the last pass:
            # a validation every 10th epoch may or may not fall into a window of a few dozen steps,
            # and inside one it would make every remaining step look far dearer.
            mark_step, mark_clock, mark_val = self.mark
            pace = (self.clock() - mark_clock - (self.val_seconds - mark_val)) / max(1, step - mark_step)
            val_time = self.last_val if self.last_val is not None else time_validation()
            total, epochs, low_end = self._size(step, self.step_times[-50:], low_end, since=mark_step,
                                                val_time=val_time, pace=pace)
            later = [int(f * total) for f in (0.6, 0.85)]
            self.replan_step = next((at for at in later if at > step + 24), None)
        self.mark = (step, self.clock(), self.val_seconds)
        return total, epochs, low_end

    def _size(self, step: int, step_times: list[float], low_end: int, since: int, val_time: float,
              pace: float | None = None) -> tuple[int, int, int]:
        """Size the run from the measured step and validation times (see :func:`plan_steps`).
        With ``low_res``, steps before ``low_end`` run at half resolution; while that phase
        lasts, the plan moves its end to the same share of the new total (it never moves back
        once full resolution has begun). Under torchrun every process takes the smallest
        plan, so all stop at the same step."""
        low_share = max(0, min(step, low_end) - since) / max(1, step - since)  # of the timed steps
        low_res = self.low_res if step < low_end else 0.0
        step_time = float(np.median(step_times)) * 1.02  # epoch starts and checkpoints between steps
        measured = pace if pace is not None else step_time
        full_time, low_time = self.half.split(measured, low_share) if self.half is not None else (measured, None)
        total = plan_steps(self.budget, self.clock() - self.start, full_time, val_time, self.steps_per_epoch,
                           step, self.val_every, low_res=low_res, low_step_time=low_time)
        if self.max_steps is not None:
            total = min(total, self.max_steps)
        total = agreed_min(total, self.world, self.device)
        self.plans.append(Plan(step, total, full_time, val_time, low_time, pace,
                               self.last_val if pace is not None else None))
        low = f" ({low_time * 1000:.0f} at half resolution)" if low_time is not None else ""
        print(f"budget {self.budget:.0f} s on {describe(self.device)}{' (checked again)' if pace else ''}: "
              f"{full_time * 1000:.0f} ms/step{low}{' (all but validation)' if pace else ''}, "
              f"validation {val_time:.1f} s -> {total} steps ({total / self.steps_per_epoch:.1f} epochs)",
              file=sys.stderr)
        if step < low_end:
            low_end = max(step, int(self.low_res * total))
        return total, math.ceil(total / self.steps_per_epoch), low_end
