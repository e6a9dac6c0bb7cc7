"""Properties of the segmentation metrics (seglab.metrics), checked on random inputs with
hypothesis, plus small cases computed by hand.

Random inputs: ``C`` classes (2-6), labels in ``0..C-1`` or void (``C``, the ignore
index, as in CamVid where void is 11 for 11 classes), predictions in ``0..C-1``.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seglab.metrics import (ConfusionMatrix, confusion_matrix, dice_per_class, iou_per_class,
                            mean_class_accuracy, mean_iou, pixel_accuracy, recall_per_class, scores)

FAST = settings(max_examples=50, deadline=None)


@st.composite
def labelled(draw, min_pixels: int = 1):
    """(pred, target, num_classes): two class-index maps of one random shape; the target
    has void pixels (value num_classes) at random."""
    c = draw(st.integers(2, 6))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    void_share = draw(st.sampled_from([0.0, 0.2, 0.6]))
    target = rng.integers(0, c, (h, w))
    target[rng.random((h, w)) < void_share] = c
    pred = rng.integers(0, c, (h, w))
    return torch.from_numpy(pred), torch.from_numpy(target), c


def _brute_force(pred: torch.Tensor, target: torch.Tensor, c: int) -> torch.Tensor:
    cm = [[0] * c for _ in range(c)]
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist()):
        if t != c:
            cm[t][p] += 1
    return torch.tensor(cm, dtype=torch.int64)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


# --------------------------------------------------------------------------- properties

@FAST
@given(labelled())
def test_confusion_matrix_equals_a_pixel_by_pixel_count(case):
    pred, target, c = case
    cm = confusion_matrix(pred, target, c, ignore_index=c)
    assert torch.equal(cm, _brute_force(pred, target, c))
    assert cm.dtype == torch.int64 and int(cm.sum()) == int((target != c).sum())


@FAST
@given(labelled())
def test_scores_stay_between_0_and_1(case):
    pred, target, c = case
    cm = confusion_matrix(pred, target, c, ignore_index=c)
    for per_class in (iou_per_class(cm), dice_per_class(cm), recall_per_class(cm)):
        finite = per_class[~torch.isnan(per_class)]
        assert ((finite >= 0) & (finite <= 1)).all()
    for value in (mean_iou(cm), pixel_accuracy(cm), mean_class_accuracy(cm)):
        assert math.isnan(value) or 0 <= value <= 1
    if cm.sum() > 0:  # with at least one labelled pixel every summary is defined
        assert not math.isnan(mean_iou(cm)) and not math.isnan(pixel_accuracy(cm))


@FAST
@given(labelled(), st.randoms(use_true_random=False))
def test_relabelling_the_classes_permutes_iou_and_keeps_the_means(case, random):
    pred, target, c = case
    order = list(range(c))
    random.shuffle(order)
    perm = torch.tensor(order + [c])  # the same relabelling for prediction and target; void stays void
    cm = confusion_matrix(pred, target, c, ignore_index=c)
    cm2 = confusion_matrix(perm[pred], perm[target], c, ignore_index=c)
    iou, iou2 = iou_per_class(cm), iou_per_class(cm2)
    for k in range(c):
        assert _same(float(iou[k]), float(iou2[order[k]]))
    assert _same(mean_iou(cm), mean_iou(cm2))
    assert _same(pixel_accuracy(cm), pixel_accuracy(cm2))
    assert _same(mean_class_accuracy(cm), mean_class_accuracy(cm2))


@FAST
@given(labelled())
def test_a_perfect_prediction_scores_1(case):
    _, target, c = case
    perfect = torch.where(target == c, 0, target)  # anything at void pixels: they do not count
    cm = confusion_matrix(perfect, target, c, ignore_index=c)
    if cm.sum() == 0:
        assert math.isnan(pixel_accuracy(cm)) and math.isnan(mean_iou(cm))
        return
    assert mean_iou(cm) == 1.0 and pixel_accuracy(cm) == 1.0 and mean_class_accuracy(cm) == 1.0
    present = torch.unique(target[target != c])
    assert torch.all(iou_per_class(cm)[present] == 1.0)
    assert torch.isnan(iou_per_class(cm)[[k for k in range(c) if k not in present.tolist()]]).all()


@FAST
@given(labelled(), st.integers(0, 2**32 - 1))
def test_predictions_at_void_pixels_change_nothing(case, seed):
    pred, target, c = case
    other = pred.clone()
    void = target == c
    other[void] = torch.from_numpy(np.random.default_rng(seed).integers(0, c, int(void.sum())))
    assert torch.equal(confusion_matrix(pred, target, c, ignore_index=c),
                       confusion_matrix(other, target, c, ignore_index=c))


@FAST
@given(labelled(), st.integers(1, 4))
def test_streaming_in_batches_equals_one_pass(case, parts):
    pred, target, c = case
    meter = ConfusionMatrix(c, ignore_index=c)
    for p, t in zip(pred.chunk(parts), target.chunk(parts)):
        meter.update(p, t)
    assert torch.equal(meter.matrix, confusion_matrix(pred, target, c, ignore_index=c))
    meter.reset()
    assert int(meter.matrix.sum()) == 0


# --------------------------------------------------------------------------- cases by hand

def test_a_2x3_example_computed_by_hand():
    # void = 3. Counted pixels (true, predicted): (0,0) (0,1) (1,1) (1,1) (2,2); the void pixel is skipped.
    target = torch.tensor([[0, 0, 1], [1, 2, 3]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    cm = confusion_matrix(pred, target, 3, ignore_index=3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    # IoU: class 0 = 1 / (1 + 0 FP + 1 FN); class 1 = 2 / (2 + 1 FP + 0 FN); class 2 = 1 / 1
    assert iou_per_class(cm).tolist() == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert mean_iou(cm) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)          # 13/18
    assert pixel_accuracy(cm) == pytest.approx(4 / 5)
    assert mean_class_accuracy(cm) == pytest.approx((1 / 2 + 1 + 1) / 3)   # recall per class
    assert dice_per_class(cm).tolist() == pytest.approx([2 / 3, 4 / 5, 1.0])
    result = scores(cm, ["a", "b", "c"])
    assert result["pixels"] == 5 and result["iou"]["b"] == pytest.approx(2 / 3)


def test_a_class_absent_everywhere_is_left_out_of_the_mean():
    target = torch.tensor([[0, 0], [1, 1]])
    pred = torch.tensor([[0, 1], [1, 1]])
    cm = confusion_matrix(pred, target, 4)  # classes 2 and 3 appear nowhere
    iou = iou_per_class(cm)
    assert iou[:2].tolist() == pytest.approx([1 / 2, 2 / 3]) and torch.isnan(iou[2:]).all()
    assert mean_iou(cm) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert scores(cm)["iou"]["3"] is None  # JSON-friendly: null, not NaN


def test_a_class_only_predicted_scores_0_and_counts():
    target = torch.tensor([0, 0, 0, 0])
    pred = torch.tensor([0, 0, 0, 1])
    cm = confusion_matrix(pred, target, 2)
    assert iou_per_class(cm).tolist() == pytest.approx([3 / 4, 0.0])
    assert mean_iou(cm) == pytest.approx(3 / 8)   # a false alarm of a class costs IoU
    assert math.isnan(float(recall_per_class(cm)[1]))


def test_all_void_has_no_score():
    target = torch.full((2, 3), 11)
    cm = confusion_matrix(torch.zeros(2, 3, dtype=torch.long), target, 11, ignore_index=11)
    assert int(cm.sum()) == 0
    assert math.isnan(pixel_accuracy(cm)) and math.isnan(mean_iou(cm))


def test_shape_mismatch_and_bad_predictions_are_errors():
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="class indices"):
        confusion_matrix(torch.tensor([0, 5]), torch.tensor([0, 1]), 2)
