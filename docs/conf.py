"""Sphinx configuration of the course website (built by docs/build_site.py, which stages
the sources; see there). MyST-NB renders the notebooks with their committed outputs."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # build_site, for the notebook reader
from build_site import copy_mathjax, release_info  # noqa: E402

REPO_URL, RELEASE_TAG = release_info()
release = version = RELEASE_TAG

project = "seglab"
html_title = "seglab: semantic segmentation, hands on"
author = "the seglab authors"
copyright = "the seglab authors"

extensions = ["myst_nb", "sphinx.ext.githubpages"]  # githubpages: .nojekyll, so Pages serves _static/

# The notebooks are shown as committed: never executed here (the outputs come from
# `python3 tasks.py notebooks`), and read through build_site.read_notebook.
nb_execution_mode = "off"
nb_custom_formats = {".ipynb": ["build_site.read_notebook", {}]}
nb_ipywidgets_js = {}  # no widget manager from a CDN: widget outputs are replaced by a note
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
# Warnings fail the build (-W): a missing file or a broken link must. A skipped heading
# level is a matter of style, not a broken page.
suppress_warnings = ["myst.header"]

# MathJax 3 served from the site itself (build_site.copy_mathjax puts it into _static).
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "sphinx_book_theme"
html_theme_options = {
    "repository_url": REPO_URL,
    "repository_branch": RELEASE_TAG,
    "path_to_docs": "",
    "use_repository_button": True,
    "use_download_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "show_toc_level": 2,
}
# The figures are drawn on white; unset, the theme also logs a console error on a first visit.
html_context = {"default_mode": "light"}


def setup(app):
    app.connect("build-finished", copy_mathjax)
