"""Pictures as NumPy arrays: class colours, overlays, error maps, and the per-image numbers
the viewers print. Plain NumPy and fast (a viewer redraws on every slider move); the
matplotlib figures of :mod:`seglab.viz` and the ipywidgets viewers of
:mod:`seglab.widgets` are built from these. Inputs may be PyTorch tensors or NumPy arrays.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .datasets import DatasetSpec, get_spec
from .metrics import confusion_matrix, scores

ArrayLike = Any  # torch.Tensor, np.ndarray or anything np.asarray accepts

ERROR_COLOUR = (255, 0, 0)       # wrong pixels in error maps
VOID_GREY = (190, 190, 190)      # void pixels in error maps (never right or wrong)
DIM = 0.35                       # brightness of the dimmed background (highlight, errors)


# --------------------------------------------------------------------------- conversions

def as_array(x: ArrayLike) -> np.ndarray:
    """A NumPy view of a tensor (any device, tv_tensors included) or array-like."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().as_subclass(torch.Tensor).numpy()
    return np.asarray(x)


def as_spec(spec: DatasetSpec | str | None) -> DatasetSpec | None:
    return get_spec(spec) if isinstance(spec, str) else spec


def palette_array(spec_or_palette: DatasetSpec | str | Sequence) -> np.ndarray:
    """The palette as uint8 ``[K + 1, 3]`` (class colours, then void)."""
    spec = as_spec(spec_or_palette)
    palette = spec.palette if hasattr(spec, "palette") else spec_or_palette
    return np.asarray(palette, dtype=np.uint8).reshape(-1, 3)


def names_with_void(spec: DatasetSpec) -> list[str]:
    """Class names plus the void name, in palette order."""
    return list(spec.class_names) + [getattr(spec, "void_name", "Void")]


def as_labels(mask: ArrayLike) -> np.ndarray:
    """Class-index mask ``[H, W]`` as int64 (a leading 1-channel axis is dropped)."""
    m = as_array(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"a mask must be [H, W] class indices, got shape {m.shape}")
    if m.dtype == np.uint8 or np.issubdtype(m.dtype, np.signedinteger):
        return m
    return m.astype(np.int64)


def as_class_map(pred: ArrayLike) -> np.ndarray:
    """Class indices ``[H, W]`` from indices or from logits/probabilities ``[K, H, W]``."""
    p = as_array(pred)
    if p.ndim == 3 and p.shape[0] > 1:
        return p.argmax(0).astype(np.int64)
    return as_labels(p)


def colorize(mask: ArrayLike, palette: DatasetSpec | str | Sequence) -> np.ndarray:
    """Paint a class-index mask ``[H, W]`` with ``palette`` (a spec, a spec name, or RGB
    triples, class colours then void). Returns uint8 ``[H, W, 3]``.

    The void label, and any value the palette has no colour for (negative, 255, ...),
    is painted in the void colour, so a stray value is visible instead of crashing.
    """
    colours = palette_array(palette)
    m = as_labels(mask)
    void = len(colours) - 1
    if m.dtype == np.uint8 and void < 256:  # the common case: a 256-entry lookup table
        lut = np.repeat(colours[-1:], 256, axis=0)
        lut[: void + 1] = colours
        return lut[m]
    return colours[np.where((m < 0) | (m > void), void, m)]


