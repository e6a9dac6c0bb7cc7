#!/usr/bin/env python3
"""Classroom assignments of the seglab course, graded with nbgrader.

    python3 tasks.py student                  build the student versions into classroom/release/
    python3 tasks.py autograde [FOLDER]       grade the notebooks in FOLDER (default classroom/submitted)

or directly, inside the course's virtual environment (INSTRUCTORS.md explains each):

    python classroom/classroom.py student [--colab OWNER/REPO[/BRANCH]] [--repo-url URL]
    python classroom/classroom.py autograde [FOLDER] [--assignment A] [--student S] [--force] [--jobs N]
    python classroom/classroom.py feedback [--assignment A] [--student S]   after a manual override
    python classroom/classroom.py export {canvas,moodle} [--out FILE]
    python classroom/classroom.py release-solutions A [--force]
    python classroom/classroom.py validate    run the instructor versions: every test must pass
    python classroom/classroom.py list        the exercises and their points

The instructor versions in ``source/<assignment>/<assignment>.ipynb`` are the only thing
anyone edits. The course folder is the folder of this file; everything nbgrader writes
stays in it, ignored by git.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grades  # noqa: E402
import intake  # noqa: E402
import sandbox  # noqa: E402
from assignments import SOLUTION_MARKERS, assignments, exercise_column, exercises, source_notebooks  # noqa: E402,F401
from grading import grade_all, kernel_env, last_status, needs_grading  # noqa: E402
from repair import repair_metadata  # noqa: E402,F401
from roster import Roster, read_roster  # noqa: E402

COURSE = Path(__file__).resolve().parent
SETUP_FIRST_LINE = "# Setup: on Google Colab this installs seglab"


def setup_source(repo_url: str, tag: str) -> str:
    """The first code cell of every assignment: installs the course's release on Colab."""
    return ("# Setup: on Google Colab this installs seglab (no data set needed here); elsewhere it does nothing.\n"
            "import sys\n"
            "if \"google.colab\" in sys.modules:\n"
            "    # Colab's own torch is kept (seglab's requirements are loose on purpose).\n"
            f"    %pip install -q \"seglab @ git+{repo_url}@{tag}\"")


def stamp_setup(path: Path, repo_url: str, tag: str) -> bool:
    """Rewrite a notebook's setup cell for ``repo_url`` at ``tag``; True if it changed."""
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    if not text.startswith(SETUP_FIRST_LINE):
        raise SystemExit(f"{path}: the first code cell is not the Colab setup cell; put it back first")
    new = setup_source(repo_url, tag)
    if text == new:
        return False
    cell["source"] = new.splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


def default_repo() -> tuple[str, str]:
    from seglab.course import RELEASE_TAG, REPO_URL
    return os.environ.get("SEGLAB_REPO_URL", REPO_URL), RELEASE_TAG


def nbgrader(course: Path, *args: str, threads: int = 1) -> int:
    """Run one nbgrader command in the course folder with this Python."""
    print("+ nbgrader", " ".join(args), flush=True)
    return subprocess.call([sys.executable, "-m", "nbgrader", *args], cwd=course, env=kernel_env(threads))


def in_gradebook(course: Path) -> set[str]:
    """Assignment ids the gradebook knows (empty if there is no gradebook yet)."""
    if not (course / "gradebook.db").exists():
        return set()
    from nbgrader.api import Gradebook
    with Gradebook(grades.db_url(course), "seglab") as gb:
        return {a.name for a in gb.assignments}


# --------------------------------------------------------------------------- student

def check_release(course: Path) -> list[str]:
    """Problems in the student versions: a solution or a hidden test that leaked."""
    problems = []
    for notebook, assignment in source_notebooks(course).items():
        path = course / "release" / assignment / f"{notebook}.ipynb"
        if not path.exists():
            problems.append(f"{path} was not generated")
            continue
        text = path.read_text()
        problems += [f"{path}: contains {m!r}" for m in SOLUTION_MARKERS if m in text]
    return problems


