#!/usr/bin/env python3
"""Classroom assignments of the seglab course, graded with nbgrader.

    python3 tasks.py student                  build the student versions into classroom/release/
    python3 tasks.py autograde [FOLDER]       grade the notebooks in FOLDER (default classroom/submitted)

or directly, inside the course's virtual environment:

    python classroom/classroom.py student [--colab OWNER/REPO[/BRANCH]]
    python classroom/classroom.py autograde [FOLDER] [--force] [--out FILE]
    python classroom/classroom.py validate    run the instructor versions: every test must pass
    python classroom/classroom.py list        the exercises and their points

The instructor versions in ``source/<assignment>/<assignment>.ipynb`` are the only thing
anyone edits. ``student`` runs ``nbgrader generate_assignment``, which replaces each
solution by a stub and removes the hidden tests. ``autograde`` accepts

- nbgrader's own layout, ``FOLDER/<student>/<assignment>/<notebook>.ipynb`` (what
  ``nbgrader collect`` produces on a JupyterHub), or
- any folder of downloaded notebooks: ``FOLDER/<student>/<any name>.ipynb``, or flat
  files ``FOLDER/<student>_<notebook>.ipynb``. The assignment is recognised by the
  notebook's name inside the file name, so Colab's "Copy of a1_metrics.ipynb" works.

It copies them into the course's ``submitted/`` folder, gives back nbgrader metadata that
an editor dropped, runs ``nbgrader autograde`` and ``nbgrader generate_feedback``, and
writes a grade table (``grades.csv``: one row per student, one column per exercise).

The course folder is the folder of this file; everything nbgrader writes stays in it
(``release/``, ``submitted/``, ``autograded/``, ``feedback/``, ``gradebook.db``, all
ignored by git).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

COURSE = Path(__file__).resolve().parent
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


# --------------------------------------------------------------------------- the course

def assignments(course: Path) -> list[str]:
    """Assignment ids: the folders of ``source/`` that hold a notebook, in order."""
    return sorted(p.name for p in (course / "source").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def source_notebooks(course: Path) -> dict[str, str]:
    """Notebook name (without .ipynb) -> assignment id."""
    return {nb.stem: a for a in assignments(course) for nb in sorted((course / "source" / a).glob("*.ipynb"))}


def exercises(course: Path) -> list[dict]:
    """Every graded (autograder test) cell: assignment, notebook, grade id, points."""
    rows = []
    for notebook, assignment in source_notebooks(course).items():
        nb = json.loads((course / "source" / assignment / f"{notebook}.ipynb").read_text())
        for cell in nb["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade") and cell["cell_type"] == "code":
                rows.append({"assignment": assignment, "notebook": notebook, "grade_id": meta["grade_id"],
                             "points": meta.get("points", 0)})
    return rows


def exercise_column(grade_id: str) -> str:
    """'a1-pixel-accuracy-tests' -> 'a1-pixel-accuracy' (the grade table's column name)."""
    return grade_id[: -len("-tests")] if grade_id.endswith("-tests") else grade_id


def kernel_env(threads: int = 1) -> dict:
    """The environment for nbgrader and the kernels it starts.

    nbgrader calls the ``alembic`` program by name when it creates a gradebook, so this
    environment's ``bin`` goes first on PATH. Each kernel gets ``threads`` CPU threads:
    the graded cells use tiny tensors, and on a shared or busy machine PyTorch's default
    of one thread per core is many times slower."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.pop("SEGLAB_QUICK", None)  # the assignments have no quick mode; never inherit one
    return env


def nbgrader(course: Path, *args: str, threads: int = 1) -> int:
    """Run one nbgrader command in the course folder with this Python."""
    print("+ nbgrader", " ".join(args), flush=True)
    return subprocess.call([sys.executable, "-m", "nbgrader", *args], cwd=course, env=kernel_env(threads))


def in_gradebook(course: Path) -> set[str]:
    """Assignment ids the gradebook knows (empty if there is no gradebook yet)."""
    if not (course / "gradebook.db").exists():
        return set()
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "seglab") as gb:
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


def cmd_student(course: Path, colab: str | None = None) -> int:
    start = time.perf_counter()
    code = nbgrader(course, "generate_assignment", "*", "--force")
    problems = check_release(course)
    if code != 0 or problems:
        print("\n".join(problems) or "nbgrader generate_assignment failed (see the log above)", file=sys.stderr)
        return 1
    print(f"\nStudent versions written to {course / 'release'} in {time.perf_counter() - start:.0f} s:")
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

def _student_id(text: str) -> str:
    """A student id nbgrader accepts: ASCII letters, digits and ._@- ('Chloé Martin' ->
    'Chloe_Martin')."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", text).strip("_.-")


