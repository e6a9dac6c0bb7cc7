#!/usr/bin/env python3
"""A made-up class for timing the grader: N students hand in a1_metrics and a2_data, a
mix of correct, wrong, hanging (an endless loop), untouched, renamed and broken files,
in the layouts an LMS download has. Grades them on a copy of the course folder and prints
the wall time and the summary.

    python classroom/simulate_class.py [--students 60] [--jobs 2] [--keep DIR]

Not a test: it takes minutes (INSTRUCTORS.md quotes a measured run).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COURSE = Path(__file__).resolve().parent
ASSIGNMENTS = ("a1_metrics", "a2_data")
WRONG = {"a1_metrics": ("a1-pixel-accuracy", "def pixel_accuracy(cm):\n    return float(cm.diag().sum()) / float(cm.numel())\n"),
         "a2_data": ("a2-class-frequencies", "def class_frequencies(masks, num_classes):\n"
                     "    return torch.bincount(masks.reshape(-1).long(), minlength=num_classes).float()\n")}
HANG = {"a1_metrics": ("a1-pixel-accuracy", "def pixel_accuracy(cm):\n    while True:\n        pass\n"),
        "a2_data": ("a2-median-frequency", "def median_frequency_weights(freqs):\n    while True:\n        pass\n")}
KINDS = ("correct", "correct", "correct", "wrong", "wrong", "untouched", "hanging", "broken", "renamed", "missing")


def _with(source: Path, grade_id: str | None, code: str | None) -> str:
    nb = json.loads(source.read_text())
    for cell in nb["cells"]:
        if grade_id and cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            cell["source"] = code
    return json.dumps(nb)


def make_inbox(course: Path, inbox: Path, students: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in range(students):
        name = f"Student{i:02d} Test"
        for j, a in enumerate(ASSIGNMENTS):
            kind = KINDS[(i + 3 * j) % len(KINDS)]
            counts[kind] = counts.get(kind, 0) + 1
            source = course / "source" / a / f"{a}.ipynb"
            text = {"correct": lambda: source.read_text(), "renamed": lambda: source.read_text(),
                    "wrong": lambda: _with(source, *WRONG[a]), "hanging": lambda: _with(source, *HANG[a]),
                    "untouched": lambda: (course / "release" / a / f"{a}.ipynb").read_text(),
                    "broken": lambda: "<!DOCTYPE html><html><body>Google Drive</body></html>",
                    "missing": lambda: None}[kind]()
            if text is None:
                continue
            file = f"{a}.ipynb" if kind != "renamed" else "my_final_version.ipynb"
            path = (inbox / f"{name}_{60000 + i}_assignsubmission_file_{file}" if i % 2
                    else inbox / name / f"Copy of {file}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args, rest = parser.parse_known_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="seglab-class-"))
    course = work / "course"
    shutil.copytree(COURSE, course, ignore=shutil.ignore_patterns(
        "release", "submitted", "autograded", "feedback", "logs", "solutions", "gradebook.db", "grades*.csv", "grades*.txt",
        "imported.json", "roster.csv", "__pycache__"))
    run = [sys.executable, str(course / "classroom.py")]
    subprocess.run(run + ["student"], check=True, capture_output=True)
    counts = make_inbox(course, work / "inbox", args.students)
    print(f"{args.students} students, {len(ASSIGNMENTS)} assignments: "
          + ", ".join(f"{v} {k}" for k, v in counts.items()), flush=True)
    start = time.perf_counter()
    code = subprocess.call(run + ["autograde", str(work / "inbox"), "--jobs", str(args.jobs), *rest])
    print(f"\nwall time of autograde: {time.perf_counter() - start:.0f} s (exit code {code})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
