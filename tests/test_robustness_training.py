"""Interruptions and failures during training: Ctrl-C saves a resumable checkpoint and the
resumed run ends exactly where the uninterrupted one does; a NaN loss, NaN weights or
running out of memory stop with a message that says what to try, and the last good
checkpoint survives.

All runs are tiny (U-Net width 4, depth 2, 60x80, 12 images, batch 2: 6 steps per
epoch, 3 epochs) and on the CPU, where a fixed seed makes training repeat exactly.
"""
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from seglab.checkpoint import load_checkpoint
from seglab.cli import main
from seglab.config import TrainConfig
from seglab.errors import TrainingError
from seglab.models import UNet
from seglab.train import fit

STEPS_PER_EPOCH, EPOCHS = 6, 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the models are tiny, and on a busy 2-core machine a second,
    spinning OpenMP thread makes every step about ten times slower. The subprocess gets
    the same count, so its float sums match this process's bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _args(root: Path, out: Path, epochs: int = EPOCHS) -> list[str]:
    return ["train", "--recipe", "lessons", "--root", str(root), "--out", str(out), "--size", "60x80",
            "--crop", "48x64", "--width", "4", "--depth", "2", "--epochs", str(epochs), "--batch-size", "2",
            "--workers", "0", "--device", "cpu", "--seed", "0", "--quiet"]


def _config(root: Path, out: Path, epochs: int = EPOCHS) -> TrainConfig:
    """The same run as ``_args`` describes, as a TrainConfig (for the in-process tests)."""
    return TrainConfig(root=str(root), out_dir=str(out), size=(60, 80), crop=(48, 64), width=4, depth=2,
                       epochs=epochs, batch_size=2, workers=0, device="cpu", seed=0, progress=False)


@pytest.fixture(scope="module")
def reference(synthetic_camvid, tmp_path_factory) -> Path:
    """The uninterrupted run, through the command line, in this process."""
    out = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as mp:  # module fixtures run outside the autouse cache fixture
        mp.setenv("SEGLAB_CACHE", str(tmp_path_factory.getbasetemp() / "seglab-cache"))
        assert main(_args(synthetic_camvid, out)) == 0
    return out / "last.pt"


def _assert_same_run(path_a: Path, path_b: Path) -> None:
    """Bit-identical weights and optimizer state, and identical history metrics."""
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    assert a["step"] == b["step"] == STEPS_PER_EPOCH * EPOCHS
    assert a["model"].keys() == b["model"].keys()
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), f"weights differ: {name}"
    for key, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][key][name]))
    assert len(a["history"]) == len(b["history"]) == EPOCHS
    for ra, rb in zip(a["history"], b["history"]):
        for key in ("epoch", "step", "train_loss", "val_loss", "val_miou", "val_pixel_accuracy", "lr"):
            assert ra[key] == rb[key], f"epoch {ra['epoch']}: {key} {ra[key]} != {rb[key]}"


# --------------------------------------------------------------------------- Ctrl-C

# The subprocess runs the real command line (seglab.cli.main). Its only change: the
# forward pass of one chosen training step announces itself on stderr and waits for a
# line on stdin. The test reads stderr until the announcement, sends a real SIGINT, then
# writes the line: so the signal always lands in the middle of that step, at a known
# place mid-epoch, without a test-only hook in fit and without racing a progress
# bar (tqdm redraws at most every 0.1 s, several steps at this size).
DRIVER = textwrap.dedent('''
    import sys
    import torch
    torch.set_num_threads(int(sys.argv[1]))      # the test process's count: same float sums
    pause_at = int(sys.argv[2])
    from seglab.cli import main
    from seglab.models import UNet

    forward, training_calls = UNet.forward, [0]

    def pausing_forward(self, x):
        if self.training:
            training_calls[0] += 1
            if training_calls[0] == pause_at:
                print(f"PAUSED at step {pause_at}", file=sys.stderr, flush=True)
                sys.stdin.readline()             # the SIGINT arrives while we wait here
        return forward(self, x)

    UNet.forward = pausing_forward
    sys.exit(main(sys.argv[3:]))
''')


