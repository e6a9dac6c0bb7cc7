"""The grade table (``grades.csv``), the summary beside it, due dates and extensions, and
the exports an LMS gradebook imports."""
from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

from roster import Student


def db_url(course: Path) -> str:
    return f"sqlite:///{course / 'gradebook.db'}"


def read_deadlines(course: Path) -> dict[str, datetime]:
    """``deadlines.csv`` (assignment, due): due as ISO 8601, e.g. 2027-01-15T23:59+01:00
    (no offset means UTC)."""
    path = course / "deadlines.csv"
    if not path.exists():
        return {}
    due = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            try:
                when = datetime.fromisoformat(row["due"].strip())
            except (KeyError, ValueError):
                raise SystemExit(f"{path}: '{row.get('due')}' is not a date like 2027-01-15T23:59+01:00")
            due[row["assignment"].strip()] = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return due


def read_extensions(course: Path) -> dict[tuple[str, str], timedelta]:
    """``extensions.csv`` (student, assignment, days): extra time for one student."""
    path = course / "extensions.csv"
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        return {(r["student"].strip(), r["assignment"].strip()): timedelta(days=float(r["days"]))
                for r in csv.DictReader(f)}


def apply_schedule(course: Path, submissions: list[tuple[str, str]]) -> None:
    """Write the due dates and extensions into the gradebook, where nbgrader's late
    penalty (see nbgrader_config.py) reads them."""
    from nbgrader.api import Gradebook
    deadlines, extensions = read_deadlines(course), read_extensions(course)
    with Gradebook(db_url(course), "seglab") as gb:
        for assignment, due in deadlines.items():
            gb.update_or_create_assignment(assignment, duedate=due.astimezone(timezone.utc).replace(tzinfo=None))
        for student, assignment in submissions:
            extension = extensions.get((student, assignment))
            if extension:
                gb.update_or_create_student(student)
                gb.update_or_create_submission(assignment, student, extension=extension)


def write_grades(course: Path, out: Path, exercises: list[dict], order: list[str], roster: list[Student],
                 status: dict[str, list[str]], late_markers: set[tuple[str, str]]) -> list[dict]:
    """One row per student (everyone on the roster, everyone in the gradebook, everyone
    with a status): total after late penalties, each assignment's score, the hours late,
    each exercise's points, and the status (empty when all went well)."""
    from nbgrader.api import Gradebook, MissingEntry

    from assignments import exercise_column
    names = {s.id: s for s in roster}
    max_total = sum(e["points"] for e in exercises)
    rows = []
    with Gradebook(db_url(course), "seglab") as gb:
        ids = sorted({s.id for s in gb.students} | set(names) | set(status))
        for student in ids:
            who = names.get(student, Student(student))
            row: dict = {"student": student, "name": who.name, "email": who.email, "lms_id": who.lms_id}
            total, submitted, late = 0.0, [], []
            for a in order:
                try:
                    sub = gb.find_submission(a, student)
                except MissingEntry:
                    row[a] = ""
                    continue
                penalty = sub.late_submission_penalty or 0.0
                row[a] = max(0.0, sub.score - penalty)
                total += row[a]
                submitted.append(a)
                if sub.total_seconds_late > 0:
                    late.append(f"{a} {sub.total_seconds_late / 3600:.1f} h" + (f" -{penalty:g}" if penalty else ""))
                elif (student, a) in late_markers:
                    late.append(f"{a} (LMS)")
            for e in exercises:
                try:
                    row[exercise_column(e["grade_id"])] = gb.find_grade(
                        e["grade_id"], e["notebook"], e["assignment"], student).score
                except MissingEntry:
                    row[exercise_column(e["grade_id"])] = ""
            row.update(total=total, max_total=max_total, submitted=" ".join(submitted), late="; ".join(late),
                       status="; ".join(status.get(student, [])) or ("" if submitted else "nothing handed in"))
            rows.append(row)
    columns = (["student", "name", "email", "lms_id", "status", "total", "max_total", "submitted", "late"] + order
               + [exercise_column(e["grade_id"]) for e in exercises])
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:g}" if isinstance(v, float) else v) for k, v in row.items()})
    return rows


EXPORT_FORMATS = ("canvas", "moodle")


def export(rows: list[dict], order: list[str], fmt: str, out: Path) -> None:
    """A CSV an LMS gradebook imports, one column per assignment (points after late
    penalties).

    - canvas: Student, ID, SIS User ID, SIS Login ID, Section, then the assignments; Canvas
      matches students by ID (the roster's lms_id).
    - moodle: ID number, Email address, Full name, then the assignments; map "Email
      address" to the user's e-mail when importing (Grades > Import > CSV file)."""
    if fmt == "canvas":
        head = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
        body = [[r["name"] or r["student"], r["lms_id"], r["student"], r["email"], ""] for r in rows]
    elif fmt == "moodle":
        head = ["ID number", "Email address", "Full name"]
        body = [[r["student"], r["email"], r["name"] or r["student"]] for r in rows]
    else:
        raise SystemExit(f"unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(head + order)
        for r, cells in zip(rows, body):
            writer.writerow(cells + [f"{r[a]:g}" if isinstance(r[a], float) else r[a] for a in order])
