"""benchmarks/lessons.py, the runner behind notebook 06: every row it writes carries the
exact commands, the code version, the machine and the date; re-running a row replaces
its line instead of adding a second one; the rows are one change each from the baseline.

The end-to-end case runs the runner as a learner would (``python benchmarks/lessons.py
--quick``, which starts ``python -m seglab train`` and ``evaluate``), on the synthetic
CamVid; the re-run case calls it in this process to save the interpreter start-ups.
"""
import json
import re
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

import seglab
from script_import import load_script
from seglab.cli import build_parser
from seglab.datasets import CAMVID
from seglab.checkpoint import code_version
from seglab.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "benchmarks" / "lessons.py"


lessons = load_script(RUNNER)


@pytest.fixture(scope="module")
def quick_results(synthetic_camvid, tmp_path_factory) -> Path:
    """The results file of one quick row (baseline), written by the runner in a subprocess."""
    folder = tmp_path_factory.mktemp("lessons")
    results = folder / "lessons.jsonl"
    with pytest.MonkeyPatch.context() as mp:  # module fixtures run outside the autouse cache fixture
        mp.setenv("SEGLAB_CACHE", str(tmp_path_factory.getbasetemp() / "seglab-cache"))
        proc = subprocess.run([sys.executable, str(RUNNER), "--quick", "--rows", "baseline", "--threads", "1",
                               "--root", str(synthetic_camvid), "--results", str(results),
                               "--runs", str(folder / "runs")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return results


def test_quick_row_is_well_formed(quick_results):
    lines = quick_results.read_text().splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    missing = [k for k in lessons.REQUIRED if k not in row]
    assert not missing, f"missing fields {missing}"
    assert row["row"] == "baseline" and row["status"] == "ok" and row["quick"] is True
    # provenance: the exact commands, the code version, the machine, the date
    train, evaluate = row["commands"]["train"], row["commands"]["evaluate"]
    assert train.startswith("OMP_NUM_THREADS=1 python -m seglab train --recipe course ")
    assert "--seed 0" in train and "--max-steps 2" in train
    assert evaluate.startswith("OMP_NUM_THREADS=1 python -m seglab evaluate --checkpoint ")
    assert "--split val" in evaluate and "last.pt" in evaluate
    for command in (train, evaluate):  # each parses as a seglab command line, exactly as written
        argv = shlex.split(command)[4:]
        build_parser().parse_args(argv)
    # seglab's version and the commit (the checkout may gain a commit while the test runs)
    assert re.fullmatch(rf"{re.escape(seglab.__version__)}(\+[0-9a-f]{{4,40}})?", row["code_version"])
    assert row["code_version"].split("+")[0] == code_version().split("+")[0]
    assert row["machine"]["device"].startswith("CPU") and row["machine"]["cpu"]["capability"]
    assert row["machine"]["cpu"]["threads"] == 1
    assert datetime.fromisoformat(row["date"]).utcoffset().total_seconds() == 0
    # the run: the config it trained with, its cost, its scores
    config = TrainConfig.from_dict(row["config"])
    assert config.seed == 0 and config.max_steps == 2 and config.size == (48, 64)
    assert row["steps"] == 2 and row["params"] > 0 and row["gflops_per_image"] > 0
    assert row["train_wall_s"] > 0 and row["train_images_per_s"] > 0
    val = row["val"]
    for key in ("miou", "pixel_accuracy", "mean_class_accuracy"):
        assert 0.0 <= val[key] <= 1.0
    assert list(val["iou"]) == list(CAMVID.class_names)
    assert len(val["confusion"]) == CAMVID.num_classes and val["images"] == 4


def test_rerun_replaces_its_line(quick_results, synthetic_camvid, tmp_path):
    results = tmp_path / "lessons.jsonl"
    first = json.loads(quick_results.read_text())
    other = {**first, "row": "no_skip", "date": "kept"}
    lessons.write_result({**first, "date": "old"}, results)
    lessons.write_result(other, results)
    assert [json.loads(x)["row"] for x in results.read_text().splitlines()] == ["baseline", "no_skip"]

    code = lessons.main(["--quick", "--rows", "baseline", "--threads", "1", "--in-process", "--root",
                         str(synthetic_camvid), "--results", str(results), "--runs", str(tmp_path / "runs")])
    assert code == 0
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert [r["row"] for r in rows] == ["baseline", "no_skip"]      # replaced, not appended; order of ROWS
    assert rows[0]["date"] != "old" and rows[0]["status"] == "ok"
    assert rows[1]["date"] == "kept"                                 # the other row untouched
    # a CPU run with the same seed repeats: the same numbers as the subprocess run
    assert rows[0]["val"]["confusion"] == first["val"]["confusion"]


def test_rows_change_one_thing_each():
    assert "baseline" in lessons.ROWS and lessons.ROWS["baseline"][0] == {}
    for name, (changes, description) in lessons.ROWS.items():
        assert description
        assert set(changes) <= set(lessons.FLAGS), name
        assert len(changes) <= 2, name                               # resolution changes size and crop together
        for quick in (False, True):
            options = lessons.row_config(name, quick)
            config = TrainConfig.from_dict(options)
            config.validate()
            argv = lessons.train_argv(options, "runs/x")
            args = build_parser().parse_args(argv)
            assert args.seed == options["seed"] and args.epochs == options["epochs"]
            assert config.max_steps is None or quick  # full rows compare at equal epochs, never a time budget
            assert config.budget is None


def test_list_and_unknown_rows(capsys):
    assert lessons.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in lessons.ROWS)
    with pytest.raises(SystemExit) as err:
        lessons.main(["--rows", "baseline,no_such_row"])
    assert err.value.code == 2


def test_summary_helpers_for_the_notebook(quick_results):
    row = json.loads(quick_results.read_text())
    results = {"baseline": row, "baseline_seed1": {**row, "row": "baseline_seed1",
                                                   "val": {**row["val"], "miou": row["val"]["miou"] + 0.02}}}
    mean, spread = lessons.seed_noise(results)
    assert spread == pytest.approx(0.02) and mean == pytest.approx(row["val"]["miou"] + 0.01)
    table = lessons.summary(results)
    assert [t["row"] for t in table] == ["baseline", "baseline_seed1"]
    assert table[0]["d_mIoU"] == 0 and table[1]["d_mIoU"] == pytest.approx(0.02)
    assert table[1]["change"] == "-" and table[0]["params_M"] == row["params"] / 1e6
    # frequency-weighted IoU: 30 sky, 20 building, 50 road pixels; half the building called road
    cm = [[30, 0, 0], [0, 10, 10], [0, 0, 50]]
    expected = 0.3 * 1.0 + 0.2 * (10 / 20) + 0.5 * (50 / 60)
    assert lessons.frequency_weighted_iou(cm) == pytest.approx(expected)
