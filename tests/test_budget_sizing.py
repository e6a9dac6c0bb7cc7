"""--sizing auto: the budget picks the U-Net's input size from the pace it measures (on a
fake clock and fake paces, so a "15-minute" choice takes no time), the user's own size
wins, the choice reaches the checkpoint, and a short real run completes with it."""
import json

import pytest
import torch

from script_import import load_script
from seglab import cli, sizing
from seglab.checkpoint import load_checkpoint
from seglab.config import TrainConfig, parse_overrides
from seglab.datasets import CAMVID
from seglab.errors import SeglabError
from seglab.evaluation import evaluate_checkpoint
from seglab.hardware import SpeedSettings
from seglab.recipes import get_recipe
from seglab.sizing import CONFIGURATIONS, Configuration, choose_for_budget, measure_step_seconds, user_sizes_win
from seglab.train import fit

from test_engine import FastClock, tiny

CAMVID_IMAGES = (367, 101)   # CamVid's train and val images
TINY_TABLE = (   # a test-only table: the costlier one needs more epochs than any short run gets
    Configuration("60x80", (60, 80), (56, 80), 1, 4, (1.0,), 10**6),
    Configuration("30x40", (30, 40), (28, 40), 1, 4, (1.0,), 1),
)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_pace(seconds: dict[str, float], clock: FakeClock, measuring: float = 0.0):
    """A stand-in for measure_step_seconds: each configuration's step takes ``seconds[name]``,
    and measuring it takes ``measuring`` seconds of the clock."""
    def measure(configuration, config, spec, device, settings, world, clock_):
        clock.now += measuring
        return seconds[configuration.name]
    return measure


def choose(paces: dict[str, float], budget: float = 900.0, measuring: float = 0.0):
    config = TrainConfig.from_dict({**get_recipe("course"), "budget": budget})
    clock = FakeClock()
    return choose_for_budget(config, CAMVID, torch.device("cpu"), SpeedSettings(), clock=clock, start=clock(),
                             measure=fake_pace(paces, clock, measuring), images=CAMVID_IMAGES)


def test_the_table_runs_from_the_costliest_configuration_to_the_cheapest():
    assert [c.name for c in CONFIGURATIONS] == ["240x320", "180x240"]
    assert CONFIGURATIONS[0].min_epochs == sizing.MIN_EPOCHS_240X320
    course = get_recipe("course")
    assert CONFIGURATIONS[0].options() == {k: course[k] for k in sizing.SIZED_OPTIONS}
    assert course["sizing"] == "auto"


def test_a_fast_machine_trains_the_costliest_configuration():
    config, choice = choose({"240x320": 0.15, "180x240": 0.09})
    assert choice.picked == "240x320" and config.size == (240, 320) and config.crop == (224, 320)
    assert choice.candidates[0].epochs >= sizing.MIN_EPOCHS_240X320
    assert choice.line().startswith("budget 900 s: training 240x320")


def test_a_slow_machine_trains_the_smaller_configuration():
    config, choice = choose({"240x320": 0.5, "180x240": 0.28})
    assert choice.picked == "180x240" and config.size == (180, 240) and config.crop == (176, 240)
    assert config.stem_stride == 2 and config.width == 16 and config.eval_scales == (0.75, 0.875, 1.0)
    big, small = choice.candidates
    assert big.epochs < big.min_epochs and small.epochs >= small.min_epochs
    assert f"240x320 would get {big.epochs:.0f} epochs (needs {sizing.MIN_EPOCHS_240X320}): training 180x240" \
        in choice.line()
    assert "280 ms per step against 500 for 240x320" in choice.line()


def test_a_hopeless_budget_trains_the_cheapest_and_says_so():
    config, choice = choose({"240x320": 0.5, "180x240": 0.28}, budget=60.0)
    assert choice.picked == "180x240" and config.size == (180, 240)
    assert all(c.epochs < c.min_epochs for c in choice.candidates)
    assert "the cheapest, as none gets its epochs" in choice.line()


def test_the_time_spent_measuring_counts_against_the_budget():
    fast = {"240x320": 0.15, "180x240": 0.09}
    assert choose(fast)[1].picked == "240x320"
    _, choice = choose(fast, measuring=350.0)   # 700 of the 900 s gone on measuring
    assert choice.picked == "180x240" and choice.measuring_seconds == 700.0


