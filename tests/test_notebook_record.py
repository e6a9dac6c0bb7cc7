"""A full-mode run records its facts in each notebook's metadata, and the header's time
table is rewritten from them, on tiny generated notebooks (no real notebook is run)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from seglab import course
from seglab.notebook_record import (TIMES_END, TIMES_START, format_seconds, run_facts, time_table,
                                    write_time_table)

HEADER = ("# 09 · A tiny notebook\n\n**Time**:\n\n" + TIMES_START + "\n| old | table |\n" + TIMES_END
          + "\n\nText after the table stays as it is.\n")


def _write_notebook(path: Path, header: str = HEADER, executed: dict | None = None) -> Path:
    nb = {"cells": [{"cell_type": "markdown", "id": "h", "metadata": {}, "source": header.splitlines(keepends=True)},
                    {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": ["print(1)"]}],
          "metadata": {"seglab": {"executed": executed or {}}}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _header(path: Path) -> str:
    return "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])


def test_a_full_run_rewrites_only_the_time_block_of_the_header(tmp_path):
    executed = {"mode": "full", "seconds": 990.4, "device": "CPU AMD EPYC (AVX2, no bf16, 2 cores)", "run_id": "r1"}
    path = _write_notebook(tmp_path / "09_tiny.ipynb", executed=executed)
    gpu = tmp_path / "gpu.json"
    gpu.write_text(json.dumps([{"notebook": "09_tiny", "device": "GPU NVIDIA H100", "seconds": 75.0},
                               {"notebook": "08_other", "device": "GPU X", "seconds": 1.0}]))
    assert write_time_table(path, gpu) is True
    header = _header(path)
    before, _, after = HEADER.partition(TIMES_START)
    assert header.startswith(before) and header.endswith(after.partition(TIMES_END)[2])
    assert "| CPU AMD EPYC (AVX2, no bf16, 2 cores) | 16.5 min (990 s) |" in header
    assert "| GPU NVIDIA H100 | 75 s |" in header and "GPU X" not in header and "old" not in header
    assert write_time_table(path, gpu) is False   # a second pass changes nothing


def test_without_a_recorded_gpu_time_there_is_no_gpu_row(tmp_path):
    table = time_table({"mode": "full", "seconds": 14.3, "device": "CPU Y"}, [])
    assert "| CPU Y | 14 s |" in table and "GPU" not in table
    assert "not measured in full mode yet" in time_table({"mode": "quick", "seconds": 3.0})


def test_a_header_without_the_time_block_is_a_clear_error(tmp_path):
    path = _write_notebook(tmp_path / "09_tiny.ipynb", header="# 09 · No block\n")
    with pytest.raises(ValueError, match=r"09_tiny.ipynb: its first cell needs one time block"):
        write_time_table(path, tmp_path / "none.json")


def test_seconds_read_as_seconds_then_minutes():
    assert format_seconds(45.4) == "45 s" and format_seconds(1020.9) == "17.0 min (1021 s)"


def test_the_run_facts_name_the_code_the_machine_and_the_run(monkeypatch):
    monkeypatch.setattr("seglab.checkpoint.code_version", lambda: "0.1.0+abc1234")
    facts = run_facts("2030-01-01T00:00:00Z", ["seglab/x.py"])
    assert facts["code_version"] == "0.1.0+abc1234" and facts["run_id"] == "2030-01-01T00:00:00Z"
    assert facts["cpu"] and facts["device"] and facts["uncommitted_changes"] == ["seglab/x.py"]
    assert "uncommitted_changes" not in run_facts("r", [])


def test_execute_records_mode_seconds_and_the_run_facts(tmp_path, monkeypatch):
    class NoKernel:   # stands in for nbclient: the record is what is tested, not the kernel
        def __init__(self, nb, **kwargs):
            pass

        def execute(self):
            pass

    monkeypatch.setattr("nbclient.NotebookClient", NoKernel)
    path = _write_notebook(tmp_path / "09_tiny.ipynb")
    course.execute(path, quick=False, record={"run_id": "r1", "cpu": "CPU Z"})
    executed = json.loads(path.read_text(encoding="utf-8"))["metadata"]["seglab"]["executed"]
    assert executed["mode"] == "full" and isinstance(executed["seconds"], float)
    assert executed["run_id"] == "r1" and executed["cpu"] == "CPU Z"
