"""Per-image scores, object sizes, contacts, confusions and priors on hand-made arrays."""
import math

import numpy as np
import pytest
import torch

pytest.importorskip("scipy")

from seglab.analysis import (ObjectRecord, format_table, object_records, per_image_scores,  # noqa: E402
                             pixel_prior, predict_split, predict_split_offsets, size_table, split_by_contact,
                             top_confusions)
from seglab.data import CamVid  # noqa: E402
from seglab.models import UNet  # noqa: E402
from seglab.transforms import eval_transforms  # noqa: E402


def _pair():
    label = np.full((20, 20), 3, np.uint8)       # road
    label[2:4, 2:4] = 2                          # a 4-pixel pole
    label[10:20, 5:9] = 9                        # a 40-pixel pedestrian ...
    label[10:20, 9:15] = 8                       # ... next to a car
    label[0, :] = 11                             # void
    pred = label.copy()
    pred[label == 11] = 3
    pred[2:4, 2:4] = 3                           # the pole is missed
    pred[10:15, 5:9] = 9
    pred[15:20, 5:9] = 8                         # half the pedestrian is called car
    return pred, label


def test_object_records_area_recall_and_contact():
    pred, label = _pair()
    recs = object_records(pred[None], label[None], [2, 9])
    by_cls = {r.cls: r for r in recs}
    assert by_cls[2].area == 4 and by_cls[2].recall == 0.0
    assert by_cls[9].area == 40 and by_cls[9].recall == 0.5
    assert by_cls[9].bbox == (10, 5, 20, 9)
    assert 8 in by_cls[9].touches and 3 in by_cls[9].touches
    assert by_cls[2].touches == frozenset({3})


def test_size_table_bins_and_contact_split():
    pred, label = _pair()
    recs = object_records(pred[None], label[None], [2, 9])
    rows = size_table(recs, bins=(0, 10, 100))
    assert [(r["class"], r["area (px)"], r["objects"]) for r in rows] == [
        ("Pole", "0-9", 1), ("Pole", "10-99", 0), ("Pedestrian", "0-9", 0), ("Pedestrian", "10-99", 1)]
    assert rows[0]["pixel recall"] == 0.0 and rows[3]["pixel recall"] == 0.5
    assert math.isnan(rows[1]["pixel recall"])
    split = split_by_contact(recs, 9, [8])
    assert split["touching"]["objects"] == 1 and split["not touching"]["objects"] == 0


def test_per_image_scores_and_top_confusions():
    pred, label = _pair()
    s = per_image_scores(np.stack([label, pred]), np.stack([label, label]))
    assert s[0]["pixel_accuracy"] == 1.0 and s[0]["miou"] == 1.0
    assert s[1]["pixel_accuracy"] < 1.0 and s[1]["pixels"] == 380
    cm = np.zeros((3, 3), int)
    cm[0] = [90, 10, 0]
    cm[1] = [0, 50, 50]
    cm[2] = [0, 0, 7]
    top = top_confusions(cm, ["a", "b", "c"], k=5)
    assert [(t["true"], t["predicted"]) for t in top] == [("b", "c"), ("a", "b")]
    assert top[0]["share of true"] == 0.5 and top[0]["pixels"] == 50


def test_pixel_prior():
    masks = torch.zeros(3, 4, 4, dtype=torch.uint8)
    masks[:, 2:] = 3
    masks[0, 3, 3] = 11                           # void never wins
    prior = pixel_prior(masks)
    assert prior.dtype == torch.uint8 and prior[0, 0] == 0 and prior[3, 3] == 3


def test_format_table():
    text = format_table([{"name": "Road", "iou": 0.9}, {"name": "Pole", "iou": float("nan")}])
    lines = text.splitlines()
    assert lines[0].split() == ["name", "iou"] and "n/a" in lines[3] and "0.900" in lines[2]


def test_predict_split_matches_the_labels_size(synthetic_camvid):
    data = CamVid(synthetic_camvid, "test", transform=eval_transforms("camvid"), progress=False)
    model = UNet(3, 11, width=4, depth=2)
    preds = predict_split(model, data, work_size=(32, 40), batch_size=2)
    assert preds.shape == data.masks.shape and preds.dtype == torch.uint8 and preds.max() < 11


def test_record_is_plain_data():
    r = ObjectRecord(0, 2, 10, 0.5, (0, 0, 2, 5), frozenset({3}))
    assert r.area == 10 and 3 in r.touches


def test_predict_split_scores_equal_evaluate(synthetic_camvid):
    """Scoring the kept class maps gives exactly what seglab.evaluate reports."""
    from seglab.evaluation import evaluate
    from seglab.metrics import ConfusionMatrix

    data = CamVid(synthetic_camvid, "test", transform=eval_transforms("camvid"), progress=False)
    torch.manual_seed(0)
    model = UNet(3, 11, width=4, depth=2).eval()
    preds = predict_split(model, data, work_size=(32, 40), batch_size=3, fast=False)
    cm = ConfusionMatrix(11, 11)
    cm.update(preds, data.masks)
    reference = evaluate(model, data, 11, 11, work_size=(32, 40), batch_size=2)
    assert cm.matrix.tolist() == reference["confusion"]


