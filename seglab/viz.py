"""Plots for the course: images, labels, predictions, errors, training curves, metrics.

Every function takes PyTorch tensors or NumPy arrays and returns the matplotlib
:class:`~matplotlib.figure.Figure` it drew, so a notebook can show it, save it
(``fig.savefig(...)``) or test it. Functions that draw one panel also accept ``ax=`` to
draw into an axes you already have. Class colours always come from the data set's
palette (:class:`seglab.datasets.DatasetSpec`), so "Road" is the same purple in every
picture of the course; the void colour is the palette's last entry.

Figures are created with pyplot, so ``plt.show()`` and ``%matplotlib widget`` work as
usual. In a notebook, end a plotting line with ``;`` (or assign the figure) when it is the
last line of a cell, otherwise Jupyter shows the figure twice.

The image helpers (:func:`colorize`, :func:`overlay`, :func:`error_map`) are plain NumPy
and fast; the widgets in :mod:`seglab.widgets` build their pictures with them. This
module never imports ipywidgets.
"""
from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .datasets import DatasetSpec, get_spec
from .metrics import scores

ArrayLike = Any  # torch.Tensor, np.ndarray or anything np.asarray accepts

ERROR_COLOUR = (255, 0, 0)       # wrong pixels in error maps
VOID_GREY = (190, 190, 190)      # void pixels in error maps (never right or wrong)
DIM = 0.35                       # brightness of the dimmed background (highlight, errors)

# One style for every figure of the course: light grid, no top/right frame, readable text.
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linestyle": "-",
    "legend.frameon": False,
    "legend.fontsize": 9,
    "image.interpolation": "nearest",
}


# --------------------------------------------------------------------------- conversions

