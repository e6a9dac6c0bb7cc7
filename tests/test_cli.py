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


def test_train_help_has_a_flag_with_its_help_for_every_training_option():
    from seglab.cli import build_parser
    from seglab.config import options
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    text = " ".join(train.format_help().split())          # argparse wraps lines: compare words
    by_dest = {action.dest: action for action in train._actions}
    for f in options():
        flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
        assert flag in by_dest[f.name].option_strings, f.name
        assert " ".join(f.metadata["help"].split()) in text, f"{flag}: its help is missing from --help"


def test_a_recipe_with_an_unknown_key_is_refused_naming_it(tmp_path, monkeypatch, capsys):
    import pytest

    from seglab import recipes
    from seglab.cli import main
    from seglab.config import TrainConfig
    from seglab.errors import SeglabError
    monkeypatch.setitem(recipes.RECIPES, "typo", dict(recipes.RECIPES["quick"], batch_szie=4))
    assert main(["train", "--recipe", "typo", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "'batch_szie'" in err and "recipe 'typo'" in err and not (tmp_path / "run").exists()
    with pytest.raises(SeglabError, match="unknown training option 'lr_max'"):
        TrainConfig.from_dict({"lr_max": 0.1})


def test_an_older_checkpoints_config_with_options_since_removed_still_loads():
    from seglab.config import TrainConfig
    config = TrainConfig.from_checkpoint({"train_config": {"epochs": 3, "size": [60, 80], "option_since_removed": 1}})
    assert config.epochs == 3 and config.size == (60, 80)


def test_every_recipe_names_only_training_options():
    from seglab.config import TrainConfig
    from seglab.recipes import RECIPES
    for name, values in RECIPES.items():
        TrainConfig.from_dict(values, source=f"recipe {name!r}").validate()


def test_download_help_states_when_data_files_are_replaced_and_how_long_it_waits():
    from seglab.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["download"]
    text = " ".join(sub.format_help().split())
    assert "--overwrite" in text and "never replaced unless you pass --overwrite" in text
    assert "--stall-timeout" in text and "--min-rate" in text


def test_seglab_train_without_a_recipe_trains_the_15_minute_course_model(tmp_path, monkeypatch):
    import seglab.train
    from seglab.cli import build_parser, main
    from seglab.errors import SeglabError
    seen = []
    monkeypatch.setattr(seglab.train, "fit", lambda config: seen.append(config) or (_ for _ in ()).throw(
        SeglabError("stopped before training")))
    main(["train", "--out", str(tmp_path / "run")])
    assert seen[0].budget == 900 and seen[0].sizing == "auto" and seen[0].class_weights == "sqrt"
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    text = " ".join(train.format_help().split())
    assert "default course: the learner's model, a 15-minute --budget" in text
