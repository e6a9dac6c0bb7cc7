"""The classroom's intake and bookkeeping, without running nbgrader (fast): broken and
renamed files, the roster and LMS download names, stale copies, late work, exports,
releasing solutions, the warning rule and the students' self-check."""
from __future__ import annotations

import csv
import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from script_import import load_script

ROOT = Path(__file__).resolve().parents[1]
CLASSROOM = ROOT / "classroom"


cr = load_script(CLASSROOM / "classroom.py", "seglab_classroom")
import intake  # noqa: E402  (classroom/ is on sys.path once classroom.py is loaded)
import late  # noqa: E402
import roster  # noqa: E402

NOTEBOOKS = cr.source_notebooks(CLASSROOM)
SOURCE_A1 = CLASSROOM / "source" / "a1_metrics" / "a1_metrics.ipynb"
HTML = "<!DOCTYPE html><html><head><title>Google Drive</title></head><body></body></html>"


def _inbox(tmp_path: Path, files: dict[str, str]) -> Path:
    inbox = tmp_path / "inbox"
    for i, (name, text) in enumerate(files.items()):
        path = inbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    return inbox


def _find(inbox: Path, students: list[roster.Student] | None = None) -> dict[str, intake.Submission]:
    return {s.rel: s for s in intake.find_submissions(inbox, CLASSROOM, NOTEBOOKS, roster.Roster(students or []))}


def _course(tmp_path: Path) -> Path:
    course = tmp_path / "course"
    shutil.copytree(CLASSROOM / "source", course / "source")
    return course


# --------------------------------------------------------------------------- broken and renamed files

def test_a_web_page_saved_as_a_notebook_is_named_with_the_fix_and_the_others_still_count(tmp_path):
    inbox = _inbox(tmp_path, {"bob_a1_metrics.ipynb": HTML, "ana_a1_metrics.ipynb": SOURCE_A1.read_text()})
    course = _course(tmp_path)
    subs = list(_find(inbox).values())
    lines = intake.import_into(course, inbox, subs)
    bad = next(s for s in subs if s.rel == "bob_a1_metrics.ipynb")
    assert "web page" in bad.problem and ".ipynb" in bad.problem
    assert not (course / "submitted" / "bob").exists()
    assert (course / "submitted" / "ana" / "a1_metrics" / "a1_metrics.ipynb").exists()
    assert lines == ["copied ana_a1_metrics.ipynb -> submitted/ana/a1_metrics"]


@pytest.mark.parametrize("text, reason", [("", "empty"), ("{not json", "not JSON"), ('{"a": 1}', "no cells")])
def test_files_that_are_not_notebooks_get_a_reason(tmp_path, text, reason):
    path = tmp_path / "x.ipynb"
    path.write_text(text)
    nb, problem = intake.read_notebook(path)
    assert nb is None and reason in problem


def test_removing_a_file_from_the_inbox_takes_back_its_copy_in_submitted(tmp_path):
    inbox = _inbox(tmp_path, {"ana/a1_metrics.ipynb": SOURCE_A1.read_text()})
    course = _course(tmp_path)
    intake.import_into(course, inbox, list(_find(inbox).values()))
    copy = course / "submitted" / "ana" / "a1_metrics" / "a1_metrics.ipynb"
    assert copy.exists()
    (inbox / "ana" / "a1_metrics.ipynb").write_text(HTML)        # replaced by a broken file ...
    lines = intake.import_into(course, inbox, list(_find(inbox).values()))
    assert not copy.exists() and any("removed submitted/ana/a1_metrics" in line for line in lines)
    (inbox / "ana" / "a1_metrics.ipynb").unlink()                # ... then taken out: nothing stale left
    assert intake.import_into(course, inbox, list(_find(inbox).values())) == []


def test_a_renamed_notebook_is_recognised_by_its_cells(tmp_path):
    inbox = _inbox(tmp_path, {"carl/metrics_assignment_final.ipynb": SOURCE_A1.read_text()})
    sub = _find(inbox)["carl/metrics_assignment_final.ipynb"]
    assert (sub.student, sub.assignment, sub.problem) == ("carl", "a1_metrics", "")
    assert any("renamed" in n for n in sub.notes)


