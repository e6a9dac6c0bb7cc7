"""benchmarks/lessons.py, the runner behind notebook 06: every row it writes carries the
exact commands, the code version, the machine and the date; it records nothing while the
code that trains has uncommitted changes; re-running a row replaces its line instead of
adding a second one; the rows are one change each from the baseline; the notebook's table
and lessons are computed from the results file.

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
import seglab.lessons
from script_import import load_script
from seglab import hardware, lessons_report
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
    assert train.startswith("OMP_NUM_THREADS=1 python -m seglab train --recipe lessons ")
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
    assert row["machine"]["device"] == hardware.describe("cpu")      # the CPU class line of `seglab info`
    assert row["machine"]["cpu"]["threads"] == 1
    assert datetime.fromisoformat(row["date"]).utcoffset().total_seconds() == 0
    # the run: the config it trained with, its cost, its scores
    config = TrainConfig.from_dict(row["config"])
    assert config.seed == 0 and config.max_steps == 2 and config.size == (48, 64)
    assert row["steps"] == 2 and row["params"] > 0 and row["gflops_per_image"] > 0
    assert row["train_wall_s"] > 0 and row["train_images_per_s"] > 0
    assert row["wall_s"] == pytest.approx(row["train_wall_s"] + row["eval_wall_s"], abs=0.11)
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
    mean, spread = lessons_report.seed_noise(results)
    assert spread == pytest.approx(0.02) and mean == pytest.approx(row["val"]["miou"] + 0.01)
    table = lessons_report.summary(results)
    assert [t["row"] for t in table] == ["baseline", "baseline_seed1"]
    assert table[0]["d_mIoU"] == 0 and table[1]["d_mIoU"] == pytest.approx(0.02)
    assert table[1]["change"] == "-" and table[0]["params_M"] == row["params"] / 1e6
    # frequency-weighted IoU: 30 sky, 20 building, 50 road pixels; half the building called road
    cm = [[30, 0, 0], [0, 10, 10], [0, 0, 50]]
    expected = 0.3 * 1.0 + 0.2 * (10 / 20) + 0.5 * (50 / 60)
    assert lessons_report.frequency_weighted_iou(cm) == pytest.approx(expected)


# --------------------------------------------------------------------------- only committed code makes a row

def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(repo), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A git checkout with a committed seglab/train.py and results file."""
    (tmp_path / "seglab" / "results").mkdir(parents=True)
    (tmp_path / "seglab" / "train.py").write_text("STEPS = 1\n")
    (tmp_path / "seglab" / "results" / "lessons.jsonl").write_text("")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "start")
    return tmp_path


def test_recorder_refuses_uncommitted_changes_to_the_training_code(checkout, monkeypatch, capsys):
    assert seglab.lessons.uncommitted_changes(checkout) == []
    (checkout / "seglab" / "results" / "lessons.jsonl").write_text("{}\n")   # a recorded row is not code
    (checkout / "notes.txt").write_text("untracked")                         # nor an untracked file
    assert seglab.lessons.uncommitted_changes(checkout) == []
    seglab.lessons.refuse_uncommitted(checkout)                                 # no complaint
    (checkout / "seglab" / "train.py").write_text("STEPS = 2\n")
    assert seglab.lessons.uncommitted_changes(checkout) == ["seglab/train.py"]
    with pytest.raises(SystemExit) as refused:
        seglab.lessons.refuse_uncommitted(checkout)
    message = str(refused.value.code)
    assert "\n" not in message and "seglab/train.py" in message and "commit" in message
    # the command stops before it trains anything
    monkeypatch.setattr(seglab.lessons, "REPO", checkout)
    monkeypatch.setattr(seglab.lessons, "run_row", lambda *a, **k: pytest.fail("a row ran on uncommitted code"))
    with pytest.raises(SystemExit) as refused:
        seglab.lessons.main(["run", "baseline", "--results", str(checkout / "x.jsonl")])
    assert "seglab/train.py" in str(refused.value.code)
    assert not (checkout / "x.jsonl").exists()
    assert seglab.lessons.uncommitted_changes(None) is None                   # an installed release


def test_quick_rows_never_go_into_the_shipped_results(monkeypatch):
    monkeypatch.setattr(seglab.lessons, "run_row", lambda *a, **k: pytest.fail("a quick row ran"))
    with pytest.raises(SystemExit) as refused:
        seglab.lessons.main(["run", "baseline", "--quick"])
    assert "--results" in str(refused.value.code)


def test_run_and_list_are_the_flags_in_words():
    translate = seglab.lessons._translate
    assert translate(["run"]) == ["--all"]
    assert translate(["run", "baseline", "no_skip", "--threads", "1"]) == ["--rows", "baseline,no_skip",
                                                                          "--threads", "1"]
    assert translate(["list"]) == ["--list"]
    assert translate(["--rows", "baseline"]) == ["--rows", "baseline"]


# --------------------------------------------------------------------------- the notebook reads the file

def _results(quick_results: Path, **miou: float) -> dict[str, dict]:
    """Rows made from the quick baseline row, with the given val mIoU each."""
    row = json.loads(quick_results.read_text())
    out = {}
    for name, value in miou.items():
        changes = lessons.ROWS[name][0]
        out[name] = {**row, "row": name, "changes": changes, "config": {**row["config"], **changes},
                     "val": {**row["val"], "miou": value}}
    return out


def test_findings_follow_the_rows(quick_results):
    results = _results(quick_results, baseline=0.30, baseline_seed1=0.32, baseline_seed2=0.28,
                       no_skip=0.20, width_8=0.31)
    text = "\n".join(lessons_report.findings(results))
    assert "0.280 to 0.320, a spread of 0.040" in text
    assert "**Worse than the noise**: `no_skip` (skip=off) -0.100 mIoU" in text
    assert "Better than the noise" not in text
    verdicts = {v["row"]: v["verdict"] for v in lessons_report.verdicts(results)}
    assert verdicts == {"no_skip": "worse", "width_8": "within the noise"}
    # re-run a row with another result: the words change with it
    results["no_skip"]["val"] = {**results["no_skip"]["val"], "miou": 0.40}
    text = "\n".join(lessons_report.findings(results))
    assert "**Better than the noise**: `no_skip` (skip=off) +0.100 mIoU" in text and "Worse" not in text


def test_notebook_table_and_lessons_are_built_from_the_results_file():
    notebook = json.loads((REPO / "notebooks" / "06_lessons_learned.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    assert "lessons_report.load(RESULTS)" in code and "lessons.RESULTS" in code
    assert "lessons_report.summary(results)" in code and "lessons_report.findings(results)" in code
    shipped = lessons_report.load()
    assert list(shipped) == list(lessons.ROWS)
    assert [r["row"] for r in lessons_report.summary(shipped)] == list(lessons.ROWS)
