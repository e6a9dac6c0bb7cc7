"""The traditional baselines on synthetic data: fast, offline, and with known answers."""
import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("skimage")

from seglab.baselines import (FEATURE_NAMES, SuperpixelBaseline, remove_small_components,  # noqa: E402
                              superpixel_features, superpixel_targets, threshold_baseline)
from seglab.data import CamVid, ISBIEM  # noqa: E402
from seglab.metrics import ConfusionMatrix  # noqa: E402


def _scene(rng, h=48, w=64):
    """Sky (grey, top), road (purple, bottom), one car (dark blue box): trivially separable
    by colour and position, with a little noise."""
    label = np.zeros((h, w), np.uint8)
    label[h // 2:] = 3
    top, left = rng.integers(h // 2 - 8, h // 2 + 4), rng.integers(0, w - 20)
    label[top:top + 12, left:left + 20] = 8
    label[0, :] = 11  # a void row
    colours = np.array([(128, 128, 128)] + [(0, 0, 0)] * 2 + [(128, 64, 128)] + [(0, 0, 0)] * 4
                       + [(20, 20, 160)] + [(0, 0, 0)] * 3, np.float32)
    image = colours[label] + rng.normal(0, 6, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def test_features_shape_and_names():
    rng = np.random.default_rng(0)
    image, _ = _scene(rng)
    segments = np.arange(48 * 64).reshape(48, 64) // 64 // 8  # 6 horizontal bands
    feats = superpixel_features(image, segments)
    assert feats.shape == (6, len(FEATURE_NAMES))
    assert feats.dtype == np.float32 and np.isfinite(feats).all()
    cy = FEATURE_NAMES.index("centroid y")
    assert np.all(np.diff(feats[:, cy]) > 0)           # bands go down the image
    area = FEATURE_NAMES.index("area")
    assert feats[:, area].sum() == pytest.approx(1.0)


def test_targets_majority_and_void():
    segments = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    mask = np.array([[3, 3, 11, 11], [3, 8, 11, 2]])
    assert superpixel_targets(segments, mask, 11, 11).tolist() == [3, -1]   # void majority -> skipped


def test_superpixel_baseline_learns_a_separable_scene():
    rng = np.random.default_rng(1)
    train = [_scene(rng) for _ in range(8)]
    test = [_scene(rng) for _ in range(3)]
    model = SuperpixelBaseline(n_segments=60, work_size=(48, 64), n_estimators=20, n_jobs=1)
    model.fit([torch.from_numpy(i).permute(2, 0, 1) for i, _ in train], [torch.from_numpy(m) for _, m in train])
    cm = ConfusionMatrix(11, 11)
    for image, mask in test:
        pred = model.predict(image)
        assert pred.shape == mask.shape and pred.dtype == np.uint8
        assert set(np.unique(pred)) <= {0, 3, 8}
        cm.update(torch.from_numpy(pred), torch.from_numpy(mask))
    s = cm.compute()
    assert s["pixel_accuracy"] > 0.9
    assert s["miou"] > 0.7                       # chance with 3 classes is far below


def test_superpixel_baseline_upsamples_to_the_requested_size(synthetic_camvid):
    train = CamVid(synthetic_camvid, "train", progress=False)
    test = CamVid(synthetic_camvid, "test", progress=False)
    model = SuperpixelBaseline(n_segments=40, work_size=(30, 40), n_estimators=10, n_jobs=1)
    model.fit(train.images, train.masks)
    preds = model.predict_many(test.images)
    assert preds.shape == tuple(test.masks.shape) and preds.dtype == np.uint8
    assert preds.max() < 11                       # never predicts void
    big = model.predict(test.images[0], size=(120, 160))
    assert big.shape == (120, 160)
    cm = ConfusionMatrix(11, 11)
    cm.update(torch.from_numpy(preds), test.masks)
    assert cm.compute()["pixel_accuracy"] > 0.5   # sky/road scenes: well above 1/11
    assert "trained on" in repr(model)


def test_predict_before_fit_says_what_to_do():
    with pytest.raises(RuntimeError, match="fit"):
        SuperpixelBaseline().predict(np.zeros((10, 10, 3), np.uint8))


def _membrane_image(rng, size=96):
    """Bright cells separated by a dark grid of 3-pixel membranes, with noise."""
    label = np.zeros((size, size), np.uint8)
    for k in range(0, size, 24):
        label[k:k + 3, :] = 1
        label[:, k:k + 3] = 1
    image = np.where(label == 1, 60, 190) + rng.normal(0, 15, label.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


@pytest.mark.parametrize("method", ["otsu", "adaptive"])
def test_threshold_baseline_finds_dark_membranes(method):
    image, label = _membrane_image(np.random.default_rng(2))
    pred = threshold_baseline(image, method=method, offset=0.02)
    assert pred.shape == label.shape and pred.dtype == np.uint8
    assert set(np.unique(pred)) <= {0, 1}
    tp = ((pred == 1) & (label == 1)).sum()
    iou = tp / ((pred == 1) | (label == 1)).sum()
    assert iou > 0.6
    assert (pred == label).mean() > 0.9


def test_threshold_baseline_on_synthetic_isbi(synthetic_isbi):
    data = ISBIEM(synthetic_isbi, "test", progress=False)
    pred = threshold_baseline(data.images[0], min_size=8)      # [1, H, W] uint8 is accepted
    label = data.masks[0].numpy()
    assert pred.shape == label.shape
    assert (pred == label).mean() > 0.8


def test_threshold_baseline_rejects_bad_arguments():
    image = np.zeros((16, 16), np.uint8)
    with pytest.raises(ValueError, match="method"):
        threshold_baseline(image, method="magic")
    with pytest.raises(ValueError, match="odd"):
        threshold_baseline(image, method="adaptive", block_size=10)
    with pytest.raises(ValueError, match="grayscale"):
        threshold_baseline(np.zeros((16, 16, 3), np.uint8))


def test_remove_small_components():
    mask = np.zeros((10, 10), bool)
    mask[0, 0] = True                  # a speck
    mask[5:9, 5:9] = True              # a block of 16
    out = remove_small_components(mask, 5)
    assert not out[0, 0] and out[5:9, 5:9].all()


def test_superpixels_follow_colour_edges():
    """SLIC must follow a sharp diagonal colour edge (a regular grid would cut across it):
    almost every pixel shares the majority side of its superpixel."""
    h, w = 60, 80
    yy, xx = np.mgrid[:h, :w]
    side = (yy * 4 > xx * 3 + 10).astype(np.int64)
    image = np.where(side[..., None] == 1, [40, 40, 40], [200, 180, 60]).astype(np.uint8)
    _, _, segments = SuperpixelBaseline(n_segments=40, work_size=(h, w)).segment(image)
    votes = np.bincount(segments.ravel() * 2 + side.ravel(), minlength=2 * (segments.max() + 1)).reshape(-1, 2)
    purity = votes.max(1).sum() / side.size
    assert purity > 0.99
