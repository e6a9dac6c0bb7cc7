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

The pictures themselves (:func:`colorize`, :func:`overlay`, :func:`error_map`) are plain
NumPy, in :mod:`seglab.render`; the curves (training history, learning-rate experiments)
are in :mod:`seglab.curves`; both are available from here too. This module never imports
ipywidgets.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .curves import LivePlot, plot_history, plot_lr_curves, plot_lr_range  # noqa: F401
from .datasets import DatasetSpec
from .figures import STYLE, add_legend, figure_grid, image_axes, one_axes, panel_size, styled  # noqa: F401
from .render import (ERROR_COLOUR, VOID_GREY, ArrayLike, as_array, as_class_map, as_labels, as_spec,  # noqa: F401
                     as_hwc, class_shares, colorize, denormalize, error_map, image_scores,
                     names_with_void, normalisation_of, overlay, palette_array, present_classes, to_display,
                     to_png, to_uint8)


# --------------------------------------------------------------------------- palette and samples

def legend_handles(spec: DatasetSpec | str, classes: Sequence[int] | None = None,
                   include_void: bool = True) -> list[Patch]:
    """Legend patches (colour + name) for the classes of ``spec``, void last.

    ``classes`` keeps only those class indices (e.g. the classes present in a picture);
    the void index is ``spec.num_classes``.
    """
    spec = as_spec(spec)
    colours = palette_array(spec) / 255.0
    names = names_with_void(spec)
    keep = range(len(names)) if classes is None else classes
    return [Patch(facecolor=colours[i], edgecolor="0.3", linewidth=0.5, label=names[i]) for i in keep
            if include_void or i < spec.num_classes]


@styled
def show_palette(spec: DatasetSpec | str, ax: Axes | None = None) -> Figure:
    """One swatch per class (and void) with its index and name: the key to every picture."""
    spec = as_spec(spec)
    colours, names = palette_array(spec), names_with_void(spec)
    fig, ax = one_axes(ax, (4.2, 0.32 * len(names) + 0.6))
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
        return to_uint8(dataset.images[index], spec), as_labels(dataset.masks[index])
    image, mask = dataset[index]
    return to_uint8(image, spec), as_labels(mask)


def _name(dataset, index: int) -> str:
    names = getattr(dataset, "names", None)
    return str(names[index]) if names is not None else f"#{index}"


def _spec_of(dataset, spec) -> DatasetSpec:
    spec = as_spec(spec) or getattr(dataset, "spec", None)
    if spec is None:
        raise ValueError("pass spec=... (the dataset has no .spec)")
    return spec


@styled
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
        add_legend(fig, legend_handles(spec, present_classes(*used, spec=spec)))
    return fig


@styled
def plot_grid(rows: Sequence[Sequence[ArrayLike | None]], titles: Sequence | None = None,
              spec: DatasetSpec | str | None = None, legend: bool = True, panel_width: float = 3.2) -> Figure:
    """Any grid of pictures, row by row. Each panel is an image (``[C, H, W]``, ``[H, W, C]``,
    uint8 or float), a class mask (2-D integers, painted with ``spec``'s palette), or
    ``None`` (left blank). ``titles``: one per column, or one list per row."""
    spec = as_spec(spec)
    nrows, ncols = len(rows), max(len(r) for r in rows)
    first = next((as_array(p) for r in rows for p in r if p is not None), np.zeros((1, 1)))
    h, w = first.shape if first.ndim == 2 else as_hwc(first).shape[:2]
    pw, ph = panel_size(h, w, panel_width)
    fig, axes = figure_grid(nrows, ncols, (pw * ncols, ph * nrows + (0.5 if legend and spec else 0.2)))
    masks = []
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            panel = row[c] if c < len(row) else None
            if panel is None:
                ax.set_axis_off()
                continue
            x = as_array(panel)
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
            image_axes(ax, picture, title)
    if legend and spec is not None and masks:
        add_legend(fig, legend_handles(spec, present_classes(*masks, spec=spec)))
    return fig


