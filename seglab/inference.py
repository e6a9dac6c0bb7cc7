"""A trained model ready to predict: the logits of any images at their own size, and
:class:`LoadedModel`, a checkpoint loaded once with everything prediction needs (its data
set, device settings, working size and test-time scales). Evaluation, ``seglab predict``,
the analysis helpers and the benchmarks all load checkpoints through it."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_model
from .datasets import DatasetSpec, get_spec
from .errors import CheckpointError
from .hardware import SpeedSettings, autocast, choose_settings, get_device, reuse_freed_memory
from .models import fold_batchnorm


def as_plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a plain tensor (torchvision's Image and Mask subclasses slow every op down)."""
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
    different mistakes, and the average cancels some of them (measured in
    ``benchmarks/RESULTS.md``)."""
    settings = settings or SpeedSettings()
    x = as_plain(images).to(next(model.parameters()).device, non_blocking=True)
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


def run_work_size(state: dict, spec: DatasetSpec) -> tuple[int, int]:
    """The (H, W) a checkpoint's run trained at, where the model should see images (the data
    set's native size for a run that did not resize)."""
    return tuple(state.get("train_config", {}).get("size") or spec.native_size)


def run_eval_scales(state: dict) -> tuple[float, ...]:
    """The test-time scales a checkpoint's run was validated with (``(1.0,)`` before they existed)."""
    return tuple(state.get("train_config", {}).get("eval_scales") or (1.0,))


@dataclass
class LoadedModel:
    """A checkpoint's model on a device, ready to predict: build it with :meth:`load`.

    ``model`` runs with ``settings`` (BatchNorm folded for inference where they say so);
    ``spec`` is the data set it was trained on; ``work_size`` and ``scales`` are where and
    at which test-time scales its run was validated; ``state`` is the checkpoint's content
    (``state["rebalance"]``: the class rebalancing applied, see :func:`seglab.load_model`)."""

    model: nn.Module
    state: dict
    spec: DatasetSpec
    device: torch.device
    settings: SpeedSettings
    work_size: tuple[int, int]
    scales: tuple[float, ...]
    path: Path | None = None

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, device: str | torch.device | None = None, fast: bool = True,
             settings: SpeedSettings | None = None, rebalance: float | None = None,
             scales: tuple[float, ...] | None = None) -> "LoadedModel":
        """Read ``checkpoint`` once and prepare its model. ``settings`` overrides the
        per-device choice (``fast``); ``rebalance`` and ``scales`` override the run's own
        (``None``: as the run was validated)."""
        model, state = load_model(checkpoint, rebalance=rebalance)
        spec = get_spec(state.get("dataset", "camvid"))
        if model.config.get("num_classes") != spec.num_classes:
            raise CheckpointError(f"checkpoint {checkpoint} was trained with num_classes="
                                  f"{model.config.get('num_classes')}, but its data set {spec.name} has "
                                  f"{spec.num_classes}. Use a checkpoint written by `seglab train`.")
        dev = device if isinstance(device, torch.device) else get_device(device)
        settings = settings or choose_settings(dev, fast, training=False)
        model = prepare_model(model.to(dev).eval(), settings, inference=True)
        return cls(model, state, spec, dev, settings, run_work_size(state, spec),
                   tuple(scales or run_eval_scales(state)), Path(checkpoint))

    def logits(self, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
        """Logits (or averaged log-probabilities, with several scales) of normalised images
        ``[N, C, H, W]`` at their own size."""
        return predict_logits(self.model, images, self.work_size, self.settings, flip, scales=self.scales)

    def predict(self, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
        """Class indices ``[N, H, W]`` of normalised images ``[N, C, H, W]``."""
        return self.logits(images, flip).argmax(1)
