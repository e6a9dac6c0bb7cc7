"""The course website (``python3 tasks.py site``) as a reader meets it: built once from the
committed notebooks, served from 127.0.0.1, read in headless Chromium.

Each page must load with no console error and without one request leaving the site (the
site works offline: MathJax, fonts and images are its own); the sidebar lists the seven
notebooks in order; search finds notebook 05 for "IoU"; no link or image anywhere on the
site is broken; every Colab link opens the notebook's own path at the release tag; the
download link serves the committed notebook; live widgets are replaced by a note. A
broken link fails the build. Screenshots: ``test-artifacts/site/``.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

from seglab.course import RELEASE_TAG, colab_url, course_notebooks

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from local_server import serve  # noqa: E402
sys.path.insert(0, str(REPO / "docs"))
from build_site import pages, sphinx_command  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

ARTIFACTS = REPO / "test-artifacts" / "site"
NOTEBOOKS = [p.stem for p in course_notebooks()]
OTHER_PAGES = [page.removesuffix(".md") for page in pages().values()]  # index (the README) first
BUILD_TIMEOUT = 600  # s; 20 to 55 s on a shared 2-core machine
PAGE_TIMEOUT_MS = 120_000  # a page and its figures load in about a second; CI machines are busy
WIDGET_TRACES = ["Loading widget", "widget-state+json", "widget-view+json", "VBox(children="]


# --------------------------------------------------------------------------- fixtures

def _needs_the_docs_tools() -> None:
    for module in ("sphinx", "myst_nb", "sphinx_book_theme"):
        pytest.importorskip(module, reason="the website needs the docs extra: pip install -e '.[docs]'")


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The website, built once into a temporary folder with the same command as
    ``python3 tasks.py site``."""
    _needs_the_docs_tools()
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, str(REPO / "docs" / "build_site.py"), "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, f"the site build failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # every screenshot there is from this run
    ARTIFACTS.mkdir(parents=True)
    return out / "html"


@pytest.fixture(scope="session")
def server(site) -> str:
    """The site served over HTTP on a free port of 127.0.0.1; yields its base URL."""
    with serve(site) as url:
        yield url


class Reader:
    """Opens pages of the site in one browser context and records, per page, console
    errors, uncaught errors, responses >= 400, and requests for anything off the site
    (those are aborted: CI has no network, and the site must not need one)."""

    def __init__(self, context, base: str):
        self.context, self.base = context, base
        self.off_site: list[str] = []
        context.route("**/*", self._route)

    def _route(self, route) -> None:
        if route.request.url.startswith(self.base):
            route.continue_()
        else:
            self.off_site.append(route.request.url)
            route.abort()

    def open(self, path: str):
        """The loaded page at ``path`` and its list of problems."""
        page = self.context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda err: problems.append(f"uncaught: {err}"))
        page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
        self.off_site.clear()
        page.goto(self.base + path, wait_until="networkidle")
        return page, problems

    def problems_of(self, problems: list[str]) -> list[str]:
        return problems + [f"request off the site: {url}" for url in self.off_site]


@pytest.fixture(scope="session")
def reader(chromium, server):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    yield Reader(context, server)
    context.close()


def _shot(page, name: str, full_page: bool = False) -> None:
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


# --------------------------------------------------------------------------- static HTML

