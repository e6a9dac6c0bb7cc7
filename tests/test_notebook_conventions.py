"""Every course notebook follows the conventions of CONTRIBUTING.md ("The notebooks").

The checks read the committed .ipynb files as JSON (no kernel, no data, a fraction of a
second): the Colab badge, the bootstrap cell, the imports cell, the cells that nbval
compares, the closing sections, the file size, and committed full-mode outputs without
errors. They run on every ``notebooks/NN_*.ipynb`` that exists, so a notebook being
written does not break the suite before it is added.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from seglab import __version__
from seglab.course import BOOTSTRAP_SOURCE, BOOTSTRAP_SOURCE_ISBI, RELEASE_TAG, colab_url
from seglab.notebook_record import format_seconds, gpu_rows, time_table

from notebook_numbers import MAX_WORDS, describe_long, long_markdown_cells, source

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
MAX_BYTES = 3 * 1024 * 1024
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
MIN_CHECKED_CELLS = 3

if not PATHS:  # pragma: no cover - only before the first notebook exists
    pytest.skip("no course notebooks yet", allow_module_level=True)


@pytest.fixture(params=PATHS, ids=[p.stem for p in PATHS])
def notebook(request) -> tuple[Path, dict]:
    path = request.param
    return path, json.loads(path.read_text(encoding="utf-8"))


def _executed(nb: dict) -> dict:
    """What the run that made the outputs recorded (metadata seglab.executed; empty if none)."""
    return nb.get("metadata", {}).get("seglab", {}).get("executed", {})


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_first_cell_is_markdown_with_colab_badge(notebook):
    path, nb = notebook
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown", f"{path.name}: the first cell must be markdown (title, badge, ...)"
    text = source(first)
    assert text.lstrip().startswith("# "), f"{path.name}: the first cell must start with the title (# ...)"
    assert "colab-badge.svg" in text, f"{path.name}: the first cell has no 'Open in Colab' badge"
    assert f"]({colab_url(path.name)})" in text, (
        f"{path.name}: the Colab badge must link to {colab_url(path.name)} "
        f"(use seglab.course.colab_badge({path.name!r}))")


def test_header_has_the_required_parts(notebook):
    path, nb = notebook
    text = source(nb["cells"][0])
    for part in ("What you will learn", "What you need", "Time"):
        assert part in text, f"{path.name}: the first cell must say '{part}' (see CONTRIBUTING.md)"


def test_first_code_cell_is_the_bootstrap(notebook):
    path, nb = notebook
    expected = BOOTSTRAP_SOURCE_ISBI if path.name.startswith("07_biomedical") else BOOTSTRAP_SOURCE
    cells = _code_cells(nb)
    assert cells, f"{path.name}: no code cells"
    assert source(cells[0]) == expected, (
        f"{path.name}: the first code cell must be exactly the bootstrap cell; run `python tasks.py stamp`")


def test_notebook_bootstrap_and_package_share_one_version(notebook):
    path, nb = notebook
    recorded = nb.get("metadata", {}).get("seglab", {}).get("version")
    assert recorded == __version__, (
        f"{path.name}: its outputs come from seglab {recorded} (metadata seglab.version), the package is "
        f"{__version__}; re-execute it (`python tasks.py notebooks {path.stem}`)")
    bootstrap = source(_code_cells(nb)[0])
    assert f"@{RELEASE_TAG}\"" in bootstrap and f'check_version("{recorded}")' in bootstrap, (
        f"{path.name}: the bootstrap must install {RELEASE_TAG} and check {recorded}; run `python tasks.py stamp`")


def test_second_code_cell_sets_mode_and_prints_device(notebook):
    path, nb = notebook
    cells = _code_cells(nb)
    assert len(cells) >= 2, f"{path.name}: needs an imports cell after the bootstrap cell"
    text = source(cells[1])
    assert "quick_mode()" in text, f"{path.name}: the second code cell must set QUICK = seglab.quick_mode()"
    assert "describe(" in text, f"{path.name}: the second code cell must print seglab.hardware.describe()"


def test_enough_checked_cells_with_outputs(notebook):
    path, nb = notebook
    checked = [c for c in _code_cells(nb) if source(c).lstrip().startswith(CHECK_MARK)]
    assert len(checked) >= MIN_CHECKED_CELLS, (
        f"{path.name}: {len(checked)} cell(s) start with '{CHECK_MARK}', at least {MIN_CHECKED_CELLS} needed")
    for cell in checked:
        body = source(cell).splitlines()[1:2]
        assert cell.get("outputs"), (
            f"{path.name}: the checked cell {body!r} has no committed output for nbval to compare")


def test_ends_with_recap_and_exercises(notebook):
    path, nb = notebook
    markdown = "\n".join(source(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    for section in ("Recap", "Exercises"):
        assert re.search(rf"^#+\s*{section}\b", markdown, re.MULTILINE), (
            f"{path.name}: needs a '## {section}' section at the end")


def test_file_is_small_enough(notebook):
    path, _ = notebook
    size = path.stat().st_size
    assert size < MAX_BYTES, (f"{path.name} is {size / 1e6:.1f} MB; keep it under 3 MB "
                              f"(smaller figures, lower dpi, no large widget state)")


def test_outputs_are_committed_without_errors(notebook):
    path, nb = notebook
    cells = _code_cells(nb)
    unexecuted = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and c.get("execution_count") is None]
    assert not unexecuted, (f"{path.name}: code cells {unexecuted[:5]} were not executed; run "
                            f"`python tasks.py notebooks {path.stem}` and commit the outputs")
    for cell in cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", (
                f"{path.name}: a committed output is an error: {output.get('ename')}: {output.get('evalue')}")


def test_committed_outputs_come_from_full_mode(notebook):
    path, nb = notebook
    executed = _executed(nb)
    assert executed.get("mode") == "full", (
        f"{path.name}: the committed outputs must come from a full-mode run (metadata seglab.executed.mode "
        f"is {executed.get('mode')!r}); run `python tasks.py notebooks {path.stem}`")
    assert isinstance(executed.get("seconds"), (int, float)), f"{path.name}: metadata seglab.executed.seconds missing"


def test_no_markdown_cell_is_over_300_words(notebook):
    path, nb = notebook
    long_cells = long_markdown_cells(nb, MAX_WORDS)
    assert not long_cells, describe_long(path.name, long_cells)


def test_header_time_table_is_the_one_generated_from_the_recorded_run(notebook):
    path, nb = notebook
    executed = _executed(nb)
    expected = time_table(executed, gpu_rows(path.stem))
    assert expected in source(nb["cells"][0]), (
        f"{path.name}: the header's time block (between <!-- times --> and <!-- /times -->) must be the table "
        f"generated from metadata seglab.executed; run `python tasks.py stamp`. Expected:\n{expected}")


def test_all_notebooks_record_one_run_of_committed_code_on_one_machine():
    records = {p.name: _executed(json.loads(p.read_text(encoding="utf-8"))) for p in PATHS}
    problems = []
    for field in ("code_version", "cpu", "device", "run_id"):
        groups: dict = {}
        for name, executed in records.items():
            groups.setdefault(str(executed.get(field, "(not recorded)")), []).append(name)
        if len(groups) > 1 or "(not recorded)" in groups:
            problems.append(f"{field}: " + "; ".join(f"{value}: {', '.join(names)}"
                                                               for value, names in sorted(groups.items())))
    dirty = [name for name, executed in records.items() if executed.get("uncommitted_changes")]
    if dirty:
        problems.append(f"run with uncommitted changes (--allow-dirty): {', '.join(dirty)}")
    assert not problems, ("the committed notebooks must come from one `python3 tasks.py notebooks` run of committed "
                          "code on one machine:\n" + "\n".join(problems))


def test_the_learners_time_table_quotes_the_recorded_run(notebook):
    """notebooks/README.md tells learners how long each notebook takes: the recorded time, on the recorded machine."""
    path, nb = notebook
    executed = _executed(nb)
    page = (NOTEBOOKS / "README.md").read_text(encoding="utf-8")
    row = next((line for line in page.splitlines() if line.startswith(f"| `{path.stem}` |")), None)
    assert row is not None, f"notebooks/README.md: the time table has no row for {path.stem}"
    wanted = format_seconds(executed["seconds"]) if executed.get("mode") == "full" else "not measured"
    assert row.rstrip(" |").rsplit("|", 1)[-1].strip() == wanted, (
        f"notebooks/README.md: the row of {path.stem} should end with {wanted!r}, the recorded run's time")
    assert not executed.get("device") or executed["device"] in page, (
        f"notebooks/README.md should name the machine {executed['device']!r} that {path.stem}'s time was measured on")


def test_quick_mode_runs_never_replace_full_mode_models(monkeypatch):
    from seglab.course import runs_dir
    monkeypatch.setenv("SEGLAB_QUICK", "0")
    full = runs_dir()
    monkeypatch.setenv("SEGLAB_QUICK", "1")
    quick = runs_dir()
    assert quick != full and quick.parent == full
    assert not (full / "04_training").is_relative_to(quick)