def test_a_renamed_notebook_with_cells_of_two_assignments_is_reported_not_guessed(tmp_path):
    a1 = json.loads(SOURCE_A1.read_text())
    a2 = json.loads((CLASSROOM / "source" / "a2_data" / "a2_data.ipynb").read_text())
    a1["cells"] += a2["cells"]
    inbox = _inbox(tmp_path, {"dora/homework.ipynb": json.dumps(a1), "dora/notes.ipynb": '{"cells": []}'})
    found = _find(inbox)
    assert "several assignments" in found["dora/homework.ipynb"].problem
    assert "none of the assignments" in found["dora/notes.ipynb"].problem


# --------------------------------------------------------------------------- roster and LMS names

ROSTER = [roster.Student("cmartin", "Chloé Martin", "chloe@uni.example", "1001"),
          roster.Student("cmartin2", "Chloe Martin", "chloe.m@uni.example", "1002"),
          roster.Student("ana", "Ana Lima", "ana@uni.example", "1003"),
          roster.Student("bsmith", "Ben Smith", "ben@uni.example", "1004")]


def test_canvas_names_with_late_marker_and_resubmission_are_one_student(tmp_path):
    inbox = _inbox(tmp_path, {
        "smithben_1004_555_a1_metrics.ipynb": "{}",
        "smithben_LATE_1004_556_a1_metrics-1.ipynb": "{}",      # a late resubmission, newer
    })
    found = _find(inbox, ROSTER)
    newest = found["smithben_LATE_1004_556_a1_metrics-1.ipynb"]
    assert (newest.student, newest.assignment, newest.problem, newest.late_marker) == ("bsmith", "a1_metrics", "", True)
    assert "older than" in found["smithben_1004_555_a1_metrics.ipynb"].problem


def test_moodle_names_are_matched_through_the_roster(tmp_path):
    inbox = _inbox(tmp_path, {"Ana Lima_77_assignsubmission_file_a2_data.ipynb": "{}",
                              "Ben Smith_78_assignsubmission_file_/Copy of a3_unet.ipynb": "{}"})
    found = _find(inbox, ROSTER)
    assert found["Ana Lima_77_assignsubmission_file_a2_data.ipynb"].student == "ana"
    assert found["Ben Smith_78_assignsubmission_file_/Copy of a3_unet.ipynb"].student == "bsmith"


def test_roster_keeps_accented_and_plain_names_apart_and_ignores_case():
    r = roster.Roster(ROSTER)
    assert r.find("Chloé Martin") == ("cmartin", "")
    assert r.find("Chloe Martin") == ("cmartin2", "")
    assert r.find("CHLOÉ MARTIN") == ("cmartin", "")
    assert r.find("ana lima") == r.find("Ana Lima") == ("ana", "")
    assert r.find("martinchloe")[0] is None and "several" in r.find("martinchloe")[1]   # Canvas drops accents
    assert r.find("whoever", lms_id="1001") == ("cmartin", "")
    student, why = r.find("Zoe Unknown")
    assert student is None and "not on the roster" in why


def test_without_a_roster_case_merges_but_accents_are_reported(tmp_path):
    inbox = _inbox(tmp_path, {"Ana/a1_metrics.ipynb": "{}", "ana/a2_data.ipynb": "{}",
                              "Chloé Martin_a3_unet.ipynb": "{}", "Chloe Martin_a3_unet.ipynb": "{}"})
    found = _find(inbox)
    assert found["Ana/a1_metrics.ipynb"].student == found["ana/a2_data.ipynb"].student == "Ana"
    for rel in ("Chloé Martin_a3_unet.ipynb", "Chloe Martin_a3_unet.ipynb"):
        assert found[rel].student is None and "roster.csv" in found[rel].problem


