"""Training, evaluation and prediction on synthetic data: it learns, repeats exactly,
checkpoints, resumes, and sizes a run to a budget (on a fast clock, without waiting)."""
import json
import os
import signal

import pytest
import torch

from seglab.budget import half_resolution, plan_steps
from seglab.checkpoint import load_checkpoint, load_model
from seglab.config import TrainConfig, parse_duration
from seglab.errors import CheckpointError, SeglabError
from seglab.evaluation import evaluate_checkpoint
from seglab.inference import predict_logits, scaled_size
from seglab.losses import logit_offsets
from seglab.lr_finder import suggest_lr
from seglab.models import UNet
from seglab.optim import lr_factor
from seglab.train import fit


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the models are tiny, and on a busy 2-core machine a second,
    spinning OpenMP thread makes every step many times slower (see test_robustness_training)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class FastClock:
    """A clock for budget runs that does not wait: every reading moves it on by ``tick``
    seconds (so each training step "costs" about one tick), and :meth:`advance` adds time,
    as a slow piece of work would."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def tiny(root, out, **kw):
    values = dict(root=str(root), size=(60, 80), crop=(56, 80), width=4, depth=2, epochs=2, batch_size=4,
                  out_dir=str(out) if out else None, progress=False, warmup_steps=2)
    values.update(kw)
    return TrainConfig(**values)


def test_same_seed_gives_exactly_the_same_weights_on_cpu(synthetic_camvid, tmp_path):
    a = fit(tiny(synthetic_camvid, None, seed=7))
    b = fit(tiny(synthetic_camvid, None, seed=7))
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name
    assert [h["val_miou"] for h in a.history] == [h["val_miou"] for h in b.history]


def test_a_run_writes_config_history_and_checkpoints(synthetic_camvid, tmp_path):
    run = fit(tiny(synthetic_camvid, tmp_path / "run"))
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "history.json", "history.csv", "best.pt", "last.pt"} <= names
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    for key in ("train_loss", "val_loss", "val_miou", "val_pixel_accuracy", "lr", "seconds"):
        assert key in history[0]
    assert run.best_path.exists()


def test_a_checkpoint_rebuilds_its_model_from_the_file_alone(synthetic_camvid, tmp_path):
    run = fit(tiny(synthetic_camvid, tmp_path / "run", width=6, depth=3, bilinear=False))
    model, state = load_model(tmp_path / "run" / "last.pt")
    assert model.config == run.model.config
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name])


def test_evaluate_scores_at_the_labels_full_resolution(synthetic_camvid, tmp_path):
    fit(tiny(synthetic_camvid, tmp_path / "run", size=(30, 40), crop=None))
    result = evaluate_checkpoint(tmp_path / "run" / "last.pt", "test", str(synthetic_camvid))
    assert result["resolution"] == [60, 80] and result["work_size"] == [30, 40]
    assert 0.0 <= result["miou"] <= 1.0 and result["images"] == 4


def test_training_learns_the_synthetic_scenes(synthetic_camvid):
    run = fit(tiny(synthetic_camvid, None, width=8, epochs=12, lr=3e-3, augment=False, crop=None))
    assert run.history[-1]["val_pixel_accuracy"] > 0.6
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]


def test_budget_mode_measures_the_machine_and_completes_its_schedule(synthetic_camvid, capsys, tmp_path):
    run = fit(tiny(synthetic_camvid, tmp_path / "run", budget=30.0, epochs=1000, warmup_steps=0),
              clock=FastClock(0.5))
    err = capsys.readouterr().err
    assert "ms/step" in err                               # it measured the machine ...
    assert "(checked again)" in err                       # ... checked its plan once more ...
    assert run.history[-1]["lr"] < 0.05 * 1e-3            # ... and the cosine schedule ran to its end
    assert len(run.history) < 1000
    saved = load_checkpoint(run.last_path)                # the checkpoint records the plan, not the 1000 asked for
    assert saved["train_config"]["epochs"] == len(run.history) == saved["epoch"]


def test_plan_steps_fills_the_budget_without_overrunning():
    # 100 s budget, 10 s spent on 5 steps; 1 s per step; epochs of 10 steps + 2 s validation
    total = plan_steps(100.0, 10.0, 1.0, 2.0, 10, 5, margin=0.0)
    cost = lambda steps: 10.0 + (steps - 5) * 1.0 + (steps / 10) * 2.0 + 2.0  # noqa: E731
    assert cost(total) <= 100.0 < cost(total + 1)
    assert plan_steps(10.0, 50.0, 1.0, 1.0, 10, 3) == 4     # always at least one more step


def test_a_plan_made_mid_run_does_not_count_past_validations_twice():
    # 25 steps done in 40 s, which include the 2 validations after steps 10 and 20
    total = plan_steps(100.0, 40.0, 1.0, 2.0, 10, 25, margin=0.0)
    cost = lambda steps: 40.0 + (steps - 25) * 1.0 + (steps - 20) / 10 * 2.0 + 2.0  # noqa: E731
    assert cost(total) <= 100.0 < cost(total + 1)


def test_resume_continues_to_the_planned_end(synthetic_camvid, tmp_path):
    def stop_after_epoch_1(record):
        if record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: fit saves and returns

    first = fit(tiny(synthetic_camvid, tmp_path / "a", epochs=3), callbacks=[stop_after_epoch_1])
    state = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert first.interrupted and state["epoch"] == 1
    resumed = fit(TrainConfig(resume=str(tmp_path / "a" / "last.pt"), out_dir=str(tmp_path / "a"), progress=False))
    state = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert not resumed.interrupted
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]          # the saved epoch, then the two left
    assert state["epoch"] == 3 and state["step"] == state["total_steps"] == 3 * first.history[0]["step"]


def test_more_epochs_trains_a_finished_run_on_with_a_stretched_schedule(synthetic_camvid, tmp_path):
    fit(tiny(synthetic_camvid, tmp_path / "a", epochs=1))
    first = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    run = fit(TrainConfig(resume=str(tmp_path / "a" / "last.pt"), more_epochs=2, progress=False,
                          out_dir=str(tmp_path / "a")))
    state = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert [h["epoch"] for h in run.history] == [1, 2, 3]
    assert state["total_steps"] == 3 * first["total_steps"] and state["step"] == state["total_steps"]
    assert state["train_config"]["epochs"] == 3 and state["train_config"]["more_epochs"] == 0
    assert run.history[1]["lr"] > run.history[0]["lr"]     # the learning rate rose again, then decayed
    assert run.history[2]["lr"] < run.history[1]["lr"]
    assert any(not torch.equal(state["model"][k], first["model"][k]) for k in first["model"])


def test_more_epochs_without_a_run_to_extend_is_refused(synthetic_camvid):
    with pytest.raises(SeglabError, match="--more-epochs extends a saved run"):
        fit(tiny(synthetic_camvid, None, more_epochs=2))


def test_lr_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(60, 100, 10, "constant") == 1.0


def test_durations_read_like_people_write_them():
    assert parse_duration("15m") == 900 and parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    assert parse_duration("300") == 300


def test_suggested_lr_is_a_tenth_of_the_lowest_loss_rate():
    assert suggest_lr([1e-4, 1e-3, 1e-2, 1e-1], [2.0, 1.5, 1.0, 3.0]) == pytest.approx(1e-3)


def test_a_replan_owes_the_validation_since_the_last_pass_and_a_final_one():
    # 25 steps done in 40 s, 10 steps an epoch, a 1 s step, a 2 s validation every epoch: the
    # 5 steps since the last pass owe half of one (1 s), the end owes a full one (2 s), and each
    # step from here costs 1 s plus a tenth of a pass (1.2 s): (100 - 40 - 1 - 2) / 1.2 = 47.5
    total = plan_steps(100.0, 40.0, 1.0, 2.0, 10, 25, margin=0.0)
    assert total == 25 + 47


def test_flip_prediction_averages_the_image_and_its_mirror():
    torch.manual_seed(0)
    model = UNet(3, 5, width=4, depth=2).eval()
    x = torch.randn(2, 3, 16, 24)
    with torch.no_grad():
        expected = (model(x) + model(x.flip(-1)).flip(-1)) / 2
        plain = predict_logits(model, x)
        flipped = predict_logits(model, x, flip=True)
    assert torch.allclose(flipped, expected, atol=1e-5)
    assert not torch.allclose(plain, flipped, atol=1e-5)  # the model is not mirror-symmetric


def test_multi_scale_prediction_averages_the_probabilities_of_each_scale():
    import torch.nn.functional as F
    torch.manual_seed(0)
    model = UNet(3, 5, width=4, depth=2).eval()
    x = torch.randn(2, 3, 30, 40)
    work = (24, 32)
    with torch.no_grad():
        probs = []
        for scale in (0.75, 1.0):
            size = scaled_size(work, scale)
            logits = model(F.interpolate(x, size=list(size), mode="bilinear", align_corners=False, antialias=True))
            probs.append(F.interpolate(logits, size=list(work), mode="bilinear", align_corners=False).softmax(1))
        expected = F.interpolate(((probs[0] + probs[1]) / 2).log(), size=[30, 40], mode="bilinear",
                                 align_corners=False)
        averaged = predict_logits(model, x, work, scales=(0.75, 1.0))
        single = predict_logits(model, x, work, scales=(1.0,))
    assert scaled_size(work, 0.75) == (16, 24)   # each side a multiple of 8
    assert averaged.shape == (2, 5, 30, 40)
    assert torch.allclose(averaged, expected, atol=1e-5)
    assert torch.equal(single, predict_logits(model, x, work))   # one scale: the plain logits, unchanged
    assert not torch.allclose(averaged.softmax(1), single.softmax(1), atol=1e-3)   # the other scale counts


def test_a_run_is_scored_with_its_own_eval_scales_unless_told_otherwise(synthetic_camvid, tmp_path):
    run = fit(tiny(synthetic_camvid, tmp_path / "run", eval_scales=(0.75, 1.0), epochs=1))
    assert tuple(load_checkpoint(tmp_path / "run" / "last.pt")["train_config"]["eval_scales"]) == (0.75, 1.0)
    own = evaluate_checkpoint(tmp_path / "run" / "last.pt", "val", str(synthetic_camvid))
    single = evaluate_checkpoint(tmp_path / "run" / "last.pt", "val", str(synthetic_camvid), scales=(1.0,))
    assert own["scales"] == [0.75, 1.0] and single["scales"] == [1.0]
    assert own["miou"] == pytest.approx(run.history[-1]["val_miou"])   # validation used the same scales
    assert own["confusion"] != single["confusion"]


def test_eval_scales_outside_a_sensible_range_are_refused_with_the_option_named():
    with pytest.raises(SeglabError, match="--eval-scales"):
        TrainConfig(eval_scales=(0.1, 1.0)).validate()
    with pytest.raises(SeglabError, match="--eval-scales"):
        TrainConfig(eval_scales=()).validate()


def test_a_rebalanced_run_saves_its_class_weights_and_load_model_applies_the_offsets(synthetic_camvid, tmp_path):
    run = fit(tiny(synthetic_camvid, tmp_path / "run", class_weights="sqrt", rebalance=0.75))
    assert run.offsets is not None and run.offsets.abs().sum() > 0
    loaded, state = load_model(tmp_path / "run" / "last.pt")
    assert state["rebalance"] == 0.75
    assert torch.allclose(logit_offsets(state["class_weights"], 0.75), run.offsets)
    x = torch.randn(2, 3, 60, 80)
    with torch.no_grad():
        expected = predict_logits(run.model.eval(), x, offsets=run.offsets)
        assert torch.allclose(predict_logits(loaded.eval(), x), expected, atol=1e-5)
        assert not torch.allclose(predict_logits(run.model, x), expected, atol=1e-3)  # raw weights differ


def test_rebalance_can_be_changed_when_loading_a_weighted_run(synthetic_camvid, tmp_path):
    run = fit(tiny(synthetic_camvid, tmp_path / "run", class_weights="median", rebalance=0.75))
    raw, state = load_model(tmp_path / "run" / "last.pt", rebalance=0.0)
    full, _ = load_model(tmp_path / "run" / "last.pt", rebalance=1.0)
    assert state["rebalance"] == 0.0
    x = torch.randn(1, 3, 60, 80)
    with torch.no_grad():
        assert torch.allclose(predict_logits(raw.eval(), x), predict_logits(run.model.eval(), x), atol=1e-5)
        shift = predict_logits(full.eval(), x) - predict_logits(raw, x)
    assert torch.allclose(shift[0, :, 0, 0], -state["class_weights"].log(), atol=1e-4)
    scored = evaluate_checkpoint(tmp_path / "run" / "last.pt", "val", str(synthetic_camvid), rebalance=0.0)
    assert scored["rebalance"] == 0.0


def test_rebalancing_a_run_trained_without_class_weights_is_refused_naming_it(synthetic_camvid, tmp_path):
    fit(tiny(synthetic_camvid, tmp_path / "run", epochs=1))
    with pytest.raises(CheckpointError, match="without class weights") as info:
        load_model(tmp_path / "run" / "last.pt", rebalance=0.5)
    assert str(tmp_path / "run" / "last.pt") in str(info.value)
    _, state = load_model(tmp_path / "run" / "last.pt")
    assert state["rebalance"] == 0.0 and "class_weights" not in state


def test_the_validation_scores_of_a_rebalanced_run_are_those_of_its_saved_model(synthetic_camvid, tmp_path):
    run = fit(tiny(synthetic_camvid, tmp_path / "run", class_weights="median", rebalance=1.0))
    rescored = evaluate_checkpoint(tmp_path / "run" / "last.pt", "val", str(synthetic_camvid))
    assert rescored["miou"] == pytest.approx(run.history[-1]["val_miou"], abs=1e-6)


def test_resuming_a_rebalanced_run_does_not_apply_its_offsets_twice(synthetic_camvid, tmp_path):
    def stop_after_epoch_1(record):
        if record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: fit saves and returns

    whole = fit(tiny(synthetic_camvid, tmp_path / "whole", class_weights="sqrt", rebalance=0.5))
    first = fit(tiny(synthetic_camvid, tmp_path / "half", class_weights="sqrt", rebalance=0.5),
                callbacks=[stop_after_epoch_1])
    assert first.interrupted
    resumed = fit(TrainConfig(resume=str(tmp_path / "half" / "last.pt"), out_dir=str(tmp_path / "half"),
                              progress=False))
    for (name, x), y in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(x, y), name
    assert resumed.history[-1]["val_miou"] == whole.history[-1]["val_miou"]


# --------------------------------------------------------------------------- progressive resizing (low_res)

class _SizeRecorder(UNet):
    """A U-Net that notes the height and width of every training batch it sees."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.train_sizes = []

    def forward(self, x):
        if self.training:
            self.train_sizes.append(tuple(x.shape[-2:]))
        return super().forward(x)


