"""Plumbing for the course notebooks: the repository URL and release (defined here, once),
the Colab badge and bootstrap cell every notebook carries, the version check, where runs
are kept (Google Drive on Colab), and re-executing notebooks.

Every notebook's first code cell is exactly :data:`BOOTSTRAP_SOURCE` (a test checks it),
so changing the repository URL or the version and running ``python tasks.py stamp``
updates all notebooks at once.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

from ._version import __version__

REPO_URL = "https://github.com/seglab-course/seglab"
# The git tag of this release: Colab badges open it and the bootstrap installs it, so a
# notebook always runs against the code that produced its outputs.
RELEASE_TAG = f"v{__version__}"
INSTALL_COMMAND = f'pip install "seglab[colab] @ git+{REPO_URL}@{RELEASE_TAG}"'

# No -q: Colab reads pip's "Successfully installed" line to offer a restart when a package
# it had already imported changed. `_exit_code` is where IPython (and Colab) put a shell
# command's exit status.
BOOTSTRAP_SOURCE = f"""# Setup: on Google Colab this installs seglab {__version__} and downloads the data; elsewhere it does nothing.
import sys
if "google.colab" in sys.modules:
    # Only what Colab lacks: its own torch, numpy, ipywidgets and Jupyter stay as they are.
    %{INSTALL_COMMAND}
    if _exit_code != 0:
        raise SystemExit("Installing seglab failed (pip says why above). Check the connection, then run this cell again.")
    !seglab download camvid
    if _exit_code != 0:
        raise SystemExit("Downloading the data failed (the reason is above). Run this cell again: it resumes where it stopped.")
from seglab.course import check_version
check_version("{__version__}")"""

BOOTSTRAP_SOURCE_ISBI = BOOTSTRAP_SOURCE.replace("seglab download camvid", "seglab download isbi-em")

# Where Colab mounts Google Drive (SEGLAB_DRIVE_MOUNT moves it, for the Colab emulation test).
DRIVE_MOUNT = Path(os.environ.get("SEGLAB_DRIVE_MOUNT", "/content/drive"))
_drive: dict = {"runs": None, "state": None}   # set by keep_runs_in_drive: the Drive folder, what happened


def on_colab() -> bool:
    """True inside Google Colab (its ``google.colab`` package is loaded at kernel start)."""
    return "google.colab" in sys.modules


def check_version(expected: str) -> None:
    """Compare the installed seglab with the version a notebook was made with (its bootstrap
    cell passes it); when they differ, say in one line what to do."""
    if __version__ == expected:
        return
    if on_colab() or _repo() is None:
        fix = (f'run `%pip install "seglab[colab] @ git+{REPO_URL}@v{expected}"` and restart the runtime '
               f"(Runtime > Restart session), or open this notebook at version {__version__}")
    else:
        fix = f"check out the matching release (`git checkout v{expected}`), or open this checkout's own notebook"
    print(f"seglab {__version__} is installed, but this notebook was made with seglab {expected}: {fix}.")


def colab_url(notebook: str) -> str:
    """The 'Open in Colab' link of ``notebooks/<notebook>``."""
    path = REPO_URL.replace("https://github.com/", "")
    return f"https://colab.research.google.com/github/{path}/blob/{RELEASE_TAG}/notebooks/{notebook}"


def colab_badge(notebook: str) -> str:
    """Markdown for the 'Open in Colab' badge."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook)})")


def _repo() -> Path | None:
    repo = Path(__file__).resolve().parent.parent
    return repo if (repo / "pyproject.toml").exists() else None


def runs_dir() -> Path:
    """Where notebooks write their training runs: the Google Drive folder when
    :func:`keep_runs_in_drive` mounted it, else ``runs/`` in the repository (ignored by git),
    or ``~/seglab-runs`` outside a checkout. Notebook 05 finds notebook 04's model here.
    Quick mode (``SEGLAB_QUICK=1``) uses its own ``quick/`` subfolder, so that a smoke run of
    the notebooks never replaces the models of a full run."""
    from .data import quick_mode
    repo = _repo()
    base = _drive["runs"] or (repo / "runs" if repo is not None else Path.home() / "seglab-runs")
    return base / "quick" if quick_mode() else base


