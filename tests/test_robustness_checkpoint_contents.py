"""A checkpoint is checked on load, not trusted: a damaged or edited file is a one-line
error naming it, never a model that scores nonsense; a pickle that would run code is
called what it is; the shipped model is checked against its recorded SHA-256."""
import os
from pathlib import Path

import pytest
import torch

import seglab
import seglab.checkpoint as checkpoint_module
from seglab.checkpoint import PRETRAINED_FILE, load_checkpoint, load_model, save_checkpoint
from seglab.cli import main
from seglab.errors import CheckpointError
from seglab.models import UNet


def _state(**extra) -> dict:
    torch.manual_seed(0)
    model = UNet(3, 11, width=4, depth=2)
    return {"model_config": model.config, "model": model.state_dict(), "dataset": "camvid", "step": 7,
            "train_config": {"size": [60, 80], "eval_scales": [1.0], "rebalance": 0.0}, **extra}


def _refused(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def _evaluate_fails_in_one_line(path: Path, root: Path, capsys, *expected: str) -> str:
    try:
        code = main(["evaluate", "--checkpoint", str(path), "--root", str(root), "--split", "val",
                     "--device", "cpu"])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2 and out == "", f"exit status {code}, printed {out!r}"
    lines = err.strip().split("\n")
    assert len(lines) == 1 and "Traceback" not in err, err
    for text in (str(path), *expected):
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


def test_checkpoint_with_64_bytes_overwritten_in_the_middle_is_refused_not_scored(tmp_path, synthetic_camvid,
                                                                                  capsys):
    path = save_checkpoint(tmp_path / "last.pt", _state())
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = os.urandom(64)
    path.write_bytes(bytes(data))
    _evaluate_fails_in_one_line(path, synthetic_camvid, capsys, "damaged")


def test_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    state = _state()
    name = next(k for k, v in state["model"].items() if v.is_floating_point() and v.numel() > 1)
    state["model"][name] = state["model"][name].clone()
    state["model"][name].view(-1)[3] = float("nan")
    path = save_checkpoint(tmp_path / "diverged.pt", state)
    message = _refused(path)
    assert "not finite" in message and name in message


EDITS = {
    "class weights of the wrong length": (
        dict(class_weights=torch.ones(5), train_config={"size": [60, 80], "rebalance": 0.5}),
        ["class weights", "11 classes"]),
    "an unknown data set name": (dict(dataset="mnist"), ["'mnist'", "does not know"]),
    "a size of 0": (dict(train_config={"size": [0, 80]}), ["size [0, 80]"]),
    "a depth that is not a number": (dict(model_config={**UNet(3, 11, width=4, depth=2).config, "depth": "4"}),
                                     ["depth='4'"]),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_edited_checkpoint_is_a_one_line_error_not_a_traceback(edit, tmp_path, synthetic_camvid, capsys):
    fields, expected = EDITS[edit]
    path = save_checkpoint(tmp_path / "edited.pt", _state(**fields))
    _evaluate_fails_in_one_line(path, synthetic_camvid, capsys, "edited", *expected)


class _RunsShell:
    """Unpickling this would call os.system: the attack, in miniature (never run here)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_would_call_os_system_is_reported_as_containing_code(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"format": "seglab-checkpoint", "model": _RunsShell(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "contains code" in message and "system" in message and str(path) in message
    assert "damaged" not in message
    assert not marker.exists(), "the pickle's code ran"


def test_shipped_model_that_does_not_match_its_recorded_sha256_is_refused(tmp_path, monkeypatch):
    state = load_checkpoint(PRETRAINED_FILE)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = state["model"][name] * 1.01  # a quiet edit: still a valid checkpoint
    state.pop("format")
    changed = save_checkpoint(tmp_path / PRETRAINED_FILE.name, state)
    record = PRETRAINED_FILE.with_name(PRETRAINED_FILE.name + ".sha256")
    changed.with_name(record.name).write_bytes(record.read_bytes())
    monkeypatch.setattr(checkpoint_module, "PRETRAINED_FILE", changed)
    with pytest.raises(CheckpointError) as info:
        seglab.load_pretrained()
    assert "SHA-256" in str(info.value) and str(changed) in str(info.value) and "Reinstall" in str(info.value)


def test_shipped_model_matches_its_recorded_sha256():
    record = PRETRAINED_FILE.with_name(PRETRAINED_FILE.name + ".sha256")
    assert record.read_text().split() == [checkpoint_module.sha256_of(PRETRAINED_FILE), PRETRAINED_FILE.name]
