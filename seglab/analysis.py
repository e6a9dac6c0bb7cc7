"""Looking past the mean: per-image scores, recall against object size, adjacency, and
the classes a model confuses.

A single mIoU hides *where* a model fails. The helpers here turn a stack of predictions
and labels (class indices, ``[N, H, W]``, at the labels' resolution) into the numbers
notebook 05 discusses:

- :func:`predict_split`: a model's class map for every image of a data set;
  :func:`predict_split_offsets`: several decision rules (logit offsets) from one pass;
- :func:`per_image_scores`: mIoU and pixel accuracy of each image (to pick good and bad
  examples);
- :func:`object_records` and :func:`size_table`: every connected object of a class in
  the labels, its area, how much of it the model found, and which classes touch it;
  then recall per size bin ("small poles are missed");
- :func:`top_confusions`: the largest off-diagonal entries of the row-normalised
  confusion matrix ("pedestrians are called bicyclists");
- :func:`pixel_prior`: a no-learning predictor (the most frequent class at each pixel
  position), which shows why pixel accuracy flatters;
- :func:`plot_iou_comparison` and :func:`plot_size_recall`: the two figures of the
  comparison and the size analysis;
- :func:`format_table`: a plain-text table (no pandas needed).

Needs SciPy (connected components), which the ``course`` extra brings with scikit-image;
``import seglab`` does not import this module.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .datasets import DatasetSpec, get_spec
from .metrics import confusion_matrix, scores

EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity: diagonal neighbours belong to the same object


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().as_subclass(torch.Tensor).numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------- predictions

def _prepared(model, dataset, batch_size, device, fast, progress):
    """``model`` ready for inference with the machine's settings, the settings, and a loader over ``dataset``."""
    from torch.utils.data import DataLoader

    from .hardware import choose_settings, get_device
    from .inference import prepare_model

    dev = get_device(device) if not isinstance(device, torch.device) else device
    settings = choose_settings(dev, fast, training=False)
    model = prepare_model(model.to(dev).eval(), settings, inference=True)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    if progress:
        from tqdm.auto import tqdm
        loader = tqdm(loader, desc="predicting", unit="batch", leave=False)
    return model, settings, loader


def _logits_per_batch(model, dataset, work_size, batch_size, device, fast, progress, flip, scales=(1.0,)):
    """The logits of every batch of ``dataset``, in order, with the machine's inference settings
    (the one loop that :func:`predict_split` and :func:`predict_split_offsets` share)."""
    from .inference import predict_logits

    model, settings, loader = _prepared(model, dataset, batch_size, device, fast, progress)
    for images, _ in loader:
        yield predict_logits(model, images, work_size, settings, flip, scales=scales)


