"""Fixtures for the browser tests: a private JupyterLab server and headless Chromium.

The course is used in JupyterLab, so these tests use it the way a learner does: a real
JupyterLab server (started from this virtual environment, on a free port of 127.0.0.1,
with a random token), a real browser (headless Chromium through Playwright), the real
notebooks (a temporary copy, so running them never touches the committed files) in
quick mode.

Everything Jupyter would read or write in the user's home (config, data, runtime,
settings, workspaces, IPython profile) lives in a temporary folder instead, with
settings that keep JupyterLab off the network and open a clean workspace.

The browser: ``SEGLAB_CHROMIUM`` (a path or a command), else the first of
``/usr/bin/chromium``, ``chromium``, ``chromium-browser``, ``google-chrome`` on PATH.
Without one (or without Playwright) every test here is skipped with a message saying
how to get it. Playwright's own browser download is never used.

Screenshots of every step go to ``test-artifacts/browser/`` at the repository root
(ignored by git; emptied at the start of each run), with the server log and each test's
console log; a failing test adds a full-page ``<test>_failure.png``.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from labdriver import ARTIFACTS, CHROMIUM_ARGS, LabPage

REPO = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT = 120  # seconds; JupyterLab takes ~10 s here, much more on a loaded machine

# JupyterLab settings that keep it quiet and offline: no news, no update check, every
# cell kept in the page (no virtual scrolling, so the tests can see all outputs), no
# autosave (the copy of the notebooks stays as it was copied).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}
# Front-end extensions a learner's course setup does not have (nbgrader comes with the
# test tools) or that would reach for the network (the extension manager asks PyPI).
DISABLED_LAB_EXTENSIONS = {
    "@jupyter/nbgrader": True,
    "@jupyterlab/extensionmanager-extension": True,
    "@jupyterlab/apputils-extension:announcements": True,
}
# Server extensions we do not need; turning them off makes the server start faster.
DISABLED_SERVER_EXTENSIONS = {
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.validate_assignment": False,
    "nbgrader.server_extensions.assignment_list": False,
    "nbgrader.server_extensions.course_list": False,
}


# --------------------------------------------------------------------------- the browser

def find_chromium() -> tuple[str | None, str]:
    """The Chromium executable to use and, when there is none, why."""
    wanted = os.environ.get("SEGLAB_CHROMIUM")
    if wanted:
        found = wanted if Path(wanted).is_file() else shutil.which(wanted)
        return found, f"SEGLAB_CHROMIUM={wanted!r} is neither a file nor a command on PATH"
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        found = candidate if Path(candidate).is_file() else shutil.which(candidate)
        if found:
            return found, ""
    return None, ("no Chromium found (looked for /usr/bin/chromium, chromium, chromium-browser, "
                  "google-chrome): install it (Debian/Ubuntu: `apt-get install chromium`) or set "
                  "SEGLAB_CHROMIUM to its path")


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium (Playwright ``Browser``) for the whole session."""
    executable, why = find_chromium()
    if executable is None:
        pytest.skip(f"browser tests skipped: {why}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests skipped: Playwright for Python is not installed "
                    "(`pip install -e '.[test]'`)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# --------------------------------------------------------------------------- the server

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _camvid_root(tmp: Path) -> str:
    """The CamVid the notebooks read: SEGLAB_DATA, else data/camvid in the repository
    (where `seglab download camvid` puts it), else ../shared/camvid beside the repository
    (CI), else a small synthetic CamVid in the real layout."""
    if os.environ.get("SEGLAB_DATA"):
        return os.environ["SEGLAB_DATA"]
    for folder in (REPO / "data" / "camvid", REPO.parent / "shared" / "camvid"):
        if (folder / "test").is_dir():
            return str(folder)
    from seglab.datasets import CAMVID
    from seglab.synthetic import make_synthetic_camvid
    return str(make_synthetic_camvid(tmp / "synthetic-camvid", 24, 8, 8, CAMVID.native_size))


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _lab_environment(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    home = tmp / "jupyter-home"
    dirs = {"JUPYTER_CONFIG_DIR": home / "config", "JUPYTER_DATA_DIR": home / "data",
            "JUPYTER_RUNTIME_DIR": home / "runtime", "JUPYTERLAB_SETTINGS_DIR": home / "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": home / "lab-workspaces", "IPYTHONDIR": home / "ipython"}
    for var, folder in dirs.items():
        folder.mkdir(parents=True, exist_ok=True)
        env[var] = str(folder)
    # buildCheck off: no "build is out of date" check (and its CPU) on every page load.
    _write_json(dirs["JUPYTER_CONFIG_DIR"] / "labconfig" / "page_config.json",
                {"disabledExtensions": DISABLED_LAB_EXTENSIONS, "buildCheck": False, "buildAvailable": False})
    _write_json(dirs["JUPYTER_CONFIG_DIR"] / "jupyter_server_config.json",
                {"ServerApp": {"jpserver_extensions": DISABLED_SERVER_EXTENSIONS}})
    for name, settings in LAB_SETTINGS.items():
        _write_json(dirs["JUPYTERLAB_SETTINGS_DIR"] / name, settings)
    env["SEGLAB_QUICK"] = "1"
    env["SEGLAB_DATA"] = _camvid_root(tmp)
    env.setdefault("SEGLAB_CACHE", str(tmp / "seglab-cache"))
    # A learner's kernel draws figures inline; a test run's MPLBACKEND=Agg would hide them.
    env.pop("MPLBACKEND", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LabServer:
    """A running JupyterLab: ``url(path)`` gives an address with the token."""

    def __init__(self, root: Path, port: int, token: str, process: subprocess.Popen, log: Path):
        self.root, self.port, self.token, self.process, self.log = root, port, token, process, log
        self.base = f"http://127.0.0.1:{port}"

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """End every session and kernel (each test's kernel would otherwise keep its
        memory until the server stops)."""
        try:
            for session in self.api("sessions"):
                self.api(f"sessions/{session['id']}", method="DELETE")
            for kernel in self.api("kernels"):
                self.api(f"kernels/{kernel['id']}", method="DELETE")
        except (urllib.error.URLError, OSError):
            pass

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and its kernels: SIGTERM to its process group (POSIX; the server
    was started in a session of its own), then SIGKILL."""
    if process.poll() is not None:
        return
    group = hasattr(os, "killpg")
    try:
        os.killpg(process.pid, signal.SIGTERM) if group else process.terminate()
    except (ProcessLookupError, PermissionError):
        process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL) if group else process.kill()
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory, chromium) -> LabServer:
    """JupyterLab serving a temporary copy of ``notebooks/``, kernels in quick mode.
    (Depends on ``chromium`` so that a machine without a browser skips before starting it.)"""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # every screenshot there is from this run
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "notebooks"
    shutil.copytree(REPO / "notebooks", root,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    env = _lab_environment(tmp)
    port, token = _free_port(), secrets.token_hex(24)
    log = tmp / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--ServerApp.open_browser=False", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        command.append("--ServerApp.allow_root=True")
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = LabServer(root, port, token, process, log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {process.returncode}:\n{server.log_tail()}")
            try:
                server.api("status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer within {SERVER_START_TIMEOUT} s:\n"
                                   f"{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        _stop(process)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, ARTIFACTS / "jupyterlab.log")


# --------------------------------------------------------------------------- one page per test

@pytest.fixture(scope="session")
def browser_context(chromium, lab_server):
    """One browser context for the session: the pages share JupyterLab's cached files."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    yield context
    context.close()


@pytest.fixture
def lab(browser_context, lab_server, request) -> LabPage:
    """A fresh browser page on the JupyterLab server, recording console errors. On
    failure a full-page screenshot ``<test name>_failure.png`` is saved; afterwards the
    test's kernels are shut down."""
    driver = LabPage(browser_context.new_page(), lab_server)
    yield driver
    if getattr(request.node, "_seglab_failed", False):
        try:
            driver.screenshot(f"{request.node.name}_failure.png")
        except Exception as err:  # the page may be gone; the failure itself matters more
            print(f"could not take the failure screenshot: {err}")
    log = driver.console
    (ARTIFACTS / f"{request.node.name}_console.txt").write_text(
        "console errors:\n" + "".join(f"  {e}\n" for e in log.errors)
        + "uncaught page errors:\n" + "".join(f"  {e}\n" for e in log.page_errors)
        + "failed requests:\n" + "".join(f"  {e}\n" for e in log.failed_requests))
    driver.close()
    lab_server.shutdown_kernels()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item._seglab_failed = True
