"""Every way a checkpoint file can be wrong gives a one-line CheckpointError naming the
file; an unsafe pickle is refused without running; a crash while saving keeps the
previous checkpoint intact and leaves no temporary file."""
import errno
import io
import os
import pickle
from pathlib import Path

import pytest
import torch

from seglab.checkpoint import load_checkpoint, load_model, save_checkpoint
from seglab.errors import CheckpointError
from seglab.models import UNet


def _state(model: UNet, dataset: str = "camvid") -> dict:
    return {"model_config": model.config, "model": model.state_dict(), "dataset": dataset, "step": 7}


@pytest.fixture
def good(tmp_path) -> Path:
    """A small, valid seglab checkpoint."""
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "run" / "last.pt", _state(UNet(3, 11, width=4, depth=2)))


def _refused(path, **kw) -> str:
    with pytest.raises(CheckpointError) as info:
        load_model(path, **kw)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_good_checkpoint_round_trips(good):
    model, state = load_model(good, num_classes=11, in_channels=3)
    assert state["step"] == 7 and model.config["width"] == 4


def test_missing_checkpoint_names_the_path(tmp_path):
    assert "does not exist" in _refused(tmp_path / "nope.pt")


def test_folder_instead_of_checkpoint_says_which_file_to_pass(good):
    assert "is a folder" in _refused(good.parent) and "last.pt" in _refused(good.parent)


def test_truncated_checkpoint_is_reported_as_damaged(good):
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    message = _refused(good)
    assert "damaged" in message and "best.pt / last.pt" in message


@pytest.mark.parametrize("damage", ["random bytes", "zeroed header", "empty"])
def test_corrupt_checkpoint_is_reported_as_damaged(good, damage):
    data = bytearray(good.read_bytes())
    if damage == "random bytes":
        data = bytearray(os.urandom(4096))
    elif damage == "zeroed header":
        data[:512] = bytes(512)
    else:
        data = bytearray()
    good.write_bytes(bytes(data))
    message = _refused(good)
    assert "damaged or not a checkpoint" in message
    assert "could run code" not in message, "damage is not reported as an attack"


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("epoch 3: loss 0.41\n")
    message = _refused(path)
    assert "not a checkpoint" in message


def test_plain_state_dict_file_is_not_a_seglab_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(UNet(3, 11, width=4, depth=2).state_dict(), path)
    message = _refused(path)
    assert "not a seglab checkpoint" in message and "seglab train" in message


def test_checkpoint_for_another_class_count_says_what_it_was_trained_for(tmp_path):
    path = save_checkpoint(tmp_path / "isbi.pt", _state(UNet(1, 2, width=4, depth=2), dataset="isbi-em"))
    message = _refused(path, num_classes=11)
    assert "num_classes=2" in message and "isbi-em" in message and "11 is needed" in message
    message = _refused(path, in_channels=3)
    assert "in_channels=1" in message


def test_weights_of_another_architecture_are_refused(tmp_path):
    wide, narrow = UNet(3, 11, width=8, depth=2), UNet(3, 11, width=4, depth=2)
    path = save_checkpoint(tmp_path / "mixed.pt", {"model_config": wide.config, "model": narrow.state_dict()})
    message = _refused(path)
    assert "does not fit the architecture" in message and "retrain" in message


class _MakesMarker:
    """Unpickling this object would call open(marker, 'w'): code execution, in miniature."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path, container):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"format": "seglab-checkpoint", "model": _MakesMarker(marker)}
    if container == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="could run code") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists(), "the pickle's code ran"


# --------------------------------------------------------------------------- atomic saving

@pytest.mark.parametrize("crash", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk full", "ctrl-c"])
def test_crash_while_saving_keeps_the_previous_checkpoint(good, monkeypatch, crash):
    before = good.read_bytes()
    real_save = torch.save

    def half_then_crash(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        with open(f, "wb") as out:
            out.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise crash

    monkeypatch.setattr(torch, "save", half_then_crash)
    newer = _state(UNet(3, 11, width=4, depth=2))
    newer["step"] = 8
    expected = CheckpointError if isinstance(crash, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        save_checkpoint(good, newer)
    if expected is CheckpointError:
        assert str(good) in str(info.value) and "kept unchanged" in str(info.value)
    monkeypatch.undo()
    assert good.read_bytes() == before
    assert load_checkpoint(good)["step"] == 7
    assert sorted(p.name for p in good.parent.iterdir()) == ["last.pt"], "a temporary file was left behind"


def test_first_save_that_crashes_leaves_nothing(tmp_path, monkeypatch):
    def crash(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 half")
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(CheckpointError, match="could not write checkpoint"):
        save_checkpoint(tmp_path / "run" / "best.pt", {"model": {}})
    assert list((tmp_path / "run").iterdir()) == []
