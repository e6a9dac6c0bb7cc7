"""Every decimal and percentage in a notebook's prose is shown by the notebook itself
(tests/notebook_numbers.py says what counts and what is skipped by rule)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from notebook_numbers import (ALLOW, describe_unbacked, is_backed, prose_numbers, shown_values, unbacked,
                              word_count)

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
MAX_ALLOWED = 15   # issue #41: the allow-list stays short


def _notebook(markdown: list[str], shown: list[str]) -> dict:
    cells = [{"cell_type": "markdown", "source": text} for text in markdown]
    cells += [{"cell_type": "code", "source": "", "outputs": [{"output_type": "stream", "text": text}]}
              for text in shown]
    return {"cells": cells}


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_every_number_in_the_prose_is_shown_by_the_notebook(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    missing = unbacked(nb, path.name)
    assert not missing, describe_unbacked(path.name, missing)


def test_the_allow_list_is_short_and_every_entry_says_why_and_is_still_needed():
    assert len(ALLOW) <= MAX_ALLOWED, f"{len(ALLOW)} allow-list entries; at most {MAX_ALLOWED}"
    stale = []
    for prefix, text, reason in ALLOW:
        assert reason.strip(), f"the allow-list entry {prefix} {text} needs a one-line reason"
        written = [n.text for p in PATHS if p.name.startswith(prefix)
                   for i, c in enumerate(json.loads(p.read_text(encoding="utf-8"))["cells"])
                   if c["cell_type"] == "markdown" for n in prose_numbers("".join(c["source"]), i)]
        if text not in written:
            stale.append(f"{prefix}: {text}")
    assert not stale, f"allow-list entries no notebook's prose uses any more (delete them): {stale}"


def test_a_rounded_value_counts_as_shown():
    (number,) = prose_numbers("The model scores 0.548 mIoU.")
    assert is_backed(number, shown_values(_notebook([], ["miou 0.54812"])))
    assert not is_backed(number, shown_values(_notebook([], ["miou 0.5491"])))


def test_a_percentage_is_shown_as_itself_or_as_a_fraction():
    numbers = prose_numbers("About 12 % of pixels, 4.5 percent of them, and 30% more.")
    assert [n.text for n in numbers] == ["12 %", "4.5 percent", "30%"]
    values = shown_values(_notebook([], ["0.1234 4.46 30.2%"]))
    assert all(is_backed(n, values) for n in numbers)
    assert not is_backed(numbers[0], shown_values(_notebook([], ["0.135 13"])))


def test_code_and_its_outputs_back_a_number_but_other_prose_does_not():
    nb = _notebook(["We train at lr 0.001 and reach 0.61.", "As said, 0.61."], [])
    nb["cells"].append({"cell_type": "code", "source": "fit(lr=1e-3)", "outputs": [
        {"output_type": "display_data", "data": {"text/markdown": "**0.61** mIoU", "image/png": "0.7"}}]})
    assert unbacked(nb) == []
    nb["cells"][-1]["outputs"] = []
    assert [(n.cell, n.text) for n in unbacked(nb)] == [(0, "0.61"), (1, "0.61")]


def test_html_outputs_are_read_without_their_markup():
    values = shown_values(_notebook([], []) | {"cells": [{"cell_type": "code", "source": "", "outputs": [
        {"output_type": "execute_result", "data": {"text/html": '<td style="width: 0.25">0.5</td>'}}]}]})
    assert 0.5 in values and 0.25 not in values


def test_section_numbers_versions_links_code_and_latex_are_not_results():
    markdown = ("### 5.3 Occlusion\n"
                "In section 5.3 and 3.2 we use torch 2.14.1 and Python 3.11 ([table 4.2](#4.2), "
                "https://example.org/v1.5), 2.5D slices, `lr=0.3`, $p = 0.25$, and\n```\nx = 0.9\n```\n"
                "<!-- times -->\n| CPU | 16.5 min |\n<!-- /times -->\nbut 0.77 is a result.")
    assert [n.text for n in prose_numbers(markdown)] == ["0.77"]


def test_an_unbacked_number_is_reported_with_its_cell_and_sentence():
    nb = _notebook(["# Title", "First sentence. The score was 0.437 on dusk frames. Then more."], [])
    (number,) = unbacked(nb, "09_x.ipynb")
    assert (number.cell, number.text) == (1, "0.437")
    assert number.sentence == "The score was 0.437 on dusk frames."
    message = describe_unbacked("09_x.ipynb", [number])
    assert "cell 1: 0.437 in: The score was 0.437 on dusk frames." in message
    assert "generate this sentence in a code cell, or quote a range every machine meets" in message


def test_words_are_counted_as_a_reader_sees_them():
    assert word_count("A [link text](https://x.org/a b) | --- | - item <!-- times -->") == 4
