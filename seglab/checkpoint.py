"""Saving and loading checkpoints safely.

- Saving is atomic: the file is written under a temporary name and renamed over the old
  one, so a crash or Ctrl-C while saving never destroys the previous checkpoint.
- Loading uses ``torch.load(weights_only=True)``: a checkpoint is data, and a file that
  would run code when unpickled is refused, not executed.
- Loading checks what was loaded (:func:`check_checkpoint`): the zip's checksums, finite
  weights, and the fields that inference reads, so a damaged or edited file is a one-line
  error, never a confident wrong answer. The shipped model's SHA-256 is recorded next to it.
- A checkpoint stores the model's constructor arguments, so ``load_model`` rebuilds the
  right network from the file alone, and every failure names the file and the fix.
- What a training checkpoint holds is defined here once: :func:`training_state` writes it
  and :func:`restore_training` reads it back to resume.
"""
from __future__ import annotations

import hashlib
import math
import os
import pickle
import pickletools
import re
import subprocess
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._version import __version__
from .errors import CheckpointError
from .losses import logit_offsets
from .models import UNet
from .outputs import atomic_path

FORMAT = "seglab-checkpoint"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
PRETRAINED_FILE = PRETRAINED_DIR / "camvid_unet.pt"


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` (a dict of tensors and plain Python values) to ``path`` atomically."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save({"format": FORMAT, "version": 1, **state}, str(tmp))
    except OSError as err:  # disk full, folder read-only: say so, and keep the old file
        kept = " The previous checkpoint there is kept unchanged." if path.exists() else ""
        raise CheckpointError(f"could not write checkpoint {path} ({err.strerror or err}).{kept} Free some "
                              f"disk space or choose a writable run folder (--out).") from None
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a seglab checkpoint as plain data, with an actionable error for every way a
    file can be wrong (missing, a folder, truncated, not a checkpoint, unsafe pickle)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist. Check the path; `seglab train` "
                              f"writes best.pt and last.pt into its run folder.")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; pass the .pt file inside it (best.pt or last.pt).")
    damaged = _damaged_member(path)
    if damaged:
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint ({damaged}: the file changed "
                              f"or was cut short after it was written). Use the other checkpoint of the run "
                              f"(best.pt / last.pt) or train again.")
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol warnings would bury the one-line error
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch words every refusal "Weights only load failed"; only a *global* it refuses
        # (a class or function the file asks to import and call) means code would run.
        # The file is read here too, so the verdict does not hang on torch's wording.
        code = _imports_code(path)
        if code or re.search(r"unsupported global", str(err), re.IGNORECASE):
            what = f" (it imports {code})" if code else ""
            raise CheckpointError(f"checkpoint {path} contains code, not only weights{what}; seglab refuses "
                                  f"to load it because unpickling it could run code. Re-save the weights "
                                  f"with torch.save(model.state_dict(), ...) from a trusted source.") from None
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint (it does not unpickle as "
                              f"plain data). Use a best.pt or last.pt written by `seglab train`.") from None
    except Exception as err:  # zip, pickle and storage errors differ between torch versions
        first = (str(err).strip().splitlines() or [""])[0].split(". ")[0][:160]
        detail = f"{type(err).__name__}: {first}" if first else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint (truncated or corrupt; "
                              f"{detail}). Use the other checkpoint of the run "
                              f"(best.pt / last.pt) or train again.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a seglab checkpoint (no model config "
                              f"inside). Pass a best.pt or last.pt written by `seglab train`.")
    check_checkpoint(state, path)
    return state


def _damaged_member(path: Path) -> str | None:
    """The first member of a zip checkpoint whose CRC-32 does not match (torch does not
    check them), or None. A file that is not a readable zip is left to torch's reader."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        return None if bad is None else f"its part {bad.split('/', 1)[-1]} fails its checksum"  # archive folder dropped
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as err:
        return f"its zip structure is broken ({type(err).__name__})"


# Globals a checkpoint of tensors, dicts and lists needs: torch's tensor and storage
# rebuilders, OrderedDict, and _codecs.encode (bytes in protocol-2 pickles).
_DATA_GLOBAL = re.compile(r"(torch(\.[\w]+)*|collections\.OrderedDict|_codecs\.encode)")


def _imports_code(path: Path) -> str | None:
    """The first thing other than what plain tensors need that the checkpoint's pickle asks
    to import (``posix.system``), read from the pickle's opcodes without running them."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                data = archive.read(names[0]) if names else b""
        else:
            data = path.read_bytes()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, RuntimeError):
        return None
    if not data.startswith(b"\x80"):  # torch writes protocol 2 or later; random bytes are not a pickle
        return None
    found, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            if isinstance(arg, str):
                strings.append(arg)
    except Exception:  # a damaged stream: judge what was read
        pass
    names = [g for g in found if re.fullmatch(r"[A-Za-z_][\w.]*", g)]
    return next((g for g in names if not _DATA_GLOBAL.fullmatch(g)), None)


def _edited(path, what: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} {what}; it was edited or written by another program. "
                           f"Use a best.pt or last.pt written by `seglab train`, or train again.")


def _size_ok(value) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))


def check_checkpoint(state: dict, path: str | os.PathLike = "checkpoint") -> None:
    """Raise :class:`CheckpointError` (one line, naming ``path``) unless the fields a
    checkpoint's readers use are sound: finite weights, a model config of positive whole
    numbers, a known data set, sizes, scales and class weights of the right shape. Fields
    that are absent (older checkpoints) are not required."""
    from .datasets import get_spec  # datasets imports nothing heavy; kept local to mirror the lazy readers

    model = state.get("model")
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise _edited(path, "holds no weights (its 'model' entry is not a dict of tensors)")
    for name, tensor in model.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"checkpoint {path} holds weights that are not finite (NaN or infinity in "
                                  f"{name}): it is damaged or its run diverged. Use the other checkpoint of "
                                  f"the run (best.pt / last.pt) or train again.")
    config = state.get("model_config", {})
    if not isinstance(config, dict):
        raise _edited(path, "has a model_config that is not a dict")
    for key in ("in_channels", "num_classes", "width", "depth"):
        value = config.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _edited(path, f"has model_config {key}={value!r}, not a whole number of at least 1")
    if config.get("stem_stride", 1) not in (1, 2):
        raise _edited(path, f"has model_config stem_stride={config.get('stem_stride')!r}, not 1 or 2")
    if "dataset" in state:
        try:
            get_spec(state["dataset"])
        except (ValueError, TypeError, KeyError):
            raise _edited(path, f"names the data set {state['dataset']!r}, which seglab does not know") from None
    train = state.get("train_config", {})
    if not isinstance(train, dict):
        raise _edited(path, "has a train_config that is not a dict")
    if train.get("size") is not None and not _size_ok(train["size"]):
        raise _edited(path, f"has size {train['size']!r}, not two whole numbers above 0 (height, width)")
    scales = train.get("eval_scales")
    if scales is not None and not (isinstance(scales, (list, tuple)) and scales
                                   and all(isinstance(v, (int, float)) and 0.25 <= v <= 4 for v in scales)):
        raise _edited(path, f"has eval_scales {scales!r}; each must be a factor between 0.25 and 4")
    rebalance = train.get("rebalance", 0.0)
    if not isinstance(rebalance, (int, float)) or not 0.0 <= rebalance <= 1.0:
        raise _edited(path, f"has rebalance {rebalance!r}; it must be between 0 and 1")
    weights = state.get("class_weights")
    if weights is not None:
        classes = config.get("num_classes")
        if not isinstance(weights, torch.Tensor) or weights.dim() != 1 or (classes and len(weights) != classes):
            shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
            raise _edited(path, f"has class weights of shape {shape} for a model of {classes} classes")
        if not bool(torch.isfinite(weights).all()) or bool((weights <= 0).any()):
            raise _edited(path, "has class weights that are not finite positive numbers")


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_pretrained() -> Path:
    """The shipped model's path, after checking that the file is there and that its SHA-256
    matches the one recorded next to it (``camvid_unet.pt.sha256``)."""
    file = PRETRAINED_FILE
    record = file.with_name(file.name + ".sha256")
    if not file.exists():
        raise CheckpointError(f"the pretrained model {file} is missing from this install. "
                              f"Reinstall seglab, or train one with `seglab train` and pass --checkpoint.")
    try:
        expected = record.read_text().split()[0].lower()
    except (OSError, IndexError):
        raise CheckpointError(f"the checksum {record} of the pretrained model is missing or empty. "
                              f"Reinstall seglab.") from None
    if sha256_of(file) != expected:
        raise CheckpointError(f"the pretrained model {file} does not match the SHA-256 recorded in {record}: "
                              f"it was changed or damaged after install. Reinstall seglab "
                              f"(pip install --force-reinstall seglab).")
    return file


def load_model(path: str | os.PathLike, num_classes: int | None = None, in_channels: int | None = None,
               map_location: str | torch.device = "cpu", rebalance: float | None = None) -> tuple[UNet, dict]:
    """Rebuild the model stored in a checkpoint and load its weights.

    ``num_classes`` / ``in_channels``: what the caller needs; a checkpoint trained for
    something else is refused with a message saying what it was trained for.

    ``rebalance``: for a run trained with class weights, the share of the weighting taken
    back at prediction time (:func:`seglab.losses.logit_offsets`, 0 to 1). ``None`` uses
    the run's own ``rebalance`` setting, so the model predicts what its validation scores
    measured. The offsets go into the last layer's bias; ``state["rebalance"]`` records
    the strength used. (Resuming training reads the raw weights instead.)
    """
    state = load_checkpoint(path, map_location)
    config = state.get("model_config", {})
    for name, wanted in (("num_classes", num_classes), ("in_channels", in_channels)):
        if wanted is not None and config.get(name) != wanted:
            raise CheckpointError(f"checkpoint {path} was trained with {name}={config.get(name)} "
                                  f"(data set {state.get('dataset', '?')}), but {wanted} is needed here. "
                                  f"Use a checkpoint trained on this data set.")
    try:
        model = UNet.from_config(config)
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:200]
        raise CheckpointError(f"checkpoint {path} does not fit the architecture it describes "
                              f"({first}). It was written by another version or edited; retrain.") from None
    strength = state.get("train_config", {}).get("rebalance", 0.0) if rebalance is None else rebalance
    if strength:
        weights = state.get("class_weights")
        if weights is None:
            raise CheckpointError(f"checkpoint {path} was trained without class weights, so there is no "
                                  f"weighting to take back: leave out --rebalance for it.")
        if not 0.0 <= strength <= 1.0:
            raise CheckpointError(f"--rebalance must be between 0 and 1 (got {strength})")
        with torch.no_grad():
            model.head.bias += logit_offsets(weights, strength).to(model.head.bias)
    state["rebalance"] = float(strength)
    return model, state


def load_pretrained(map_location: str | torch.device = "cpu", rebalance: float | None = None) -> tuple[UNet, dict]:
    """The course's pretrained CamVid U-Net, shipped inside the package (no download).
    Returns ``(model, checkpoint)``; see ``seglab/pretrained/MODEL_CARD.md``.
    ``rebalance``: as in :func:`load_model` (``None``: the card's setting)."""
    model, state = load_model(check_pretrained(), map_location=map_location, rebalance=rebalance)
    return model.eval(), state


# --------------------------------------------------------------------------- training state

@dataclass
class Progress:
    """Where a training run stands: the state that lives across steps, and what a resumed
    run continues from."""

    step: int = 0                      # optimisation steps done
    epoch: int = 0                     # epochs finished
    total_steps: int = 0               # the plan (a budget run re-sizes it)
    epochs: int = 0                    # the plan in epochs (the last may be partial)
    low_end: int = 0                   # steps before this one run at half resolution (low_res)
    best_miou: float = -1.0
    history: list[dict] = field(default_factory=list)
    batches_done: int = 0              # batches of the current epoch already trained (after Ctrl-C)
    partial_epoch: list = field(default_factory=lambda: [0.0, 0, 0])  # their loss sum, samples, images
    last_loss: float = float("nan")    # the last step's loss (not saved: for the progress bar)


def code_version() -> str:
    """seglab's version plus the git commit when run from a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_config: dict,
                   dataset: str, class_names, progress: Progress, class_weights: torch.Tensor | None = None, device: torch.device | None = None) -> dict:
    """Everything a training checkpoint holds (see :func:`save_checkpoint`): the model's
    constructor arguments and weights, the optimizer, the run's config (with ``epochs`` the
    plan, which a budget run sizes), where the run stands, and the random state, so that a
    resumed run continues exactly."""
    state = {"model_config": model.config if hasattr(model, "config") else {},
             "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict(), "train_config": {**train_config, "epochs": progress.epochs},
             "dataset": dataset, "class_names": list(class_names),
             "epoch": progress.epoch, "batches_done": progress.batches_done, "step": progress.step,
             "total_steps": progress.total_steps, "low_end": progress.low_end, "history": progress.history,
             "best_miou": progress.best_miou, "rng_torch": torch.get_rng_state(),
             "partial_epoch": list(progress.partial_epoch), "code_version": code_version()}
    if class_weights is not None:  # load_model turns them into logit offsets (rebalance)
        state["class_weights"] = class_weights.detach().cpu()
    if device is not None and device.type == "cuda":
        state["rng_cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_training(state: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     device: torch.device) -> Progress:
    """Put a checkpoint's weights, optimizer and random state back; return where it stood."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng_torch"])
    if "rng_cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"])
    return Progress(step=int(state["step"]), epoch=int(state["epoch"]), total_steps=state.get("total_steps"),
                    low_end=int(state.get("low_end", 0)), best_miou=float(state.get("best_miou", -1.0)),
                    history=list(state.get("history", [])), batches_done=int(state.get("batches_done", 0)),
                    partial_epoch=list(state.get("partial_epoch", [0.0, 0, 0])))