def keep_runs_in_drive(enabled: bool = True) -> Path | None:
    """On Colab, mount Google Drive and keep the runs in ``MyDrive/seglab-runs``, so that a
    model trained in one notebook's runtime is there for the next notebook's (each Colab
    notebook gets a fresh runtime). Elsewhere, or with ``enabled=False``, runs stay where
    :func:`runs_dir` puts them. Returns the Drive folder, or None."""
    if not on_colab():
        return None
    if not enabled:
        _drive["state"] = "off"
        print("Google Drive is off: runs stay in this runtime and are gone when it ends.")
        return None
    try:
        from google.colab import drive
        drive.mount(str(DRIVE_MOUNT))
    except Exception as err:  # noqa: BLE001 - refused permission, timeout: the notebook goes on without Drive
        _drive["state"] = f"mounting failed: {type(err).__name__}: {err}"
        print(f"Google Drive not mounted ({err}): runs stay in this runtime and are gone when it ends.")
        return None
    folder = DRIVE_MOUNT / "MyDrive" / "seglab-runs"
    folder.mkdir(parents=True, exist_ok=True)
    _drive.update(runs=folder, state="mounted")
    print(f"runs are kept in Google Drive: {folder}")
    return folder


def find_run(name: str, file: str = "best.pt") -> tuple[Path | None, str]:
    """The checkpoint ``file`` of the notebook run ``name`` (e.g. ``"04_training"``) in
    :func:`runs_dir`, and one line saying where it was found or, when it is missing,
    precisely why and what to do."""
    path = runs_dir() / name / file
    repo = _repo()
    shown = path.relative_to(repo) if repo is not None and path.is_relative_to(repo) else path
    if path.exists():
        return path, f"found {shown}" + (" (Google Drive)" if _drive["runs"] else "")
    notebook = name.split("_")[0]
    if not on_colab():
        return None, f"{shown} not found: run notebook {notebook} first."
    if _drive["state"] == "mounted":
        return None, (f"no run of notebook {notebook} in Google Drive ({shown}): run notebook {notebook} "
                      f"with its Drive cell on (USE_DRIVE = True) to keep its model there.")
    why = {None: "Google Drive was not mounted", "off": "USE_DRIVE is off"}.get(_drive["state"], _drive["state"])
    return None, (f"{why}, and this runtime has not run notebook {notebook} (each Colab notebook starts a "
                  f"fresh runtime): set USE_DRIVE = True here and in notebook {notebook} to keep its model "
                  f"in Google Drive.")


def notebooks_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "notebooks"


def course_notebooks() -> list[Path]:
    """The ordered course notebooks (01_... to 07_...)."""
    return sorted(p for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def execute(path: Path, quick: bool, timeout: int = 3600, write: bool = True, record: dict | None = None) -> float:
    """Run a notebook top to bottom in its own folder (full mode unless ``quick``), write
    the outputs back into the file, and return the wall time in seconds. The mode, the
    seconds and ``record`` (the run's facts: :func:`seglab.notebook_record.run_facts`) go
    into the metadata, ``seglab.executed``."""
    import nbformat
    from nbclient import NotebookClient

    env_before = os.environ.get("SEGLAB_QUICK")
    os.environ["SEGLAB_QUICK"] = "1" if quick else "0"
    try:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    finally:
        if env_before is None:
            os.environ.pop("SEGLAB_QUICK", None)
        else:
            os.environ["SEGLAB_QUICK"] = env_before
    if write:
        meta = nb.metadata.setdefault("seglab", {})
        meta["executed"] = {"mode": "quick" if quick else "full", "seconds": round(seconds, 1), **(record or {})}
        meta["version"] = __version__   # the seglab that produced these outputs (tests check it)
        nbformat.write(nb, path)
    return seconds


_BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")


def stamp_bootstrap(path: Path) -> bool:
    """Make the notebook's first code cell the current bootstrap cell, and its Colab badge
    link to the current release. True if anything changed."""
    data = json.loads(path.read_text())
    source = BOOTSTRAP_SOURCE_ISBI if "biomedical" in path.name else BOOTSTRAP_SOURCE
    changed = False
    first_markdown = next((c for c in data["cells"] if c["cell_type"] == "markdown"), None)
    if first_markdown is not None:
        text = "".join(first_markdown["source"])
        stamped = _BADGE.sub(lambda _: colab_badge(path.name), text)
        if stamped != text:
            first_markdown["source"], changed = stamped.splitlines(keepends=True), True
    code = next((c for c in data["cells"] if c["cell_type"] == "code"), None)
    if code is not None and "".join(code["source"]) != source:
        code["source"], changed = source.splitlines(keepends=True), True
    if changed:
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return changed
