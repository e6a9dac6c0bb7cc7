"""The README is the course's front page: it opens the first notebook in Colab at the
release the package pins, lists every notebook, and every file it links to exists."""
from __future__ import annotations

import re
from pathlib import Path

from seglab.course import colab_url, course_notebooks

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "notebooks/README.md", "CONTRIBUTING.md", "docs/command-line.md", "solutions/README.md"]


def test_readme_links_colab_to_notebook_01_at_the_pinned_release():
    assert f"]({colab_url('01_introduction.ipynb')})" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_and_notebooks_readme_list_every_course_notebook():
    for page in ("README.md", "notebooks/README.md"):
        text = (ROOT / page).read_text(encoding="utf-8")
        missing = [nb.stem for nb in course_notebooks() if f"`{nb.stem}`" not in text]
        assert not missing, f"{page} does not list {missing}"


def test_every_relative_link_of_the_front_pages_points_at_a_file_that_exists():
    broken = []
    for page in PAGES:
        path = ROOT / page
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (path.parent / target.split("#")[0]).exists():
                broken.append(f"{page} -> {target}")
    assert not broken, broken


def test_readme_is_a_front_page_of_at_most_125_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 125, f"README.md has {len(lines)} lines; keep it a front page (at most about 120)"