def colab_links(course: Path, repo: str) -> list[str]:
    """Colab links to the released notebooks, once ``release/`` is pushed to the root of
    the GitHub repository ``repo`` (``owner/name`` or ``owner/name/branch``)."""
    parts = repo.strip("/").split("/")
    if len(parts) not in (2, 3):
        raise SystemExit(f"--colab wants OWNER/REPO or OWNER/REPO/BRANCH, got {repo!r}")
    owner, name, branch = parts[0], parts[1], parts[2] if len(parts) == 3 else "main"
    return [f"{a}: https://colab.research.google.com/github/{owner}/{name}/blob/{branch}/{a}/{nb}.ipynb"
            for nb, a in source_notebooks(course).items()]


def cmd_student(course: Path, colab: str | None = None, repo_url: str | None = None) -> int:
    start = time.perf_counter()
    code = nbgrader(course, "generate_assignment", "*", "--force")
    problems = check_release(course)
    if code != 0 or problems:
        print("\n".join(problems) or "nbgrader generate_assignment failed (see the log above)", file=sys.stderr)
        return 1
    url, tag = default_repo()
    url = repo_url or url
    for notebook, assignment in source_notebooks(course).items():
        stamp_setup(course / "release" / assignment / f"{notebook}.ipynb", url, tag)
    print(f"\nStudent versions written to {course / 'release'} in {time.perf_counter() - start:.0f} s"
          f" (on Colab they install seglab from {url} at {tag}):")
    for row in summary(course):
        print("  " + row)
    if colab:
        print("\nColab links (after pushing the contents of release/ to that repository):")
        for line in colab_links(course, colab):
            print("  " + line)
    return 0


def summary(course: Path) -> list[str]:
    lines, by_assignment = [], {}
    for ex in exercises(course):
        by_assignment.setdefault(ex["assignment"], []).append(ex)
    for assignment, rows in by_assignment.items():
        points = sum(r["points"] for r in rows)
        lines.append(f"{assignment}: {len(rows)} exercises, {points} points ("
                     + ", ".join(f"{exercise_column(r['grade_id'])} {r['points']}" for r in rows) + ")")
    return lines


# --------------------------------------------------------------------------- autograde

def _problem_lines(subs: list[intake.Submission]) -> list[str]:
    return [f"{s.rel}: {s.problem}" for s in subs if s.problem]


def write_summary(course: Path, out: Path, lines: list[str]) -> Path:
    """The summary beside the grade table: what was graded, and every file or student
    that was not, with the reason."""
    path = out.with_name(out.stem + "-summary.txt")
    path.write_text("\n".join(lines) + "\n")
    return path


