"""Shared fixtures: synthetic data in the real layouts (offline), and the real data sets
when they are present (CI sets SEGLAB_DATA=../shared/camvid and SEGLAB_ISBI_DATA)."""
import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from seglab.synthetic import make_synthetic_camvid, make_synthetic_isbi  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes decoded caches into a private temporary folder, never into the
    user's cache or next to the data."""
    monkeypatch.setenv("SEGLAB_CACHE", str(tmp_path_factory.getbasetemp() / "seglab-cache"))


@pytest.fixture(scope="session")
def synthetic_camvid(tmp_path_factory) -> Path:
    """A tiny CamVid look-alike: 12/4/4 pairs of 60x80 PNGs with split files."""
    return make_synthetic_camvid(tmp_path_factory.mktemp("camvid"))


@pytest.fixture(scope="session")
def synthetic_isbi(tmp_path_factory) -> Path:
    return make_synthetic_isbi(tmp_path_factory.mktemp("isbi"))


def _real(env: str, fallback: str) -> Path | None:
    # tasks.py points SEGLAB_DATA at generated data when the real data is missing: not "real"
    candidates = [None if os.environ.get("SEGLAB_SYNTHETIC_DATA") else os.environ.get(env), fallback]
    for c in candidates:
        if c and (Path(c) / "README.md").exists() or (c and Path(c).is_dir() and any(Path(c).iterdir())):
            return Path(c)
    return None


@pytest.fixture(scope="session")
def real_camvid() -> Path:
    """The real CamVid (SEGLAB_DATA, else ../shared/camvid next to the repo); skips without it."""
    path = _real("SEGLAB_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "camvid"))
    if path is None or not (path / "test").is_dir():
        pytest.skip("real CamVid not found: set SEGLAB_DATA to run the real-data tests")
    return path


@pytest.fixture(scope="session")
def real_isbi() -> Path:
    path = _real("SEGLAB_ISBI_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "isbi-em"))
    if path is None or not (path / "image").is_dir():
        pytest.skip("real ISBI EM not found: set SEGLAB_ISBI_DATA to run the real-data tests")
    return path