def _interrupt_at_step(root: Path, out: Path, tmp_path: Path, step: int) -> subprocess.CompletedProcess:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.Popen([sys.executable, str(driver), str(torch.get_num_threads()), str(step),
                             *_args(root, out)], cwd=tmp_path, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    try:
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("PAUSED"):
                break
        else:
            pytest.fail(f"training never reached step {step}: {''.join(seen)[-2000:]}")
        proc.send_signal(signal.SIGINT)              # Ctrl-C, from outside, mid-step
        proc.stdin.write("go\n")
        proc.stdin.close()
        stdout = proc.stdout.read()
        stderr = "".join(seen) + proc.stderr.read()
        proc.wait(timeout=120)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.slow
def test_ctrl_c_mid_epoch_saves_a_checkpoint_and_resume_matches_the_uninterrupted_run(
        synthetic_camvid, tmp_path, reference, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so that a run folder written in the wrong place shows up here
    run = tmp_path / "run"
    stop_step = STEPS_PER_EPOCH + 3                   # the third step of the second epoch
    done = _interrupt_at_step(synthetic_camvid, run, tmp_path, stop_step)
    assert done.returncode == 130, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"seglab train --resume {run / 'last.pt'}" in done.stderr
    saved = load_checkpoint(run / "last.pt")
    assert (saved["step"], saved["epoch"], saved["batches_done"]) == (stop_step, 1, 3), "not mid-epoch"
    assert [h["epoch"] for h in saved["history"]] == [1]
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "history.csv",
                                                     "history.json", "last.pt"]
    # resume with nothing but the checkpoint: the run continues in its own folder
    assert main(["train", "--resume", str(run / "last.pt"), "--quiet"]) == 0
    assert not (tmp_path / "runs").exists(), "a resumed run wrote outside its run folder"
    _assert_same_run(run / "last.pt", reference)
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_ctrl_c_at_the_end_of_an_epoch_resumes_exactly(synthetic_camvid, tmp_path, reference):
    """In this process: a SIGINT that arrives while epoch 1 is being recorded."""
    out = tmp_path / "run"

    def press_ctrl_c(record):
        if record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)

    handler = signal.getsignal(signal.SIGINT)
    first = fit(_config(synthetic_camvid, out), callbacks=[press_ctrl_c])
    assert first.interrupted and len(first.history) == 1
    assert signal.getsignal(signal.SIGINT) is handler, "fit must restore the Ctrl-C handler"
    saved = load_checkpoint(out / "last.pt")
    assert (saved["step"], saved["batches_done"]) == (STEPS_PER_EPOCH, 0)
    second = fit(TrainConfig(resume=str(out / "last.pt"), out_dir=str(out), progress=False))
    assert not second.interrupted
    _assert_same_run(out / "last.pt", reference)


# --------------------------------------------------------------------------- divergence

def _tiny_unet(cls=UNet) -> UNet:
    return cls(3, 11, width=4, depth=2)


def _changed_at_training_call(n: int, change) -> UNet:
    """A tiny U-Net whose ``n``-th training forward pass returns ``change(logits)``."""
    class ChangedAtCall(UNet):
        calls = 0

        def forward(self, x):
            logits = super().forward(x)
            if self.training:
                ChangedAtCall.calls += 1
                if ChangedAtCall.calls == n:
                    return change(logits)
            return logits
    return _tiny_unet(ChangedAtCall)


def test_nan_loss_stops_with_advice_and_keeps_the_last_good_checkpoint(synthetic_camvid, tmp_path):
    nan_at_step_9 = _changed_at_training_call(STEPS_PER_EPOCH + 3, lambda logits: logits * float("nan"))
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        fit(_config(synthetic_camvid, out, epochs=2), model=nan_at_step_9)
    message = str(info.value)
    assert "nan" in message and "--lr" in message and str(out / "last.pt") in message
    saved = load_checkpoint(out / "last.pt")
    assert saved["step"] == STEPS_PER_EPOCH
    assert all(torch.isfinite(t).all() for t in saved["model"].values() if t.is_floating_point())


def test_nan_weights_never_overwrite_the_last_good_checkpoint(synthetic_camvid, tmp_path):
    """A finite loss can still leave NaN weights behind (here: the last update of epoch 2,
    whose gradients are NaN)."""
    def nan_gradients(logits):
        logits.register_hook(lambda grad: grad * float("nan"))
        return logits

    nan_gradients_at_step_12 = _changed_at_training_call(2 * STEPS_PER_EPOCH, nan_gradients)

    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"--lr") as info:
        fit(_config(synthetic_camvid, out), model=nan_gradients_at_step_12)
    assert "NaN or infinite" in str(info.value) and str(out / "last.pt") in str(info.value)
    saved = load_checkpoint(out / "last.pt")
    assert saved["step"] == STEPS_PER_EPOCH
    assert all(torch.isfinite(t).all() for t in saved["model"].values() if t.is_floating_point())


def test_out_of_memory_suggests_a_smaller_batch(synthetic_camvid, tmp_path):
    class HungryUNet(UNet):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(TrainingError) as info:
        fit(_config(synthetic_camvid, tmp_path / "run"), model=_tiny_unet(HungryUNet))
    message = str(info.value)
    assert "out of memory" in message and "--batch-size 1" in message and "--size" in message
    assert not (tmp_path / "run" / "last.pt").exists()


def test_out_of_memory_while_validating_suggests_a_smaller_batch(synthetic_camvid, tmp_path):
    class HungryWhenValidating(UNet):
        def forward(self, x):
            if not self.training:
                raise torch.OutOfMemoryError("CUDA out of memory")
            return super().forward(x)

    with pytest.raises(TrainingError, match=r"while validating.*--batch-size 1"):
        fit(_config(synthetic_camvid, tmp_path / "run", epochs=1), model=_tiny_unet(HungryWhenValidating))


def test_diverged_run_through_the_command_line_is_one_line(synthetic_camvid, tmp_path, monkeypatch, capsys):
    forward = UNet.forward
    monkeypatch.setattr(UNet, "forward", lambda self, x: forward(self, x) * math.inf)   # every logit infinite
    assert main(_args(synthetic_camvid, tmp_path / "run", epochs=1)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("seglab train: error: the loss became") and "--lr" in err