def test_half_resolution_averages_pixels_but_keeps_labels_whole():
    images = torch.rand(2, 3, 56, 80)
    masks = torch.randint(0, 12, (2, 56, 80))          # 11 = void stays void
    small, labels = half_resolution(images, masks)
    assert small.shape == (2, 3, 28, 40) and labels.shape == (2, 28, 40) and labels.dtype == masks.dtype
    assert torch.equal(labels, masks[:, 1::2, 1::2])     # a label from the block, never an average of labels
    assert torch.allclose(small.mean(), images.mean(), atol=0.02)


def test_low_res_trains_its_share_of_the_steps_first_at_half_resolution(synthetic_camvid):
    model = _SizeRecorder(3, 11, width=4, depth=2)
    run = fit(tiny(synthetic_camvid, None, epochs=4, low_res=0.5), model=model)
    steps = run.history[-1]["step"]
    sizes = [s for s in model.train_sizes if s in ((28, 40), (56, 80))]
    assert len(sizes) == len(model.train_sizes) == steps >= 4
    half = int(0.5 * steps)
    assert sizes == [(28, 40)] * half + [(56, 80)] * (steps - half)   # half resolution first, full after
    marked = [h["half_resolution"] for h in run.history]
    assert marked == sorted(marked, reverse=True) and marked[0] and not marked[-1]   # the history says which


