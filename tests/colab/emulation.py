"""An emulated Google Colab runtime for tests/test_colab_emulation.py.

* :func:`runtime_venv`: a virtual environment with Colab's recorded versions of the
  packages that matter (``constraints.txt`` beside this file) and this machine's torch
  pair; built once into a cache folder, then hard-link copied for each test run, so that
  the bootstrap's pip can change the copy and never the cache.
* :func:`kernel_manager`: a Jupyter kernel of that environment whose start-up imports a
  stand-in ``google.colab`` (written here: ``drive.mount`` makes a folder), so that the
  notebooks' ``"google.colab" in sys.modules`` is true, as on Colab.
* :func:`serve` and :func:`write_manifest`: data on a local HTTP server (127.0.0.1 only)
  with a manifest that lists exactly its files.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from local_server import serve  # noqa: F401  (emulation.serve: the data server the tests use)

HERE = Path(__file__).resolve().parent
CONSTRAINTS = HERE / "constraints.txt"
# The torch pair on this machine's disk (CPU runs of a CUDA build); Colab's own (2.11, CPU
# build, Python 3.13) has no wheel for this Python.
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
# Colab's packages that seglab or its notebooks touch, and the Jupyter stack whose versions
# decide what Colab's front end can render.
COLAB_PACKAGES = ["pip", "ipykernel", "ipython", "ipywidgets", "widgetsnbextension", "jupyterlab_widgets",
                  "notebook", "tornado", "jupyter_client", "jupyter_core", "traitlets", "pyzmq", "numpy",
                  "pillow", "tqdm", "matplotlib", "scikit-image", "scikit-learn", "scipy", "requests", "pooch",
                  "filelock", "platformdirs", "packaging", "pytest"]
# Colab pins that have no release for Python 3.11 (Colab runs 3.13); none of them is watched.
NOT_FOR_THIS_PYTHON = {"tifffile"}

STANDIN_COLAB = '''"""A stand-in for Google Colab's own package, written by seglab's Colab emulation test."""
'''
STANDIN_DRIVE = '''"""google.colab.drive, stand-in: mounting makes the folder (the test's own Drive)."""
import os


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    os.makedirs(os.path.join(mountpoint, "MyDrive"), exist_ok=True)
    print(f"Mounted at {mountpoint}")
'''


def _pins_for_this_python() -> str:
    lines = CONSTRAINTS.read_text(encoding="utf-8").splitlines()
    return "\n".join(x for x in lines if x.split("==")[0].lower() not in NOT_FOR_THIS_PYTHON) + "\n"


def _cache_key() -> str:
    text = _pins_for_this_python() + " ".join(TORCH + COLAB_PACKAGES) + sys.version
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def pip_freeze(env_dir: Path) -> dict[str, str]:
    """``{name: version}`` of everything installed in the environment (names normalised)."""
    out = subprocess.run([str(python(env_dir)), "-m", "pip", "freeze", "--all"], capture_output=True,
                         text=True, check=True).stdout
    versions = {}
    for line in out.splitlines():
        name, sep, version = line.partition("==")
        if not sep:
            name, _, version = line.partition(" @ ")
        versions[name.strip().lower().replace("_", "-")] = version.strip()
    return versions


def colab_versions() -> dict[str, str]:
    """Colab's recorded ``{name: version}`` (names normalised)."""
    pins = [x.split("==") for x in CONSTRAINTS.read_text(encoding="utf-8").splitlines()
            if x and not x.startswith("#")]
    return {name.lower().replace("_", "-"): version for name, version in pins}


def _build(target: Path, log) -> None:
    venv.create(target, with_pip=True, symlinks=True)
    pins = target / "colab-constraints.txt"
    pins.write_text(_pins_for_this_python(), encoding="utf-8")
    pip = [str(python(target)), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    # Colab's packages first (with its versions), then the torch pair, which may lift the
    # packaging tools it needs (setuptools) above Colab's.
    for args in (["-c", str(pins), *COLAB_PACKAGES], TORCH):
        subprocess.run([*pip, *args], check=True, stdout=log, stderr=subprocess.STDOUT)


def cache_dir() -> Path:
    """Where the pristine runtime is kept between runs (and CI runs on the same machine):
    $SEGLAB_COLAB_CACHE, else ~/.cache/seglab. One per version of the package list."""
    base = os.environ.get("SEGLAB_COLAB_CACHE")
    if not base:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "seglab"
    return Path(base) / f"colab-runtime-{_cache_key()}"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:          # another file system
        shutil.copy2(src, dst)


def runtime_venv(dest: Path, log_path: Path) -> Path:
    """A fresh copy of the emulated runtime at ``dest`` (the cached one is built on first use)."""
    from filelock import FileLock

    pristine = cache_dir()
    pristine.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(pristine) + ".lock"):
        if not (pristine / "ready").exists():
            building = pristine.with_name(pristine.name + ".building")
            shutil.rmtree(building, ignore_errors=True)
            with open(log_path, "w") as log:
                _build(building, log)
            (building / "ready").write_text("built\n")
            shutil.rmtree(pristine, ignore_errors=True)
            building.rename(pristine)
            for old in pristine.parent.glob("colab-runtime-*"):   # runtimes of older package lists
                if old.is_dir() and old != pristine and not old.name.endswith(".building"):
                    shutil.rmtree(old, ignore_errors=True)
    # a venv finds its prefix from pyvenv.cfg beside bin/, so a copy elsewhere works; hard
    # links cost no space, and pip replaces files (never writes into them)
    shutil.copytree(pristine, dest, symlinks=True, copy_function=_link_or_copy)
    return dest


def write_standin(folder: Path) -> Path:
    """The stand-in ``google.colab`` package under ``folder`` (for PYTHONPATH)."""
    package = folder / "google" / "colab"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(STANDIN_COLAB)
    (package / "drive.py").write_text(STANDIN_DRIVE)
    return folder


def kernel_env(runtime: Path, home: Path, standin: Path, **extra: str) -> dict:
    """The kernel's environment: Colab's runtime first on PATH, a private HOME, a start-up
    file that imports ``google.colab``, nothing of this machine's seglab settings."""
    ipython_dir = home / ".ipython"
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-colab.py").write_text("import google.colab  # as Colab's kernel does at start-up\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SEGLAB_", "PYTHON", "VIRTUAL_ENV", "JUPYTER", "MPLBACKEND"))}
    env.update(PATH=f"{runtime / 'bin'}{os.pathsep}{env.get('PATH', '')}", HOME=str(home),
               PYTHONPATH=str(standin), IPYTHONDIR=str(ipython_dir), PIP_NO_INPUT="1",
               PYDEVD_DISABLE_FILE_VALIDATION="1", **extra)   # the kernel's debugger: no start-up warning
    return env


def kernel_spec(folder: Path, runtime: Path, name: str = "colab") -> Path:
    spec = folder / name
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python(runtime)), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "emulated Colab", "language": "python"}))
    return folder


def write_manifest(data: Path, dataset: str) -> dict:
    """The manifest of every file under ``data`` (seglab's format)."""
    files = sorted(p for p in data.rglob("*") if p.is_file())
    return {"dataset": dataset, "files": [
        {"path": p.relative_to(data).as_posix(), "size": p.stat().st_size,
         "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in files]}
