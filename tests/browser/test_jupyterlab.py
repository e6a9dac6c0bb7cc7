"""The course as a learner uses it: JupyterLab in a real browser (headless Chromium).

Unit tests of the widget objects show that the Python side works. These show that a
learner who opens the notebook in JupyterLab and runs it *sees* the viewer and can drive
it with the mouse and keyboard: the widget renders, moving a control sends the change to
the kernel, the kernel redraws, and the new picture reaches the page.

Each test opens a notebook from a temporary copy of ``notebooks/`` (quick mode), runs it
from JupyterLab's *Run* menu (02: *Run All Cells*; 05: down to the viewer), then checks:
no cell shows an error, the viewer is on the page with a real picture, moving a control
changes that picture, and the browser console shows no widget errors. Screenshots of
each step: ``test-artifacts/browser/``.

Run them alone with ``pytest -m browser`` (CONTRIBUTING.md, "Browser tests"); they skip,
saying why, where no Chromium is installed.
"""
from __future__ import annotations

import re

from pathlib import Path

import pytest

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # then the fixtures skip every test
    PlaywrightTimeout = TimeoutError

from labdriver import difference, panels, pixels

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

RUN_TIMEOUT = 420  # s to run a notebook in quick mode: ~1-2 min on a quiet 2-core machine, 4 when loaded
CHANGED = 2.0      # mean absolute pixel difference (0-255) that counts as "the picture changed"


def run_notebook(lab, name: str, prefix: str, through: str | None = None) -> None:
    """Open ``name`` and run it: Run All Cells, or (``through``) every cell down to the
    first code cell whose first line contains ``through``. Then check that every cell
    that should have run did, and that no cell shows an error."""
    if not (lab.server.root / name).exists():
        pytest.fail(f"notebooks/{name} is missing: the browser tests drive it")
    lab.open_notebook(name)
    lab.screenshot(f"{prefix}_opened.png")
    if through is None:
        lab.run_all()
    else:
        lab.run_through(through)
    seconds = lab.wait_cells_done(RUN_TIMEOUT)
    print(f"{name}: {'Run All Cells' if through is None else 'running down to the viewer'} "
          f"took {seconds:.0f} s in the browser")
    lab.screenshot(f"{prefix}_ran.png")
    errors = lab.cell_errors()
    assert not errors, f"{name}: {len(errors)} cell(s) show an error:\n\n" + "\n\n".join(errors)
    missing = lab.unexecuted_code_cells(through)
    assert not missing, f"{name}: {len(missing)} code cell(s) did not run (no [n] prompt): {missing}"


def assert_no_widget_errors(lab, name: str) -> None:
    problems = lab.console.widget_problems()
    assert not problems, f"{name}: the browser console shows widget errors:\n" + "\n".join(problems)


def assert_real_picture(png: bytes, what: str) -> None:
    """Not blank: a screenshot of a missing or broken image is one flat colour."""
    p = pixels(png)
    assert p.shape[0] > 50 and p.shape[1] > 100, f"{what}: the picture is only {p.shape[1]}x{p.shape[0]} px"
    assert p.std() > 10, f"{what}: the picture is blank (pixel std {p.std():.1f})"


def slider(widget, label: str):
    """The ipywidgets slider whose description is ``label``."""
    return widget.locator(".widget-slider", has=widget.page.locator(".widget-label", has_text=re.compile(f"^{label}$")))


def test_02_data_browser_follows_the_slider(lab):
    """02_data: the data-set browser shows an image with its labels; moving the Image
    slider (keyboard, as a learner would after clicking it) shows the next image."""
    run_notebook(lab, "02_data.ipynb", "02")

    browser = lab.widget("seglab-dataset-browser")
    image = lab.wait_image_loaded(browser)
    lab.screenshot("02_browser.png", browser)
    before = lab.screenshot("02_before_slider.png", image)
    assert_real_picture(before, "02_data: the data-set browser")
    info_before = browser.locator(".seglab-info").inner_text()
    src = lab.image_src(browser)

    index = slider(browser, "Image")
    readout = index.locator(".widget-readout")
    start = readout.inner_text().strip()
    index.locator(".noUi-handle").click()  # focus the handle, as a click does
    index.locator(".noUi-handle").press("ArrowRight")
    try:
        lab.page.wait_for_function("([el, v]) => el.innerText.trim() !== v",
                                   arg=[readout.element_handle(), start], timeout=10_000)
    except PlaywrightTimeout:
        pytest.fail(f"02_data: the Image slider did not move on ArrowRight (its readout still says {start})")
    moved_to = readout.inner_text().strip()
    lab.wait_image_changed(browser, src, what=f"moving the Image slider from {start} to {moved_to}")

    after = lab.screenshot("02_after_slider.png", image)
    lab.screenshot("02_after_slider_page.png")
    change = difference(before, after)
    assert change > CHANGED, (f"02_data: the browser's picture hardly changed after the slider moved "
                              f"{start} -> {moved_to} (mean pixel difference {change:.2f})")
    info_after = browser.locator(".seglab-info").inner_text()
    assert info_after != info_before, f"02_data: the caption did not follow the slider: {info_after!r}"
    assert_no_widget_errors(lab, "02_data")


