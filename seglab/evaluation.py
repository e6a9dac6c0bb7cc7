"""Scoring a model on a data set: mIoU, per-class IoU, pixel accuracy and the loss, at the
labels' own resolution (how published CamVid numbers are computed)."""
from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .batches import iterate
from .data import SegmentationDataset
from .distributed import all_reduce_sum
from .hardware import SpeedSettings, describe
from .inference import LoadedModel, as_plain, predict_logits
from .metrics import ConfusionMatrix
from .models import fold_batchnorm
from .transforms import eval_transforms


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
    ``model`` is left as it was. ``world`` > 1 (torchrun): ``dataset`` is this process's
    share, and the counts of all processes are summed."""
    was_training = model.training
    model.eval()
    net = fold_batchnorm(model) if settings is not None and settings.fold_batchnorm else model
    device = next(model.parameters()).device
    cm = ConfusionMatrix(num_classes, ignore_index)
    ignore = -100 if ignore_index is None else ignore_index
    loss_sum = torch.zeros(2, dtype=torch.float64)
    loader = loader or DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    for images, masks in iterate(loader):
        masks = as_plain(masks).to(device)
        logits = predict_logits(net, images, work_size, settings, flip, offsets, scales)
        loss_sum[0] += F.cross_entropy(logits, masks, ignore_index=ignore, reduction="sum").double().cpu()
        loss_sum[1] += (masks != ignore).sum().cpu()
        cm.update(logits.argmax(1), masks)
    if world > 1:
        cm.all_reduce()
    all_reduce_sum(loss_sum, world)
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
    loaded = LoadedModel.load(checkpoint, device, fast, settings, rebalance, scales)
    spec = loaded.spec
    data = SegmentationDataset(spec, root, split, None, eval_transforms(spec), subset=subset)
    start = time.perf_counter()
    result = evaluate(loaded.model, data, spec.num_classes, spec.ignore_index, loaded.work_size, batch_size,
                      loaded.settings, spec.class_names, flip=flip, scales=loaded.scales)
    result.update(flip=flip, scales=list(loaded.scales), rebalance=loaded.state["rebalance"], split=split,
                  images=len(data), seconds=time.perf_counter() - start, resolution=list(data.size),
                  work_size=list(loaded.work_size), device=describe(loaded.device), checkpoint=str(checkpoint))
    return result