def test_predict_split_with_flip_scores_equal_evaluate_with_flip(synthetic_camvid):
    from seglab.evaluation import evaluate
    from seglab.metrics import ConfusionMatrix

    data = CamVid(synthetic_camvid, "test", transform=eval_transforms("camvid"), progress=False)
    torch.manual_seed(0)
    model = UNet(3, 11, width=4, depth=2).eval()
    preds = predict_split(model, data, work_size=(32, 40), batch_size=3, fast=False, flip=True)
    plain = predict_split(model, data, work_size=(32, 40), batch_size=3, fast=False)
    cm = ConfusionMatrix(11, 11)
    cm.update(preds, data.masks)
    assert cm.matrix.tolist() == evaluate(model, data, 11, 11, work_size=(32, 40), batch_size=2, flip=True)["confusion"]
    assert not torch.equal(preds, plain)  # an untrained model is not mirror-symmetric


def test_predict_split_with_scales_scores_equal_evaluate_with_the_same_scales(synthetic_camvid):
    from seglab.evaluation import evaluate
    from seglab.metrics import ConfusionMatrix

    data = CamVid(synthetic_camvid, "test", transform=eval_transforms("camvid"), progress=False)
    torch.manual_seed(0)
    model = UNet(3, 11, width=4, depth=2).eval()
    preds = predict_split(model, data, work_size=(32, 40), batch_size=3, fast=False, scales=(0.75, 1.0))
    cm = ConfusionMatrix(11, 11)
    cm.update(preds, data.masks)
    assert cm.matrix.tolist() == evaluate(model, data, 11, 11, work_size=(32, 40), batch_size=2,
                                          scales=(0.75, 1.0))["confusion"]
    assert not torch.equal(preds, predict_split(model, data, work_size=(32, 40), batch_size=3, fast=False))


def test_several_decision_rules_from_one_pass_match_models_with_the_offsets_in_their_bias(synthetic_camvid):
    """Logit offsets are constants: adding them after the pass decides as a model whose last
    bias holds them (what load_model(..., rebalance=s) builds), so one pass serves all shares."""
    import copy

    from seglab.losses import logit_offsets

    data = CamVid(synthetic_camvid, "test", transform=eval_transforms("camvid"), progress=False)
    torch.manual_seed(0)
    model = UNet(3, 11, width=4, depth=2).eval()
    weights = torch.rand(11) * 4 + 0.25
    offsets = {share: logit_offsets(weights, share) for share in (0.0, 0.5, 1.0)}
    maps = predict_split_offsets(model, data, offsets, work_size=(32, 40), batch_size=3, fast=False)
    for share, offset in offsets.items():
        shifted = copy.deepcopy(model)
        with torch.no_grad():
            shifted.head.bias += offset
        expected = predict_split(shifted, data, work_size=(32, 40), batch_size=3, fast=False)
        # the same up to float rounding at near-ties (a bias before the resize vs a constant after it)
        assert (maps[share] == expected).float().mean() > 0.999, share
    assert not torch.equal(maps[0.0], maps[1.0])    # the shares do decide differently


def test_decision_rules_at_several_scales_match_models_with_the_offsets_in_their_bias(synthetic_camvid):
    """With test-time scales, one pass per scale still serves every rule: each rule decides as
    the model whose last bias holds its offsets, predicted at the same scales."""
    import copy

    from seglab.losses import logit_offsets

    data = CamVid(synthetic_camvid, "test", transform=eval_transforms("camvid"), progress=False)
    torch.manual_seed(0)
    model = UNet(3, 11, width=4, depth=2).eval()
    weights = torch.rand(11) * 4 + 0.25
    offsets = {share: logit_offsets(weights, share) for share in (0.0, 1.0)}
    scales = (0.75, 1.0)
    maps = predict_split_offsets(model, data, offsets, work_size=(32, 40), batch_size=3, fast=False, scales=scales)
    for share, offset in offsets.items():
        shifted = copy.deepcopy(model)
        with torch.no_grad():
            shifted.head.bias += offset
        expected = predict_split(shifted, data, work_size=(32, 40), batch_size=3, fast=False, scales=scales)
        assert (maps[share] == expected).float().mean() > 0.999, share
    single = predict_split_offsets(model, data, offsets, work_size=(32, 40), batch_size=3, fast=False)
    assert not torch.equal(maps[0.0], single[0.0])   # the scales were used
    assert not torch.equal(maps[0.0], maps[1.0])


def test_plots_return_figures():
    import matplotlib.pyplot as plt

    from seglab.analysis import plot_iou_comparison, plot_size_recall

    fig = plot_iou_comparison({"a": {"Road": 0.9, "Pole": None}, "b": {"Road": 0.5, "Pole": 0.1}}, ["Road", "Pole"])
    assert fig.axes
    pred, label = _pair()
    rows = size_table(object_records(pred[None], label[None], [2, 9]), bins=(0, 10, 100))
    fig2 = plot_size_recall(rows, min_objects=1)
    assert len(fig2.axes[0].lines) == 2
    plt.close("all")


def test_bin_labels():
    from seglab.analysis import DEFAULT_BINS, bin_labels

    assert bin_labels((0, 100, 400)) == ["0-99", "100-399"]
    assert bin_labels(DEFAULT_BINS)[-1] == ">= 6400"