@styled
def show_prediction(image: ArrayLike, label: ArrayLike, pred: ArrayLike, spec: DatasetSpec | str,
                    title: str | None = None, legend: bool = True, mean=None, std=None) -> Figure:
    """image | label | prediction | errors, for one image.

    ``image`` may be uint8 or normalised (denormalised with the spec's stats), ``pred``
    class indices or logits ``[K, H, W]``. The error panel shows wrong pixels in red and
    void pixels in grey over the dimmed image; its title gives this image's pixel
    accuracy and mIoU.
    """
    spec = as_spec(spec)
    m, s = normalisation_of(spec, mean, std)
    rgb = to_display(image, m, s)
    lab, prd = as_labels(label), as_class_map(pred)
    sc = image_scores(lab, prd, spec)
    errors = error_map(lab, prd, spec, rgb)
    h, w = lab.shape
    pw, ph = panel_size(h, w)
    fig, axes = figure_grid(1, 4, (pw * 4, ph + (0.8 if legend else 0.4)))
    panels = [(rgb, "image"), (colorize(lab, spec), "label"), (colorize(prd, spec), "prediction"),
              (errors, f"errors: acc {sc['pixel_accuracy']:.1%}, mIoU {sc['miou']:.3f}")]
    for ax, (picture, name) in zip(axes[0], panels):
        image_axes(ax, picture, name)
    if title:
        fig.suptitle(title)
    if legend:
        add_legend(fig, legend_handles(spec, present_classes(lab, prd, spec=spec)))
    return fig


# --------------------------------------------------------------------------- metric plots

@styled
def plot_confusion(cm: ArrayLike, class_names: Sequence[str], normalize: str | None = "true",
                   ax: Axes | None = None, annotate: bool = True, cmap: str = "Blues") -> Figure:
    """The confusion matrix as a heat map, rows = true class, columns = predicted class.

    ``normalize``: ``'true'`` (each row sums to 1: where a class's pixels go; the
    diagonal is the per-class recall), ``'pred'`` (columns sum to 1), ``'all'``, or
    ``None`` (raw counts). Classes without pixels give an empty row, not a 0/0 error.
    """
    counts = as_array(cm).astype(np.float64)
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
    fig, ax = one_axes(ax, (0.55 * k + 2.5, 0.5 * k + 1.8))
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


def class_colour(spec: DatasetSpec | None, name: str, fallback="C0"):
    if spec is None:
        return fallback
    names = names_with_void(spec)
    return tuple(palette_array(spec)[names.index(name)] / 255.0) if name in names else fallback


@styled
def plot_class_iou(iou: Mapping[str, float | None] | ArrayLike, spec: DatasetSpec | str | None = None,
                   ax: Axes | None = None, sort: bool = True, title: str = "IoU per class") -> Figure:
    """Horizontal bars of IoU per class (``scores(...)["iou"]``, or a tensor with
    ``spec`` giving the names), coloured with the palette, and the mean as a dashed line.
    Undefined IoU (``None``/NaN: class absent from labels and predictions) reads "n/a"."""
    spec = as_spec(spec)
    if not isinstance(iou, Mapping):
        values = as_array(iou).tolist()
        names = list(spec.class_names) if spec is not None else [str(i) for i in range(len(values))]
        iou = dict(zip(names, values))
    items = [(n, float("nan") if v is None else float(v)) for n, v in iou.items()]
    if sort:
        items.sort(key=lambda kv: -1.0 if math.isnan(kv[1]) else kv[1])
    names = [n for n, _ in items]
    values = np.array([v for _, v in items])
    fig, ax = one_axes(ax, (5.5, 0.32 * len(names) + 1.0))
    colours = [class_colour(spec, n) for n in names]
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


@styled
def plot_class_frequencies(freqs: Mapping[str, float] | ArrayLike, spec: DatasetSpec | str,
                           ax: Axes | None = None, log: bool = False, sort: bool = False,
                           title: str = "share of labelled pixels") -> Figure:
    """Bars of each class's share of the pixels (``losses.class_frequencies``), coloured
    with the palette. ``log=True`` uses a log axis so rare classes (pole, sign, cyclist)
    stay visible next to road and sky."""
    spec = as_spec(spec)
    if isinstance(freqs, Mapping):
        items = [(n, float(v)) for n, v in freqs.items()]
    else:
        values = as_array(freqs).astype(float).tolist()
        names = names_with_void(spec)[: len(values)]
        items = list(zip(names, values))
    if sort:
        items.sort(key=lambda kv: kv[1])
    names = [n for n, _ in items]
    values = np.array([v for _, v in items])
    fig, ax = one_axes(ax, (5.5, 0.32 * len(names) + 1.0))
    ax.barh(range(len(names)), values, color=[class_colour(spec, n) for n in names], edgecolor="0.3", linewidth=0.5)
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


__all__ = [
    "ERROR_COLOUR", "STYLE", "VOID_GREY", "LivePlot", "class_shares", "colorize", "denormalize", "error_map",
    "image_scores", "legend_handles", "overlay", "plot_class_frequencies", "plot_class_iou", "plot_confusion",
    "plot_grid", "plot_history", "plot_lr_curves", "plot_lr_range", "show_palette", "show_prediction",
    "show_samples", "to_display", "to_png", "to_uint8",
]
