"""The classroom assignments (classroom/): nbgrader round trip and the pieces around it.

The round trip runs on a temporary copy of the course folder:
1. build the student versions (``classroom.py student``: ``nbgrader generate_assignment``);
2. autograde, in one run, three "students": the instructor versions handed in as they are
   (full marks), the untouched student versions (zero on every graded cell, and the
   grader must not crash), and a copy of the instructor version with one deliberately
   wrong answer (loses exactly that exercise's points).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from script_import import load_script

ROOT = Path(__file__).resolve().parents[1]
CLASSROOM = ROOT / "classroom"
WRONG_EXERCISE = ("a1_metrics", "a1-pixel-accuracy")      # assignment, solution cell
WRONG_SOLUTION = '''def pixel_accuracy(cm):
    """A classic slip: divide by the number of matrix entries, not by the number of pixels."""
    return float(cm.diag().sum()) / float(cm.numel())
'''


# a correct answer that makes torch print a UserWarning (to stderr) when tested
WARNING_SOLUTION = '''def pixel_accuracy(cm):
    cm = torch.tensor(cm)         # copying a tensor this way warns
    total = cm.sum()
    return float(cm.diag().sum()) / float(total) if total else float("nan")
'''
# a correct answer that also tries to read the solutions, the gradebook, the classmates'
# folders and the network, and to write the gradebook
SNEAKY_SOLUTION = '''import os, socket
for _target in {targets!r}:
    try:
        print("LEAKED", _target, os.listdir(_target) if os.path.isdir(_target) else len(open(_target, "rb").read()))
    except OSError as _err:
        print("BLOCKED", _target, type(_err).__name__)
try:
    open({gradebook!r}, "ab").write(b"x"); print("LEAKED write")
except OSError as _err:
    print("BLOCKED write", type(_err).__name__)
try:
    socket.create_connection(("1.1.1.1", 53), timeout=5); print("LEAKED network")
except OSError as _err:
    print("BLOCKED network", type(_err).__name__)


def pixel_accuracy(cm):
    total = cm.sum()
    return float(cm.diag().sum()) / float(total) if total else float("nan")
'''


def _with_solution(path: Path, grade_id: str, code: str) -> str:
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            cell["source"] = code
    return json.dumps(nb)


cr = load_script(CLASSROOM / "classroom.py", "seglab_classroom")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


SOURCES = sorted(CLASSROOM.glob("source/*/*.ipynb"))


# --------------------------------------------------------------------------- static checks (fast)

def test_at_least_eight_graded_exercises_with_points():
    exercises = cr.exercises(CLASSROOM)
    assert len(exercises) >= 8
    assert all(e["points"] > 0 for e in exercises)
    ids = [e["grade_id"] for e in exercises]
    assert len(ids) == len(set(ids)), "grade ids must be unique across the course"
    assert {e["assignment"] for e in exercises} == set(cr.assignments(CLASSROOM))


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_source_notebook_is_well_formed(path):
    cells = _cells(path)
    code = [c for c in cells if c["cell_type"] == "code"]
    # first code cell: the Colab bootstrap (installs this release of seglab from this repository)
    from seglab.course import RELEASE_TAG, REPO_URL
    assert "google.colab" in _source(code[0]) and REPO_URL in _source(code[0])
    assert _source(code[0]) == cr.setup_source(REPO_URL, RELEASE_TAG), "run `classroom.py stamp`"
    assert all(not c.get("outputs") for c in code), "commit the instructor versions without outputs"
    solutions = [c for c in cells if _meta(c).get("solution")]
    graded = [c for c in cells if _meta(c).get("grade")]
    assert solutions and len(solutions) <= len(graded)
    for cell in solutions:
        text = _source(cell)
        assert text.count("### BEGIN SOLUTION") == text.count("### END SOLUTION") >= 1, _meta(cell)["grade_id"]
    for cell in graded:
        text = _source(cell)
        grade_id = _meta(cell)["grade_id"]
        visible, _, hidden = text.partition("### BEGIN HIDDEN TESTS")
        assert hidden and "### END HIDDEN TESTS" in hidden, f"{grade_id}: no hidden tests"
        assert "assert" in visible and "Visible tests passed." in visible, f"{grade_id}: no visible tests"
        assert "seglab" in hidden or "reference" in hidden.lower(), f"{grade_id}: hidden tests compare with no reference"
        assert _meta(cell)["locked"] and _meta(cell)["points"] > 0
    # every graded cell follows the solution cell it tests (one or more test cells each)
    tested, last_solution = set(), None
    for cell in cells:
        if _meta(cell).get("solution"):
            last_solution = _meta(cell)["grade_id"]
        elif _meta(cell).get("grade"):
            assert last_solution and _meta(cell)["grade_id"].startswith(last_solution + "-"), _meta(cell)["grade_id"]
            tested.add(last_solution)
    assert tested == {_meta(c)["grade_id"] for c in solutions}
    # the hidden tests' asserts all say what went wrong
    for cell in graded:
        hidden = _source(cell).partition("### BEGIN HIDDEN TESTS")[2]
        for statement in _assert_statements(hidden):
            assert _has_message(statement), f"{_meta(cell)['grade_id']}: no message in {statement!r}"
    # the hand-in rules and the self-check cell, which runs every test cell
    assert any("Do not rename the file" in _source(c) for c in cells if c["cell_type"] == "markdown")
    check = next(c for c in code if "selfcheck.run(" in _source(c))
    headers = json.loads(_source(check).partition("selfcheck.run(")[2].rstrip(")\n "))
    assert headers == [_source(c).splitlines()[0] for c in graded]


def _assert_statements(code: str) -> list[str]:
    """The assert statements of some code, continuation lines joined."""
    import ast
    return [ast.get_source_segment(code, node) for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Assert)]


def _has_message(statement: str) -> bool:
    import ast
    return ast.parse(statement).body[0].msg is not None


def test_find_submissions_understands_the_layouts(tmp_path):
    inbox = tmp_path / "inbox"
    files = {
        "ana/a1_metrics/a1_metrics.ipynb": 1,            # nbgrader layout
        "ben/Copy of a2_data.ipynb": 2,                   # Colab's "Save a copy in Drive"
        "ben/a2_data (1).ipynb": 3,                       # downloaded twice: the newer one counts
        "Chloé Martin_a3_unet.ipynb": 4,                  # flat file from a learning platform
        "a4_training.ipynb": 5,                           # no student: skipped
        "ana/notes.ipynb": 6,                             # not an assignment: skipped
    }
    for i, (name, _) in enumerate(files.items()):
        path = inbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    subs = cr.intake.find_submissions(inbox, CLASSROOM, cr.source_notebooks(CLASSROOM), cr.Roster([]))
    found = {(s.student, s.assignment): s.rel for s in subs if not s.problem}
    assert found == {
        ("ana", "a1_metrics"): "ana/a1_metrics/a1_metrics.ipynb",
        ("ben", "a2_data"): "ben/a2_data (1).ipynb",
        ("Chloe_Martin", "a3_unet"): "Chloé Martin_a3_unet.ipynb",
    }


def test_repair_metadata_restores_what_an_editor_dropped(tmp_path):
    """A notebook whose cell metadata was stripped (and one test cell deleted) gets its
    nbgrader metadata back, so nbgrader can grade it."""
    release = CLASSROOM / "source" / "a2_data" / "a2_data.ipynb"
    nb = json.loads(release.read_text())
    graded = {_meta(c)["grade_id"] for c in nb["cells"] if _meta(c)}
    deleted = "a2-resize-mask-tests"
    nb["cells"] = [c for c in nb["cells"] if _meta(c).get("grade_id") != deleted]
    for cell in nb["cells"]:
        cell["metadata"] = {}
        cell["id"] = "colab-" + cell["id"]          # ids changed too: match by first line
    path = tmp_path / "a2_data.ipynb"
    path.write_text(json.dumps(nb))
    assert cr.repair_metadata(path, release) == len(graded)
    repaired = _cells(path)
    assert {_meta(c)["grade_id"] for c in repaired if _meta(c)} == graded
    assert _meta(repaired[-1])["grade_id"] == deleted          # the deleted test cell comes back at the end
    assert cr.repair_metadata(path, release) == 0              # nothing left to repair


# --------------------------------------------------------------------------- the round trip

def _run(course: Path, *args: str) -> tuple[int, str, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(course / "classroom.py"), *args], cwd=course,
                          capture_output=True, text=True, timeout=1500)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classroom")
    course = tmp / "course"
    shutil.copytree(CLASSROOM, course, ignore=shutil.ignore_patterns(
        "release", "submitted", "autograded", "feedback", "gradebook.db", "grades*.csv", "grades*.txt", "*.log",
        "logs", "solutions", "imported.json", "roster.csv", "deadlines.csv", "extensions.csv",
        ".ipynb_checkpoints", "__pycache__"))
    code, log, generate_s = _run(course, "student")
    assert code == 0, log[-4000:]

    inbox = tmp / "inbox"
    for source in sorted(course.glob("source/*/*.ipynb")):
        assignment = source.parent.name
        (inbox / "instructor" / assignment).mkdir(parents=True)
        shutil.copy(source, inbox / "instructor" / assignment / source.name)        # nbgrader layout
        (inbox / "untouched").mkdir(exist_ok=True)
        shutil.copy(course / "release" / assignment / source.name,
                    inbox / "untouched" / f"Copy of {source.name}")                  # as saved by Colab
    assignment, solution_id = WRONG_EXERCISE
    nb = json.loads((course / "source" / assignment / f"{assignment}.ipynb").read_text())
    patched = [c for c in nb["cells"] if _meta(c).get("grade_id") == solution_id]
    assert len(patched) == 1
    patched[0]["source"] = WRONG_SOLUTION
    (inbox / f"wrong_{assignment}.ipynb").write_text(json.dumps(nb))                # flat file

    a1 = course / "source" / "a1_metrics" / "a1_metrics.ipynb"
    (inbox / "warned").mkdir()
    (inbox / "warned" / "a1_metrics.ipynb").write_text(_with_solution(a1, "a1-pixel-accuracy", WARNING_SOLUTION))
    (inbox / "broken_a1_metrics.ipynb").write_text("<!DOCTYPE html><html><body>Google Drive</body></html>")
    (inbox / "renamed").mkdir()
    shutil.copy(a1, inbox / "renamed" / "my final version.ipynb")
    (inbox / "sneaky").mkdir()
    probe = SNEAKY_SOLUTION.format(targets=[str(course / "source" / "a1_metrics" / "a1_metrics.ipynb"),
                                            str(course / "gradebook.db"), str(course / "submitted"), str(inbox)],
                                   gradebook=str(course / "gradebook.db"))
    (inbox / "sneaky" / "a1_metrics.ipynb").write_text(_with_solution(a1, "a1-pixel-accuracy", probe))

    code, log, autograde_s = _run(course, "autograde", str(inbox))
    assert code == 0, log[-6000:]
    with (course / "grades.csv").open() as f:
        grades = {row["student"]: row for row in csv.DictReader(f)}
    print(f"\nclassroom round trip: generate {generate_s:.0f} s, autograde {len(list(inbox.rglob('*.ipynb')))} files"
          f" + feedback {autograde_s:.0f} s")
    return course, grades, log


@pytest.mark.nbgrader
@pytest.mark.slow
def test_student_versions_hide_solutions_and_hidden_tests(round_trip):
    course, _, _ = round_trip
    for source in sorted(course.glob("source/*/*.ipynb")):
        release = course / "release" / source.parent.name / source.name
        released = {_meta(c).get("grade_id"): _source(c) for c in _cells(release)}
        for cell in _cells(source):
            meta, text = _meta(cell), _source(cell)
            if meta.get("solution"):
                student = released[meta["grade_id"]]
                assert "raise NotImplementedError()" in student
                for block in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", text, flags=re.S):
                    assert block.strip() and block.strip() not in student
            if meta.get("grade"):
                student = released[meta["grade_id"]]
                visible, _, hidden = text.partition("### BEGIN HIDDEN TESTS")
                assert visible.strip() in student
                hidden_body = hidden.partition("### END HIDDEN TESTS")[0].strip()
                assert hidden_body.splitlines()[0] not in student
        assert not any(m in release.read_text() for m in cr.SOLUTION_MARKERS)


@pytest.mark.nbgrader
@pytest.mark.slow
def test_instructor_versions_get_full_marks(round_trip):
    course, grades, _ = round_trip
    row = grades["instructor"]
    assert float(row["total"]) == float(row["max_total"]) == sum(e["points"] for e in cr.exercises(course))
    for e in cr.exercises(course):
        assert float(row[cr.exercise_column(e["grade_id"])]) == e["points"], e


@pytest.mark.nbgrader
@pytest.mark.slow
def test_untouched_student_versions_get_zero_on_every_graded_cell(round_trip):
    course, grades, _ = round_trip
    row = grades["untouched"]
    assert row["submitted"].split() == cr.assignments(course)
    assert float(row["total"]) == 0
    for e in cr.exercises(course):
        assert row[cr.exercise_column(e["grade_id"])] == "0", e
    # and nbgrader really ran them: the autograded notebooks show the stubs' error
    autograded = course / "autograded" / "untouched"
    assert sorted(p.parent.name for p in autograded.glob("*/*.ipynb")) == cr.assignments(course)
    assert "NotImplementedError" in (autograded / "a3_unet" / "a3_unet.ipynb").read_text()


@pytest.mark.nbgrader
@pytest.mark.slow
def test_one_wrong_answer_loses_exactly_that_exercise(round_trip):
    course, grades, _ = round_trip
    assignment, solution_id = WRONG_EXERCISE
    row = grades["wrong"]
    assert row["submitted"] == assignment
    for e in cr.exercises(course):
        column = cr.exercise_column(e["grade_id"])
        if e["assignment"] != assignment:
            assert row[column] == "", "only one assignment was handed in"
        elif column == solution_id:
            assert float(row[column]) == 0
        else:
            assert float(row[column]) == e["points"], e
    lost = next(e["points"] for e in cr.exercises(course) if cr.exercise_column(e["grade_id"]) == solution_id)
    full = sum(e["points"] for e in cr.exercises(course) if e["assignment"] == assignment)
    assert float(row[assignment]) == float(row["total"]) == full - lost


@pytest.mark.nbgrader
@pytest.mark.slow
def test_feedback_for_every_graded_notebook(round_trip):
    course, grades, _ = round_trip
    for student, row in grades.items():
        for assignment in row["submitted"].split():
            page = course / "feedback" / student / assignment / f"{assignment}.html"
            assert page.exists(), page
    page = (course / "feedback" / "wrong" / "a1_metrics" / "a1_metrics.html").read_text()
    assert "Score: 6.0 / 8.0" in page and "AssertionError" in page
    assert "BEGIN HIDDEN TESTS" not in page and "_reference" not in page, "the feedback shows no hidden test code"


@pytest.mark.nbgrader
@pytest.mark.slow
def test_a_warning_printed_by_correct_code_costs_no_points(round_trip):
    course, grades, _ = round_trip
    assert float(grades["warned"]["a1-pixel-accuracy"]) == 2
    import torch
    with pytest.warns(UserWarning):           # the answer does warn: the grader dropped the warning
        torch.tensor(torch.tensor([1]))


@pytest.mark.nbgrader
@pytest.mark.slow
def test_a_broken_file_is_reported_and_the_rest_of_the_class_is_graded(round_trip):
    course, grades, log = round_trip
    row = grades["broken"]
    assert row["submitted"] == "" and "web page" in row["status"]
    assert "broken_a1_metrics.ipynb: is a web page" in (course / "grades-summary.txt").read_text()
    assert float(grades["instructor"]["total"]) == float(grades["instructor"]["max_total"])


@pytest.mark.nbgrader
@pytest.mark.slow
def test_a_renamed_notebook_is_graded_as_its_assignment(round_trip):
    _, grades, _ = round_trip
    assert grades["renamed"]["submitted"] == "a1_metrics" and float(grades["renamed"]["a1_metrics"]) == 8


@pytest.mark.nbgrader
@pytest.mark.slow
def test_student_code_cannot_read_solutions_gradebook_classmates_or_network(round_trip):
    why_not = cr.sandbox.available()
    if why_not:
        pytest.skip(f"no sandbox on this machine: {why_not}")
    course, grades, _ = round_trip
    text = "".join(_source({"source": o.get("text", "")})
                   for c in _cells(course / "autograded" / "sneaky" / "a1_metrics" / "a1_metrics.ipynb")
                   for o in c.get("outputs", []))
    assert "LEAKED" not in text, text
    assert text.count("BLOCKED") == 6, text
    assert float(grades["sneaky"]["a1_metrics"]) == 8          # sandboxed, its correct code still scores