def test_a_budget_plan_counts_half_resolution_steps_at_their_own_cost():
    # 100 s left, no validation; full steps cost 1 s, half-resolution ones 0.25 s; 60 % at half
    total = plan_steps(100.0, 0.0, 1.0, 0.0, 10, 0, margin=0.0, low_res=0.6, low_step_time=0.25)
    cost = lambda n: int(0.6 * n) * 0.25 + (n - int(0.6 * n)) * 1.0  # noqa: E731
    assert cost(total) <= 100.0 < cost(total + 1)
    assert total == 181                                  # 108 steps x 0.25 s + 73 x 1 s, against 100 full ones


def test_a_budget_run_with_low_res_plans_with_both_step_costs_and_completes(synthetic_camvid, capsys):
    # (whether it ends on time is measured by benchmarks/accuracy.py, not asserted here)
    run = fit(tiny(synthetic_camvid, None, budget=30.0, epochs=1000, warmup_steps=0, low_res=0.5),
              clock=FastClock(0.25))
    err = capsys.readouterr().err
    assert "at half resolution" in err and "(checked again)" in err
    assert run.history[-1]["lr"] < 0.05 * 1e-3            # the schedule ran to its planned end


def test_low_res_too_small_for_the_depth_is_refused_in_one_line(synthetic_camvid):
    with pytest.raises(SeglabError, match="--low-res trains at half of 56x80"):
        fit(tiny(synthetic_camvid, None, depth=5, low_res=0.5))


