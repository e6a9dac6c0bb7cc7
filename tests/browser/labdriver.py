"""Driving JupyterLab in a Playwright page the way a learner does: open a notebook, wait
for the kernel, *Run > Run All Cells* from the menu, wait for the cells to finish, then
find a widget, move its controls, and take screenshots.

Kept apart from the tests so that the tests read as the learner's steps.
"""
from __future__ import annotations

import base64
import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

# Headless Chromium as root in a sandbox without network: --no-sandbox because we run as
# root; the background-networking / component-update / sync flags stop Chromium's own
# connections (refused by the closed network, they would only add noise and delay).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Console errors that are not the course's, as regular expressions matched against the
# message text (see ConsoleLog.problems): a machine without network. Every notebook's
# first cell shows the "Open in Colab" badge, an image on colab.research.google.com; in
# the closed sandbox Chromium then logs exactly
#   Failed to load resource: net::ERR_NAME_NOT_RESOLVED
# (source https://colab.research.google.com/assets/colab-badge.svg), and would log
# net::ERR_CONNECTION_REFUSED etc. for any other request that leaves 127.0.0.1. That
# says nothing about the widgets; the file is still listed in <test>_console.txt.
HARMLESS_CONSOLE = [
    r"^Failed to load resource: net::ERR_(CONNECTION_REFUSED|NAME_NOT_RESOLVED|INTERNET_DISCONNECTED"
    r"|ADDRESS_UNREACHABLE|NETWORK_ACCESS_DENIED)",
]
# What counts as a widget error in the console (ipywidgets, the widget manager, our viewers).
WIDGET_CONSOLE = re.compile(r"widget|jupyter-widgets|ipywidgets|seglab|comm|Model|View", re.IGNORECASE)


@dataclass
class ConsoleLog:
    """Console messages of type ``error`` (with the file that logged them), uncaught page
    errors, and HTTP responses >= 400, as they come."""
    errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """The errors that are not in HARMLESS_CONSOLE (page errors always count)."""
        bad = [e for e in self.errors if not any(re.search(p, e) for p in HARMLESS_CONSOLE)]
        return bad + [f"uncaught: {e}" for e in self.page_errors]

    def widget_problems(self) -> list[str]:
        """Console errors that name a widget or come from the widget code (the source
        file is part of each entry), and every uncaught page error."""
        return [p for p in self.problems() if p.startswith("uncaught: ") or WIDGET_CONSOLE.search(p)]


