"""seglab.viz: colours, image conversions and every plot, on small synthetic tensors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torchvision import tv_tensors  # noqa: E402

from seglab import viz  # noqa: E402
from seglab.datasets import CAMVID, ISBI_EM  # noqa: E402

VOID = CAMVID.ignore_index  # 11
ROAD, CAR, SKY = 3, 8, 0


class FakeDataset:
    """What the plots need from a SegmentationDataset, built in memory."""

    def __init__(self, n: int = 3, h: int = 12, w: int = 16, spec=CAMVID):
        g = torch.Generator().manual_seed(0)
        self.spec = spec
        self.images = torch.randint(0, 256, (n, spec.in_channels, h, w), dtype=torch.uint8, generator=g)
        self.masks = torch.full((n, h, w), ROAD % spec.num_classes, dtype=torch.uint8)
        for i in range(n):
            self.masks[i, : h // 3] = SKY
            self.masks[i, h // 2:, i: i + 4] = CAR % spec.num_classes
        if spec.ignore_index is not None:
            self.masks[:, -1, :] = spec.ignore_index
        self.names = [f"frame_{i:03d}.png" for i in range(n)]

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        return tv_tensors.Image(self.images[i]), tv_tensors.Mask(self.masks[i])


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def colour(index: int, spec=CAMVID) -> np.ndarray:
    return np.array(spec.palette[index], dtype=np.uint8)


# --------------------------------------------------------------------------- colours and conversions

def test_colorize_paints_each_class_in_its_palette_colour():
    mask = torch.tensor([[SKY, ROAD], [CAR, 10]])
    rgb = viz.colorize(mask, CAMVID)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    for (r, c), k in np.ndenumerate(mask.numpy()):
        assert (rgb[r, c] == colour(k)).all()


def test_colorize_paints_void_in_the_void_colour():
    # ISBI's void colour (magenta) is unlike its class colours, so a mistake would show.
    mask = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    rgb = viz.colorize(mask, ISBI_EM)
    void = colour(-1, ISBI_EM)
    assert (rgb[1, 0] == void).all() and (rgb[1, 1] == void).all()
    assert (rgb[0, 0] == colour(0, ISBI_EM)).all() and (rgb[0, 1] == colour(1, ISBI_EM)).all()


def test_colorize_paints_values_beyond_the_palette_and_negatives_as_void():
    mask = torch.tensor([[VOID, 12, 200, -1]], dtype=torch.int64)
    rgb = viz.colorize(mask, CAMVID.palette)
    assert (rgb == colour(VOID)).all()


def test_denormalize_undoes_normalize():
    x = torch.rand(3, 5, 7)
    mean, std = CAMVID.mean, CAMVID.std
    normalised = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    back = viz.denormalize(normalised, mean, std)
    assert back.shape == (5, 7, 3)
    np.testing.assert_allclose(back, x.permute(1, 2, 0).numpy(), atol=1e-5)


def test_to_display_accepts_torch_and_numpy_layouts():
    chw = torch.randint(0, 256, (3, 6, 8), dtype=torch.uint8)
    expected = chw.permute(1, 2, 0).numpy() / 255.0
    np.testing.assert_allclose(viz.to_display(chw), expected, atol=1e-6)
    np.testing.assert_allclose(viz.to_display(chw.permute(1, 2, 0).numpy()), expected, atol=1e-6)
    np.testing.assert_allclose(viz.to_display(chw[None]), expected, atol=1e-6)  # batch of one
    np.testing.assert_allclose(viz.to_display(tv_tensors.Image(chw)), expected, atol=1e-6)


def test_to_display_repeats_grayscale_to_three_channels():
    gray = torch.randint(0, 256, (1, 6, 8), dtype=torch.uint8)
    out = viz.to_display(gray)
    assert out.shape == (6, 8, 3)
    assert np.array_equal(out[..., 0], out[..., 2])
    assert viz.to_display(gray[0].float() / 255).shape == (6, 8, 3)


def test_to_display_denormalises_floats_with_given_stats_and_stretches_without():
    x = torch.rand(3, 4, 4)
    normalised = (x - 0.4) / 0.3
    np.testing.assert_allclose(viz.to_display(normalised, (0.4,) * 3, (0.3,) * 3),
                               x.permute(1, 2, 0).numpy(), atol=1e-5)
    stretched = viz.to_display(normalised)
    assert stretched.min() == pytest.approx(0.0) and stretched.max() == pytest.approx(1.0)


def test_legend_handles_list_every_class_and_void_with_palette_colours():
    handles = viz.legend_handles(CAMVID)
    assert [h.get_label() for h in handles] == list(CAMVID.class_names) + [CAMVID.void_name]
    assert handles[ROAD].get_facecolor()[:3] == pytest.approx(tuple(np.array(CAMVID.palette[ROAD]) / 255))
    assert [h.get_label() for h in viz.legend_handles(CAMVID, classes=[CAR])] == ["Car"]
    assert len(viz.legend_handles(CAMVID, include_void=False)) == CAMVID.num_classes


def test_show_palette_names_every_class_and_void():
    fig = viz.show_palette(CAMVID)
    assert isinstance(fig, Figure)
    labels = " ".join(t.get_text() for t in fig.axes[0].get_yticklabels())
    for name in list(CAMVID.class_names) + [CAMVID.void_name]:
        assert name in labels
    assert "11  Void" in labels  # the void row shows the label value that means void


# --------------------------------------------------------------------------- pictures

def test_show_samples_draws_an_image_and_a_label_per_row():
    ds = FakeDataset(n=3)
    fig = viz.show_samples(ds, indices=[0, 2])
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 4
    assert shown[0].get_title() == "frame_000.png" and shown[2].get_title() == "frame_002.png"
    assert np.array_equal(shown[1].images[0].get_array(), viz.colorize(ds.masks[0], CAMVID))
    assert fig.legends, "a class legend belongs under the samples"


def test_show_samples_with_alpha_adds_an_overlay_column():
    ds = FakeDataset(n=2)
    fig = viz.show_samples(ds, n=2, alpha=0.5)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 6 and shown[2].get_title() == "overlay"


def test_plot_grid_colours_integer_masks_and_leaves_none_blank():
    mask = np.array([[SKY, CAR], [ROAD, VOID]], dtype=np.int64)
    image = torch.randint(0, 256, (3, 2, 2), dtype=torch.uint8)
    fig = viz.plot_grid([[image, mask], [None, mask]], titles=["image", "label"], spec=CAMVID)
    axes = fig.axes
    assert axes[0].get_title() == "image" and axes[1].get_title() == "label"
    assert np.array_equal(axes[1].images[0].get_array(), viz.colorize(mask, CAMVID))
    assert not axes[2].images
    with pytest.raises(ValueError, match="spec"):
        viz.plot_grid([[mask]])


def test_error_map_marks_only_wrong_pixels_in_red_and_void_in_grey():
    label = np.array([[ROAD, ROAD, CAR], [VOID, SKY, SKY]])
    pred = np.array([[ROAD, CAR, CAR], [CAR, SKY, ROAD]])
    out = viz.error_map(label, pred, CAMVID, image=np.full((3, 2, 3), 200, np.uint8))
    red = (out == viz.ERROR_COLOUR).all(-1)
    assert red.tolist() == [[False, True, False], [False, False, True]]
    assert (out[1, 0] == viz.VOID_GREY).all()  # void is never wrong, even where pred differs


def test_show_prediction_shows_the_error_map_and_the_image_score():
    ds = FakeDataset(n=1)
    label = ds.masks[0].long()
    pred = label.clone()
    pred[label == VOID] = SKY
    pred[0, :4] = CAR                          # 4 wrong pixels (sky predicted as car)
    logits = torch.nn.functional.one_hot(pred, 12).permute(2, 0, 1).float()[:11]
    fig = viz.show_prediction(ds.images[0], label, logits, CAMVID)
    errors = fig.axes[3].images[0].get_array()
    assert int((np.asarray(errors) == viz.ERROR_COLOUR).all(-1).sum()) == 4
    labelled = int((label != VOID).sum())
    assert f"{(labelled - 4) / labelled:.1%}" in fig.axes[3].get_title()


def test_overlay_alpha_zero_is_the_plain_image_and_alpha_one_the_colour_mask():
    ds = FakeDataset(n=1)
    image, mask = ds.images[0], ds.masks[0]
    plain = image.permute(1, 2, 0).numpy()
    assert np.array_equal(viz.overlay(image, mask, CAMVID, alpha=0.0), plain)
    assert np.array_equal(viz.overlay(image, mask, CAMVID, alpha=1.0), viz.colorize(mask, CAMVID))
    half = viz.overlay(image, mask, CAMVID, alpha=0.5).astype(int)
    expected = (plain.astype(int) + viz.colorize(mask, CAMVID)) / 2
    assert np.abs(half - expected).max() <= 1


def test_highlight_dims_other_classes():
    ds = FakeDataset(n=1)
    image, mask = ds.images[0], ds.masks[0].numpy()
    normal = viz.overlay(image, mask, CAMVID, alpha=0.5)
    shown = viz.overlay(image, mask, CAMVID, alpha=0.5, highlight="Car")
    car = mask == CAR
    assert np.array_equal(shown[car], normal[car])
    others = shown[~car].astype(int)
    assert (others[:, 0] == others[:, 1]).all() and (others[:, 1] == others[:, 2]).all()  # grey
    assert others.mean() < image.permute(1, 2, 0).numpy()[~car].mean() * 0.5           # and dark
    assert np.array_equal(shown, viz.overlay(image, mask, CAMVID, alpha=0.5, highlight=CAR))


def test_overlay_denormalises_float_images_with_the_spec_stats():
    x = torch.rand(3, 4, 5)
    mean, std = torch.tensor(CAMVID.mean)[:, None, None], torch.tensor(CAMVID.std)[:, None, None]
    out = viz.overlay((x - mean) / std, torch.zeros(4, 5, dtype=torch.long), CAMVID, alpha=0.0)
    assert np.abs(out.astype(int) - (x.permute(1, 2, 0).numpy() * 255).round()).max() <= 1


def test_overlay_works_for_grayscale_microscopy():
    ds = FakeDataset(n=1, spec=ISBI_EM)
    out = viz.overlay(ds.images[0], ds.masks[0], ISBI_EM, alpha=1.0)
    assert out.shape == (12, 16, 3)
    assert np.array_equal(out, viz.colorize(ds.masks[0], ISBI_EM))


def test_image_scores_leave_void_out():
    label = torch.tensor([[ROAD, ROAD], [VOID, CAR]])
    pred = torch.tensor([[ROAD, CAR], [SKY, CAR]])
    s = viz.image_scores(label, pred, CAMVID)
    assert s["pixel_accuracy"] == pytest.approx(2 / 3)
    assert s["miou"] == pytest.approx((0.5 + 0.5) / 2)  # road 1/2, car 1/2


def test_class_shares_count_every_pixel_largest_first():
    shares = viz.class_shares(torch.tensor([[ROAD, ROAD, ROAD, VOID]]), CAMVID)
    assert list(shares) == ["Road", CAMVID.void_name]
    assert shares["Road"] == pytest.approx(0.75) and sum(shares.values()) == pytest.approx(1.0)


# --------------------------------------------------------------------------- training curves

HISTORY = [
    {"epoch": 1, "train_loss": 2.0, "val_loss": 1.9, "val_miou": 0.2, "val_pixel_accuracy": 0.6, "lr": 1e-3, "seconds": 3.0},
    {"epoch": 2, "train_loss": 1.5, "lr": 8e-4, "seconds": 3.0},   # no validation this epoch
    {"epoch": 3, "train_loss": 1.2, "val_loss": 1.3, "val_miou": 0.35, "val_pixel_accuracy": 0.7, "lr": 5e-4},
]


def test_plot_history_draws_loss_scores_and_learning_rate():
    fig = viz.plot_history(HISTORY)
    loss, score, lr = fig.axes
    assert [line.get_label() for line in loss.lines] == ["train", "val"]
    assert list(loss.lines[1].get_xdata()) == [1, 3]          # epochs without validation skipped
    assert [line.get_label() for line in score.lines] == ["mIoU", "pixel accuracy"]
    assert list(lr.lines[0].get_ydata()) == [1e-3, 8e-4, 5e-4]


def test_plot_history_tolerates_missing_keys():
    fig = viz.plot_history([{"train_loss": 1.0}, {"train_loss": 0.5}])
    loss, score, lr = fig.axes
    assert list(loss.lines[0].get_xdata()) == [1, 2]          # no 'epoch': numbered from 1
    assert not score.lines and not lr.lines
    assert isinstance(viz.plot_history([]), Figure)


def test_live_plot_only_stores_records_outside_jupyter(monkeypatch):
    import IPython.display

    def fail(*a, **k):
        raise AssertionError("display must not be called outside Jupyter")
    monkeypatch.setattr(IPython.display, "display", fail)
    live = viz.LivePlot()
    for record in HISTORY:
        live(record)
    assert live.history == HISTORY and live.history[0] is not HISTORY[0]
    assert len(live.figure().axes[0].lines) == 2


def test_live_plot_updates_one_output_in_place(monkeypatch):
    import IPython.display
    calls = []

    class Handle:
        def update(self, obj):
            calls.append(("update", obj))

    def display(obj, display_id=False):
        calls.append(("display", obj))
        assert display_id is True
        return Handle()
    monkeypatch.setattr(IPython.display, "display", display)
    live = viz.LivePlot(live=True)
    live(HISTORY[0])
    live(HISTORY[2])
    assert [kind for kind, _ in calls] == ["display", "update"]    # one output, redrawn
    assert calls[-1][1].data.startswith(b"\x89PNG")
    loss_axes = live._figure.axes[0]
    assert len(loss_axes.lines) == 2 and list(loss_axes.lines[0].get_xdata()) == [1, 3]


# --------------------------------------------------------------------------- metric plots

def test_plot_confusion_normalises_rows_and_annotates_them():
    cm = torch.tensor([[3, 1, 0], [0, 2, 2], [0, 0, 0]])
    fig = viz.plot_confusion(cm, ["a", "b", "c"])
    shown = np.ma.filled(fig.axes[0].images[0].get_array(), np.nan)
    np.testing.assert_allclose(shown[0], [0.75, 0.25, 0.0])
    np.testing.assert_allclose(shown[1], [0.0, 0.5, 0.5])
    assert np.isnan(shown[2]).all()                             # a class without pixels: empty row
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"0.75", "0.25", "0.50"} <= texts
    counts = viz.plot_confusion(cm, ["a", "b", "c"], normalize=None)
    assert "3" in {t.get_text() for t in counts.axes[0].texts}
    with pytest.raises(ValueError, match="normalize"):
        viz.plot_confusion(cm, ["a", "b", "c"], normalize="rows")


def test_plot_class_iou_colours_bars_with_the_palette_and_marks_undefined():
    iou = {"Sky": 0.9, "Road": 0.8, "Car": None}
    fig = viz.plot_class_iou(iou, CAMVID, sort=False)
    ax = fig.axes[0]
    colours = [bar.get_facecolor()[:3] for bar in ax.patches[:3]]
    assert colours[1] == pytest.approx(tuple(np.array(CAMVID.palette[ROAD]) / 255))
    assert "n/a" in {t.get_text() for t in ax.texts}
    assert ax.lines[0].get_xdata()[0] == pytest.approx(0.85)      # mean of the defined IoUs
    tensor_fig = viz.plot_class_iou(torch.rand(CAMVID.num_classes), CAMVID)
    assert len(tensor_fig.axes[0].patches) == CAMVID.num_classes


def test_plot_class_frequencies_uses_palette_colours_and_a_log_axis():
    freqs = torch.linspace(0.001, 0.3, CAMVID.num_classes)
    fig = viz.plot_class_frequencies(freqs, CAMVID, log=True)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.patches[CAR].get_facecolor()[:3] == pytest.approx(tuple(np.array(CAMVID.palette[CAR]) / 255))
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CAMVID.class_names)
    assert viz.plot_class_frequencies({"Road": 0.7, "Car": 0.3}, CAMVID).axes[0].get_xscale() == "linear"


def test_plot_lr_curves_accepts_lists_and_dicts_with_learning_rates():
    only_loss = viz.plot_lr_curves({"sgd": [2.0, 1.5, 1.2], "adam": [2.0, 1.0, 0.6]})
    assert len(only_loss.axes) == 1 and len(only_loss.axes[0].lines) == 2
    both = viz.plot_lr_curves({"adam": {"loss": [2.0, 1.0, 0.6], "lr": [1e-4, 1e-3, 1e-3]},
                               "sgd": [2.0, 1.5, 1.2]}, smooth=0.5)
    assert len(both.axes) == 2 and both.axes[1].get_yscale() == "log"
    assert [line.get_label() for line in both.axes[0].get_legend().get_lines()] == ["adam", "sgd"]


def test_plot_lr_range_uses_a_log_axis_and_marks_the_suggestion():
    lrs = np.logspace(-6, 0, 50)
    losses = np.r_[np.linspace(2.3, 0.9, 45), [1.5, 3, 9, 40, float("nan")]]
    fig = viz.plot_lr_range(lrs, losses, suggested=1e-3)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.lines[1].get_xdata()[0] == pytest.approx(1e-3)
    assert ax.get_ylim()[1] < 40                                # the explosion does not squash the valley
    fig2 = viz.plot_lr_range({"lr": lrs.tolist(), "loss": losses.tolist(), "suggested_lr": 2e-4})
    assert fig2.axes[0].lines[1].get_xdata()[0] == pytest.approx(2e-4)


def test_plot_functions_draw_into_a_given_axes():
    fig, ax = plt.subplots()
    assert viz.plot_class_iou({"Sky": 0.5}, CAMVID, ax=ax) is fig
    assert viz.plot_lr_range([1e-4, 1e-3], [1.0, 0.5], ax=ax) is fig


def test_plots_use_the_palette_colour_of_each_class_everywhere():
    # The same class gets the same colour in a mask picture, a legend and a bar chart.
    car = tuple(np.array(CAMVID.palette[CAR]) / 255)
    assert tuple(viz.colorize(np.array([[CAR]]), CAMVID)[0, 0] / 255) == pytest.approx(car)
    assert viz.legend_handles(CAMVID)[CAR].get_facecolor()[:3] == pytest.approx(car)
    bar = viz.plot_class_iou({"Car": 0.4}, CAMVID).axes[0].patches[0]
    assert to_rgb(bar.get_facecolor()) == pytest.approx(car)
