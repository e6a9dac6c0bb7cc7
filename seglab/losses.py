"""Losses for per-pixel classification, and class weights against imbalance.

Cross-entropy averages over pixels, so a class that covers 0.3 % of the pixels (bicyclist
in CamVid) barely moves the loss. Two standard remedies:

- weight each class's pixels by how rare the class is (inverse frequency, or the
  *median-frequency balancing* of Eigen and Fergus 2015: ``w_c = median(f) / f_c``);
- a Dice loss, which scores overlap per class and so gives every class the same say
  (popular in medical imaging, where the tumour may be 0.1 % of the volume).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def class_frequencies(masks: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """Share of labelled (non-void) pixels of each class, a float tensor summing to 1."""
    values = masks.reshape(-1).long()
    counts = torch.bincount(values, minlength=max(num_classes, int(values.max()) + 1 if values.numel() else 0))
    counts = counts[:num_classes].double()
    return (counts / counts.sum().clamp(min=1)).float()


def class_weights(frequencies: torch.Tensor, method: str = "median", clip: float | None = 10.0) -> torch.Tensor:
    """Per-class loss weights from class frequencies.

    ``method``: ``"median"`` (median-frequency balancing, w = median(f) / f),
    ``"sqrt"`` (its square root: a gentler push towards rare classes that costs less
    pixel accuracy),
    ``"inverse"`` (w = 1 / f, normalised to mean 1), or ``"none"`` (all ones).
    Classes with zero frequency get weight 0 (they cannot appear in the loss anyway).
    ``clip`` caps the largest weight, so a class of a handful of pixels cannot dominate.
    """
    f = frequencies.double()
    present = f > 0
    if method == "none":
        w = torch.ones_like(f)
    elif method in ("median", "sqrt"):
        w = torch.zeros_like(f)
        w[present] = f[present].median() / f[present]
        if method == "sqrt":
            w = w.sqrt()
    elif method == "inverse":
        w = torch.zeros_like(f)
        w[present] = 1.0 / f[present]
        w = w / w[present].mean()
    else:
        raise ValueError(f"unknown class-weight method {method!r}: use 'median', 'sqrt', 'inverse' or 'none'")
    if clip is not None:
        w = w.clamp(max=clip)
    w[~present] = 0.0
    return w.float()


def logit_offsets(weights: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-class constants to add to a class-weighted model's logits at inference, which
    take back a share ``strength`` (0 to 1) of the weighting.

    Why it works: cross-entropy with class weights ``w`` is minimised by probabilities
    proportional to ``w_c * p(c | x)``, so the weighted model's logits are the unweighted
    ones plus ``log w_c``. Subtracting ``strength * log w_c`` moves the decision back
    towards the class frequencies: 0 keeps the weighted model (rare classes found more
    often, common ones over-ruled), 1 undoes the weighting (the most pixels right). In
    between trades one for the other, at no training cost (logit adjustment, Menon et
    al., *Long-tail learning via logit adjustment*, ICLR 2021). Classes with weight 0
    (absent from the training data) get offset 0."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1 (got {strength})")
    offsets = torch.zeros_like(weights, dtype=torch.float32)
    present = weights > 0
    offsets[present] = -strength * weights[present].float().log() + 0.0  # + 0.0: no -0.0 in printouts
    return offsets


class DiceLoss(nn.Module):
    """Soft Dice loss: 1 - mean over classes of 2|P∩T| / (|P| + |T|), on softmax
    probabilities. Void pixels are masked out. ``smooth`` avoids 0/0 on empty classes."""

    def __init__(self, ignore_index: int | None = None, smooth: float = 1.0):
        super().__init__()
        self.ignore_index = ignore_index
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        probs = logits.float().softmax(dim=1)
        valid = torch.ones_like(target, dtype=torch.bool)
        if self.ignore_index is not None:
            valid = target != self.ignore_index
        safe_target = torch.where(valid, target, torch.zeros_like(target))
        one_hot = F.one_hot(safe_target, num_classes).permute(0, 3, 1, 2).float()
        mask = valid.unsqueeze(1).float()
        probs, one_hot = probs * mask, one_hot * mask
        dims = (0, 2, 3)
        intersection = (probs * one_hot).sum(dims)
        cardinality = probs.sum(dims) + one_hot.sum(dims)
        dice = (2 * intersection + self.smooth) / (cardinality + self.smooth)
        return 1.0 - dice.mean()


class CEDiceLoss(nn.Module):
    """Cross-entropy plus Dice: CE gives smooth per-pixel gradients, Dice keeps rare
    classes from being drowned out."""

    def __init__(self, weight: torch.Tensor | None = None, ignore_index: int | None = None,
                 dice_weight: float = 1.0):
        super().__init__()
        self.ce = nn.CrossEntropyLoss(weight=weight, ignore_index=-100 if ignore_index is None else ignore_index)
        self.dice = DiceLoss(ignore_index)
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target) + self.dice_weight * self.dice(logits, target)


def make_loss(name: str = "ce", weight: torch.Tensor | None = None, ignore_index: int | None = None) -> nn.Module:
    """``"ce"`` (cross-entropy, void ignored), ``"dice"`` or ``"ce+dice"``."""
    ignore = -100 if ignore_index is None else ignore_index
    if name == "ce":
        return nn.CrossEntropyLoss(weight=weight, ignore_index=ignore)
    if name == "dice":
        return DiceLoss(ignore_index)
    if name in ("ce+dice", "ce_dice"):
        return CEDiceLoss(weight, ignore_index)
    raise ValueError(f"unknown loss {name!r}: use 'ce', 'dice' or 'ce+dice'")
