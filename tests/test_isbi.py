"""ISBI 2012 EM membranes (notebook 07): the fixed split, the label mapping, one-channel
training, augmentation that keeps image and label aligned, and overlap-tile prediction
that is exact when the receptive field fits in the overlap.

Everything runs on the synthetic look-alike (``make_synthetic_isbi``: 30 small PNGs in the
real layout) except the last test, which checks the real files when they are present.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from seglab import ISBI_EM, ISBIEM, TrainConfig, UNet, fit
from seglab.data import read_label
from seglab.predict import predict_tiled
from seglab.transforms import train_transforms

SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- data

def test_split_is_20_5_5_disjoint_and_covers_all_30_sections(synthetic_isbi):
    members = {s: ISBIEM(synthetic_isbi, s, progress=False).names for s in SPLITS}
    names = {s: set(members[s]) for s in SPLITS}
    assert [len(members[s]) for s in SPLITS] == [20, 5, 5]
    assert names["train"].isdisjoint(names["val"])
    assert names["train"].isdisjoint(names["test"])
    assert names["val"].isdisjoint(names["test"])
    assert set().union(*names.values()) == {f"{i}.png" for i in range(30)}


def test_held_out_sections_are_every_sixth_so_they_span_the_stack():
    index = {s: sorted(int(n.removesuffix(".png")) for n in ISBI_EM.split_members[s]) for s in SPLITS}
    assert index["val"] == [4, 10, 16, 22, 28]
    assert index["test"] == [5, 11, 17, 23, 29]
    for s in ("val", "test"):
        assert all(b - a == 6 for a, b in zip(index[s], index[s][1:]))


def test_label_0_is_membrane_class_1_and_255_is_interior_class_0(synthetic_isbi):
    path = synthetic_isbi / "label" / "0.png"
    raw = np.asarray(Image.open(path))
    assert set(np.unique(raw)) == {0, 255}
    mask = read_label(path, ISBI_EM).numpy()
    assert ISBI_EM.class_names[1] == "Membrane"
    assert (mask[raw == 0] == 1).all()
    assert (mask[raw == 255] == 0).all()
    data = ISBIEM(synthetic_isbi, "train", progress=False)
    assert data.masks.dtype == torch.uint8 and set(data.masks.unique().tolist()) == {0, 1}
    assert tuple(data.images.shape[1:2]) == (1,)   # one input channel


def test_augmentation_keeps_image_and_label_aligned():
    """Paint the label into the image (membrane dark, interior bright), augment both with
    the EM recipe's geometry (rotation, elastic warp, flips, crop) and check that the
    warped image still says what the warped label says, pixel for pixel."""
    torch.manual_seed(0)
    label = torch.zeros(96, 96, dtype=torch.uint8)
    label[::12, :] = 1
    label[:, 5::16] = 1
    label[30:50, 40:70] = 1
    from torchvision import tv_tensors
    image = tv_tensors.Image((230 - 200 * label)[None].to(torch.uint8))   # membrane 30, interior 230
    transform = train_transforms(ISBI_EM, crop_size=(80, 80), scale=(1.0, 1.0), hflip=True, vflip=True,
                                 rotate=90.0, elastic=10.0, color_jitter=0.0)
    for _ in range(5):
        x, y = transform(image, tv_tensors.Mask(label))
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (1, 80, 80)
        raw = x[0] * ISBI_EM.std[0] + ISBI_EM.mean[0]          # back to [0, 1]
        filled = raw < 15 / 255                                 # outside the rotated image: fill, not data
        looks_like_membrane = raw < 130 / 255
        agree = (looks_like_membrane == (y == 1))[~filled].float().mean().item()
        assert agree > 0.95, agree   # only pixels on interpolated edges may disagree


# --------------------------------------------------------------------------- training

def test_one_channel_unet_trains_a_few_steps(synthetic_isbi, tmp_path):
    config = TrainConfig(dataset="isbi-em", root=str(synthetic_isbi), size=(64, 64), crop=(48, 48), scale=(1.0, 1.0),
                         width=4, depth=2, batch_size=4, max_steps=3, epochs=1, rotate=90.0, vflip=True,
                         elastic=10.0, color_jitter=0.1, loss="ce+dice", out_dir=str(tmp_path / "run"),
                         progress=False, workers=0)
    before = UNet(1, 2, width=4, depth=2)
    torch.manual_seed(0)
    run = fit(config)
    assert run.model.config["in_channels"] == 1 and run.model.config["num_classes"] == 2
    assert run.history[-1]["step"] == 3
    assert math.isfinite(run.history[-1]["train_loss"])
    assert 0.0 <= run.history[-1]["val_miou"] <= 1.0
    assert (tmp_path / "run" / "last.pt").is_file()
    with torch.no_grad():
        out = run.model.eval()(torch.zeros(2, 1, 64, 64))
    assert out.shape == (2, 2, 64, 64)
    assert sum(p.numel() for p in before.parameters()) == sum(p.numel() for p in run.model.parameters())


# --------------------------------------------------------------------------- overlap-tile prediction

def _eval_model(depth: int) -> UNet:
    """A small U-Net in eval mode whose BatchNorm layers hold non-trivial running
    statistics: in eval mode BatchNorm is a fixed per-channel affine map, so a pixel's
    output depends only on the input inside its receptive field, never on the batch."""
    torch.manual_seed(0)
    model = UNet(1, 2, width=4, depth=depth)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def receptive_radius(model: torch.nn.Module, size: int = 96) -> int:
    """How far (in pixels) an input pixel can influence an output pixel: the largest
    distance from the centre at which the gradient of the centre output is non-zero, over a
    batch of random images (in one image a ReLU at zero may cut some paths)."""
    torch.manual_seed(2)
    x = torch.randn(4, 1, size, size, requires_grad=True)
    model(x)[:, :, size // 2, size // 2].sum().backward()
    rows, cols = torch.nonzero(x.grad.abs().sum((0, 1)) > 0, as_tuple=True)
    return int(max((rows - size // 2).abs().max(), (cols - size // 2).abs().max()))


def test_receptive_radius_grows_with_depth():
    r1, r2 = receptive_radius(_eval_model(1)), receptive_radius(_eval_model(2))
    assert 4 < r1 < r2 < 64


def test_overlap_tile_equals_whole_image_when_the_receptive_field_fits_in_the_overlap():
    model = _eval_model(depth=2)
    radius = receptive_radius(model)
    overlap = 4 * math.ceil(radius / 4)          # >= radius, and keeps tiles a multiple of 2**depth
    assert overlap >= radius
    torch.manual_seed(1)
    image = torch.randn(1, 96, 128)
    with torch.no_grad():
        tiled = predict_tiled(model, image, tile=32, overlap=overlap, batch_size=3)
        # the same mirrored border, predicted in one piece
        padded = F.pad(image[None], [overlap] * 4, mode="reflect")
        whole_mirrored = model(padded)[0, :, overlap:overlap + 96, overlap:overlap + 128]
        whole_plain = model(image[None])[0]
    assert tiled.shape == (2, 96, 128)
    torch.testing.assert_close(tiled, whole_mirrored, atol=1e-5, rtol=1e-5)
    # away from the image border (where the plain prediction sees zero padding instead of a
    # mirror image) tiles also equal the plain whole-image prediction
    inner = (slice(None), slice(radius, 96 - radius), slice(radius, 128 - radius))
    torch.testing.assert_close(tiled[inner], whole_plain[inner], atol=1e-5, rtol=1e-5)


def test_overlap_smaller_than_the_receptive_field_leaves_seams():
    """The converse, so the test above cannot pass by accident: with too little overlap
    the pixels next to tile borders lack context and their logits change."""
    model = _eval_model(depth=2)
    torch.manual_seed(1)
    image = torch.randn(1, 96, 128)
    with torch.no_grad():
        tiled = predict_tiled(model, image, tile=32, overlap=4)
        padded = F.pad(image[None], [4] * 4, mode="reflect")
        whole = model(padded)[0, :, 4:100, 4:132]
    assert (tiled - whole).abs().max() > 1e-4   # ten times the tolerance the exact case meets


def test_overlap_tile_handles_sizes_that_are_not_a_multiple_of_the_tile():
    model = _eval_model(depth=2)
    with torch.no_grad():
        out = predict_tiled(model, torch.randn(1, 70, 45), tile=32, overlap=16)
    assert out.shape == (2, 70, 45) and torch.isfinite(out).all()


# --------------------------------------------------------------------------- the real files

@pytest.mark.realdata
def test_real_isbi_loads_30_sections_of_512x512_with_15_to_30_percent_membrane(real_isbi):
    parts = [ISBIEM(real_isbi, s, progress=False) for s in SPLITS]
    assert [len(p) for p in parts] == [20, 5, 5]
    images = torch.cat([p.images for p in parts])
    masks = torch.cat([p.masks for p in parts])
    assert images.shape == (30, 1, 512, 512) and images.dtype == torch.uint8
    assert masks.shape == (30, 512, 512)
    share = masks.float().mean().item()
    assert 0.15 <= share <= 0.30, share
    # every section has both classes, and membrane is the darker one
    assert all(set(m.unique().tolist()) == {0, 1} for m in masks)
    assert images[:, 0][masks == 1].float().mean() < images[:, 0][masks == 0].float().mean()
