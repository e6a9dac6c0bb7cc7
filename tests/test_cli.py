"""The `seglab` command end to end on synthetic data: train, evaluate, predict, info."""
import json
import subprocess
import sys

import numpy as np
from PIL import Image


def seglab(*args, **kw):
    return subprocess.run([sys.executable, "-m", "seglab", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def test_train_evaluate_predict_from_the_shell(synthetic_camvid, tmp_path):
    out = tmp_path / "run"
    trained = seglab("train", "--recipe", "quick", "--root", str(synthetic_camvid), "--size", "60x80",
                     "--crop", "56x80", "--epochs", "2", "--max-steps", "6", "--width", "4", "--depth", "2",
                     "--out", str(out), "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert "best val mIoU" in trained.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["epochs"] == 2 and "code_version" in config and "device" in config

    scored = seglab("evaluate", "--checkpoint", str(out / "best.pt"), "--split", "test", "--root",
                    str(synthetic_camvid), "--json")
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout)
    assert result["images"] == 4 and result["resolution"] == [60, 80]
    assert set(result["iou"]) == {"Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol",
                                  "Fence", "Car", "Pedestrian", "Bicyclist"}
    assert result["flip"] is False

    mirrored = seglab("evaluate", "--checkpoint", str(out / "best.pt"), "--split", "test", "--root",
                      str(synthetic_camvid), "--flip")
    assert mirrored.returncode == 0, mirrored.stderr
    assert "with flip test-time augmentation" in mirrored.stdout and "mean IoU" in mirrored.stdout

    zoomed = seglab("evaluate", "--checkpoint", str(out / "best.pt"), "--split", "test", "--root",
                    str(synthetic_camvid), "--scales", "0.75,1", "--json")
    assert zoomed.returncode == 0, zoomed.stderr
    assert json.loads(zoomed.stdout)["scales"] == [0.75, 1.0] and result["scales"] == [1.0]
    wrong = seglab("evaluate", "--checkpoint", str(out / "best.pt"), "--scales", "0.75,big")
    assert wrong.returncode == 2 and "--scales" in wrong.stderr and "0.75,0.875,1" in wrong.stderr

    predicted = seglab("predict", "--checkpoint", str(out / "best.pt"), "--input",
                       str(synthetic_camvid / "test"), "--output", str(tmp_path / "pred"), "--color")
    assert predicted.returncode == 0, predicted.stderr
    source = sorted((synthetic_camvid / "test").iterdir())[0]
    label = Image.open(tmp_path / "pred" / source.name)
    assert label.mode == "L" and label.size == Image.open(source).size
    assert np.asarray(label).max() <= 10
    assert (tmp_path / "pred" / f"{source.stem}_color.png").exists()

    flipped = seglab("predict", "--checkpoint", str(out / "best.pt"), "--input", str(source),
                     "--output", str(tmp_path / "pred_flip"), "--flip")
    assert flipped.returncode == 0, flipped.stderr
    assert Image.open(tmp_path / "pred_flip" / source.name).size == label.size

    scaled = seglab("predict", "--checkpoint", str(out / "best.pt"), "--input", str(source),
                    "--output", str(tmp_path / "pred_scales"), "--scales", "0.75,1")
    assert scaled.returncode == 0, scaled.stderr
    assert Image.open(tmp_path / "pred_scales" / source.name).size == label.size


def test_a_weighted_run_is_scored_and_predicted_at_the_rebalance_asked_for(synthetic_camvid, tmp_path):
    out = tmp_path / "run"
    trained = seglab("train", "--recipe", "quick", "--root", str(synthetic_camvid), "--size", "60x80",
                     "--crop", "56x80", "--epochs", "1", "--max-steps", "4", "--width", "4", "--depth", "2",
                     "--class-weights", "sqrt", "--rebalance", "0.75", "--out", str(out), "--quiet")
    assert trained.returncode == 0, trained.stderr
    scores = {}
    for extra in ([], ["--rebalance", "0"]):
        scored = seglab("evaluate", "--checkpoint", str(out / "last.pt"), "--root", str(synthetic_camvid),
                        "--json", *extra)
        assert scored.returncode == 0, scored.stderr
        result = json.loads(scored.stdout)
        scores[result["rebalance"]] = result["confusion"]
    assert set(scores) == {0.75, 0.0}
    text = seglab("evaluate", "--checkpoint", str(out / "last.pt"), "--root", str(synthetic_camvid))
    assert "rebalance 0.75" in text.stdout
    predicted = seglab("predict", "--checkpoint", str(out / "last.pt"), "--input", str(synthetic_camvid / "test"),
                       "--output", str(tmp_path / "pred"), "--rebalance", "0")
    assert predicted.returncode == 0, predicted.stderr


def test_info_names_the_cpu_class():
    info = seglab("info")
    assert info.returncode == 0 and "capability" in info.stdout
    assert "cpu precision: " in info.stdout      # fp32 or bf16, and why


def test_python_dash_m_and_the_console_script_share_one_parser():
    from seglab.cli import build_parser
    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) == {"download", "train", "evaluate", "predict", "info"}


def test_download_help_states_when_data_files_are_replaced_and_how_long_it_waits():
    from seglab.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["download"]
    text = " ".join(sub.format_help().split())
    assert "--overwrite" in text and "never replaced unless you pass --overwrite" in text
    assert "--stall-timeout" in text and "--min-rate" in text