def cmd_autograde(course: Path, folder: Path | None, *, force: bool = False, out: Path | None = None,
                  threads: int = 1, jobs: int = 0, timeout: int = 60, only_assignment: str | None = None,
                  only_student: str | None = None, use_sandbox: str = "auto") -> int:
    start = time.perf_counter()
    submitted = course / "submitted"
    folder = (folder or submitted).resolve()
    if not folder.is_dir():
        print(f"no folder {folder}: put the submitted notebooks there (see INSTRUCTORS.md)", file=sys.stderr)
        return 2
    if only_assignment and only_assignment not in assignments(course):
        print(f"no assignment {only_assignment!r}: use one of {', '.join(assignments(course))}", file=sys.stderr)
        return 2
    if not set(assignments(course)) <= in_gradebook(course) or not (course / "release").is_dir():
        print("The gradebook does not know every assignment yet: building the student versions first.")
        if cmd_student(course) != 0:
            return 1
    roster_students = read_roster(course / "roster.csv")
    notebooks = source_notebooks(course)
    subs: list[intake.Submission] = []
    if folder != submitted.resolve():
        subs = intake.find_submissions(folder, course, notebooks, Roster(roster_students))
        for line in intake.import_into(course, folder, subs):
            print(line)
    # what is in submitted/ now (from this inbox, an earlier one, or nbgrader collect)
    todo = sorted((p.parent.parent.name, p.parent.name, p.stem) for p in submitted.glob("*/*/*.ipynb")
                  if notebooks.get(p.stem) == p.parent.name)
    everything = list(todo)
    todo = [t for t in todo if (only_assignment in (None, t[1])) and (only_student in (None, t[0]))]
    if only_student and not todo:
        print(f"nothing handed in by {only_student!r} in {submitted}", file=sys.stderr)
        return 2
    if not todo and not any(s.problem for s in subs):
        print(f"no submissions found in {folder}", file=sys.stderr)
        return 2
    grades.apply_schedule(course, [(s, a) for s, a, _ in todo])
    if not force:
        todo = [t for t in todo if needs_grading(course, *t)]
    why_not = sandbox.available()
    sandboxed = use_sandbox == "on" or (use_sandbox == "auto" and not why_not)
    if use_sandbox == "on" and why_not:
        print(f"--sandbox on: {why_not}", file=sys.stderr)
        return 2
    if not sandboxed:
        print(f"warning: student code runs unsandboxed, as you ({why_not or '--sandbox off'})", file=sys.stderr)
    jobs = jobs or os.cpu_count() or 1
    print(f"Grading {len(todo)} notebooks, {jobs} at a time, cells stopped after {timeout} s"
          f"{', sandboxed' if sandboxed else ''}:", flush=True)
    hide = [course] + ([folder] if folder != submitted.resolve() else [])
    results = grade_all(course, todo, hide=hide, use_sandbox=sandboxed, jobs=jobs, timeout=timeout, threads=threads)

    status: dict[str, list[str]] = {}
    for student, assignment, _ in everything:
        last = last_status(course, student, assignment)
        if last and last != "graded":
            status.setdefault(student, []).append(f"{assignment}: {last}")
    for s in subs:
        if s.problem and s.student and "older than" not in s.problem:
            status.setdefault(s.student, []).append(f"{s.rel}: {s.problem}")
    late_markers = {(s.student, s.assignment) for s in subs if s.late_marker and not s.problem}
    out = out or course / "grades.csv"
    rows = grades.write_grades(course, out, exercises(course), assignments(course), roster_students, status,
                               late_markers)
    lines = [f"Graded {len(results)} notebooks in {time.perf_counter() - start:.0f} s "
             f"({jobs} at a time{', sandboxed' if sandboxed else ''}); grade table {out}",
             f"{sum(r.status.startswith('graded') for r in results)} graded, "
             f"{sum(not r.status.startswith('graded') for r in results)} failed, "
             f"{sum(bool(s.problem) for s in subs)} files not graded, "
             f"{sum(not r['submitted'] for r in rows)} students with nothing graded"]
    failed = [f"  {r.student} {r.assignment}: {r.status} (log: logs/{r.student}/{r.assignment}.log)"
              for r in results if r.status != "graded"]
    if failed:
        lines += ["Notebooks with a problem:"] + failed
    problems = _problem_lines(subs)
    if problems:
        lines += ["Files not graded:"] + ["  " + p for p in problems]
    for a in assignments(course):
        absent = [r["student"] for r in rows if r["submitted"] and a not in r["submitted"].split()]
        if absent and len(absent) < sum(bool(r["submitted"]) for r in rows):
            lines.append(f"Nothing graded for {a} ({len(absent)}): {', '.join(absent)}")
    missing = [r for r in rows if not r["submitted"]]
    if missing:
        lines += ["Students with nothing graded:"] + [f"  {r['student']}: {r['status']}" for r in missing]
    summary_path = write_summary(course, out, lines)
    print("\n" + "\n".join(lines))
    print(f"(this summary is also in {summary_path}; feedback pages in {course / 'feedback'})")
    return 1 if any(not r.status.startswith("graded") for r in results) else 0


