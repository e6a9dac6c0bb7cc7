"""The website's staging (docs/build_site.py): its pages link to each other, and to the
repository for everything else, so no link of the site leads to a file the site does not
have; and the build writes only into a folder of its own. Fast: no Sphinx run."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
from build_site import COLAB_BADGE, build, read_notebook, rewrite_links  # noqa: E402

URL, TAG = "https://github.com/o/r", "v9.9.9"


def rewrite(markdown: str, source: str = "README.md") -> str:
    return rewrite_links(markdown, source, URL, TAG)


def test_a_link_to_a_page_of_the_site_stays_a_link_to_that_page():
    assert rewrite("[licences](data/README.md#getting-it)") == "[licences](data/README.md#getting-it)"
    assert rewrite("see [05](notebooks/05_evaluation.ipynb)") == "see [05](notebooks/05_evaluation.ipynb)"
    assert rewrite("[home](../README.md)", "data/README.md") == "[home](../index.md)"
    assert rewrite("[next](02_data.ipynb)", "notebooks/01_introduction.ipynb") == "[next](02_data.ipynb)"


def test_a_link_to_another_file_of_the_repository_points_at_it_on_github_at_the_release():
    assert rewrite("[results](benchmarks/RESULTS.md)") == f"[results]({URL}/blob/{TAG}/benchmarks/RESULTS.md)"
    assert rewrite("[card](../seglab/pretrained/MODEL_CARD.md)", "data/README.md") == \
        f"[card]({URL}/blob/{TAG}/seglab/pretrained/MODEL_CARD.md)"
    assert rewrite("[code](seglab/)") == f"[code]({URL}/tree/{TAG}/seglab)"
    assert rewrite("[r]: benchmarks/RESULTS.md") == f"[r]: {URL}/blob/{TAG}/benchmarks/RESULTS.md"


def test_external_links_and_anchors_are_left_alone():
    text = "[a](https://example.org/x.md) [b](#the-data) [c](mailto:someone@example.org)"
    assert rewrite(text) == text


def test_the_colab_badge_is_served_from_the_site():
    assert rewrite(f"[![Open In Colab]({COLAB_BADGE})](https://colab.research.google.com/x)") == \
        "[![Open In Colab](/colab-badge.svg)](https://colab.research.google.com/x)"


def test_a_widget_output_becomes_a_note_and_its_state_is_dropped():
    import nbformat
    nb = nbformat.v4.new_notebook(metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {}}})
    nb.cells = [nbformat.v4.new_code_cell("viewer", outputs=[nbformat.v4.new_output(
        "display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "m"},
                              "text/plain": "VBox(children=(...))"})])]
    read = read_notebook(nbformat.writes(nb))
    assert "widgets" not in read.metadata
    assert list(read.cells[0].outputs[0]["data"]) == ["text/markdown"]


def test_the_build_refuses_a_folder_that_holds_files_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not empty"):
        build(tmp_path, clean=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_widget_output_with_a_still_image_keeps_the_image_after_the_note():
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("viewer", outputs=[nbformat.v4.new_output(
        "display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "m"},
                              "image/png": "iVBORw0KGgo=", "text/plain": "VBox(...)"})])]
    outputs = read_notebook(nbformat.writes(nb)).cells[0].outputs
    assert [list(o["data"]) for o in outputs] == [["text/markdown"], ["image/png"]]