def _match_notebook(file_stem: str, notebooks: dict[str, str]) -> str | None:
    """The course notebook whose name occurs in the file name (the longest, if several)."""
    found = [n for n in notebooks if n.lower() in file_stem.lower()]
    return max(found, key=len) if found else None


def find_submissions(folder: Path, course: Path) -> list[tuple[str, str, str, Path]]:
    """(student, assignment, notebook, file) for every notebook under ``folder``; for a
    student with several files of the same notebook, the newest one."""
    notebooks = source_notebooks(course)
    chosen: dict[tuple[str, str], Path] = {}
    for path in sorted(folder.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        rel = path.relative_to(folder)
        notebook = _match_notebook(path.stem, notebooks)
        if notebook is None:
            print(f"skipped {rel}: its name contains none of {', '.join(notebooks)}", file=sys.stderr)
            continue
        if len(rel.parts) > 1:
            student = _student_id(rel.parts[0])
        else:
            student = _student_id(re.sub(re.escape(notebook), "", path.stem, flags=re.I))
        if not student:
            print(f"skipped {rel}: put it in a folder named after the student, or name it "
                  f"<student>_{notebook}.ipynb", file=sys.stderr)
            continue
        key = (student, notebook)
        if key in chosen and chosen[key].stat().st_mtime >= path.stat().st_mtime:
            print(f"note: {rel} ignored, {chosen[key].relative_to(folder)} is newer", file=sys.stderr)
            continue
        if key in chosen:
            print(f"note: {chosen[key].relative_to(folder)} ignored, {rel} is newer", file=sys.stderr)
        chosen[key] = path
    return [(s, notebooks[n], n, p) for (s, n), p in sorted(chosen.items())]


def import_submissions(folder: Path, course: Path) -> int:
    """Copy the notebooks of ``folder`` into ``course/submitted/<student>/<assignment>/``,
    with the file's time as the submission time (a newer file is graded again)."""
    count = 0
    for student, assignment, notebook, path in find_submissions(folder, course):
        dest = course / "submitted" / student / assignment / f"{notebook}.ipynb"
        if dest.exists() and dest.read_bytes() == path.read_bytes():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        stamp = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
        (dest.parent / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
        count += 1
    return count


def _first_line(source) -> str:
    text = "".join(source) if isinstance(source, list) else source
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def repair_metadata(path: Path, release: Path) -> int:
    """Give back the nbgrader metadata that a submitted notebook lost (Colab, VS Code and
    some editors drop or mangle cell metadata; students delete cells). A cell without
    metadata is matched to the released cell with the same cell id or, failing that, the
    same first line. Test cells that are still missing are appended at the end and locked
    cells (imports, data) at the start; nbgrader then restores their content from the
    gradebook. Returns the number of cells changed; the file is rewritten only if any."""
    nb = json.loads(path.read_text())
    ref = json.loads(release.read_text())

    def grade_id(cell):
        return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")

    have = {grade_id(c) for c in nb["cells"]} - {None}
    wanted = [c for c in ref["cells"] if grade_id(c) and grade_id(c) not in have]
    if not wanted:
        return 0
    by_id = {c.get("id"): c for c in wanted if c.get("id")}
    by_line: dict[tuple[str, str], dict] = {}
    for c in wanted:
        by_line.setdefault((c["cell_type"], _first_line(c["source"])), c)
    changed = 0
    for cell in nb["cells"]:
        if grade_id(cell):
            continue
        match = by_id.get(cell.get("id")) or by_line.get((cell["cell_type"], _first_line(cell.get("source", ""))))
        if match is not None and grade_id(match) not in have:
            cell.setdefault("metadata", {})["nbgrader"] = copy.deepcopy(match["metadata"]["nbgrader"])
            have.add(grade_id(match))
            changed += 1
    front, back = [], []
    for c in ref["cells"]:
        meta = c.get("metadata", {}).get("nbgrader", {})
        if grade_id(c) and grade_id(c) not in have and (meta.get("grade") or meta.get("locked")):
            cell = copy.deepcopy(c)
            cell.pop("id", None)
            (back if meta.get("grade") else front).append(cell)
            changed += 1
    nb["cells"] = front + nb["cells"] + back
    if changed:
        if nb.get("nbformat_minor", 0) >= 5:
            for i, cell in enumerate(nb["cells"]):
                cell.setdefault("id", f"restored-{i}")
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


def write_grades(course: Path, out: Path) -> list[dict]:
    """The grade table from the gradebook: one row per student with the total, each
    assignment's score and each exercise's points (empty where nothing was submitted)."""
    from nbgrader.api import Gradebook, MissingEntry

    exs = exercises(course)
    order = assignments(course)
    max_by_assignment = {a: sum(e["points"] for e in exs if e["assignment"] == a) for a in order}
    rows = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "seglab") as gb:
        for student in sorted(s.id for s in gb.students):
            row: dict = {"student": student}
            total, submitted = 0.0, []
            for a in order:
                try:
                    score = gb.find_submission(a, student).score
                    submitted.append(a)
                except MissingEntry:
                    score = ""
                row[a] = score
                total += score or 0.0
            for e in exs:
                try:
                    row[exercise_column(e["grade_id"])] = gb.find_grade(e["grade_id"], e["notebook"], e["assignment"],
                                                                        student).score
                except MissingEntry:
                    row[exercise_column(e["grade_id"])] = ""
            row["total"] = total
            row["max_total"] = sum(max_by_assignment.values())
            row["submitted"] = " ".join(submitted)
            rows.append(row)
    columns = (["student", "total", "max_total", "submitted"] + [f"{a}" for a in order]
               + [exercise_column(e["grade_id"]) for e in exs])
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:g}" if isinstance(v, float) else v) for k, v in row.items()})
    return rows


