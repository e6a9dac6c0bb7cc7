"""The README's two commands: what `tasks.py course` opens and what `tasks.py test` runs.

The commands themselves are not run (they build a .venv of several GB); `tasks.run` is
replaced by a recorder, so the checks see the exact command lines.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tasks(monkeypatch):
    spec = importlib.util.spec_from_file_location("seglab_tasks", ROOT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = []
    monkeypatch.setattr(module, "setup", lambda *a, **k: None)
    monkeypatch.setattr(module, "run", lambda *cmd, **k: calls.append([str(c) for c in cmd]) or 0)
    module.calls = calls
    return module


def test_course_opens_jupyterlab_on_notebook_01_with_the_notebooks_folder_as_root(tasks, monkeypatch):
    monkeypatch.setenv("SEGLAB_DATA", str(ROOT))  # data "present": no download
    tasks.cmd_course()
    lab = [c for c in tasks.calls if c[1:4] == ["-m", "jupyter", "lab"]]
    assert len(lab) == 1, tasks.calls
    args = lab[0][4:]
    opened = [a for a in args if not a.startswith("-")]
    assert opened == [str(ROOT / "notebooks" / "01_introduction.ipynb")]
    assert Path(opened[0]).is_file()
    assert f"--ServerApp.root_dir={ROOT / 'notebooks'}" in args


def test_the_test_task_runs_nbval_with_a_sanitize_file_outside_the_notebooks_folder(tasks, monkeypatch):
    monkeypatch.setattr(tasks, "synthetic_data_env", lambda env: env)
    with pytest.raises(SystemExit):
        tasks.cmd_test([])
    (pytest_call,) = [c for c in tasks.calls if c[1:3] == ["-m", "pytest"]]
    given = pytest_call[pytest_call.index("--nbval-sanitize-with") + 1]
    sanitize = (ROOT / given).resolve()  # tasks.py runs its commands from ROOT
    assert sanitize.is_file()
    assert ROOT / "notebooks" not in sanitize.parents
    assert "notebooks" in pytest_call and "--nbval-lax" in pytest_call
