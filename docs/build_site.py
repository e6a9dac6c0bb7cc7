"""Build the course website: ``python docs/build_site.py [--out DIR]`` (or ``python3 tasks.py site``).

Sphinx reads its sources from one folder, and the site's pages live all over the
repository (README.md, INSTRUCTORS.md, data/README.md, notebooks/), so the build first
*stages* them into ``<build>/src``: the notebooks copied byte for byte (the download
link serves the committed file), the Markdown pages with their links rewritten. A link
to another page of the site stays a link to that page; a link to any other file of the
repository points at that file on GitHub, at the release the Colab badges open.

Nothing is executed: the pages show the outputs as committed. Warnings fail the build
(``-W --keep-going``): a missing file or a broken cross-reference is an error, and every
one is listed before the build stops.
"""
from __future__ import annotations

import argparse
import filecmp
import posixpath
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import nbformat
    from sphinx.application import Sphinx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUT = HERE / "_build"
MARKER = ".seglab-site"  # marks a build folder as ours: only then is anything in it replaced

# The pages besides the notebooks, under "More" in the sidebar, where they exist; every
# Markdown file in docs/ joins them.
MORE = ["notebooks/README.md", "INSTRUCTORS.md", "data/README.md"]
NOTEBOOKS = "notebooks/[0-9][0-9]_*.ipynb"
# Remote images the pages carry, served from the site instead (it loads nothing from elsewhere).
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_IMAGES = {COLAB_BADGE: "colab-badge.svg"}

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("*An interactive viewer: it needs a running Python kernel. Open this notebook "
               "in Colab or JupyterLab to use it; the figures next to it show what it draws.*")

# [text](target) and ![alt](target); the target is group 2 (no spaces, optional "title").
INLINE_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
REFERENCE_LINK = re.compile(r"^(\s*\[[^\]]+\]:\s*)(\S+)", re.MULTILINE)


def release_info() -> tuple[str, str]:
    """The repository URL and the release tag, from seglab.course (the one place they live)."""
    if str(REPO) not in sys.path:  # this checkout's seglab, installed or not
        sys.path.insert(0, str(REPO))
    from seglab.course import RELEASE_TAG, REPO_URL
    return REPO_URL, RELEASE_TAG


def notebooks() -> list[str]:
    """The course notebooks, as repository paths, in order."""
    return sorted(p.relative_to(REPO).as_posix() for p in REPO.glob(NOTEBOOKS))


def pages() -> dict[str, str]:
    """The site's Markdown pages: repository path -> path in the staged sources. The
    README is the landing page."""
    more = [p for p in MORE if (REPO / p).is_file()]
    more += sorted(p.relative_to(REPO).as_posix() for p in HERE.glob("*.md"))
    return {"README.md": "index.md", **{p: p for p in more}}


def staged_path(repo_path: str) -> str | None:
    """Where a repository file sits in the staged sources, or None if it is not a page."""
    if repo_path in pages():
        return pages()[repo_path]
    return repo_path if repo_path in notebooks() else None


def rewrite_target(target: str, source: str, repo_url: str, tag: str) -> str:
    """The site's version of a link ``target`` found in repository file ``source``."""
    if target in LOCAL_IMAGES:
        return "/" + LOCAL_IMAGES[target]  # MyST: a leading / is the root of the sources
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith(("#", "/")):
        return target
    path, _, anchor = target.partition("#")
    repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
    page = staged_path(repo_path)
    if page is not None:
        relative = posixpath.relpath(page, posixpath.dirname(staged_path(source) or source) or ".")
        return relative + (f"#{anchor}" if anchor else "")
    kind = "tree" if (REPO / repo_path).is_dir() else "blob"
    return f"{repo_url}/{kind}/{tag}/{repo_path}" + (f"#{anchor}" if anchor else "")


def rewrite_links(markdown: str, source: str, repo_url: str, tag: str) -> str:
    """Every inline and reference-style link and image of ``markdown`` rewritten for the site."""
    markdown = INLINE_LINK.sub(
        lambda m: m.group(1) + rewrite_target(m.group(2), source, repo_url, tag) + m.group(3), markdown)
    return REFERENCE_LINK.sub(
        lambda m: m.group(1) + rewrite_target(m.group(2), source, repo_url, tag), markdown)