def test_the_pace_is_the_mean_of_real_training_steps_after_one_warm_up(monkeypatch):
    import seglab.train
    calls = []
    real_step = seglab.train.train_step

    def counted(*args, **kw):
        calls.append(args[1].shape)
        return real_step(*args, **kw)

    monkeypatch.setattr(seglab.train, "train_step", counted)
    config = TrainConfig(depth=2, batch_size=4)
    seconds = measure_step_seconds(TINY_TABLE[1], config, CAMVID, torch.device("cpu"), SpeedSettings(),
                                   clock=lambda: float(len(calls)))
    assert seconds == 1.0                                   # the clock counts steps: 3 timed, 3 counted
    assert calls == [torch.Size([4, 3, 28, 40])] * (sizing.TIMED_STEPS + 1)   # the run's batch and crop


def test_a_size_given_by_the_user_turns_auto_sizing_off(capsys):
    values = user_sizes_win({**get_recipe("course"), "size": (200, 300)}, {"size": (200, 300)})
    assert values["sizing"] == "fixed" and values["size"] == (200, 300)
    assert capsys.readouterr().err.strip() == "sizing: fixed, since --size was given"
    assert user_sizes_win(get_recipe("course"), {"lr": 1e-3})["sizing"] == "auto"


def test_seglab_train_keeps_a_size_given_on_the_command_line(monkeypatch, tmp_path, capsys):
    import seglab.train
    seen = []
    monkeypatch.setattr(seglab.train, "fit", lambda config: seen.append(config) or (_ for _ in ()).throw(
        SeglabError("stopped before training")))
    cli.main(["train", "--recipe", "course", "--width", "8", "--out", str(tmp_path / "run")])
    assert seen[0].sizing == "fixed" and seen[0].width == 8 and seen[0].size == (240, 320)
    assert "sizing: fixed, since --width was given" in capsys.readouterr().err
    cli.main(["train", "--recipe", "course", "--out", str(tmp_path / "run2")])
    assert seen[1].sizing == "auto"


def test_a_short_budget_run_sizes_itself_and_its_checkpoint_records_the_choice(synthetic_camvid, tmp_path,
                                                                              monkeypatch, capsys):
    monkeypatch.setattr(sizing, "CONFIGURATIONS", TINY_TABLE)
    run = fit(tiny(synthetic_camvid, tmp_path / "run", budget=30.0, epochs=1000, max_steps=6, sizing="auto"),
              clock=FastClock(0.5))
    err = capsys.readouterr().err
    assert "60x80 would get" in err and "training 30x40" in err
    assert run.sizing.picked == "30x40" and run.config.size == (30, 40) and run.config.crop == (28, 40)
    assert [c.name for c in run.sizing.candidates] == ["60x80", "30x40"]
    saved = load_checkpoint(run.last_path)
    assert tuple(saved["train_config"]["size"]) == (30, 40) and tuple(saved["train_config"]["crop"]) == (28, 40)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["config"]["size"] == [30, 40] and meta["sizing"]["picked"] == "30x40"
    assert evaluate_checkpoint(run.last_path, "val", str(synthetic_camvid))["work_size"] == [30, 40]


def test_a_benchmark_override_that_is_no_literal_stays_text_and_one_without_a_value_is_refused():
    assert parse_overrides(["optimizer=adamw", "seed=4"]) == {"optimizer": "adamw", "seed": 4}
    with pytest.raises(SeglabError, match="NAME=VALUE"):
        parse_overrides(["lr"])


def test_the_accuracy_benchmark_prints_and_stores_the_configuration_the_budget_chose(synthetic_camvid, tmp_path,
                                                                                       monkeypatch, capsys):
    from pathlib import Path
    monkeypatch.setattr(sizing, "CONFIGURATIONS", TINY_TABLE)
    accuracy = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.py")
    accuracy.main(["--budget", "20s", "--root", str(synthetic_camvid), "--out", str(tmp_path / "run"),
                   "--device", "cpu", "--seed", "3", "--set", "max_steps=2", "depth=2", "batch_size=4",
                   "progress=False"])
    out = capsys.readouterr().out
    assert "configuration: 30x40, width 4, stem stride 1, chosen: budget 20 s: 60x80 would get" in out
    assert "IoU Sky" in out
    summary = json.loads((tmp_path / "run" / "accuracy.json").read_text())
    assert summary["seed"] == 3 and summary["size"] == [30, 40] and summary["set"][0] == "max_steps=2"
    assert summary["sizing"]["picked"] == "30x40"
    assert [c["name"] for c in summary["sizing"]["candidates"]] == ["60x80", "30x40"]
    assert all(c["step_seconds"] > 0 for c in summary["sizing"]["candidates"])
    with pytest.raises(SystemExit, match="error: --set 'colour_jitter=1'"):
        accuracy.main(["--root", str(synthetic_camvid), "--set", "colour_jitter=1"])
