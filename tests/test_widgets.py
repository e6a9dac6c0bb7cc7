"""seglab.widgets: the viewers, driven from Python the way a reader drives them in the browser."""
from __future__ import annotations

import importlib.util
import io
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import tv_tensors  # noqa: E402

pytest.importorskip("ipywidgets")
from seglab import viz, widgets  # noqa: E402
from seglab.datasets import CAMVID  # noqa: E402

VOID, ROAD, CAR, SKY = CAMVID.ignore_index, 3, 8, 0
H, W = 18, 24
GAP = widgets.GAP


class FakeDataset:
    """A stand-in SegmentationDataset: uint8 images and masks in memory, distinct per index."""

    def __init__(self, n: int = 4, h: int = H, w: int = W):
        g = torch.Generator().manual_seed(0)
        self.spec = CAMVID
        self.images = torch.randint(40, 256, (n, 3, h, w), dtype=torch.uint8, generator=g)
        self.masks = torch.full((n, h, w), ROAD, dtype=torch.uint8)
        for i in range(n):
            self.masks[i, : h // 3] = SKY
            self.masks[i, h // 2:, 2 * i: 2 * i + 5] = CAR
        self.masks[:, -1] = VOID
        self.names = [f"frame_{i:03d}.png" for i in range(n)]

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        return tv_tensors.Image(self.images[i]), tv_tensors.Mask(self.masks[i])


class OnlyGetItem:
    """A dataset without cached tensors whose items are normalised floats (after transforms)."""

    def __init__(self, base: FakeDataset):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        image, mask = self.base[i]
        mean = torch.tensor(CAMVID.mean)[:, None, None]
        std = torch.tensor(CAMVID.std)[:, None, None]
        return (image.float() / 255 - mean) / std, mask.long()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def dataset():
    return FakeDataset()


def picture(viewer) -> np.ndarray:
    """The PNG on screen, decoded."""
    return np.array(Image.open(io.BytesIO(viewer.image.value)).convert("RGB"))


def panels(viewer) -> list[np.ndarray]:
    """The PNG split back into its panels (each W wide, GAP pixels apart)."""
    pic = picture(viewer)
    count = (pic.shape[1] + GAP) // (W + GAP)
    return [pic[:, k * (W + GAP): k * (W + GAP) + W] for k in range(count)]


def plain(dataset, i: int) -> np.ndarray:
    return dataset.images[i].permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- DatasetBrowser

def test_browser_has_labelled_controls_and_css_classes_for_browser_tests(dataset):
    b = widgets.DatasetBrowser(dataset)
    assert (b.index.min, b.index.max, b.index.value) == (0, len(dataset) - 1, 0)
    assert (b.opacity.min, b.opacity.max) == (0.0, 1.0)
    assert [b.index.description, b.opacity.description, b.highlight.description] == ["Image", "Opacity", "Highlight"]
    assert [label for label, _ in b.highlight.options] == ["All classes"] + list(CAMVID.class_names)
    assert "seglab-dataset-browser" in b.widget._dom_classes
    assert "seglab-image" in b.image._dom_classes
    assert b.image.format == "png" and bytes(b.image.value).startswith(b"\x89PNG")


def test_browser_shows_the_image_beside_its_labels(dataset):
    b = widgets.DatasetBrowser(dataset, opacity=0.5)
    left, right = panels(b)
    assert np.array_equal(left, plain(dataset, 0))
    assert np.array_equal(right, viz.overlay(dataset.images[0], dataset.masks[0], CAMVID, 0.5))


def test_moving_the_index_slider_changes_the_picture(dataset):
    b = widgets.DatasetBrowser(dataset)
    first = b.image.value
    b.index.value = 2                     # what the slider does in the browser
    assert b.image.value != first
    assert np.array_equal(panels(b)[0], plain(dataset, 2))
    assert "frame_002.png" in b.info.value
    b.show(0)
    assert b.image.value == first


def test_opacity_zero_shows_the_plain_image(dataset):
    b = widgets.DatasetBrowser(dataset).set_opacity(0.0)
    left, right = panels(b)
    assert np.array_equal(right, left)


def test_opacity_one_shows_the_colour_mask(dataset):
    b = widgets.DatasetBrowser(dataset)
    b.opacity.value = 1.0
    assert np.array_equal(panels(b)[1], viz.colorize(dataset.masks[0], CAMVID))


def test_highlight_dims_other_classes(dataset):
    b = widgets.DatasetBrowser(dataset, opacity=0.5)
    normal = panels(b)[1]
    b.set_highlight("Car")
    assert b.highlight.value == CAR
    shown = panels(b)[1]
    car = dataset.masks[0].numpy() == CAR
    assert np.array_equal(shown[car], normal[car])
    others = shown[~car].astype(int)
    assert (others[:, 0] == others[:, 1]).all() and (others[:, 1] == others[:, 2]).all()
    assert others.mean() < normal[~car].mean() * 0.6
    b.set_highlight(None)
    assert np.array_equal(panels(b)[1], normal)


def test_info_line_names_the_file_and_the_classes_present_with_their_shares(dataset):
    b = widgets.DatasetBrowser(dataset)
    shares = viz.class_shares(dataset.masks[0], CAMVID)
    assert "frame_000.png" in b.info.value
    for name, share in shares.items():
        assert f"{name} {share:.1%}" in b.info.value
    assert "Pedestrian" not in b.info.value          # absent classes are not listed


def test_browser_works_on_a_dataset_without_cached_tensors(dataset):
    b = widgets.DatasetBrowser(OnlyGetItem(dataset), spec="camvid")
    left = panels(b)[0].astype(int)
    assert np.abs(left - plain(dataset, 0)).max() <= 1     # normalisation undone with the spec's stats
    assert "image 0" in b.info.value


def test_browser_needs_a_spec_when_the_dataset_has_none(dataset):
    with pytest.raises(ValueError, match="spec"):
        widgets.DatasetBrowser(OnlyGetItem(dataset))


# --------------------------------------------------------------------------- ComparisonViewer

@pytest.fixture
def comparison(dataset):
    labels = dataset.masks.long()
    preds = labels.clone()
    preds[labels == VOID] = SKY          # predictions on void pixels are never wrong
    preds[:, 0, :5] = CAR                # 5 wrong pixels per image
    return widgets.ComparisonViewer(dataset.images, labels, preds, CAMVID, names=dataset.names), labels, preds


def test_comparison_viewer_has_labelled_controls_and_css_classes(comparison):
    viewer, labels, _ = comparison
    assert viewer.index.max == len(labels) - 1
    assert viewer.show_errors.description == "Show errors"
    assert "seglab-comparison-viewer" in viewer.widget._dom_classes
    assert "seglab-image" in viewer.image._dom_classes


def test_comparison_shows_image_label_prediction_and_errors(comparison, dataset):
    viewer, labels, preds = comparison
    image, label, pred, errors = panels(viewer)
    assert np.array_equal(image, plain(dataset, 0))
    assert np.array_equal(label, viz.colorize(labels[0], CAMVID))    # opacity 1: pure class colours
    assert np.array_equal(pred, viz.colorize(preds[0], CAMVID))


def test_error_toggle_marks_only_wrong_pixels(comparison):
    viewer, labels, preds = comparison
    errors = panels(viewer)[3]
    red = (errors == viz.ERROR_COLOUR).all(-1)
    wrong = ((labels[0] != preds[0]) & (labels[0] != VOID)).numpy()
    assert wrong.sum() == 5 and np.array_equal(red, wrong)
    assert (errors[labels[0].numpy() == VOID] == viz.VOID_GREY).all()
    viewer.set_show_errors(False)
    assert len(panels(viewer)) == 3
    viewer.show_errors.value = True
    assert len(panels(viewer)) == 4


def test_comparison_shows_the_scores_of_the_current_image(comparison):
    viewer, labels, _ = comparison
    labelled = int((labels[1] != VOID).sum())
    viewer.show(1)
    assert "frame_001.png" in viewer.info.value
    assert f"pixel accuracy {(labelled - 5) / labelled:.1%}" in viewer.info.value
    assert f"mIoU {viewer.image_scores(1)['miou']:.3f}" in viewer.info.value


def test_comparison_accepts_logits_and_given_scores(dataset):
    labels = dataset.masks.long()
    logits = torch.nn.functional.one_hot(labels.clamp(max=10), 11).permute(0, 3, 1, 2).float()
    viewer = widgets.ComparisonViewer(dataset.images, labels, logits, "camvid",
                                      scores=[{"miou": 0.123}, 0.5, 0.5, 0.5])
    assert "mIoU 0.123" in viewer.info.value and "pixel accuracy 100.0%" in viewer.info.value
    assert not (panels(viewer)[3] == viz.ERROR_COLOUR).all(-1).any()


def test_comparison_highlight_dims_other_classes_in_label_and_prediction(comparison):
    viewer, labels, _ = comparison
    viewer.set_highlight(CAR)
    label_panel = panels(viewer)[1]
    car = labels[0].numpy() == CAR
    assert (label_panel[car] == CAMVID.palette[CAR]).all()
    assert label_panel[~car].max() < 100


def test_comparison_rejects_inputs_of_different_lengths(dataset):
    with pytest.raises(ValueError, match="same length"):
        widgets.ComparisonViewer(dataset.images, dataset.masks, dataset.masks[:2], CAMVID)


# --------------------------------------------------------------------------- shared behaviour

def test_viewers_display_through_their_widget(dataset, comparison):
    for viewer in (widgets.DatasetBrowser(dataset), comparison[0]):
        bundle = viewer._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == viewer.widget.model_id


def test_static_preview_shows_the_same_pictures_for_readers_without_widgets(dataset, comparison):
    b = widgets.DatasetBrowser(dataset)
    fig = widgets.static_preview(b, indices=[1, 3])
    assert isinstance(fig, Figure)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 and "frame_003.png" in shown[1].get_title()
    assert np.array_equal(shown[0].images[0].get_array(), b.render(1))
    assert fig.legends
    fig2 = comparison[0].static_preview(n=2)
    assert len([ax for ax in fig2.axes if ax.images]) == 2 and "pixel accuracy" in fig2.axes[0].get_title()


def test_an_update_at_camvid_size_is_fast():
    # Photo-like content (smooth shading, a little noise, large regions), as PNG speed
    # depends on it: pure noise is a worst case no real image comes near.
    n, h, w = 2, 360, 480
    g = torch.Generator().manual_seed(1)
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    shade = torch.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)])
    images = (shade[None] + torch.randint(0, 12, (n, 3, h, w), generator=g)).clamp(max=255).to(torch.uint8)
    labels = ((y // 40 + x // 60) % 12).to(torch.uint8).expand(n, h, w).clone()
    preds = labels.long().clamp(max=10)
    preds[:, 100:160, 200:300] = ROAD
    viewer = widgets.ComparisonViewer(images, labels, preds, CAMVID)
    viewer.set_highlight("Road")
    times = []
    for i in (1, 0, 1, 0):
        # CPU time, not wall time: on a shared machine the wall clock measures the neighbours.
        start = time.process_time()
        viewer.show(i)
        times.append(time.process_time() - start)
    assert min(times) < 0.3, times


def _load_copy(module: str, name: str):
    """Execute seglab/<module>.py afresh as seglab.<name> (the package stays imported)."""
    path = Path(widgets.__file__).with_name(f"{module}.py")
    spec = importlib.util.spec_from_file_location(f"seglab.{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_seglab_imports_without_ipywidgets(monkeypatch, dataset):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)    # import ipywidgets now fails
    viz_copy = _load_copy("viz", "_viz_without_widgets")
    assert viz_copy.colorize(np.zeros((1, 1), np.uint8), CAMVID).shape == (1, 1, 3)
    widgets_copy = _load_copy("widgets", "_widgets_without_widgets")
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        widgets_copy.DatasetBrowser(dataset)