def read_notebook(text: str, folder: str = "notebooks") -> nbformat.NotebookNode:
    """MyST-NB's reader for the site's notebooks (``nb_custom_formats`` in conf.py): the
    committed notebook with links rewritten, and each live widget's output replaced by a
    note, followed by the widget's still image where the output carries one. Without a
    kernel a widget shows nothing useful (its text fallback is the widget's repr), so its
    saved state is dropped too; the notebooks draw the same pictures as ordinary figures
    for these readers."""
    import nbformat
    repo_url, tag = release_info()
    nb = nbformat.reads(text, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = rewrite_links(cell.source, f"{folder}/notebook.ipynb", repo_url, tag)
        elif cell.cell_type == "code":
            cell.outputs = [new for output in cell.outputs for new in _without_widget(output)]
    return nb


def _without_widget(output: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """A widget's output as the note and its image fallback, if any; other outputs as they are."""
    import nbformat
    data = output.get("data", {})
    if WIDGET_VIEW not in data:
        return [output]
    still = {mime: value for mime, value in data.items() if mime.startswith("image/")}
    shown = [nbformat.v4.new_output("display_data", data={"text/markdown": WIDGET_NOTE})]
    if still:
        shown.append(nbformat.v4.new_output("display_data", data=still, metadata=output.get("metadata", {})))
    return shown


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    """Sphinx ``build-finished`` hook: MathJax 3 into the site's ``_static/mathjax``, from
    the copy the sphinx-mathjax-offline package ships: the TeX-to-HTML component
    (``mathjax_path`` in conf.py) and what it loads on demand (TeX extensions, fonts, the
    menu and its accessibility tools); not the other combined components."""
    if exception is not None:
        return
    from importlib.util import find_spec
    spec = find_spec("sphinx-mathjax-offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("MathJax is missing: pip install -e '.[docs]' (sphinx-mathjax-offline)")
    source = Path(spec.origin).parent / "static" / "mathjax"
    target = Path(app.outdir) / "_static" / "mathjax"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=lambda folder, names: [
        n for n in names if (Path(folder) == source and n.endswith(".js") and n != "tex-chtml.js")
        or (Path(folder).name == "output" and n == "svg")])


def _write_if_changed(path: Path, text: str) -> None:
    """Keep an unchanged file's time stamp: Sphinx then rebuilds only what changed."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _copy_if_changed(source: Path, target: Path) -> None:
    if not target.exists() or not filecmp.cmp(source, target, shallow=False):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def landing_page(readme: str, repo_url: str, tag: str) -> str:
    """The README as the site's front page, followed by the (hidden) tables of contents
    that make the sidebar: the notebooks in order, then the other pages."""
    course = "\n".join(posixpath.splitext(nb)[0] for nb in notebooks())
    more = "\n".join(posixpath.splitext(page)[0] for page in pages().values() if page != "index.md")
    toc = ("\n\n```{toctree}\n:hidden:\n:caption: The course\n\n" + course + "\n```\n"
           "\n```{toctree}\n:hidden:\n:caption: More\n\n" + more + "\n```\n")
    return rewrite_links(readme, "README.md", repo_url, tag).rstrip() + toc


def stage(src: Path) -> None:
    """Lay out the site's sources in ``src``: the landing page, the other pages, the
    notebooks and the local copies of remote images. Files no longer part of the site
    are removed."""
    repo_url, tag = release_info()
    wanted = {"index.md": landing_page((REPO / "README.md").read_text(encoding="utf-8"), repo_url, tag)}
    for source, target in pages().items():
        if target != "index.md":
            wanted[target] = rewrite_links((REPO / source).read_text(encoding="utf-8"), source, repo_url, tag)
    for target, text in wanted.items():
        _write_if_changed(src / target, text)
    copies = {nb: REPO / nb for nb in notebooks()}
    copies.update({name: HERE / name for name in LOCAL_IMAGES.values()})
    for target, source in copies.items():
        _copy_if_changed(source, src / target)
    keep = {(src / p).resolve() for p in [*wanted, *copies]}
    for path in src.rglob("*"):
        if path.is_file() and path.resolve() not in keep:
            path.unlink()


def sphinx_command(src: Path, out: Path) -> list[str]:
    """Sphinx on the staged sources ``src``, HTML into ``out/html``: every warning (a
    missing file, a broken cross-reference) is an error, all of them reported."""
    return [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
            "-c", str(HERE), "-d", str(out / "doctrees"), str(src), str(out / "html")]


def build(out: Path = DEFAULT_OUT, clean: bool = False) -> Path:
    """Stage the sources and run Sphinx; returns the folder of the HTML site."""
    out = out.resolve()
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        sys.exit(f"{out} is not empty and holds no earlier website build: "
                 "choose an empty or new folder with --out")
    if clean:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()
    src, html = out / "src", out / "html"
    stage(src)
    code = subprocess.call(sphinx_command(src, out))
    if code != 0:
        sys.exit(f"the website build failed (Sphinx exit code {code}): see the warnings above")
    return html


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="build folder (default: docs/_build)")
    parser.add_argument("--clean", action="store_true", help="remove the build folder first")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    html = build(args.out, args.clean)
    print(f"website built in {time.perf_counter() - start:.0f} s: {html / 'index.html'} "
          f"({_size(html) / 2**20:.1f} MiB); to read it: python -m http.server -d {html} -b 127.0.0.1 8000")


if __name__ == "__main__":
    main()