def cmd_feedback(course: Path, only_assignment: str | None, only_student: str | None) -> int:
    """Regenerate the feedback (after a score was changed by hand) and the grade table."""
    args = ["generate_feedback", only_assignment or "*", "--force"]
    if only_student:
        args += ["--student", only_student]
    code = nbgrader(course, *args)
    out = course / "grades.csv"
    grades.write_grades(course, out, exercises(course), assignments(course), read_roster(course / "roster.csv"),
                        {}, set())
    print(f"Feedback in {course / 'feedback'}; grade table {out}")
    return code


def refuse_existing(path: Path, overwrite: bool) -> bool:
    """True (after a one-line message) when ``path`` exists and may not be replaced: an
    export or a released solution may hold the instructor's own edits."""
    if path.exists() and not overwrite:
        print(f"{path} already exists; pass --overwrite to replace it, or choose another file",
              file=sys.stderr)
        return True
    return False


def cmd_export(course: Path, fmt: str, out: Path | None, overwrite: bool = False) -> int:
    out = out or course / f"grades-{fmt}.csv"
    if refuse_existing(out, overwrite):
        return 2
    rows = grades.write_grades(course, course / "grades.csv", exercises(course), assignments(course),
                               read_roster(course / "roster.csv"), {}, set())
    grades.export(rows, assignments(course), fmt, out)
    print(f"{out}: {len(rows)} students, one column per assignment ({fmt})")
    return 0


def cmd_release_solutions(course: Path, assignment: str, force: bool = False, overwrite: bool = False) -> int:
    """Copy the instructor version, hidden tests taken out, to ``solutions/``, once the
    due date (``deadlines.csv``) has passed."""
    if assignment not in assignments(course):
        print(f"no assignment {assignment!r}: use one of {', '.join(assignments(course))}", file=sys.stderr)
        return 2
    due = grades.read_deadlines(course).get(assignment)
    now = datetime.now(timezone.utc)
    if not force and (due is None or now < due):
        why = f"its due date is {due.isoformat()}" if due else "it has no due date in deadlines.csv"
        print(f"not releasing {assignment}: {why} (--force releases anyway)", file=sys.stderr)
        return 2
    released = {n: course / "solutions" / a / f"{n}.ipynb" for n, a in source_notebooks(course).items()
                if a == assignment}
    if any([refuse_existing(dest, overwrite) for dest in released.values()]):
        return 2
    for notebook, dest in released.items():
        nb = json.loads((course / "source" / assignment / f"{notebook}.ipynb").read_text())
        for cell in nb["cells"]:
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            head, sep, rest = text.partition("### BEGIN HIDDEN TESTS")
            if sep:
                text = head.rstrip() + "\n" + rest.partition("### END HIDDEN TESTS")[2].lstrip("\n")
            cell["source"] = text.replace("### BEGIN SOLUTION\n", "").replace("### END SOLUTION\n", "")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"solution written to {dest} (hidden tests left out)")
    return 0


# --------------------------------------------------------------------------- validate

