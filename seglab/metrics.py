"""Segmentation metrics, all computed from one confusion matrix.

``cm[t, p]`` counts the pixels whose true class is ``t`` and predicted class is ``p``.
Pixels labelled void (``ignore_index``) are left out before counting, so they never
count as right or wrong. From the matrix:

- IoU of class c      = TP / (TP + FP + FN)  = cm[c, c] / (row c + column c - cm[c, c])
- Dice (F1) of c      = 2 TP / (2 TP + FP + FN)
- pixel accuracy      = trace / total  (dominated by big classes like road and sky)
- mean class accuracy = mean over classes of TP / (TP + FN)  (recall per class)
- mean IoU            = mean of IoU over the classes that are *present*: a class that
  appears neither in the labels nor in the predictions has 0 / 0 IoU and is excluded
  (it would otherwise count as 0 or 1 depending on a convention, and distort the mean).

The matrix is streamed: ``update`` adds one batch at a time (counted with ``np.bincount``), so a
whole test set never has to sit in memory, and ``all_reduce`` sums it across processes.
"""
from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """Confusion matrix ``[num_classes, num_classes]`` (int64; rows: true class, columns:
    predicted) of class-index tensors or arrays of the same shape. Pixels whose target is
    ``ignore_index`` (or outside 0..num_classes-1) are skipped. Counted with NumPy on the
    CPU: ``np.bincount`` is several times faster than torch's on small images, and every
    scorer (training, the viewers, the per-image analysis) uses this one function."""
    pred, target = _numpy(pred), _numpy(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    pred, target = pred.reshape(-1), target.reshape(-1).astype(np.int64, copy=False)
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    pred, target = pred[keep].astype(np.int64, copy=False), target[keep]
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predictions must be class indices 0..{num_classes - 1}")
    counts = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return torch.from_numpy(counts.reshape(num_classes, num_classes))


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().as_subclass(torch.Tensor).numpy()
    return np.asarray(x)


def _safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b, NaN where b == 0 (an undefined score, not a zero one)."""
    a, b = a.double(), b.double()
    return torch.where(b > 0, a / b.clamp(min=1), torch.full_like(a, float("nan")))


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """IoU of each class; NaN for a class absent from both labels and predictions."""
    tp = cm.diag()
    return _safe_div(tp, cm.sum(0) + cm.sum(1) - tp)


def dice_per_class(cm: torch.Tensor) -> torch.Tensor:
    """Dice (F1) of each class; NaN for a class absent from both labels and predictions."""
    tp = cm.diag()
    return _safe_div(2 * tp, cm.sum(0) + cm.sum(1))


def recall_per_class(cm: torch.Tensor) -> torch.Tensor:
    """Fraction of each class's pixels predicted as that class; NaN if it has no pixels."""
    return _safe_div(cm.diag(), cm.sum(1))


def mean_iou(cm: torch.Tensor) -> float:
    """Mean IoU over the classes present in the labels or the predictions."""
    return float(torch.nanmean(iou_per_class(cm)))


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Share of (non-void) pixels classified correctly."""
    total = cm.sum()
    return float(cm.diag().sum().double() / total) if total > 0 else float("nan")


def mean_class_accuracy(cm: torch.Tensor) -> float:
    """Mean over classes with labelled pixels of the per-class recall."""
    return float(torch.nanmean(recall_per_class(cm)))


def scores(cm: torch.Tensor, class_names: list[str] | tuple[str, ...] | None = None) -> dict:
    """All metrics of a confusion matrix in one dict (JSON-friendly)."""
    names = list(class_names) if class_names is not None else [str(i) for i in range(cm.shape[0])]
    iou, dice = iou_per_class(cm), dice_per_class(cm)
    return {
        "miou": mean_iou(cm),
        "pixel_accuracy": pixel_accuracy(cm),
        "mean_class_accuracy": mean_class_accuracy(cm),
        "mean_dice": float(torch.nanmean(dice)),
        "iou": {n: (None if v != v else float(v)) for n, v in zip(names, iou.tolist())},
        "dice": {n: (None if v != v else float(v)) for n, v in zip(names, dice.tolist())},
        "pixels": int(cm.sum()),
    }


class ConfusionMatrix:
    """A confusion matrix you feed batch by batch.

    >>> cm = ConfusionMatrix(num_classes=11, ignore_index=11)
    >>> cm.update(logits.argmax(1), masks)   # any shapes, as long as they match
    >>> cm.compute()["miou"]
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.matrix += confusion_matrix(pred.detach().cpu(), target.detach().cpu(),
                                        self.num_classes, self.ignore_index)

    def reset(self) -> None:
        self.matrix.zero_()

    def all_reduce(self) -> None:
        """Sum the matrices of all processes (no-op outside torch.distributed)."""
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def compute(self, class_names=None) -> dict:
        return scores(self.matrix, class_names)