def test_a_roster_without_its_columns_is_refused_with_the_file_named(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text("student,mail\nana,ana@x\n")
    with pytest.raises(SystemExit, match="roster.csv: needs the columns"):
        roster.read_roster(path)


# --------------------------------------------------------------------------- late work, exports, solutions

def test_late_penalty_per_started_day_and_capped():
    plugin = late.PerDayPenalty(percent_per_day=10)
    assert plugin.late_submission_penalty("ana", 8.0, 0) == 0
    assert plugin.late_submission_penalty("ana", 8.0, 60) == pytest.approx(0.8)          # 1 minute: one day
    assert plugin.late_submission_penalty("ana", 8.0, 86400 * 2 + 1) == pytest.approx(2.4)
    assert plugin.late_submission_penalty("ana", 8.0, 86400 * 30) == pytest.approx(8.0)


def test_deadlines_and_extensions_are_read_with_timezones(tmp_path):
    (tmp_path / "deadlines.csv").write_text("assignment,due\na1_metrics,2027-01-15T23:59+01:00\na2_data,2027-01-22\n")
    (tmp_path / "extensions.csv").write_text("student,assignment,days\nana,a1_metrics,2\n")
    due = cr.grades.read_deadlines(tmp_path)
    assert due["a1_metrics"].utcoffset() == timedelta(hours=1) and due["a2_data"].utcoffset() == timedelta(0)
    assert cr.grades.read_extensions(tmp_path) == {("ana", "a1_metrics"): timedelta(days=2)}
    (tmp_path / "deadlines.csv").write_text("assignment,due\na1_metrics,next friday\n")
    with pytest.raises(SystemExit, match="deadlines.csv"):
        cr.grades.read_deadlines(tmp_path)


def test_exports_have_the_columns_canvas_and_moodle_import(tmp_path):
    rows = [{"student": "ana", "name": "Ana Lima", "email": "ana@uni.example", "lms_id": "1003",
             "a1_metrics": 7.2, "a2_data": ""}]
    cr.grades.export(rows, ["a1_metrics", "a2_data"], "canvas", tmp_path / "c.csv")
    cr.grades.export(rows, ["a1_metrics", "a2_data"], "moodle", tmp_path / "m.csv")
    canvas = list(csv.reader((tmp_path / "c.csv").open()))
    moodle = list(csv.reader((tmp_path / "m.csv").open()))
    assert canvas == [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "a1_metrics", "a2_data"],
                      ["Ana Lima", "1003", "ana", "ana@uni.example", "", "7.2", ""]]
    assert moodle == [["ID number", "Email address", "Full name", "a1_metrics", "a2_data"],
                      ["ana", "ana@uni.example", "Ana Lima", "7.2", ""]]


def test_solutions_are_released_only_after_the_due_date_and_without_hidden_tests(tmp_path):
    course = _course(tmp_path)
    (course / "deadlines.csv").write_text("assignment,due\na1_metrics,2099-01-01T00:00+00:00\n")
    assert cr.cmd_release_solutions(course, "a1_metrics") == 2
    assert not (course / "solutions").exists()
    (course / "deadlines.csv").write_text("assignment,due\na1_metrics,2020-01-01T00:00+00:00\n")
    assert cr.cmd_release_solutions(course, "a1_metrics") == 0
    text = (course / "solutions" / "a1_metrics" / "a1_metrics.ipynb").read_text()
    assert "torch.bincount" in text and "HIDDEN TESTS" not in text and "_reference" not in text


def test_released_solutions_and_exports_are_not_replaced_without_overwrite(tmp_path, capsys):
    course = _course(tmp_path)
    (course / "deadlines.csv").write_text("assignment,due\na1_metrics,2020-01-01T00:00+00:00\n")
    released = course / "solutions" / "a1_metrics" / "a1_metrics.ipynb"
    released.parent.mkdir(parents=True)
    released.write_text("the instructor's annotated solution")
    assert cr.cmd_release_solutions(course, "a1_metrics") == 2
    assert released.read_text() == "the instructor's annotated solution"
    assert "--overwrite" in capsys.readouterr().err
    assert cr.cmd_release_solutions(course, "a1_metrics", overwrite=True) == 0
    assert "torch.bincount" in released.read_text()
    mine = tmp_path / "my-gradebook.csv"
    mine.write_text("my own notes")
    assert cr.cmd_export(course, "canvas", mine) == 2
    assert mine.read_text() == "my own notes" and str(mine) in capsys.readouterr().err