def pixels(png: bytes) -> np.ndarray:
    """Decoded RGB pixels of a PNG screenshot, as float32 ``[H, W, 3]``."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def difference(a: bytes, b: bytes) -> float:
    """Mean absolute difference (0-255) of two screenshots; different sizes count as 255."""
    pa, pb = pixels(a), pixels(b)
    if pa.shape != pb.shape:
        return 255.0
    return float(np.abs(pa - pb).mean())


class LabPage:
    """One browser page on the test's JupyterLab server."""

    def __init__(self, page, server):
        self.page = page
        self.server = server
        self.console = ConsoleLog()
        page.on("console", self._on_console)
        page.on("pageerror", lambda err: self.console.page_errors.append(str(err)))
        page.on("response", self._on_response)
        page.set_default_timeout(30_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def _on_console(self, message) -> None:
        if message.type == "error":
            source = (message.location or {}).get("url", "")
            self.console.errors.append(f"{message.text}  [from {source or 'unknown source'}]")

    def _on_response(self, response) -> None:
        if response.status >= 400:
            self.console.failed_requests.append(f"{response.status} {response.url}")

    def close(self) -> None:
        self.page.close()

    # -- artifacts
    def screenshot(self, name: str, locator=None) -> bytes:
        """Save a screenshot under test-artifacts/browser/ (the element, or the full page)."""
        path = ARTIFACTS / name
        if locator is None:
            return self.page.screenshot(path=str(path), full_page=True)
        return locator.screenshot(path=str(path), animations="disabled")

    # -- notebooks
    def open_notebook(self, name: str, timeout: float = 120) -> None:
        """Open ``name`` in a clean workspace and wait until its kernel is idle."""
        self.page.goto(self.server.url(f"lab/tree/{name}?reset"), wait_until="domcontentloaded")
        self.page.locator(".jp-NotebookPanel").first.wait_for(state="visible", timeout=timeout * 1000)
        self.wait_kernel_idle(timeout)

    def kernel_status(self) -> str:
        """The kernel status JupyterLab's status bar shows, lower case: ``idle``,
        ``busy``, ``starting``, ... or ``no kernel`` / ``missing``. (The toolbar's
        indicator says ``idle`` before a kernel exists, so the status bar is the one to
        trust.)"""
        return self.page.evaluate("""() => {
            for (const el of document.querySelectorAll('.jp-StatusBar-TextItem')) {
                const m = /^(.*)\\|\\s*([A-Za-z ]+)$/.exec(el.innerText.trim());
                if (m) return /no kernel/i.test(m[1]) ? 'no kernel' : m[2].trim().toLowerCase();
            }
            return 'missing';
        }""")

    def wait_kernel_idle(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            status = self.kernel_status()
            if status == "idle":
                return
            self.page.wait_for_timeout(250)
        raise TimeoutError(f"the kernel did not become idle within {timeout:.0f} s (status: {status!r})")

    def menu(self, menu: str, item: str) -> None:
        """Click ``menu`` in JupyterLab's menu bar, then its entry ``item`` (a regular
        expression for the whole label)."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(menu)}$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).click()

    def run_all(self) -> None:
        """Run > Run All Cells, from the menu bar, as a learner would."""
        self.menu("Run", "Run All Cells")

    def run_through(self, marker: str) -> None:
        """Run the notebook down to the first code cell whose source contains ``marker``,
        that cell included, as a learner who stops at that cell: select it, then
        Run > Run All Above Selected Cell, then Run > Run Selected Cell."""
        panel = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        cell = panel.locator(".jp-CodeCell", has=self.page.locator(".jp-InputArea-editor", has_text=marker)).first
        if cell.count() == 0:
            raise AssertionError(f"no code cell contains {marker!r}")
        cell.locator(".jp-InputPrompt").first.click()
        self.menu("Run", "Run All Above Selected Cell")
        self.menu("Run", "Run Selected Cells?")

    def code_cells(self) -> list[dict]:
        """Every code cell: ``source`` (its first line) and ``prompt`` (``[3]:``, ``[*]:``, ...)."""
        return self.page.evaluate("""() => Array.from(document.querySelectorAll(
                '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')).map(cell => ({
            source: (cell.querySelector('.jp-InputArea-editor') || {innerText: ''}).innerText.trim().split('\\n')[0],
            prompt: (cell.querySelector('.jp-InputPrompt') || {innerText: ''}).innerText.trim(),
        }))""")

    def prompts(self) -> list[str]:
        """The input prompts of the code cells, e.g. ``['[1]:', '[*]:', ' ']``."""
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt").all_inner_texts()

    def wait_cells_done(self, timeout: float) -> float:
        """Wait until no code cell is queued or running (no ``[*]``) and the kernel is idle;
        return the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        self.page.wait_for_timeout(500)  # Run All marks the cells [*] at once, but not synchronously
        while True:
            prompts = self.prompts()
            if not any("*" in p for p in prompts) and self.kernel_status() == "idle":
                return time.monotonic() - start
            if time.monotonic() > deadline:
                running = sum("*" in p for p in prompts)
                raise TimeoutError(f"{running} of {len(prompts)} code cells still queued or running after "
                                   f"{timeout:.0f} s")
            self.page.wait_for_timeout(500)

    def cell_errors(self) -> list[str]:
        """The text of every error output, and of stderr outputs showing a traceback."""
        return self.page.evaluate("""() => {
            const found = [];
            const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
            for (const el of panel.querySelectorAll('[data-mime-type="application/vnd.jupyter.error"]'))
                found.push(el.innerText.slice(0, 2000));
            for (const el of panel.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]'))
                if (/Traceback|Error:/.test(el.innerText)) found.push(el.innerText.slice(0, 2000));
            return found;
        }""")

    def unexecuted_code_cells(self, through: str | None = None) -> list[str]:
        """First lines of the code cells (with source) that show no execution count, of
        all cells or of those down to the first one whose first line contains ``through``."""
        missing = []
        for cell in self.code_cells():
            if cell["source"] and not re.fullmatch(r"\[\d+\]:?", cell["prompt"]):
                missing.append(cell["source"])
            if through is not None and through in cell["source"]:
                break
        return missing

    # -- widgets
    def widget(self, css_class: str, timeout: float = 30):
        """The (first) rendered widget container with ``css_class``, scrolled into view.
        Fails with what the page shows instead when it does not render."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        locator = self.page.locator(f".jp-NotebookPanel:not(.lm-mod-hidden) .{css_class}").first
        try:
            locator.wait_for(state="visible", timeout=timeout * 1000)
        except PlaywrightTimeout:
            shown = self.page.evaluate("""() => Array.from(document.querySelectorAll(
                    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output'))
                .map(e => e.innerText.trim()).filter(t => /widget|Error|Traceback/i.test(t))
                .map(t => t.slice(0, 300))""")
            raise AssertionError(f"no .{css_class} widget on the page {timeout:.0f} s after Run All; "
                                 f"outputs mentioning widgets or errors: {shown or 'none'}") from None
        locator.scroll_into_view_if_needed()
        return locator

    def image_src(self, widget) -> str:
        return widget.locator(".seglab-image").first.get_attribute("src") or ""

    def wait_image_changed(self, widget, old_src: str, what: str = "moving the control",
                           timeout: float = 20) -> str:
        """Wait until the viewer's picture is replaced (a new blob URL) and loaded."""
        image = widget.locator(".seglab-image").first
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            src = image.get_attribute("src") or ""
            if src and src != old_src and image.evaluate("img => img.complete && img.naturalWidth > 0"):
                return src
            self.page.wait_for_timeout(100)
        raise AssertionError(f"the viewer's picture did not change within {timeout:.0f} s of {what}: "
                             f"the kernel did not redraw it")

    def wait_image_loaded(self, widget, timeout: float = 30):
        image = widget.locator(".seglab-image").first
        image.wait_for(state="visible", timeout=timeout * 1000)
        self.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(),
                                    timeout=timeout * 1000)
        return image

    def natural_picture(self, widget) -> np.ndarray:
        """The viewer's picture as the kernel sent it (natural size, no screen scaling),
        read back from the page through a canvas: uint8 ``[H, W, 3]``."""
        data_url = widget.locator(".seglab-image").first.evaluate("""img => {
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            c.getContext('2d').drawImage(img, 0, 0);
            return c.toDataURL('image/png');
        }""")
        png = base64.b64decode(data_url.split(",", 1)[1])
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def panels(picture: np.ndarray, min_gap: int = 3) -> list[np.ndarray]:
    """Split a viewer picture into its panels at the runs of pure white columns the viewers
    put between them."""
    white = (picture == 255).all(axis=(0, 2))
    out, start, gap = [], None, 0
    for x, is_white in enumerate(white.tolist() + [True] * min_gap):
        if is_white:
            gap += 1
            if start is not None and gap >= min_gap:
                out.append(picture[:, start:x - gap + 1])
                start = None
        else:
            if start is None:
                start = x
            gap = 0
    return out
