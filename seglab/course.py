"""Plumbing for the course notebooks: the repository URL (defined here, once), the Colab
badge and bootstrap cell every notebook carries, and re-executing notebooks.

Every notebook's first code cell is exactly :data:`BOOTSTRAP_SOURCE` (a test checks it),
so changing the repository URL here and running ``python tasks.py stamp`` updates all
notebooks at once.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ._version import __version__

REPO_URL = "https://github.com/seglab-course/seglab"
# The git tag of this release: Colab badges open it and the bootstrap installs it, so a
# notebook always runs against the code that produced its outputs.
RELEASE_TAG = f"v{__version__}"

BOOTSTRAP_SOURCE = f"""# Setup: on Google Colab this installs seglab and downloads the data; elsewhere it does nothing.
import sys
if "google.colab" in sys.modules:
    # Colab's own torch is kept (seglab's requirements are loose on purpose).
    %pip install -q "seglab[course] @ git+{REPO_URL}@{RELEASE_TAG}"
    !seglab download camvid"""

BOOTSTRAP_SOURCE_ISBI = BOOTSTRAP_SOURCE.replace("seglab download camvid", "seglab download isbi-em")


def colab_url(notebook: str) -> str:
    """The 'Open in Colab' link of ``notebooks/<notebook>``."""
    path = REPO_URL.replace("https://github.com/", "")
    return f"https://colab.research.google.com/github/{path}/blob/{RELEASE_TAG}/notebooks/{notebook}"


def colab_badge(notebook: str) -> str:
    """Markdown for the 'Open in Colab' badge."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook)})")


def runs_dir() -> Path:
    """Where notebooks write their training runs: ``runs/`` in the repository (ignored by
    git), or ``~/seglab-runs`` outside a checkout (Colab). Notebook 05 finds notebook 04's
    model here. Quick mode (``SEGLAB_QUICK=1``) uses its own ``quick/`` subfolder, so that a
    smoke run of the notebooks never replaces the models of a full run."""
    from .data import quick_mode
    repo = Path(__file__).resolve().parent.parent
    base = repo / "runs" if (repo / "pyproject.toml").exists() else Path.home() / "seglab-runs"
    return base / "quick" if quick_mode() else base


def notebooks_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "notebooks"


def course_notebooks() -> list[Path]:
    """The ordered course notebooks (01_... to 07_...)."""
    return sorted(p for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def execute(path: Path, quick: bool, timeout: int = 3600, write: bool = True) -> float:
    """Run a notebook top to bottom in its own folder (full mode unless ``quick``), write
    the outputs back into the file, and return the wall time in seconds."""
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
        nb.metadata.setdefault("seglab", {})["executed"] = {"mode": "quick" if quick else "full",
                                                            "seconds": round(seconds, 1)}
        nbformat.write(nb, path)
    return seconds


def stamp_bootstrap(path: Path) -> bool:
    """Make the notebook's first code cell the current bootstrap cell. True if changed."""
    data = json.loads(path.read_text())
    source = BOOTSTRAP_SOURCE_ISBI if "biomedical" in path.name else BOOTSTRAP_SOURCE
    for cell in data["cells"]:
        if cell["cell_type"] == "code":
            if "".join(cell["source"]) == source:
                return False
            cell["source"] = source.splitlines(keepends=True)
            path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
            return True
    return False
