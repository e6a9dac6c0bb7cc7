"""The README's two commands: what `tasks.py course` opens and what `tasks.py test` runs.

The commands themselves are not run (they build a .venv of several GB); `tasks.run` is
replaced by a recorder, so the checks see the exact command lines.
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
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


def test_notebooks_refuses_to_record_outputs_of_uncommitted_code(tasks, monkeypatch):
    monkeypatch.setattr(tasks, "uncommitted_changes", lambda: ["seglab/engine.py"])
    with pytest.raises(SystemExit, match=r"seglab/engine.py differ from the last commit.*--allow-dirty"):
        tasks.cmd_notebooks(["04"])
    assert tasks.calls == []


def test_notebooks_with_allow_dirty_records_what_differed_and_one_run_id(tasks, monkeypatch):
    monkeypatch.setattr(tasks, "uncommitted_changes", lambda: ["seglab/engine.py"])
    tasks.cmd_notebooks(["--allow-dirty", "04", "05"])
    (call,) = tasks.calls
    selection, run_id, changed = call[-3:]
    assert selection == "04,05" and json.loads(changed) == ["seglab/engine.py"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run_id)
    assert "write_time_table(nb)" in call[2] and "record=facts" in call[2]


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                   capture_output=True)


def test_new_outputs_and_time_tables_are_not_uncommitted_code_but_new_prose_is(tasks, monkeypatch, tmp_path):
    (tmp_path / "seglab").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "seglab" / "a.py").write_text("x = 1\n")
    notebook = tmp_path / "notebooks" / "01_x.ipynb"

    def write(header: str, output: str) -> None:
        cells = [{"cell_type": "markdown", "source": [header]},
                 {"cell_type": "code", "source": ["print(1)"], "outputs": [{"output_type": "stream", "text": output}]}]
        notebook.write_text(json.dumps({"cells": cells, "metadata": {}}, indent=1))

    write("# 01\n<!-- times -->\n| CPU A | 5 s |\n<!-- /times -->\n", "1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "first")
    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    write("# 01\n<!-- times -->\n| CPU B | 7 s |\n<!-- /times -->\n", "1 (again)\n")
    (tmp_path / "seglab" / "new.py").write_text("untracked\n")
    assert tasks.uncommitted_changes() == []
    write("# 01, reworded\n<!-- times -->\n<!-- /times -->\n", "1\n")
    (tmp_path / "seglab" / "a.py").write_text("x = 2\n")
    assert tasks.uncommitted_changes() == ["notebooks/01_x.ipynb", "seglab/a.py"]
