"""The assignments of the course, read from the instructor versions in ``source/``."""
from __future__ import annotations

import json
from pathlib import Path

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")

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