def _np(x: ArrayLike) -> np.ndarray:
    """A NumPy view of a tensor (any device, tv_tensors included) or array-like."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().as_subclass(torch.Tensor).numpy()
    return np.asarray(x)


def _as_spec(spec: DatasetSpec | str | None) -> DatasetSpec | None:
    return get_spec(spec) if isinstance(spec, str) else spec


def _palette(spec_or_palette: DatasetSpec | str | Sequence) -> np.ndarray:
    """The palette as uint8 ``[K + 1, 3]`` (class colours, then void)."""
    spec = _as_spec(spec_or_palette)
    palette = spec.palette if hasattr(spec, "palette") else spec_or_palette
    return np.asarray(palette, dtype=np.uint8).reshape(-1, 3)


def _names(spec: DatasetSpec) -> list[str]:
    """Class names plus the void name, in palette order."""
    return list(spec.class_names) + [getattr(spec, "void_name", "Void")]


def _labels(mask: ArrayLike) -> np.ndarray:
    """Class-index mask ``[H, W]`` as int64 (a leading 1-channel axis is dropped)."""
    m = _np(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"a mask must be [H, W] class indices, got shape {m.shape}")
    if m.dtype == np.uint8 or np.issubdtype(m.dtype, np.signedinteger):
        return m
    return m.astype(np.int64)


def _class_map(pred: ArrayLike) -> np.ndarray:
    """Class indices ``[H, W]`` from indices or from logits/probabilities ``[K, H, W]``."""
    p = _np(pred)
    if p.ndim == 3 and p.shape[0] > 1:
        return p.argmax(0).astype(np.int64)
    return _labels(p)


def colorize(mask: ArrayLike, palette: DatasetSpec | str | Sequence) -> np.ndarray:
    """Paint a class-index mask ``[H, W]`` with ``palette`` (a spec, a spec name, or RGB
    triples, class colours then void). Returns uint8 ``[H, W, 3]``.

    The void label, and any value the palette has no colour for (negative, 255, ...),
    is painted in the void colour, so a stray value is visible instead of crashing.
    """
    colours = _palette(palette)
    m = _labels(mask)
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
    x = _hwc(_np(image)).astype(np.float32)
    mean = np.asarray(mean, dtype=np.float32).reshape(1, 1, -1)
    std = np.asarray(std, dtype=np.float32).reshape(1, 1, -1)
    return np.clip(x * std + mean, 0.0, 1.0)


def _hwc(x: np.ndarray) -> np.ndarray:
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
    x = _hwc(_np(image))
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


def _stats(spec: DatasetSpec | None, mean=None, std=None):
    if mean is None and spec is not None:
        mean, std = getattr(spec, "mean", None), getattr(spec, "std", None)
    return mean, std


def to_uint8(image: ArrayLike, spec: DatasetSpec | str | None = None, mean=None, std=None) -> np.ndarray:
    """:func:`to_display` as uint8 ``[H, W, 3]``; normalised floats use the spec's stats.
    uint8 input is only rearranged (no float round trip: this is the widgets' hot path)."""
    x = _np(image)
    if x.dtype == np.uint8:
        x = _hwc(x)[..., :3]
        return np.ascontiguousarray(np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x)
    mean, std = _stats(_as_spec(spec), mean, std)
    return (to_display(x, mean, std) * 255.0 + 0.5).astype(np.uint8)


def _class_index(spec: DatasetSpec, highlight: int | str | None) -> int | None:
    if highlight is None or isinstance(highlight, (int, np.integer)):
        return None if highlight is None or highlight < 0 else int(highlight)
    names = _names(spec)
    if highlight not in names:
        raise ValueError(f"unknown class {highlight!r}: choose one of {', '.join(names)}")
    return names.index(highlight)


def _dimmed(rgb: np.ndarray) -> np.ndarray:
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
    spec = _as_spec(spec)
    base = to_uint8(image, spec, mean, std)
    m = _labels(mask)
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
    k = _class_index(spec, highlight)
    if k is not None:
        blended = np.where((m == k)[..., None], blended, _dimmed(base))
    return blended


def _void(label: np.ndarray, spec: DatasetSpec) -> np.ndarray:
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
    spec = _as_spec(spec)
    lab, prd = _labels(label), _class_map(pred)
    if lab.shape != prd.shape:
        raise ValueError(f"label {lab.shape} and prediction {prd.shape} must have the same size")
    if image is None:
        out = np.full(lab.shape + (3,), 245, dtype=np.uint8)
    else:
        out = _dimmed(to_uint8(image, spec, mean, std))
    void = _void(lab, spec)
    out[void] = VOID_GREY
    out[(lab != prd) & ~void] = ERROR_COLOUR
    return out


def image_scores(label: ArrayLike, pred: ArrayLike, spec: DatasetSpec | str) -> dict:
    """Pixel accuracy and mIoU of one image (void left out), via :mod:`seglab.metrics`."""
    spec = _as_spec(spec)
    k = spec.num_classes
    lab, prd = _labels(label).reshape(-1), _class_map(pred).reshape(-1)
    keep = ~_void(lab, spec)
    # The same matrix as metrics.confusion_matrix, counted with NumPy: torch's bincount is
    # slow on a busy CPU, and a viewer computes this on every new image.
    prd = np.clip(prd[keep].astype(np.int64), 0, k - 1)  # a "void" prediction is simply wrong
    cm = np.bincount(lab[keep].astype(np.int64) * k + prd, minlength=k * k).reshape(k, k)
    s = scores(torch.from_numpy(cm), spec.class_names)
    return {"pixel_accuracy": s["pixel_accuracy"], "miou": s["miou"], "pixels": s["pixels"]}


def class_shares(mask: ArrayLike, spec: DatasetSpec | str) -> dict[str, float]:
    """Share of the image's pixels per class present (void included), largest first."""
    spec = _as_spec(spec)
    names = _names(spec)
    m = _labels(mask).reshape(-1)
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


# --------------------------------------------------------------------------- small figure helpers

@contextlib.contextmanager
def _style():
    """The course style (:data:`STYLE`) for the duration of a plot. Unlike a bare
    ``plt.rc_context``, it keeps the interactive flag that Jupyter's inline backend may
    switch on while the first figure is made; restoring it would hide every later figure."""
    with plt.rc_context(STYLE):
        try:
            yield
        finally:
            interactive = matplotlib.is_interactive()
    matplotlib.interactive(interactive)


def _styled(func):
    """Run a plotting function inside the course style (:data:`STYLE`)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with _style():
            return func(*args, **kwargs)
    return wrapper


def _tidy(ax: Axes) -> None:
    """A light grid, set on the axes itself so that it survives drawing outside the style."""
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.set_axisbelow(True)


def _figure(nrows: int = 1, ncols: int = 1, figsize=None, **kw) -> tuple[Figure, np.ndarray]:
    with _style():
        fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout="constrained", **kw)
    for ax in axes.flat:
        _tidy(ax)
    return fig, axes


def _one_axes(ax: Axes | None, figsize) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, axes = _figure(1, 1, figsize)
    return fig, axes[0, 0]


def _image_axes(ax: Axes, picture: np.ndarray, title: str | None = None) -> None:
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def _panel_size(height: int, width: int, panel_width: float = 3.2) -> tuple[float, float]:
    return panel_width, panel_width * height / max(width, 1)


def _add_legend(fig: Figure, handles: list[Patch], ncol: int | None = None) -> None:
    """Class legend under the panels (outside them with matplotlib >= 3.7)."""
    if not handles:
        return
    ncol = ncol or min(len(handles), 6)
    try:
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol)
    except (ValueError, KeyError):  # matplotlib < 3.7 has no 'outside'
        fig.legend(handles=handles, loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, -0.02))


def _present(*masks: np.ndarray, spec: DatasetSpec) -> list[int]:
    void = spec.num_classes
    values = set()
    for m in masks:
        u = np.unique(m)
        values.update(int(v) if 0 <= v < void else void for v in u)
    return sorted(values)


# --------------------------------------------------------------------------- palette and samples

def legend_handles(spec: DatasetSpec | str, classes: Sequence[int] | None = None,
                   include_void: bool = True) -> list[Patch]:
    """Legend patches (colour + name) for the classes of ``spec``, void last.

    ``classes`` keeps only those class indices (e.g. the classes present in a picture);
    the void index is ``spec.num_classes``.
    """
    spec = _as_spec(spec)
    colours = _palette(spec) / 255.0
    names = _names(spec)
    keep = range(len(names)) if classes is None else classes
    return [Patch(facecolor=colours[i], edgecolor="0.3", linewidth=0.5, label=names[i]) for i in keep
            if include_void or i < spec.num_classes]


@_styled
def show_palette(spec: DatasetSpec | str, ax: Axes | None = None) -> Figure:
    """One swatch per class (and void) with its index and name: the key to every picture."""
    spec = _as_spec(spec)
    colours, names = _palette(spec), _names(spec)
    fig, ax = _one_axes(ax, (4.2, 0.32 * len(names) + 0.6))
    void_value = spec.ignore_index if spec.ignore_index is not None else "other"
    labels = [f"{i}  {n}" for i, n in enumerate(names[:-1])] + [f"{void_value}  {names[-1]}"]
    ax.imshow(colours[:, None, :], aspect="auto", extent=(0, 1, len(names) - 0.5, -0.5))
    ax.set_yticks(range(len(names)), labels)
    ax.set_xticks([])
    ax.grid(False)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_xlim(0, 1)
    ax.set_title(f"{spec.name}: {spec.num_classes} classes + void")
    return fig


def _sample(dataset, index: int, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB and label of one sample; the cached uint8 tensors when the dataset has them
    (what is on disk, before augmentation), else ``dataset[index]``."""
    if hasattr(dataset, "images") and hasattr(dataset, "masks"):
        return to_uint8(dataset.images[index], spec), _labels(dataset.masks[index])
    image, mask = dataset[index]
    return to_uint8(image, spec), _labels(mask)


def _name(dataset, index: int) -> str:
    names = getattr(dataset, "names", None)
    return str(names[index]) if names is not None else f"#{index}"


def _spec_of(dataset, spec) -> DatasetSpec:
    spec = _as_spec(spec) or getattr(dataset, "spec", None)
    if spec is None:
        raise ValueError("pass spec=... (the dataset has no .spec)")
    return spec


@_styled
def show_samples(dataset, indices: Sequence[int] | None = None, n: int = 4, spec: DatasetSpec | str | None = None,
                 alpha: float | None = None, legend: bool = True) -> Figure:
    """A grid of samples: one row per sample, image | label (| overlay when ``alpha`` is
    given). ``indices`` default to ``n`` samples spread over the data set. Shows the data
    as stored (``dataset.images``), not as augmented, when the dataset keeps it."""
    spec = _spec_of(dataset, spec)
    if indices is None:
        total = len(dataset)
        indices = sorted({round(i * (total - 1) / max(n - 1, 1)) for i in range(min(n, total))})
    rows, titles, used = [], [], []
    for i in indices:
        image, mask = _sample(dataset, int(i), spec)
        row = [image, colorize(mask, spec)]
        if alpha is not None:
            row.append(overlay(image, mask, spec, alpha))
        rows.append(row)
        titles.append([_name(dataset, int(i)), "label"] + (["overlay"] if alpha is not None else []))
        used.append(mask)
    fig = plot_grid(rows, titles, spec=None)
    if legend:
        _add_legend(fig, legend_handles(spec, _present(*used, spec=spec)))
    return fig


@_styled
def plot_grid(rows: Sequence[Sequence[ArrayLike | None]], titles: Sequence | None = None,
              spec: DatasetSpec | str | None = None, legend: bool = True, panel_width: float = 3.2) -> Figure:
    """Any grid of pictures, row by row. Each panel is an image (``[C, H, W]``, ``[H, W, C]``,
    uint8 or float), a class mask (2-D integers, painted with ``spec``'s palette), or
    ``None`` (left blank). ``titles``: one per column, or one list per row."""
    spec = _as_spec(spec)
    nrows, ncols = len(rows), max(len(r) for r in rows)
    first = next((_np(p) for r in rows for p in r if p is not None), np.zeros((1, 1)))
    h, w = first.shape if first.ndim == 2 else _hwc(first).shape[:2]
    pw, ph = _panel_size(h, w, panel_width)
    fig, axes = _figure(nrows, ncols, (pw * ncols, ph * nrows + (0.5 if legend and spec else 0.2)))
    masks = []
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            panel = row[c] if c < len(row) else None
            if panel is None:
                ax.set_axis_off()
                continue
            x = _np(panel)
            if x.ndim == 2 and (np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
                if spec is None:
                    raise ValueError("a 2-D integer panel is a class mask: pass spec=... to colour it")
                masks.append(x.astype(np.int64))
                picture = colorize(x, spec)
            else:
                picture = to_uint8(x, spec)
            title = None
            if titles is not None:
                t = titles[r] if titles and not isinstance(titles[0], str) else (titles if r == 0 else None)
                title = t[c] if t is not None and c < len(t) else None
            _image_axes(ax, picture, title)
    if legend and spec is not None and masks:
        _add_legend(fig, legend_handles(spec, _present(*masks, spec=spec)))
    return fig


@_styled
def show_prediction(image: ArrayLike, label: ArrayLike, pred: ArrayLike, spec: DatasetSpec | str,
                    title: str | None = None, legend: bool = True, mean=None, std=None) -> Figure:
    """image | label | prediction | errors, for one image.

    ``image`` may be uint8 or normalised (denormalised with the spec's stats), ``pred``
    class indices or logits ``[K, H, W]``. The error panel shows wrong pixels in red and
    void pixels in grey over the dimmed image; its title gives this image's pixel
    accuracy and mIoU.
    """
    spec = _as_spec(spec)
    m, s = _stats(spec, mean, std)
    rgb = to_display(image, m, s)
    lab, prd = _labels(label), _class_map(pred)
    sc = image_scores(lab, prd, spec)
    errors = error_map(lab, prd, spec, rgb)
    h, w = lab.shape
    pw, ph = _panel_size(h, w)
    fig, axes = _figure(1, 4, (pw * 4, ph + (0.8 if legend else 0.4)))
    panels = [(rgb, "image"), (colorize(lab, spec), "label"), (colorize(prd, spec), "prediction"),
              (errors, f"errors: acc {sc['pixel_accuracy']:.1%}, mIoU {sc['miou']:.3f}")]
    for ax, (picture, name) in zip(axes[0], panels):
        _image_axes(ax, picture, name)
    if title:
        fig.suptitle(title)
    if legend:
        _add_legend(fig, legend_handles(spec, _present(lab, prd, spec=spec)))
    return fig


# --------------------------------------------------------------------------- training curves

_HISTORY_PANELS = (
    ("loss", (("train_loss", "train"), ("val_loss", "val"))),
    ("validation score", (("val_miou", "mIoU"), ("val_pixel_accuracy", "pixel accuracy"))),
    ("learning rate", (("lr", "lr"),)),
)


def _series(history: Sequence[Mapping], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, record in enumerate(history):
        value = record.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        xs.append(record.get("epoch", i + 1))
        ys.append(float(value))
    return xs, ys


def _draw_history(axes: Sequence[Axes], history: Sequence[Mapping]) -> None:
    """Draw (or redraw) the three history panels into ``axes``."""
    for ax, (title, keys) in zip(axes, _HISTORY_PANELS):
        ax.clear()
        _tidy(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        drawn = 0
        for key, label in keys:
            xs, ys = _series(history, key)
            if ys:
                ax.plot(xs, ys, marker="o" if len(ys) < 30 else None, markersize=3, label=label)
                drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
            continue
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        elif title == "validation score":
            ax.set_ylim(0, 1)
        if drawn > 1 or title != "learning rate":
            ax.legend()


@_styled
def plot_history(history: Sequence[Mapping], figsize=(12, 3.3)) -> Figure:
    """Training curves from ``fit``'s history (a list of per-epoch dicts): train and val
    loss, validation mIoU and pixel accuracy, learning rate. Missing keys and epochs
    without validation are skipped, so any part of a history plots."""
    fig, axes = _figure(1, 3, figsize)
    _draw_history(axes[0], list(history))
    return fig


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where display handles update in place)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class LivePlot:
    """A ``fit`` callback that redraws the training curves after every epoch.

    >>> live = LivePlot()
    >>> run = fit(config, callbacks=[live])

    In Jupyter the figure is one output that updates in place (an IPython display handle);
    elsewhere the records are only collected (``live.history``) and ``live.figure()`` draws
    them. ``live=None`` detects Jupyter; ``True``/``False`` force it.
    """

    def __init__(self, figsize=(12, 3.3), live: bool | None = None):
        self.history: list[dict] = []
        self.figsize = figsize
        self.live = live
        self._figure: Figure | None = None
        self._handle = None

    def __call__(self, record: Mapping) -> None:
        self.history.append(dict(record))
        live = _in_notebook() if self.live is None else self.live
        if live:
            self._redraw()

    def _redraw(self) -> None:
        from IPython.display import Image, display
        if self._figure is None:
            # A Figure outside pyplot: the inline backend does not show it a second time.
            # Fixed margins instead of a layout engine: redrawn every epoch, it must be cheap.
            with _style():
                self._figure = Figure(figsize=self.figsize)
                self._figure.subplots(1, 3)
                self._figure.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.9, wspace=0.28)
        with _style():
            _draw_history(self._figure.axes, self.history)
            buffer = io.BytesIO()
            # One draw: the constrained layout already fits, so no "tight" second pass.
            self._figure.savefig(buffer, format="png", dpi=100, bbox_inches=None)
        picture = Image(data=buffer.getvalue(), format="png")
        if self._handle is None:
            self._handle = display(picture, display_id=True)
        else:
            self._handle.update(picture)

    def figure(self) -> Figure:
        """The curves so far as a normal figure (for a saved notebook or a script)."""
        return plot_history(self.history, self.figsize)


# --------------------------------------------------------------------------- metric plots

@_styled
def plot_confusion(cm: ArrayLike, class_names: Sequence[str], normalize: str | None = "true",
                   ax: Axes | None = None, annotate: bool = True, cmap: str = "Blues") -> Figure:
    """The confusion matrix as a heat map, rows = true class, columns = predicted class.

    ``normalize``: ``'true'`` (each row sums to 1: where a class's pixels go; the
    diagonal is the per-class recall), ``'pred'`` (columns sum to 1), ``'all'``, or
    ``None`` (raw counts). Classes without pixels give an empty row, not a 0/0 error.
    """
    counts = _np(cm).astype(np.float64)
    if normalize == "true":
        values = counts / np.where(counts.sum(1, keepdims=True) > 0, counts.sum(1, keepdims=True), np.nan)
    elif normalize == "pred":
        values = counts / np.where(counts.sum(0, keepdims=True) > 0, counts.sum(0, keepdims=True), np.nan)
    elif normalize == "all":
        values = counts / max(counts.sum(), 1.0)
    elif normalize is None:
        values = counts
    else:
        raise ValueError(f"normalize must be 'true', 'pred', 'all' or None, got {normalize!r}")
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"a confusion matrix of shape {counts.shape} needs {counts.shape[0]} class names, got {k}")
    fig, ax = _one_axes(ax, (0.55 * k + 2.5, 0.5 * k + 1.8))
    vmax = 1.0 if normalize else None
    im = ax.imshow(values, cmap=cmap, vmin=0, vmax=vmax)
    ax.grid(False)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title({"true": "confusion (rows sum to 1)", "pred": "confusion (columns sum to 1)",
                  "all": "confusion (share of all pixels)", None: "confusion (pixels)"}[normalize])
    fig.colorbar(im, ax=ax, shrink=0.8)
    if annotate:
        top = np.nanmax(values) if np.isfinite(values).any() else 1.0
        size = max(5, min(9, 110 // max(k, 1)))
        for (t, p), v in np.ndenumerate(values):
            if np.isnan(v):
                continue
            if normalize and v < 0.005:
                continue  # blank instead of a wall of zeros: the eye finds the confusions
            text = f"{v:.2f}" if normalize else f"{int(v)}"
            ax.text(p, t, text, ha="center", va="center", fontsize=size,
                    color="white" if v > 0.6 * (vmax or top) else "black")
    return fig


def _colour_for(spec: DatasetSpec | None, name: str, fallback="C0"):
    if spec is None:
        return fallback
    names = _names(spec)
    return tuple(_palette(spec)[names.index(name)] / 255.0) if name in names else fallback


@_styled
def plot_class_iou(iou: Mapping[str, float | None] | ArrayLike, spec: DatasetSpec | str | None = None,
                   ax: Axes | None = None, sort: bool = True, title: str = "IoU per class") -> Figure:
    """Horizontal bars of IoU per class (``scores(...)["iou"]``, or a tensor with
    ``spec`` giving the names), coloured with the palette, and the mean as a dashed line.
    Undefined IoU (``None``/NaN: class absent from labels and predictions) reads "n/a"."""
    spec = _as_spec(spec)
    if not isinstance(iou, Mapping):
        values = _np(iou).tolist()
        names = list(spec.class_names) if spec is not None else [str(i) for i in range(len(values))]
        iou = dict(zip(names, values))
    items = [(n, float("nan") if v is None else float(v)) for n, v in iou.items()]
    if sort:
        items.sort(key=lambda kv: -1.0 if math.isnan(kv[1]) else kv[1])
    names = [n for n, _ in items]
    values = np.array([v for _, v in items])
    fig, ax = _one_axes(ax, (5.5, 0.32 * len(names) + 1.0))
    colours = [_colour_for(spec, n) for n in names]
    ax.barh(range(len(names)), np.nan_to_num(values), color=colours, edgecolor="0.3", linewidth=0.5)
    ax.set_yticks(range(len(names)), names)
    for i, v in enumerate(values):
        ax.text((0 if math.isnan(v) else v) + 0.01, i, "n/a" if math.isnan(v) else f"{v:.2f}",
                va="center", fontsize=8)
    if np.isfinite(values).any():
        mean = float(np.nanmean(values))
        ax.axvline(mean, color="0.2", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
        ax.legend(loc="lower right")
    if not sort:
        ax.invert_yaxis()  # first class on top, as in the palette
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("IoU")
    ax.grid(axis="y", visible=False)
    ax.set_title(title)
    return fig


@_styled
def plot_class_frequencies(freqs: Mapping[str, float] | ArrayLike, spec: DatasetSpec | str,
                           ax: Axes | None = None, log: bool = False, sort: bool = False,
                           title: str = "share of labelled pixels") -> Figure:
    """Bars of each class's share of the pixels (``losses.class_frequencies``), coloured
    with the palette. ``log=True`` uses a log axis so rare classes (pole, sign, cyclist)
    stay visible next to road and sky."""
    spec = _as_spec(spec)
    if isinstance(freqs, Mapping):
        items = [(n, float(v)) for n, v in freqs.items()]
    else:
        values = _np(freqs).astype(float).tolist()
        names = _names(spec)[: len(values)]
        items = list(zip(names, values))
    if sort:
        items.sort(key=lambda kv: kv[1])
    names = [n for n, _ in items]
    values = np.array([v for _, v in items])
    fig, ax = _one_axes(ax, (5.5, 0.32 * len(names) + 1.0))
    ax.barh(range(len(names)), values, color=[_colour_for(spec, n) for n in names], edgecolor="0.3", linewidth=0.5)
    ax.set_yticks(range(len(names)), names)
    if not sort:
        ax.invert_yaxis()  # first class on top, as in the palette
    for i, v in enumerate(values):
        if v > 0:
            ax.text(v * (1.08 if log else 1.0) + (0 if log else values.max() * 0.01), i, f"{v:.1%}",
                    va="center", fontsize=8)
    if log:
        ax.set_xscale("log")
        positive = values[values > 0]
        if positive.size:
            ax.set_xlim(positive.min() / 2, positive.max() * 4)
    else:
        ax.set_xlim(0, max(values.max(initial=0) * 1.15, 1e-9))
    ax.set_xlabel("share of pixels" + (" (log scale)" if log else ""))
    ax.grid(axis="y", visible=False)
    ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- optimiser experiments

def _smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average (bias-corrected), as loss curves are noisy per step."""
    out, avg = np.empty_like(values), 0.0
    for i, v in enumerate(values):
        avg = weight * avg + (1 - weight) * v
        out[i] = avg / (1 - weight ** (i + 1))
    return out


@_styled
def plot_lr_curves(results: Mapping[str, Sequence[float] | Mapping], smooth: float = 0.0,
                   log_loss: bool = False, figsize=None, title: str = "training loss") -> Figure:
    """Compare training runs (optimisers, learning rates): ``results`` maps a label to a
    list of per-step losses, or to a dict with ``'loss'`` (and optionally ``'lr'``, drawn
    in a second panel on a log axis). ``smooth`` in [0, 1) draws an exponential moving
    average over the faint raw curve."""
    curves = {k: (v if isinstance(v, Mapping) else {"loss": v}) for k, v in results.items()}
    with_lr = any(c.get("lr") is not None for c in curves.values())
    fig, axes = _figure(1, 2 if with_lr else 1, figsize or ((11, 3.5) if with_lr else (6, 3.5)))
    ax = axes[0, 0]
    for i, (label, curve) in enumerate(curves.items()):
        loss = np.asarray(_np(curve["loss"]), dtype=float)
        steps = np.arange(1, len(loss) + 1)
        colour = f"C{i % 10}"
        if smooth:
            ax.plot(steps, loss, color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(steps, _smooth(loss, smooth), color=colour, label=label)
        else:
            ax.plot(steps, loss, color=colour, label=label)
        if with_lr and curve.get("lr") is not None:
            lr = np.asarray(_np(curve["lr"]), dtype=float)
            axes[0, 1].plot(np.arange(1, len(lr) + 1), lr, color=colour, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if log_loss:
        ax.set_yscale("log")
    ax.legend()
    if with_lr:
        axes[0, 1].set_yscale("log")
        axes[0, 1].set_xlabel("step")
        axes[0, 1].set_title("learning rate")
    return fig


@_styled
def plot_lr_range(lrs: Sequence[float] | Mapping, losses: Sequence[float] | None = None,
                  suggested: float | None = None, ax: Axes | None = None) -> Figure:
    """The learning-rate range test: loss against learning rate on a log axis, with the
    suggested rate marked. Accepts the dict of ``engine.lr_range_test`` as ``lrs``.
    The y axis is cut where the loss explodes, so the useful valley stays readable."""
    if isinstance(lrs, Mapping):
        result = lrs
        lrs, losses = result["lr"], result["loss"]
        suggested = result.get("suggested_lr", suggested) if suggested is None else suggested
    x = np.asarray(_np(lrs), dtype=float)
    y = np.asarray(_np(losses), dtype=float)
    fig, ax = _one_axes(ax, (6, 3.6))
    ax.plot(x, y, color="C0", label="loss")
    ax.set_xscale("log")
    finite = y[np.isfinite(y)]
    if finite.size:
        low, start = finite.min(), finite[: max(1, len(finite) // 10)].max()
        top = min(finite.max(), start + 1.5 * max(start - low, 1e-3))
        ax.set_ylim(low - 0.05 * (top - low + 1e-9), top)
    if suggested is not None:
        ax.axvline(suggested, color="C3", linestyle="--", label=f"suggested {suggested:.1e}")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss")
    ax.set_title("learning-rate range test")
    ax.legend()
    return fig


__all__ = [
    "ERROR_COLOUR", "STYLE", "VOID_GREY", "LivePlot", "class_shares", "colorize", "denormalize", "error_map",
    "image_scores", "legend_handles", "overlay", "plot_class_frequencies", "plot_class_iou", "plot_confusion",
    "plot_grid", "plot_history", "plot_lr_curves", "plot_lr_range", "show_palette", "show_prediction",
    "show_samples", "to_display", "to_png", "to_uint8",
]