def denormalize(image: ArrayLike, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo ``Normalize(mean, std)`` on an image ``[C, H, W]`` (or ``[H, W, C]``), so a
    tensor the model sees can be looked at. Returns float32 ``[H, W, C]`` clipped to [0, 1].
    """
    x = as_hwc(as_array(image)).astype(np.float32)
    mean = np.asarray(mean, dtype=np.float32).reshape(1, 1, -1)
    std = np.asarray(std, dtype=np.float32).reshape(1, 1, -1)
    return np.clip(x * std + mean, 0.0, 1.0)


def as_hwc(x: np.ndarray) -> np.ndarray:
    """Channels last: ``[C, H, W]`` -> ``[H, W, C]``; ``[H, W]`` -> ``[H, W, 1]``; a leading
    batch axis of 1 is dropped. Torch layout wins when both readings are possible."""
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        return x[..., None]
    if x.ndim != 3:
        raise ValueError(f"an image must be [C, H, W], [H, W, C] or [H, W], got shape {x.shape}")
    if x.shape[0] in (1, 3, 4) and not (x.shape[-1] in (1, 3, 4) and x.shape[0] > x.shape[-1]):
        return np.moveaxis(x, 0, -1)
    return x


def to_display(image: ArrayLike, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
               normalized: bool | None = None) -> np.ndarray:
    """Turn any image the course handles into float32 RGB ``[H, W, 3]`` in [0, 1].

    Accepts uint8 or float, ``[C, H, W]`` (torch) or ``[H, W, C]``, RGB, RGBA or
    grayscale (repeated to three channels, so every picture composes the same way).
    A float image is taken as normalised when it leaves [0, 1] (or ``normalized=True``):
    it is denormalised with ``mean``/``std`` when given, else stretched to [0, 1].
    """
    x = as_hwc(as_array(image))
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / max(float(x.max(initial=0)), 1.0)
    else:
        x = x.astype(np.float32)
        if normalized is None:
            normalized = bool(x.size) and (float(x.min()) < 0.0 or float(x.max()) > 1.0)
        if normalized and mean is not None and std is not None:
            x = denormalize(x, mean[: x.shape[-1]], std[: x.shape[-1]])
        elif normalized:
            lo, hi = float(x.min()), float(x.max())
            x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    x = x[..., :3]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.clip(x, 0.0, 1.0)


def normalisation_of(spec: DatasetSpec | None, mean=None, std=None):
    if mean is None and spec is not None:
        mean, std = getattr(spec, "mean", None), getattr(spec, "std", None)
    return mean, std


def to_uint8(image: ArrayLike, spec: DatasetSpec | str | None = None, mean=None, std=None) -> np.ndarray:
    """:func:`to_display` as uint8 ``[H, W, 3]``; normalised floats use the spec's stats.
    uint8 input is only rearranged (no float round trip: this is the widgets' hot path)."""
    x = as_array(image)
    if x.dtype == np.uint8:
        x = as_hwc(x)[..., :3]
        return np.ascontiguousarray(np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x)
    mean, std = normalisation_of(as_spec(spec), mean, std)
    return (to_display(x, mean, std) * 255.0 + 0.5).astype(np.uint8)


def class_index(spec: DatasetSpec, highlight: int | str | None) -> int | None:
    if highlight is None or isinstance(highlight, (int, np.integer)):
        return None if highlight is None or highlight < 0 else int(highlight)
    names = names_with_void(spec)
    if highlight not in names:
        raise ValueError(f"unknown class {highlight!r}: choose one of {', '.join(names)}")
    return names.index(highlight)


def dimmed(rgb: np.ndarray) -> np.ndarray:
    """A dark grayscale copy of uint8 RGB ``[H, W, 3]``: context without competing colour."""
    grey = (rgb.sum(axis=-1, dtype=np.uint16) * round(DIM / 3 * 256)) >> 8
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)


def overlay(image: ArrayLike, mask: ArrayLike, spec: DatasetSpec | str, alpha: float = 0.5,
            highlight: int | str | None = None, mean=None, std=None) -> np.ndarray:
    """Blend the class colours of ``mask`` over ``image``: uint8 ``[H, W, 3]``.

    ``alpha`` is the opacity of the colours (0: the plain image, 1: the colour mask).
    ``highlight`` (a class index or name) shows that class alone: its pixels are blended
    as usual, everything else becomes a dim grey, so a small class (a pole, a cyclist)
    stands out. Normalised float images are denormalised with the spec's mean and std.
    """
    spec = as_spec(spec)
    base = to_uint8(image, spec, mean, std)
    m = as_labels(mask)
    if m.shape != base.shape[:2]:
        raise ValueError(f"image {base.shape[:2]} and mask {m.shape} must have the same size")
    # Integer blending in 1/256 steps: exact at alpha 0 and 1, and fast enough for a slider.
    a = int(round(float(np.clip(alpha, 0.0, 1.0)) * 256))
    if a == 0:
        blended = base.copy()
    elif a == 256:
        blended = colorize(m, spec)
    else:
        colours = colorize(m, spec)
        blended = ((base.astype(np.uint16) * (256 - a) + colours.astype(np.uint16) * a + 128) >> 8).astype(np.uint8)
    k = class_index(spec, highlight)
    if k is not None:
        blended = np.where((m == k)[..., None], blended, dimmed(base))
    return blended


def void_mask(label: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """Pixels that are never scored: the ignore label and values outside the classes."""
    void = (label < 0) | (label >= spec.num_classes)
    if spec.ignore_index is not None:
        void |= label == spec.ignore_index
    return void


def error_map(label: ArrayLike, pred: ArrayLike, spec: DatasetSpec | str, image: ArrayLike | None = None,
              mean=None, std=None) -> np.ndarray:
    """Where the prediction is wrong: uint8 ``[H, W, 3]``.

    Wrong pixels are red, void pixels (not scored) light grey, right pixels show the
    image dimmed to grey (white without an image): red is then the only colour there.
    ``pred`` may be class indices ``[H, W]`` or logits ``[K, H, W]``.
    """
    spec = as_spec(spec)
    lab, prd = as_labels(label), as_class_map(pred)
    if lab.shape != prd.shape:
        raise ValueError(f"label {lab.shape} and prediction {prd.shape} must have the same size")
    if image is None:
        out = np.full(lab.shape + (3,), 245, dtype=np.uint8)
    else:
        out = dimmed(to_uint8(image, spec, mean, std))
    void = void_mask(lab, spec)
    out[void] = VOID_GREY
    out[(lab != prd) & ~void] = ERROR_COLOUR
    return out


def image_scores(label: ArrayLike, pred: ArrayLike, spec: DatasetSpec | str) -> dict:
    """Pixel accuracy and mIoU of one image (void left out), via :mod:`seglab.metrics`."""
    spec = as_spec(spec)
    k = spec.num_classes
    lab, prd = as_labels(label).reshape(-1), as_class_map(pred).reshape(-1)
    keep = ~void_mask(lab, spec)
    prd = np.clip(prd[keep].astype(np.int64), 0, k - 1)  # a "void" prediction is simply wrong
    s = scores(confusion_matrix(prd, lab[keep], k), spec.class_names)
    return {"pixel_accuracy": s["pixel_accuracy"], "miou": s["miou"], "pixels": s["pixels"]}


def class_shares(mask: ArrayLike, spec: DatasetSpec | str) -> dict[str, float]:
    """Share of the image's pixels per class present (void included), largest first."""
    spec = as_spec(spec)
    names = names_with_void(spec)
    m = as_labels(mask).reshape(-1)
    void = len(names) - 1
    m = np.where((m < 0) | (m > void), void, m)
    counts = np.bincount(m, minlength=len(names))
    total = max(int(counts.sum()), 1)
    order = np.argsort(-counts, kind="stable")
    return {names[i]: counts[i] / total for i in order if counts[i] > 0}


def to_png(rgb: np.ndarray, compress_level: int = 1) -> bytes:
    """Encode uint8 ``[H, W, 3]`` as PNG bytes with PIL (fast compression by default)."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()

def present_classes(*masks: np.ndarray, spec: DatasetSpec) -> list[int]:
    void = spec.num_classes
    values = set()
    for m in masks:
        u = np.unique(m)
        values.update(int(v) if 0 <= v < void else void for v in u)
    return sorted(values)
