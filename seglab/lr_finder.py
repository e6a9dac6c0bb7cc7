"""The learning-rate range test (notebook 04): how the loss responds as the rate grows."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .inference import as_plain
from .optim import make_optimizer, set_lr
from .train import train_step


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
        set_lr(optimizer, lr)
        loss = train_step(model, as_plain(images).to(device), as_plain(masks).to(device), loss_fn, optimizer)
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