def _as_offset(offset, logits: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(offset, dtype=logits.dtype, device=logits.device).view(1, -1, 1, 1)


@torch.inference_mode()
def predict_split(model: torch.nn.Module, dataset, work_size: tuple[int, int] | None = None,
                  batch_size: int = 8, device: str | torch.device | None = None, fast: bool = True,
                  progress: bool = False, flip: bool = False, scales: tuple[float, ...] = (1.0,)) -> torch.Tensor:
    """Class maps (uint8 ``[N, H, W]``, on the CPU) of ``model`` for every pair of
    ``dataset`` (which yields normalised images at the labels' resolution). Like
    :func:`seglab.evaluate`, it runs the model at ``work_size`` and resizes the logits back,
    so the maps can be scored pixel for pixel and kept for plots and analysis. The model
    runs on ``device`` (default: the best available) with the machine's fast settings
    (:func:`seglab.hardware.choose_settings`). ``flip``: average with the mirrored image's
    prediction (test-time augmentation); ``scales``: average the class probabilities of
    several sizes of each image (both see :func:`seglab.predict_logits`)."""
    return torch.cat([logits.argmax(1).to(torch.uint8).cpu()
                      for logits in _logits_per_batch(model, dataset, work_size, batch_size, device, fast,
                                                      progress, flip, scales)])


@torch.inference_mode()
def predict_split_offsets(model: torch.nn.Module, dataset, offsets: Mapping, work_size: tuple[int, int] | None = None,
                          batch_size: int = 8, device: str | torch.device | None = None, fast: bool = True,
                          progress: bool = False, scales: tuple[float, ...] = (1.0,)) -> dict:
    """Class maps like :func:`predict_split`, one stack per entry of ``offsets`` (a name ->
    per-class constants added to the logits before the arg-max, see
    :func:`seglab.losses.logit_offsets`), from a single pass of the model: the offsets change
    only the decision rule, so the network itself runs once, not once per rule. With several
    ``scales`` the offsets go on each scale's logits before the probabilities are averaged,
    as they do for a model whose last bias holds them (:func:`seglab.load_model`)."""
    # predict_logits' own steps, so that each rule decides exactly as a model with its offsets in the bias
    from .inference import _model_logits, _resized, as_plain, scaled_size

    maps: dict = {key: [] for key in offsets}
    if tuple(scales) == (1.0,):
        for logits in _logits_per_batch(model, dataset, work_size, batch_size, device, fast, progress, False):
            for key, offset in offsets.items():
                maps[key].append((logits + _as_offset(offset, logits)).argmax(1).to(torch.uint8).cpu())
        return {key: torch.cat(parts) for key, parts in maps.items()}
    model, settings, loader = _prepared(model, dataset, batch_size, device, fast, progress)
    device = next(model.parameters()).device
    for images, _ in loader:
        x = as_plain(images).to(device)
        size = tuple(x.shape[-2:])
        base = tuple(work_size) if work_size is not None else size
        per_scale = [_resized(_model_logits(model, x, scaled_size(base, s), settings, False, None), base)
                     for s in scales]   # the network runs once per scale, whatever the number of rules
        for key, offset in offsets.items():
            probs = sum((z + _as_offset(offset, z)).softmax(1) for z in per_scale) / len(per_scale)
            maps[key].append(_resized(probs.clamp_min(1e-12).log(), size).argmax(1).to(torch.uint8).cpu())
    return {key: torch.cat(parts) for key, parts in maps.items()}


def confusion(preds, labels, spec: str | DatasetSpec = "camvid") -> torch.Tensor:
    """The confusion matrix of stacked predictions and labels (void ignored)."""
    spec = get_spec(spec)
    return confusion_matrix(torch.as_tensor(_np(preds)).long(), torch.as_tensor(_np(labels)).long(),
                            spec.num_classes, spec.ignore_index)


def per_image_scores(preds, labels, spec: str | DatasetSpec = "camvid") -> list[dict]:
    """mIoU, pixel accuracy and labelled pixels of each image, in order. The mIoU of one
    image averages only the classes present in its label or its prediction."""
    spec = get_spec(spec)
    k = spec.num_classes
    out = []
    for p, t in zip(_np(preds), _np(labels)):
        s = scores(confusion_matrix(p, t, k), spec.class_names)   # void (>= k) is left out
        out.append({"miou": s["miou"], "pixel_accuracy": s["pixel_accuracy"], "pixels": s["pixels"]})
    return out


# --------------------------------------------------------------------------- objects and their size

@dataclass
class ObjectRecord:
    """One connected object of one class in a label map."""

    image: int            # index of the image in the stack
    cls: int              # class index
    area: int             # pixels
    recall: float         # share of its pixels predicted as its class
    bbox: tuple[int, int, int, int]  # top, left, bottom, right (exclusive)
    touches: frozenset    # classes of the labelled pixels right next to it


def object_records(preds, labels, classes: Sequence[int], spec: str | DatasetSpec = "camvid",
                   min_area: int = 1) -> list[ObjectRecord]:
    """Every connected component (8-connected) of each class in ``classes`` in the labels,
    with its area, its recall (how much of it the prediction covers with the right class)
    and the classes it touches (one pixel around it).

    Components are a proxy for objects: two pedestrians side by side merge into one, and
    a pole cut by a sign splits in two. Good enough to see how recall depends on size.
    """
    spec = get_spec(spec)
    preds, labels = _np(preds), _np(labels)
    records: list[ObjectRecord] = []
    for i, (p, t) in enumerate(zip(preds, labels)):
        for c in classes:
            components, n = ndimage.label(t == c, structure=EIGHT)
            if n == 0:
                continue
            area = np.bincount(components.ravel(), minlength=n + 1)
            hit = np.bincount(components.ravel(), weights=(p == c).ravel(), minlength=n + 1)
            # which classes touch each component: dilate by one pixel, look at the labels there
            ring = ndimage.grey_dilation(components, footprint=EIGHT) * (components == 0)
            touches: list[set] = [set() for _ in range(n + 1)]
            for comp, other in set(zip(ring[ring > 0].tolist(), t[ring > 0].tolist())):
                if other != spec.ignore_index:
                    touches[comp].add(int(other))
            for k, sl in enumerate(ndimage.find_objects(components), start=1):
                if sl is None or area[k] < min_area:
                    continue
                records.append(ObjectRecord(i, int(c), int(area[k]), float(hit[k] / area[k]),
                                            (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop),
                                            frozenset(touches[k])))
    return records


DEFAULT_BINS = (0, 100, 400, 1600, 6400, 10**9)


def _bin_label(lo: int, hi: int) -> str:
    return f">= {lo}" if hi >= 10**9 else f"{lo}-{hi - 1}"


def bin_labels(bins: Sequence[int] = DEFAULT_BINS) -> list[str]:
    """Readable names of the size bins: ``[0, 100, 400]`` -> ``['0-99', '100-399']``."""
    return [_bin_label(lo, hi) for lo, hi in zip(bins[:-1], bins[1:])]


def size_table(records: Sequence[ObjectRecord], spec: str | DatasetSpec = "camvid",
               bins: Sequence[int] = DEFAULT_BINS, found: float = 0.5) -> list[dict]:
    """Recall per class and object-size bin: one row per (class, bin) with the number of
    objects and of their pixels, the pixel recall (found pixels / all pixels of these
    objects) and the share of objects "found" (at least ``found`` of their pixels right)."""
    spec = get_spec(spec)
    rows = []
    for c in sorted({r.cls for r in records}):
        mine = [r for r in records if r.cls == c]
        for lo, hi in zip(bins[:-1], bins[1:]):
            chosen = [r for r in mine if lo <= r.area < hi]
            pixels = sum(r.area for r in chosen)
            rows.append({
                "class": spec.class_names[c], "area (px)": _bin_label(lo, hi), "objects": len(chosen),
                "pixels": pixels,
                "pixel recall": (sum(r.recall * r.area for r in chosen) / pixels) if pixels else float("nan"),
                "found": (sum(r.recall >= found for r in chosen) / len(chosen)) if chosen else float("nan"),
            })
    return rows


def split_by_contact(records: Sequence[ObjectRecord], cls: int, others: Sequence[int]) -> dict[str, dict]:
    """Objects of ``cls`` that touch any class in ``others`` versus those that do not:
    count and pixel recall of each group (e.g. pedestrians next to a car, which are often
    partly hidden by it)."""
    out = {}
    for name, test in (("touching", True), ("not touching", False)):
        group = [r for r in records if r.cls == cls and bool(r.touches & set(others)) == test]
        pixels = sum(r.area for r in group)
        out[name] = {"objects": len(group), "pixels": pixels,
                     "pixel recall": sum(r.recall * r.area for r in group) / pixels if pixels else float("nan")}
    return out


# --------------------------------------------------------------------------- confusions and priors

def top_confusions(cm, class_names: Sequence[str], k: int = 8) -> list[dict]:
    """The ``k`` largest off-diagonal entries of the row-normalised confusion matrix:
    "this share of class T's pixels were predicted as class P", largest first."""
    counts = _np(cm).astype(np.float64)
    rows = counts.sum(1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    np.fill_diagonal(share, 0.0)
    order = np.argsort(-share, axis=None, kind="stable")[:k]
    out = []
    for flat in order:
        t, p = divmod(int(flat), counts.shape[1])
        if share[t, p] <= 0:
            break
        out.append({"true": class_names[t], "predicted": class_names[p], "share of true": float(share[t, p]),
                    "pixels": int(counts[t, p])})
    return out


def pixel_prior(masks, spec: str | DatasetSpec = "camvid") -> torch.Tensor:
    """The most frequent (non-void) training class at each pixel position: uint8 ``[H, W]``.
    A "predictor" that never looks at the image: sky on top, road at the bottom."""
    spec = get_spec(spec)
    m = torch.as_tensor(_np(masks))
    counts = torch.stack([(m == c).sum(0) for c in range(spec.num_classes)])
    return counts.argmax(0).to(torch.uint8)


# --------------------------------------------------------------------------- plots

def plot_iou_comparison(results: Mapping[str, Mapping[str, float | None]], class_names: Sequence[str],
                        title: str = "IoU per class on the test set"):
    """Grouped horizontal bars: one group per class, one bar per method (``results`` maps a
    method's name to its ``{class: IoU}``, as in ``scores(...)["iou"]``); the legend gives
    each method's mIoU. Undefined IoU (class absent) is drawn as 0 and marked "n/a"."""
    from .figures import figure_grid

    names = list(results)
    k, m = len(class_names), len(names)
    fig, axes = figure_grid(1, 1, (7.0, 0.21 * k * m + 1.4))
    ax = axes[0, 0]
    height = 0.8 / m
    for j, name in enumerate(names):
        values = np.array([np.nan if results[name].get(c) is None else results[name][c] for c in class_names])
        y = np.arange(k) + (j - (m - 1) / 2) * height
        ax.barh(y, np.nan_to_num(values), height=height, color=f"C{j}",
                label=f"{name} (mIoU {np.nanmean(values):.3f})")
        for yi, v in zip(y, values):
            ax.text((0 if np.isnan(v) else v) + 0.01, yi, "n/a" if np.isnan(v) else f"{v:.2f}",
                    va="center", fontsize=7)
    ax.set_yticks(range(k), class_names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("IoU")
    ax.grid(axis="y", visible=False)
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 if k > 4 else -0.3), ncol=min(m, 2))
    return fig


def plot_size_recall(rows: Sequence[Mapping], spec: str | DatasetSpec = "camvid", key: str = "pixel recall",
                     min_objects: int = 5):
    """Recall against object size, one line per class, from :func:`size_table` rows. Bins
    with fewer than ``min_objects`` objects are left out (one or two objects are
    anecdotes, not a rate)."""
    from .figures import figure_grid
    from .viz import class_colour

    spec = get_spec(spec)
    fig, axes = figure_grid(1, 1, (6.5, 3.4))
    ax = axes[0, 0]
    bins = list(dict.fromkeys(r["area (px)"] for r in rows))
    for cls in dict.fromkeys(r["class"] for r in rows):
        mine = {r["area (px)"]: r for r in rows if r["class"] == cls}
        xs = [i for i, b in enumerate(bins) if b in mine and mine[b]["objects"] >= min_objects]
        colour = class_colour(spec, cls)
        ax.plot(xs, [mine[bins[i]][key] for i in xs], marker="o", label=cls, color=colour,
                markeredgecolor="0.2")
    ax.set_xticks(range(len(bins)), bins)
    ax.set_xlabel("object area in the label (pixels at 360x480)")
    ax.set_ylabel(key)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{key} against object size (bins with at least {min_objects} objects)")
    ax.legend(loc="lower right")
    return fig


# --------------------------------------------------------------------------- printing

def format_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None, floats: str = ".3f") -> str:
    """A plain-text table of dict rows (numbers right-aligned, floats with ``floats``)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(v) -> str:
        if isinstance(v, float):
            return "n/a" if v != v else format(v, floats)
        return str(v)

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r.get(c), (int, float)) for r in rows) for c in columns]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(b) for b in body])


__all__ = ["DEFAULT_BINS", "ObjectRecord", "bin_labels", "confusion", "format_table", "object_records",
           "per_image_scores", "pixel_prior", "plot_iou_comparison", "plot_size_recall", "predict_split",
           "predict_split_offsets", "size_table", "split_by_contact", "top_confusions"]