def cmd_autograde(course: Path, folder: Path | None, force: bool = False, out: Path | None = None,
                  threads: int = 1) -> int:
    start = time.perf_counter()
    submitted = course / "submitted"
    folder = (folder or submitted).resolve()
    if not folder.is_dir():
        print(f"no folder {folder}: put the submitted notebooks there (see INSTRUCTORS.md)", file=sys.stderr)
        return 2
    # The gradebook must know every assignment (its test cells, hidden tests included).
    if not set(assignments(course)) <= in_gradebook(course) or not (course / "release").is_dir():
        print("The gradebook does not know every assignment yet: building the student versions first.")
        if cmd_student(course) != 0:
            return 1
    if folder != submitted.resolve():
        print(f"{import_submissions(folder, course)} new or changed notebooks copied from {folder} into {submitted}")
    notebooks = source_notebooks(course)
    repaired = 0
    for path in sorted(submitted.glob("*/*/*.ipynb")):
        if path.stem in notebooks:
            release = course / "release" / notebooks[path.stem] / f"{path.stem}.ipynb"
            n = repair_metadata(path, release)
            if n:
                print(f"restored the nbgrader metadata of {n} cells in {path.relative_to(course)}")
            repaired += n
    if not any(submitted.glob("*/*/*.ipynb")):
        print(f"no submissions found in {folder}", file=sys.stderr)
        return 2
    flags = ["--force"] if force else []
    code = nbgrader(course, "autograde", "*", *flags, threads=threads)
    graded = time.perf_counter()
    code_feedback = nbgrader(course, "generate_feedback", "*", *flags, threads=threads)
    out = out or course / "grades.csv"
    rows = write_grades(course, out)
    print(f"\nAutograded in {graded - start:.0f} s, feedback in {time.perf_counter() - graded:.0f} s.")
    print(f"Grade table: {out}   Feedback (one HTML page per notebook): {course / 'feedback'}")
    for row in rows:
        print(f"  {row['student']:<24} {row['total']:g} / {row['max_total']:g}   ({row['submitted'] or 'nothing submitted'})")
    if code != 0 or code_feedback != 0:
        print("nbgrader could not grade some submissions: see the errors above (the table has the rest).",
              file=sys.stderr)
        return 1
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
    p = sub.add_parser("autograde", help="grade a folder of submitted notebooks; writes grades.csv and feedback/")
    p.add_argument("folder", nargs="?", type=Path, help="submitted notebooks (default: the course's submitted/)")
    p.add_argument("--force", action="store_true", help="grade again what was graded before")
    p.add_argument("--out", type=Path, help="where to write the grade table (default: <course>/grades.csv)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per grading kernel (default: 1)")
    sub.add_parser("validate", help="run the instructor versions; every test must pass")
    sub.add_parser("list", help="the exercises and their points")
    args = parser.parse_args(argv)
    course = args.course.resolve()
    os.environ["PATH"] = kernel_env()["PATH"]
    if args.command == "student":
        return cmd_student(course, args.colab)
    if args.command == "autograde":
        return cmd_autograde(course, args.folder, args.force, args.out, args.threads)
    if args.command == "validate":
        return cmd_validate(course)
    print("\n".join(summary(course)))
    print(f"total: {len(exercises(course))} exercises, {sum(e['points'] for e in exercises(course))} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
