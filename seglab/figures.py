"""The course's figure style and layout: one look for every matplotlib figure (light grid,
no top/right frame, readable text), grids of panels, a class legend under them."""
from __future__ import annotations

import contextlib
import functools

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch


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


# --------------------------------------------------------------------------- small figure helpers

@contextlib.contextmanager
def course_style():
    """The course style (:data:`STYLE`) for the duration of a plot. Unlike a bare
    ``plt.rc_context``, it keeps the interactive flag that Jupyter's inline backend may
    switch on while the first figure is made; restoring it would hide every later figure."""
    with plt.rc_context(STYLE):
        try:
            yield
        finally:
            interactive = matplotlib.is_interactive()
    matplotlib.interactive(interactive)


def styled(func):
    """Run a plotting function inside the course style (:data:`STYLE`)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with course_style():
            return func(*args, **kwargs)
    return wrapper


def tidy(ax: Axes) -> None:
    """A light grid, set on the axes itself so that it survives drawing outside the style."""
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.set_axisbelow(True)


def figure_grid(nrows: int = 1, ncols: int = 1, figsize=None, **kw) -> tuple[Figure, np.ndarray]:
    with course_style():
        fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout="constrained", **kw)
    for ax in axes.flat:
        tidy(ax)
    return fig, axes


def one_axes(ax: Axes | None, figsize) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, axes = figure_grid(1, 1, figsize)
    return fig, axes[0, 0]


def image_axes(ax: Axes, picture: np.ndarray, title: str | None = None) -> None:
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def panel_size(height: int, width: int, panel_width: float = 3.2) -> tuple[float, float]:
    return panel_width, panel_width * height / max(width, 1)


def add_legend(fig: Figure, handles: list[Patch], ncol: int | None = None) -> None:
    """Class legend under the panels (outside them with matplotlib >= 3.7)."""
    if not handles:
        return
    ncol = ncol or min(len(handles), 6)
    try:
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol)
    except (ValueError, KeyError):  # matplotlib < 3.7 has no 'outside'
        fig.legend(handles=handles, loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, -0.02))