def test_a_low_res_run_resumed_after_ctrl_c_ends_with_the_same_weights(synthetic_camvid, tmp_path):
    def stop_after_epoch_1(record):
        if record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C inside the half-resolution phase

    whole = fit(tiny(synthetic_camvid, tmp_path / "whole", epochs=3, low_res=0.5))
    first = fit(tiny(synthetic_camvid, tmp_path / "cut", epochs=3, low_res=0.5), callbacks=[stop_after_epoch_1])
    assert first.interrupted and first.history[0]["half_resolution"]
    resumed = fit(TrainConfig(resume=str(tmp_path / "cut" / "last.pt"), out_dir=str(tmp_path / "cut"), progress=False))
    for (name, x), y in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(x, y), name


def test_more_epochs_after_a_low_res_run_stay_at_full_resolution(synthetic_camvid, tmp_path):
    fit(tiny(synthetic_camvid, tmp_path / "a", epochs=2, low_res=0.5))
    model = _SizeRecorder(3, 11, width=4, depth=2)
    model.load_state_dict(torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"])
    run = fit(TrainConfig(resume=str(tmp_path / "a" / "last.pt"), more_epochs=2, progress=False,
                          out_dir=str(tmp_path / "a")), model=model)
    assert model.train_sizes and set(model.train_sizes) == {(56, 80)}   # the longer plan did not restart it
    assert [h["half_resolution"] for h in run.history][2:] == [False, False]


def test_a_replan_keeps_validation_time_out_of_the_pace_of_a_step(synthetic_camvid):
    # Each validation pass is made 30 s slower (on the fast clock); the pace a re-plan measures
    # per training step must not carry that cost (it is planned apart, from the last pass's own time).
    clock, slow = FastClock(0.2), 30.0

    class SlowWhenValidating(UNet):
        def forward(self, x):
            if not self.training:
                clock.advance(slow)
            return super().forward(x)

    run = fit(tiny(synthetic_camvid, None, budget=600.0, epochs=1000, warmup_steps=0, val_every=1),
              model=SlowWhenValidating(3, 11, width=4, depth=2), clock=clock)
    paces = [(plan.pace, plan.val_measured) for plan in run.plans if plan.pace is not None]
    assert paces, "the run never re-planned"
    steps_per_epoch = 3                                      # 12 training images, batches of 4
    for pace, last_validation in paces:
        assert last_validation is not None and last_validation >= slow  # the slow pass was measured ...
        assert pace < slow / steps_per_epoch                 # ... and kept out of the per-step pace


class _Planner:
    """A BudgetPlanner on a clock the test moves by hand."""

    def __init__(self, **kw):
        from seglab.budget import BudgetPlanner
        self.now = 0.0
        self.planner = BudgetPlanner(clock=lambda: self.now, **kw)

    def steps(self, n: int, seconds: float) -> None:
        for _ in range(n):
            self.now += seconds
            self.planner.step_done()


def test_the_planner_sizes_the_run_from_the_measured_steps_and_validation():
    t = _Planner(budget=100.0, steps_per_epoch=10)
    t.steps(3, 1.0)
    assert not t.planner.due(3, 1000)                        # 3 s is not yet 5 % of the budget
    t.steps(3, 1.0)
    assert t.planner.due(6, 1000)
    total, epochs, _ = t.planner.replan(6, 0, time_validation=lambda: 2.0)
    # 6 s spent; 1.02 s a step (a 2 % allowance) and 0.2 s of validation a step; 4 % kept back
    assert total == plan_steps(100.0, 6.0, 1.02, 2.0, 10, 6) and epochs == -(-total // 10)
    assert t.planner.plans[0].step_seconds == pytest.approx(1.02)


def test_a_replan_measures_the_pace_since_the_last_plan_without_validation():
    t = _Planner(budget=100.0, steps_per_epoch=10)
    t.steps(6, 1.0)
    total, _, _ = t.planner.replan(6, 0, time_validation=lambda: 2.0)
    due = t.planner.replan_step
    t.steps(due - 6, 0.5)                                    # the machine got twice as fast ...
    t.now += 5.0
    t.planner.validated(5.0)                                 # ... and one slow validation ran
    assert t.planner.due(due, total)
    t.planner.replan(due, 0, time_validation=lambda: pytest.fail("the last pass is known"))
    again = t.planner.plans[-1]
    assert again.pace == pytest.approx(0.5) and again.val_seconds == 5.0
