"""The Colab side of seglab.course, on this machine: the bootstrap cell stops with what to do
when the install or the download fails, the version check speaks only when the versions
differ, and runs go to Google Drive on Colab (and nowhere new elsewhere).

Colab is faked with a ``google.colab`` module in ``sys.modules`` (that is all the notebooks
look at); the whole path in Colab's package set is tests/test_colab_emulation.py.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from seglab import __version__, course


@pytest.fixture
def on_colab(monkeypatch, tmp_path):
    """A fake google.colab whose drive.mount makes the folder (or fails, when told to)."""
    calls = []

    def mount(mountpoint, **kw):
        calls.append(mountpoint)
        if getattr(drive, "refuse", False):
            raise ValueError("mount failed")
        (Path(mountpoint) / "MyDrive").mkdir(parents=True, exist_ok=True)

    drive = types.SimpleNamespace(mount=mount)
    colab = types.ModuleType("google.colab")
    colab.drive = drive
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(course, "DRIVE_MOUNT", tmp_path / "drive")
    monkeypatch.setattr(course, "_drive", {"runs": None, "state": None})
    monkeypatch.setenv("SEGLAB_QUICK", "0")
    return types.SimpleNamespace(drive=drive, calls=calls, mount=tmp_path / "drive")


# --------------------------------------------------------------------------- the bootstrap cell

def _run_bootstrap(source: str, monkeypatch, tmp_path):
    """Run a bootstrap cell in an IPython shell that sees google.colab; returns the result."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}")
    shell = InteractiveShell.instance()
    try:
        return shell.run_cell(source)
    finally:
        InteractiveShell.clear_instance()


def test_a_failed_install_stops_the_bootstrap_and_says_how_to_retry(monkeypatch, tmp_path, capsys):
    source = course.BOOTSTRAP_SOURCE.replace(course.REPO_URL, (tmp_path / "unreachable").as_uri())
    result = _run_bootstrap(source, monkeypatch, tmp_path)
    assert isinstance(result.error_in_exec, SystemExit)
    message = str(result.error_in_exec)
    assert "Installing seglab failed" in message and "run this cell again" in message


def test_a_failed_download_stops_the_bootstrap_and_says_how_to_retry(monkeypatch, tmp_path):
    install = course.INSTALL_COMMAND
    assert install in course.BOOTSTRAP_SOURCE
    source = course.BOOTSTRAP_SOURCE.replace(install, "pip --version")   # an install that succeeds
    monkeypatch.setenv("SEGLAB_CAMVID_URL", "http://127.0.0.1:9/")        # nothing listens there
    monkeypatch.delenv("SEGLAB_DATA", raising=False)
    result = _run_bootstrap(source, monkeypatch, tmp_path)
    assert isinstance(result.error_in_exec, SystemExit)
    assert "Downloading the data failed" in str(result.error_in_exec)
    assert "resumes" in str(result.error_in_exec)


def test_the_bootstrap_installs_the_release_tag_with_the_colab_extra_and_shows_pips_output():
    line = next(x for x in course.BOOTSTRAP_SOURCE.splitlines() if "%pip install" in x)
    assert f'"seglab[colab] @ git+{course.REPO_URL}@{course.RELEASE_TAG}"' in line
    assert " -q" not in line and "[course]" not in line
    assert f'check_version("{__version__}")' in course.BOOTSTRAP_SOURCE


# --------------------------------------------------------------------------- the version check

def test_the_version_check_is_silent_when_the_versions_agree(capsys):
    course.check_version(__version__)
    assert capsys.readouterr().out == ""


def test_the_version_check_says_in_one_line_what_to_do_in_a_checkout(capsys):
    course.check_version("0.0.1")
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert f"seglab {__version__} is installed" in out and "git checkout v0.0.1" in out


def test_the_version_check_on_colab_gives_the_install_command_and_the_restart(on_colab, capsys):
    course.check_version("0.0.1")
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert f"git+{course.REPO_URL}@v0.0.1" in out and "restart the runtime" in out


# --------------------------------------------------------------------------- runs in Google Drive

def test_outside_colab_the_drive_cell_does_nothing(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    before = course.runs_dir()
    assert course.keep_runs_in_drive(True) is None
    assert course.runs_dir() == before and capsys.readouterr().out == ""


def test_on_colab_runs_go_to_drive_and_the_next_notebook_finds_them(on_colab):
    folder = course.keep_runs_in_drive(True)
    assert folder == on_colab.mount / "MyDrive" / "seglab-runs" and on_colab.calls == [str(on_colab.mount)]
    assert course.runs_dir() == folder
    (folder / "04_training").mkdir(parents=True)
    (folder / "04_training" / "best.pt").write_bytes(b"x")
    path, message = course.find_run("04_training")
    assert path == folder / "04_training" / "best.pt" and "Google Drive" in message


def test_without_a_run_in_drive_notebook_05_says_where_it_looked(on_colab):
    course.keep_runs_in_drive(True)
    path, message = course.find_run("04_training")
    assert path is None
    assert "no run of notebook 04 in Google Drive" in message and "USE_DRIVE = True" in message


def test_with_drive_off_notebook_05_says_why_the_run_is_missing(on_colab, capsys):
    course.keep_runs_in_drive(False)
    assert "Google Drive is off" in capsys.readouterr().out
    path, message = course.find_run("04_training")
    assert path is None and message.startswith("USE_DRIVE is off") and "fresh runtime" in message


def test_a_refused_mount_is_reported_and_runs_stay_in_the_runtime(on_colab, capsys):
    on_colab.drive.refuse = True
    before = course.runs_dir()
    assert course.keep_runs_in_drive(True) is None
    assert "Google Drive not mounted (mount failed)" in capsys.readouterr().out
    assert course.runs_dir() == before
    assert "mounting failed: ValueError: mount failed" in course.find_run("04_training")[1]


def test_stamping_moves_badge_and_bootstrap_to_a_new_release(monkeypatch, tmp_path):
    notebook = tmp_path / "02_data.ipynb"
    notebook.write_text((Path(course.__file__).parents[1] / "notebooks" / "02_data.ipynb").read_text())
    monkeypatch.setattr(course, "RELEASE_TAG", "v9.9.9")
    monkeypatch.setattr(course, "BOOTSTRAP_SOURCE", course.BOOTSTRAP_SOURCE.replace(__version__, "9.9.9"))
    assert course.stamp_bootstrap(notebook) is True
    text = notebook.read_text()
    assert "blob/v9.9.9/notebooks/02_data.ipynb" in text and f"blob/v{__version__}/" not in text
    assert 'check_version(\\"9.9.9\\")' in text
    assert course.stamp_bootstrap(notebook) is False