class _Links(HTMLParser):
    """The href and src values of a page, and the text of its links."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.anchors: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            if attrs.get(key):
                self.urls.append(attrs[key])
        if tag == "a" and attrs.get("href"):
            self._href, self._text = attrs["href"], []

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.anchors.append((self._href, " ".join("".join(self._text).split())))
            self._href = None


def _links(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as err:
        return err.code, b"", ""


# --------------------------------------------------------------------------- the tests

def test_every_page_loads_with_no_console_error_and_nothing_from_off_the_site(reader):
    failures = {}
    for path in [f"notebooks/{n}.html" for n in NOTEBOOKS] + [f"{p}.html" for p in OTHER_PAGES]:
        page, problems = reader.open(path)
        if path == "index.html":
            _shot(page, "landing.png")
        if path == "notebooks/05_evaluation.html":
            _shot(page, "notebook_05_evaluation.png")
        page.close()
        if reader.problems_of(problems):
            failures[path] = reader.problems_of(problems)
    assert not failures, failures


def test_maths_is_typeset_by_the_sites_own_mathjax(reader):
    page, problems = reader.open("notebooks/04_training.html")
    page.wait_for_selector("mjx-container")
    assert page.locator("mjx-container").count() >= 10
    assert not reader.problems_of(problems)
    page.close()


def test_the_sidebar_lists_the_seven_notebooks_in_order_with_previous_and_next_links(reader):
    for i, name in enumerate(NOTEBOOKS):
        page, _ = reader.open(f"notebooks/{name}.html")
        sidebar = page.locator("nav.bd-docs-nav a.reference.internal")
        hrefs = [urlparse(urljoin(page.url, h)).path for h in sidebar.evaluate_all("els => els.map(e => e.href)")]
        listed = [Path(h).stem for h in hrefs if re.search(r"/notebooks/\d\d_", h)]
        assert listed == NOTEBOOKS, f"{name}: the sidebar lists {listed}"
        previous_ = page.locator("a.left-prev").get_attribute("href")
        next_ = page.locator("a.right-next").get_attribute("href")
        assert previous_ == ("../index.html" if i == 0 else f"{NOTEBOOKS[i - 1]}.html"), previous_
        if i + 1 < len(NOTEBOOKS):
            assert next_ == f"{NOTEBOOKS[i + 1]}.html", next_
        page.close()


def test_a_search_for_iou_finds_notebook_05(reader):
    page, problems = reader.open("search.html?q=IoU")
    results = page.locator("#search-results ul.search li a")
    results.first.wait_for()
    hrefs = results.evaluate_all("els => els.map(e => e.getAttribute('href'))")
    _shot(page, "search_IoU.png")
    assert any("05_evaluation" in h for h in hrefs), hrefs
    assert not reader.problems_of(problems)
    page.close()


def test_every_internal_link_and_image_on_the_site_resolves(site, server):
    """A crawl from the landing page: every href and src of every page (and every url()
    of every stylesheet) on 127.0.0.1 must answer 200, and the crawl reaches every page
    and every figure of the site."""
    seen, queue, broken = set(), [server], []
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        status, body, kind = _get(url)
        if status != 200:
            broken.append(f"{status} {url}")
            continue
        if kind == "text/html":
            found = _links(body.decode("utf-8", "replace")).urls
        elif kind == "text/css":
            found = re.findall(r"url\(\s*['\"]?([^'\")]+)", body.decode("utf-8", "replace"))
        else:
            continue
        for link in found:
            target = urldefrag(urljoin(url, link)).url
            if target.startswith(server) and target not in seen:
                queue.append(target.split("?")[0])
    assert not broken, broken
    pages = [p for p in site.rglob("*.html") if "_static" not in p.parts]  # _static: theme templates
    files = [p.relative_to(site).as_posix() for p in [*pages, *(site / "_images").iterdir()]]
    unreached = [f for f in files if server + f not in seen]
    assert not unreached, f"pages or figures no link leads to: {unreached}"


def test_each_colab_link_opens_the_notebooks_own_path_at_the_release(site):
    for name in NOTEBOOKS:
        anchors = _links((site / "notebooks" / f"{name}.html").read_text()).anchors
        colab = [href for href, _ in anchors if "colab.research.google.com" in href]
        assert len(colab) >= 2, f"{name}: expected the launch button and the badge, found {colab}"
        assert set(colab) == {colab_url(f"{name}.ipynb")}, f"{name}: {set(colab)}"
        assert all(f"/blob/{RELEASE_TAG}/notebooks/{name}.ipynb" in href for href in colab)


def test_each_notebook_page_offers_the_committed_notebook_for_download(server):
    for name in NOTEBOOKS:
        status, html, _ = _get(f"{server}notebooks/{name}.html")
        downloads = [h for h, _ in _links(html.decode()).anchors if h.endswith(f"{name}.ipynb")
                     and "colab" not in h]
        assert downloads, f"{name}: no download link for the .ipynb"
        status, body, _ = _get(urljoin(f"{server}notebooks/{name}.html", downloads[0]))
        assert status == 200 and body == (REPO / "notebooks" / f"{name}.ipynb").read_bytes()


def test_widgets_become_a_note_and_no_page_shows_widget_state(site):
    notes = 0
    for path in site.rglob("*.html"):
        html = path.read_text()
        for trace in WIDGET_TRACES:
            assert trace not in html, f"{path.relative_to(site)} shows {trace!r}"
        notes += html.count("An interactive viewer: it needs a running Python kernel")
    assert notes == 2  # the data browser (02) and the comparison viewer (05)


def test_a_link_to_a_missing_file_fails_the_build(tmp_path):
    _needs_the_docs_tools()
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.md").write_text("# A page\n\nSee [the missing notes](missing.md) and {ref}`no-such-label`.\n")
    result = subprocess.run(sphinx_command(src, tmp_path / "out"), cwd=REPO, capture_output=True, text=True,
                            timeout=BUILD_TIMEOUT)
    assert result.returncode != 0
    assert "missing.md" in result.stderr and "no-such-label" in result.stderr, result.stderr[-3000:]
