"""Interactive viewers for notebooks: browse a data set, compare predictions with labels.

Each viewer is a small class whose ``.widget`` is the ipywidgets container; a viewer
shows itself when it is the last expression of a cell. The controls are attributes
(``.index``, ``.opacity``, ``.highlight``, ...) and can be driven from Python as well as
from the browser, which is how the tests check them::

    browser = DatasetBrowser(CamVid(split="train"))
    browser                      # in a notebook: the viewer
    browser.show(12)             # same as moving the slider
    browser.image.value          # the PNG on screen

The picture is composed with NumPy (:mod:`seglab.viz`) into one RGB array and encoded
as a PNG with PIL, which keeps an update well under a second even on a slow laptop.
Widgets do not render on GitHub or in a static HTML export, so every viewer has
:meth:`static_preview`, a matplotlib figure of the same pictures.

ipywidgets is imported only when a viewer is built: ``import seglab`` works without it.
Both ipywidgets 7.7 (Google Colab's) and 8 work; the tests run under each.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .datasets import DatasetSpec
from .figures import add_legend, figure_grid, panel_size, styled
from .render import (ArrayLike, as_array, as_class_map, as_labels, as_spec, class_shares, error_map, names_with_void,
                     overlay, palette_array, present_classes, to_png, to_uint8)
from .render import image_scores as _score_image
from .viz import legend_handles

GAP = 6  # white pixels between the panels of a picture


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as err:
        raise ImportError("the seglab viewers need ipywidgets: `pip install ipywidgets` "
                          "(or `pip install -e '.[course]'` in the course repository)") from err
    return ipywidgets


def _widget_bundle(widget, **kwargs) -> dict:
    """The display data of a widget. ipywidgets 8 builds it in ``_repr_mimebundle_``;
    ipywidgets 7 only has ``_ipython_display_``, which sends this same bundle."""
    if hasattr(widget, "_repr_mimebundle_"):
        return widget._repr_mimebundle_(**kwargs)
    return {"text/plain": repr(widget),
            "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                         "model_id": widget.model_id}}


# --------------------------------------------------------------------------- the shared picture

def _strip(panels: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Panels ``[H, W, 3]`` side by side with white gaps: one uint8 picture."""
    h = panels[0].shape[0]
    spacer = np.full((h, gap, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for i, panel in enumerate(panels):
        if i:
            parts.append(spacer)
        parts.append(panel)
    return np.concatenate(parts, axis=1)


def _compose(image: np.ndarray, masks: Sequence[np.ndarray], spec: DatasetSpec, opacity: float,
             highlight: int | None, errors: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The picture every viewer shows: the image, then each mask blended over it with
    ``opacity`` (``highlight`` dims every other class), then optionally the error map of
    ``errors = (label, prediction)``. ``image`` is uint8 ``[H, W, 3]``."""
    panels = [image] + [overlay(image, m, spec, opacity, highlight) for m in masks]
    if errors is not None:
        panels.append(error_map(errors[0], errors[1], spec, image))
    return _strip(panels)


def _legend_html(spec: DatasetSpec) -> str:
    """The palette as a row of coloured squares with names (HTML, no matplotlib)."""
    items = []
    for (r, g, b), name in zip(palette_array(spec).tolist(), names_with_void(spec)):
        items.append(f'<span style="display:inline-flex;align-items:center;margin:0 10px 2px 0">'
                     f'<span style="width:12px;height:12px;background:rgb({r},{g},{b});'
                     f'border:1px solid #555;margin-right:4px"></span>{html.escape(name)}</span>')
    return f'<div style="line-height:1.4;font-size:12px">{"".join(items)}</div>'


class _Viewer:
    """What both viewers share: index / opacity / highlight controls, the PNG image, an
    info line, the legend, rendering and display. Subclasses say what the panels are."""

    css_class = "seglab-viewer"

    def __init__(self, spec: DatasetSpec, count: int, opacity: float):
        if count < 1:
            raise ValueError("nothing to show: the viewer needs at least one image")
        w = _ipywidgets()
        self.spec = spec
        self.count = count
        style = {"description_width": "initial"}
        self.index = w.IntSlider(value=0, min=0, max=count - 1, description="Image",
                                 continuous_update=False, style=style)
        self.opacity = w.FloatSlider(value=opacity, min=0.0, max=1.0, step=0.05, description="Opacity",
                                     continuous_update=False, readout_format=".2f", style=style)
        self.highlight = w.Dropdown(options=[("All classes", -1)] + [(n, i) for i, n in enumerate(spec.class_names)],
                                    value=-1, description="Highlight", style=style)
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%", height="auto"))
        self.image.add_class("seglab-image")
        self.info = w.HTML()
        self.info.add_class("seglab-info")
        self.legend = w.HTML(_legend_html(spec))
        self.legend.add_class("seglab-legend")
        self.widget = None

    def _assemble(self, controls: Sequence) -> None:
        w = _ipywidgets()
        for control in controls:
            control.observe(self._on_change, names="value")
        self.widget = w.VBox([w.HBox(list(controls), layout=w.Layout(flex_flow="row wrap")),
                              self.image, self.info, self.legend])
        self.widget.add_class(self.css_class)
        self.update()

    # -- what a subclass provides
    def _panels(self, index: int) -> tuple[np.ndarray, list[np.ndarray], tuple | None]:
        raise NotImplementedError

    def _caption(self, index: int) -> str:
        raise NotImplementedError

    # -- rendering
    @property
    def highlighted(self) -> int | None:
        """The highlighted class index, or None for all classes."""
        return None if self.highlight.value < 0 else int(self.highlight.value)

    def render(self, index: int | None = None) -> np.ndarray:
        """The picture for ``index`` (default: the current one) as uint8 ``[H, W', 3]``."""
        i = self.index.value if index is None else int(index)
        image, masks, errors = self._panels(i)
        return _compose(image, masks, self.spec, self.opacity.value, self.highlighted, errors)

    def update(self) -> None:
        """Redraw the picture and the info line from the controls."""
        self.image.value = to_png(self.render())
        self.info.value = self._caption(self.index.value)

    def _on_change(self, change) -> None:
        self.update()

    # -- driving from Python
    def show(self, index: int) -> "_Viewer":
        """Go to image ``index`` (as moving the slider does)."""
        if not 0 <= index < self.count:
            raise IndexError(f"index {index} is out of range 0..{self.count - 1}")
        self.index.value = int(index)
        return self

    def set_opacity(self, value: float) -> "_Viewer":
        """Opacity of the class colours, 0 (plain image) to 1 (colours only)."""
        self.opacity.value = float(value)
        return self

    def set_highlight(self, cls: int | str | None) -> "_Viewer":
        """Show one class alone (index or name); ``None`` or ``'All classes'`` shows all."""
        if cls is None or cls == "All classes":
            self.highlight.value = -1
        elif isinstance(cls, str):
            if cls not in self.spec.class_names:
                raise ValueError(f"unknown class {cls!r}: choose one of {', '.join(self.spec.class_names)}")
            self.highlight.value = self.spec.class_names.index(cls)
        else:
            self.highlight.value = int(cls)
        return self

    # -- display
    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    def _repr_mimebundle_(self, **kwargs):
        return _widget_bundle(self.widget, **kwargs)

    @styled
    def static_preview(self, indices: Sequence[int] | None = None, n: int = 3, panel_width: float = 3.2) -> Figure:
        """The same pictures as a matplotlib figure, one row per image (default: ``n``
        images spread over the viewer), with the legend: for readers on GitHub, where
        widgets do not render."""
        if indices is None:
            k = min(n, self.count)
            indices = sorted({round(j * (self.count - 1) / max(k - 1, 1)) for j in range(k)})
        rows = [self.render(i) for i in indices]
        h, w = self._panels(indices[0])[0].shape[:2]
        panels = len(self._titles())
        pw, ph = panel_size(h, w, panel_width)
        fig, axes = figure_grid(len(rows), 1, (pw * panels, (ph + 0.35) * len(rows) + 0.5))
        for ax, i, picture in zip(axes[:, 0], indices, rows):
            ax.imshow(picture, interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(self._plain_caption(i), fontsize=9)
        fig.suptitle("  |  ".join(self._titles()))
        masks = [m for i in indices for m in self._panels(i)[1]]
        add_legend(fig, legend_handles(self.spec, present_classes(*masks, spec=self.spec)))
        return fig

    def _titles(self) -> list[str]:
        raise NotImplementedError

    def _plain_caption(self, index: int) -> str:
        raise NotImplementedError


def static_preview(viewer: _Viewer, indices: Sequence[int] | None = None, n: int = 3) -> Figure:
    """A static matplotlib figure of what ``viewer`` shows (see :meth:`_Viewer.static_preview`)."""
    return viewer.static_preview(indices, n)


# --------------------------------------------------------------------------- the viewers

class DatasetBrowser(_Viewer):
    """Browse a segmentation data set: the image beside its labels blended over it.

    Controls: ``index`` (which image), ``opacity`` (of the class colours), ``highlight``
    (one class alone, the others dimmed). Below the picture: the file name and the
    classes present with their share of the pixels.

    ``dataset`` is a :class:`seglab.data.SegmentationDataset` or anything with
    ``__len__`` and ``__getitem__`` returning (image, mask); its cached ``images`` and
    ``masks`` are used when present (the data as stored, not augmented).
    """

    css_class = "seglab-dataset-browser"

    def __init__(self, dataset, spec: DatasetSpec | str | None = None, opacity: float = 0.5):
        self.dataset = dataset
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None
        spec = as_spec(spec) or getattr(dataset, "spec", None)
        if spec is None:
            raise ValueError("pass spec=... (the dataset has no .spec)")
        super().__init__(spec, len(dataset), opacity)
        self._assemble([self.index, self.opacity, self.highlight])

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB ``[H, W, 3]`` and class mask ``[H, W]`` of one image (the last one is
        kept, as the picture and the info line of one update both need it)."""
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1], self._cached[2]
        ds = self.dataset
        if hasattr(ds, "images") and hasattr(ds, "masks"):
            image, mask = ds.images[index], ds.masks[index]
        else:
            image, mask = ds[index]
        image, mask = to_uint8(image, self.spec), as_labels(mask)
        self._cached = (index, image, mask)
        return image, mask

    def name(self, index: int) -> str:
        names = getattr(self.dataset, "names", None)
        return str(names[index]) if names is not None else f"image {index}"

    def _panels(self, index):
        image, mask = self.sample(index)
        return image, [mask], None

    def _titles(self) -> list[str]:
        return ["image", "labels over the image"]

    def _shares(self, index: int) -> dict[str, float]:
        return class_shares(self.sample(index)[1], self.spec)

    def _plain_caption(self, index: int) -> str:
        return f"{self.name(index)}: " + ", ".join(f"{n} {v:.0%}" for n, v in list(self._shares(index).items())[:5])

    def _caption(self, index: int) -> str:
        shares = " · ".join(f"{html.escape(n)} {v:.1%}" for n, v in self._shares(index).items())
        return (f"<b>{html.escape(self.name(index))}</b> ({index + 1} of {self.count}) "
                f"&nbsp;|&nbsp; classes present: {shares}")


def _per_image(value, i: int) -> dict | None:
    if value is None:
        return None
    item = value[i]
    if isinstance(item, Mapping):
        return dict(item)
    return {"miou": float(item)}


class ComparisonViewer(_Viewer):
    """Compare predictions with labels, image by image: image | label | prediction
    (| errors: wrong pixels in red, void in grey).

    ``images`` ``[N, C, H, W]`` (uint8, or normalised floats: the spec's stats undo the
    normalisation), ``labels`` ``[N, H, W]``, ``preds`` ``[N, H, W]`` class indices or
    ``[N, K, H, W]`` logits. ``names``: one per image; ``scores``: one per image (a dict
    with ``miou`` / ``pixel_accuracy``, or a number read as mIoU); by default each
    image's pixel accuracy and mIoU are computed with :mod:`seglab.metrics`.
    """

    css_class = "seglab-comparison-viewer"

    def __init__(self, images: ArrayLike, labels: ArrayLike, preds: ArrayLike, spec: DatasetSpec | str,
                 names: Sequence[str] | None = None, scores: Sequence | None = None,
                 opacity: float = 1.0, show_errors: bool = True):
        spec = as_spec(spec)
        self.images = images
        self.labels = as_array(labels)
        p = as_array(preds)
        self.preds = p.argmax(1) if p.ndim == 4 else p
        n = len(self.labels)
        if len(self.images) != n or len(self.preds) != n:
            raise ValueError(f"images ({len(self.images)}), labels ({n}) and predictions ({len(self.preds)}) "
                             f"must have the same length")
        if names is not None and len(names) != n:
            raise ValueError(f"{len(names)} names for {n} images")
        self.names = list(names) if names is not None else [f"image {i}" for i in range(n)]
        self._given_scores = scores
        self._scores: dict[int, dict] = {}
        super().__init__(spec, n, opacity)
        w = _ipywidgets()
        self.show_errors = w.Checkbox(value=show_errors, description="Show errors", indent=False)
        self._assemble([self.index, self.opacity, self.highlight, self.show_errors])

    def set_show_errors(self, value: bool) -> "ComparisonViewer":
        """Show or hide the error panel (as ticking the box does)."""
        self.show_errors.value = bool(value)
        return self

    def _panels(self, index):
        image = to_uint8(self.images[index], self.spec)
        label, pred = as_labels(self.labels[index]), as_class_map(self.preds[index])
        errors = (label, pred) if self.show_errors.value else None
        return image, [label, pred], errors

    def _titles(self) -> list[str]:
        return ["image", "label", "prediction"] + (["errors (red: wrong, grey: void)"] if self.show_errors.value else [])

    def image_scores(self, index: int) -> dict:
        """Pixel accuracy and mIoU of one image (given ``scores`` win over computed ones)."""
        if index not in self._scores:
            given = _per_image(self._given_scores, index)
            computed = _score_image(self.labels[index], self.preds[index], self.spec)
            self._scores[index] = {**computed, **(given or {})}
        return self._scores[index]

    def _score_text(self, index: int) -> str:
        s = self.image_scores(index)
        parts = []
        if s.get("pixel_accuracy") is not None and not math.isnan(s["pixel_accuracy"]):
            parts.append(f"pixel accuracy {s['pixel_accuracy']:.1%}")
        if s.get("miou") is not None and not math.isnan(s["miou"]):
            parts.append(f"mIoU {s['miou']:.3f}")
        return ", ".join(parts) or "no labelled pixels"

    def _plain_caption(self, index: int) -> str:
        return f"{self.names[index]}: {self._score_text(index)}"

    def _caption(self, index: int) -> str:
        return (f"<b>{html.escape(str(self.names[index]))}</b> ({index + 1} of {self.count}) "
                f"&nbsp;|&nbsp; this image: {html.escape(self._score_text(index))} "
                f"&nbsp;|&nbsp; <span style='color:#666'>{html.escape(' | '.join(self._titles()))}</span>")


__all__ = ["ComparisonViewer", "DatasetBrowser", "static_preview"]