def cmd_validate(course: Path) -> int:
    """Run every instructor notebook top to bottom (solutions and hidden tests in place):
    any error, in a test cell or anywhere else, fails."""
    import nbformat
    from nbclient import NotebookClient

    os.environ.update(kernel_env())  # the kernels inherit this process's environment
    failed = 0
    for notebook, assignment in source_notebooks(course).items():
        path = course / "source" / assignment / f"{notebook}.ipynb"
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        errors = [(c.metadata.get("nbgrader", {}).get("grade_id") or c.get("id"), o.ename, o.evalue)
                  for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        # the self-check cell reports instead of raising: it must find every test passing
        errors += [(c.get("id"), "SelfCheck", "".join(o.get("text", "") for o in c.outputs))
                   for c in nb.cells if "selfcheck.run(" in c.source
                   and "All visible tests pass" not in "".join(o.get("text", "") for o in c.outputs)]
        status = "ok" if not errors else f"{len(errors)} failing cells"
        print(f"{notebook}: {status} ({time.perf_counter() - start:.0f} s)")
        for cell, ename, evalue in errors:
            print(f"    {cell}: {ename}: {evalue[:200]}")
        failed += bool(errors)
    return 1 if failed else 0


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="classroom.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=COURSE, help="the nbgrader course folder (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("student", help="build the student versions into release/")
    p.add_argument("--colab", metavar="OWNER/REPO[/BRANCH]",
                   help="also print Colab links, for release/ pushed to this GitHub repository")
    p.add_argument("--repo-url", help="the seglab repository the notebooks install from on Colab "
                                      "(default: $SEGLAB_REPO_URL or the course's own)")
    p = sub.add_parser("autograde", help="grade a folder of submitted notebooks; writes grades.csv and feedback/")
    p.add_argument("folder", nargs="?", type=Path, help="submitted notebooks (default: the course's submitted/)")
    p.add_argument("--force", action="store_true", help="grade again what was graded before")
    p.add_argument("--assignment", help="grade only this assignment")
    p.add_argument("--student", help="grade only this student (their id)")
    p.add_argument("--out", type=Path, help="where to write the grade table (default: <course>/grades.csv)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per grading kernel (default: 1)")
    p.add_argument("--jobs", type=int, default=0, help="notebooks graded at the same time (default: one per core)")
    p.add_argument("--timeout", type=int, default=60, help="seconds a cell may run (default: 60)")
    p.add_argument("--sandbox", choices=("auto", "on", "off"), default="auto",
                   help="run student code sandboxed (auto: where the machine allows it)")
    p = sub.add_parser("feedback", help="regenerate feedback and grades.csv, e.g. after a manual score")
    p.add_argument("--assignment")
    p.add_argument("--student")
    p = sub.add_parser("export", help="write the grades as a CSV an LMS gradebook imports")
    p.add_argument("format", choices=grades.EXPORT_FORMATS)
    p.add_argument("--out", type=Path)
    p.add_argument("--overwrite", action="store_true", help="replace the file if it exists")
    p = sub.add_parser("release-solutions", help="write an assignment's solutions to solutions/ after its due date")
    p.add_argument("assignment")
    p.add_argument("--force", action="store_true", help="release before the due date")
    p.add_argument("--overwrite", action="store_true", help="replace solutions released before")
    sub.add_parser("stamp", help="rewrite the Colab setup cell of the instructor versions for this release")
    sub.add_parser("validate", help="run the instructor versions; every test must pass")
    sub.add_parser("list", help="the exercises and their points")
    args = parser.parse_args(argv)
    course = args.course.resolve()
    os.environ["PATH"] = kernel_env()["PATH"]
    if args.command == "student":
        return cmd_student(course, args.colab, args.repo_url)
    if args.command == "autograde":
        return cmd_autograde(course, args.folder, force=args.force, out=args.out, threads=args.threads,
                             jobs=args.jobs, timeout=args.timeout, only_assignment=args.assignment,
                             only_student=args.student, use_sandbox=args.sandbox)
    if args.command == "feedback":
        return cmd_feedback(course, args.assignment, args.student)
    if args.command == "export":
        return cmd_export(course, args.format, args.out, args.overwrite)
    if args.command == "release-solutions":
        return cmd_release_solutions(course, args.assignment, args.force, args.overwrite)
    if args.command == "stamp":
        url, tag = default_repo()
        for notebook, a in source_notebooks(course).items():
            changed = stamp_setup(course / "source" / a / f"{notebook}.ipynb", url, tag)
            print(f"{notebook}: {'updated' if changed else 'ok'}")
        return 0
    if args.command == "validate":
        return cmd_validate(course)
    print("\n".join(summary(course)))
    print(f"total: {len(exercises(course))} exercises, {sum(e['points'] for e in exercises(course))} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