def test_05_evaluation_comparison_viewer(lab):
    """05_evaluation: the comparison viewer shows image | label | prediction (| errors);
    ticking *Show errors* and choosing a class to highlight redraw the picture."""
    # Down to the viewer only: the cells after it train the classical baseline (slow),
    # and CI runs the whole notebook anyway (nbval).
    if not (Path(__file__).resolve().parents[2] / "notebooks" / "05_evaluation.ipynb").exists():
        pytest.skip("notebooks/05_evaluation.ipynb is not in this checkout yet")
    run_notebook(lab, "05_evaluation.ipynb", "05", through="ComparisonViewer(")

    viewer = lab.widget("seglab-comparison-viewer")
    image = lab.wait_image_loaded(viewer)
    lab.screenshot("05_viewer_controls.png", viewer)
    shot = lab.screenshot("05_viewer.png", image)
    assert_real_picture(shot, "05_evaluation: the comparison viewer")

    checkbox = viewer.locator(".widget-checkbox input[type=checkbox]")
    errors_on = checkbox.is_checked()
    picture = lab.natural_picture(viewer)
    shown = panels(picture)
    expected = 4 if errors_on else 3
    assert len(shown) == expected, (f"05_evaluation: the viewer should show image | label | prediction"
                                    f"{' | errors' if errors_on else ''} ({expected} panels), "
                                    f"found {len(shown)} panels in a {picture.shape[1]}x{picture.shape[0]} picture")
    widths = {p.shape[1] for p in shown}
    assert len(widths) == 1, f"05_evaluation: the panels differ in width: {sorted(widths)}"
    for name, panel in zip(["image", "label"], shown):  # these always have structure
        spread = panel.reshape(-1, 3).std(axis=0).max()
        assert spread > 5, f"05_evaluation: the {name} panel is one flat colour (pixel std {spread:.1f})"
    for name, panel in zip(["prediction", "errors"], shown[2:]):  # a poor model may predict one class
        assert panel.mean() < 250, f"05_evaluation: the {name} panel is empty (white)"
    caption = viewer.locator(".seglab-info").inner_text()
    for word in ("image", "label", "prediction"):
        assert word in caption, f"05_evaluation: the caption does not name the {word} panel: {caption!r}"

    # Toggle "Show errors": the error panel appears or goes, the picture is redrawn.
    state = {True: "on", False: "off"}
    lab.screenshot(f"05_errors_{state[errors_on]}.png", image)
    src = lab.image_src(viewer)
    checkbox.click()
    lab.wait_image_changed(viewer, src, what="ticking 'Show errors'")
    toggled = lab.screenshot(f"05_errors_{state[not errors_on]}.png", image)
    assert difference(shot, toggled) > CHANGED, "05_evaluation: ticking 'Show errors' did not change the picture"
    now = len(panels(lab.natural_picture(viewer)))
    assert now == (3 if errors_on else 4), (f"05_evaluation: after ticking 'Show errors' the viewer shows "
                                            f"{now} panels, expected {3 if errors_on else 4}")

    # Highlight one class: the others are dimmed in the label and prediction panels.
    src = lab.image_src(viewer)
    before = lab.screenshot("05_before_highlight.png", image)
    viewer.locator(".widget-dropdown select").select_option(label="Road")
    lab.wait_image_changed(viewer, src, what="choosing 'Road' to highlight")
    after = lab.screenshot("05_highlight_road.png", image)
    assert difference(before, after) > CHANGED, "05_evaluation: highlighting 'Road' did not change the picture"
    lab.screenshot("05_after_controls_page.png")
    assert_no_widget_errors(lab, "05_evaluation")
