"""Saving and loading checkpoints safely.

- Saving is atomic: the file is written under a temporary name and renamed over the old
  one, so a crash or Ctrl-C while saving never destroys the previous checkpoint.
- Loading uses ``torch.load(weights_only=True)``: a checkpoint is data, and a file that
  would run code when unpickled is refused, not executed.
- A checkpoint stores the model's constructor arguments, so ``load_model`` rebuilds the
  right network from the file alone, and every failure names the file and the fix.
- What a training checkpoint holds is defined here once: :func:`training_state` writes it
  and :func:`restore_training` reads it back to resume.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._version import __version__
from .errors import CheckpointError
from .losses import logit_offsets
from .models import UNet

FORMAT = "seglab-checkpoint"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
PRETRAINED_FILE = PRETRAINED_DIR / "camvid_unet.pt"


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` (a dict of tensors and plain Python values) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save({"format": FORMAT, "version": 1, **state}, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # disk full, folder read-only: say so, and keep the old file
        kept = " The previous checkpoint there is kept unchanged." if path.exists() else ""
        raise CheckpointError(f"could not write checkpoint {path} ({err.strerror or err}).{kept} Free some "
                              f"disk space or choose a writable run folder (--out).") from None
    finally:
        if tmp.exists():
            tmp.unlink()
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
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol warnings would bury the one-line error
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch words every refusal "Weights only load failed"; only an unsupported *global*
        # (a class or function the file asks to import and call) means code would run.
        if "Unsupported global" in str(err):
            raise CheckpointError(f"checkpoint {path} contains Python objects, not only weights; seglab "
                                  f"refuses to load it because unpickling it could run code. Re-save the "
                                  f"weights with torch.save(model.state_dict(), ...) from a trusted source.") from None
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
    return state


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
    if not PRETRAINED_FILE.exists():
        raise CheckpointError(f"the pretrained model {PRETRAINED_FILE} is missing from this install. "
                              f"Reinstall seglab, or train one with `seglab train`.")
    model, state = load_model(PRETRAINED_FILE, map_location=map_location, rebalance=rebalance)
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