# --------------------------------------------------------------------------- warnings are not errors

def _course_config():
    from traitlets.config.loader import PyFileConfigLoader
    return PyFileConfigLoader("nbgrader_config.py", path=str(CLASSROOM)).load_config()


def test_a_warning_from_student_code_does_not_zero_a_test_but_other_stderr_does():
    from nbformat.v4 import new_code_cell, new_output
    from nbgrader.preprocessors import IgnorePattern
    from nbgrader.utils import determine_grade

    def graded_cell(text):
        cell = new_code_cell("x", metadata={"nbgrader": {"grade": True, "grade_id": "t", "points": 3,
                                                          "solution": False, "locked": True}})
        cell.outputs = [new_output("stream", name="stderr", text=text)]
        return cell

    ignore = IgnorePattern(config=_course_config())
    warned = graded_cell("/tmp/x.py:3: UserWarning: To copy construct from a tensor, use clone()\n  x = torch.tensor(t)\n")
    warned, _ = ignore.preprocess_cell(warned, {}, 0)
    assert determine_grade(warned) == (3, 3)
    other = graded_cell("something went wrong\n")
    other, _ = ignore.preprocess_cell(other, {}, 0)
    assert determine_grade(other) == (0, 3)


def test_the_self_check_scores_test_cells_like_the_grader():
    from IPython.core.interactiveshell import InteractiveShell
    from seglab import selfcheck
    shell = InteractiveShell.instance()
    try:
        shell.run_cell("import warnings\ndef f():\n    warnings.warn('deprecated', UserWarning)\n    return 1", store_history=True)
        shell.run_cell("# Tests for exercise 1 (do not edit)\nassert f() == 1, 'f() must give 1'", store_history=True)
        shell.run_cell("# Tests for exercise 2 (do not edit)\nassert f() == 2, 'f() must give 2'", store_history=True)
        headers = ["# Tests for exercise 1 (do not edit)", "# Tests for exercise 2 (do not edit)",
                   "# Tests for exercise 3 (do not edit)"]
        from contextlib import redirect_stdout
        from io import StringIO
        out = StringIO()
        with redirect_stdout(out):
            assert selfcheck.run(headers) is False
        lines = out.getvalue().splitlines()
        assert lines[0].startswith("ok") and "exercise 1" in lines[0]
        assert lines[1].startswith("FAIL") and "f() must give 2" in lines[1]
        assert lines[2].startswith("NOT RUN") and "exercise 3" in lines[2]
    finally:
        InteractiveShell.clear_instance()


def test_the_student_command_pins_the_colab_install_to_a_repository_and_tag(tmp_path):
    path = tmp_path / "a1.ipynb"
    shutil.copy(SOURCE_A1, path)
    assert cr.stamp_setup(path, "https://github.com/myschool/seglab", "v9.9") is True
    text = path.read_text()
    assert "git+https://github.com/myschool/seglab@v9.9" in text and "@main" not in text
    assert cr.stamp_setup(path, "https://github.com/myschool/seglab", "v9.9") is False


def test_late_work_is_measured_from_the_due_date_plus_the_students_extension(tmp_path):
    from datetime import datetime
    from nbgrader.api import Gradebook
    (tmp_path / "deadlines.csv").write_text("assignment,due\na1_metrics,2027-01-15T23:59+01:00\n")
    (tmp_path / "extensions.csv").write_text("student,assignment,days\nana,a1_metrics,2\n")
    cr.grades.apply_schedule(tmp_path, [("ana", "a1_metrics"), ("ben", "a1_metrics")])
    handed_in = datetime(2027, 1, 17, 12, 0)                 # UTC, 37 h 1 min after the due date
    with Gradebook(cr.grades.db_url(tmp_path), "seglab") as gb:
        gb.update_or_create_student("ben")
        ana = gb.update_or_create_submission("a1_metrics", "ana", timestamp=handed_in)
        ben = gb.update_or_create_submission("a1_metrics", "ben", timestamp=handed_in)
        assert ana.total_seconds_late == 0
        assert ben.total_seconds_late == 37 * 3600 + 60
