"""Curves: training history (static and live, updated every epoch) and the learning-rate
experiments of notebook 04 (loss per step for several settings, the range test)."""
from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .figures import course_style, figure_grid, one_axes, styled, tidy
from .render import as_array


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
        tidy(ax)
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


@styled
def plot_history(history: Sequence[Mapping], figsize=(12, 3.3)) -> Figure:
    """Training curves from ``fit``'s history (a list of per-epoch dicts): train and val
    loss, validation mIoU and pixel accuracy, learning rate. Missing keys and epochs
    without validation are skipped, so any part of a history plots."""
    fig, axes = figure_grid(1, 3, figsize)
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
            with course_style():
                self._figure = Figure(figsize=self.figsize)
                self._figure.subplots(1, 3)
                self._figure.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.9, wspace=0.28)
        with course_style():
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


# --------------------------------------------------------------------------- optimiser experiments

def _smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average (bias-corrected), as loss curves are noisy per step."""
    out, avg = np.empty_like(values), 0.0
    for i, v in enumerate(values):
        avg = weight * avg + (1 - weight) * v
        out[i] = avg / (1 - weight ** (i + 1))
    return out


@styled
def plot_lr_curves(results: Mapping[str, Sequence[float] | Mapping], smooth: float = 0.0,
                   log_loss: bool = False, figsize=None, title: str = "training loss") -> Figure:
    """Compare training runs (optimisers, learning rates): ``results`` maps a label to a
    list of per-step losses, or to a dict with ``'loss'`` (and optionally ``'lr'``, drawn
    in a second panel on a log axis). ``smooth`` in [0, 1) draws an exponential moving
    average over the faint raw curve."""
    curves = {k: (v if isinstance(v, Mapping) else {"loss": v}) for k, v in results.items()}
    with_lr = any(c.get("lr") is not None for c in curves.values())
    fig, axes = figure_grid(1, 2 if with_lr else 1, figsize or ((11, 3.5) if with_lr else (6, 3.5)))
    ax = axes[0, 0]
    for i, (label, curve) in enumerate(curves.items()):
        loss = np.asarray(as_array(curve["loss"]), dtype=float)
        steps = np.arange(1, len(loss) + 1)
        colour = f"C{i % 10}"
        if smooth:
            ax.plot(steps, loss, color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(steps, _smooth(loss, smooth), color=colour, label=label)
        else:
            ax.plot(steps, loss, color=colour, label=label)
        if with_lr and curve.get("lr") is not None:
            lr = np.asarray(as_array(curve["lr"]), dtype=float)
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


@styled
def plot_lr_range(lrs: Sequence[float] | Mapping, losses: Sequence[float] | None = None,
                  suggested: float | None = None, ax: Axes | None = None) -> Figure:
    """The learning-rate range test: loss against learning rate on a log axis, with the
    suggested rate marked. Accepts the dict of ``lr_finder.lr_range_test`` as ``lrs``.
    The y axis is cut where the loss explodes, so the useful valley stays readable."""
    if isinstance(lrs, Mapping):
        result = lrs
        lrs, losses = result["lr"], result["loss"]
        suggested = result.get("suggested_lr", suggested) if suggested is None else suggested
    x = np.asarray(as_array(lrs), dtype=float)
    y = np.asarray(as_array(losses), dtype=float)
    fig, ax = one_axes(ax, (6, 3.6))
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
