"""Prediction for images outside the data set: files on disk, and images too large to
run in one piece (overlap-tile, as in the U-Net paper)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import SeglabError
from .images import MAX_PIXELS, ImageRefused, image_array, read_image_file
from .inference import LoadedModel
from .outputs import atomic_path, refuse_existing


def image_to_input(image: Image.Image | np.ndarray, spec) -> torch.Tensor:
    """A PIL image (any mode :mod:`seglab.images` accepts) or uint8 pixels ``[H, W, C]``
    as a normalised float tensor ``[1, C, H, W]`` with the channels the model expects."""
    if isinstance(image, Image.Image):
        image = image_array(image, spec.in_channels)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def predict_files(checkpoint: str | os.PathLike, inputs: str | os.PathLike, output: str | os.PathLike,
                  color: bool = False, device: str | None = None, flip: bool = False,
                  rebalance: float | None = None, scales: tuple[float, ...] | None = None,
                  overwrite: bool = False, report: Callable[[Path, str], None] | None = None,
                  max_pixels: int = MAX_PIXELS) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Predict every image in ``inputs`` (a file or a folder) and write one 8-bit label PNG
    per image into ``output``, at the image's own size. Returns (written, skipped) where
    skipped lists (path, reason) for files that are not readable images or have more than
    ``max_pixels`` pixels; ``report(path, reason)`` is called as each is skipped, and the
    others are still predicted. Files already in ``output`` are refused before any work
    unless ``overwrite``; each file is written atomically, replacing (never following) a
    symbolic link. ``flip``: flip
    test-time augmentation and ``scales`` multi-scale averaging (see
    :func:`seglab.predict_logits`; ``None``: the run's own ``eval_scales``); ``rebalance``:
    see :func:`seglab.load_model`."""
    from .render import colorize

    inputs, output = Path(inputs), Path(output)
    if not inputs.exists():
        raise SeglabError(f"--input {inputs} does not exist")
    if output.exists() and not output.is_dir():
        raise SeglabError(f"--output {output} is a file, not a folder: choose another path")
    files = sorted(p for p in inputs.iterdir() if p.is_file()) if inputs.is_dir() else [inputs]
    targets = _output_names(files, output)
    colors = {f: t.with_name(f"{t.stem}_color.png") for f, t in targets.items()} if color else {}
    _check_plan(files, targets, colors, output)
    refuse_existing([*targets.values(), *colors.values()], overwrite)
    loaded = LoadedModel.load(checkpoint, device, rebalance=rebalance, scales=scales)
    spec = loaded.spec
    output.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for path in files:
        try:
            x = image_to_input(read_image_file(path, spec.in_channels, max_pixels), spec)
        except ImageRefused as err:
            skipped.append((path, str(err)))
            if report is not None:
                report(path, str(err))
            continue
        logits = loaded.logits(x, flip)
        pred = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
        _save_png(Image.fromarray(pred, mode="L"), targets[path])
        written.append(targets[path])
        if color:
            _save_png(Image.fromarray(colorize(pred, spec.palette)), colors[path])
    return written, skipped


def _save_png(image: Image.Image, path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
    except OSError as err:
        raise SeglabError(f"could not write {path} ({err.strerror or err}); free some disk space or "
                          f"choose a writable --output") from None


def _check_plan(files: list[Path], targets: dict[Path, Path], colors: dict[Path, Path], output: Path) -> None:
    """Refuse, before any work, a plan that would write over an input or write two outputs
    to one path (the colour image of ``x.png`` and the label of ``x_color.png``)."""
    inputs = {f.resolve() for f in files}
    owners: dict[Path, str] = {}
    for f in files:
        for kind, path in (("label", targets[f]), ("colour image", colors.get(f))):
            if path is None:
                continue
            if path.resolve() in inputs:  # writing there would replace the user's image with a label map
                raise SeglabError(f"--output {output} would overwrite the input {path} with the {kind} of "
                                  f"{f}; choose an output folder that holds no input images")
            key = Path(os.path.abspath(path))
            if key in owners:
                raise SeglabError(f"the {owners[key]} and the {kind} of {f} would both be written to {path}; "
                                  f"rename one of the inputs" + (" or leave out --color" if colors else ""))
            owners[key] = f"{kind} of {f}"


def _output_names(files: list[Path], output: Path) -> dict[Path, Path]:
    """``<stem>.png`` per input; inputs that share a stem (``a.jpg``, ``a.png``) get
    ``<stem>_<ext>.png`` so that no prediction overwrites another."""
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem] = stems.get(f.stem, 0) + 1
    return {f: output / (f"{f.stem}.png" if stems[f.stem] == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}.png")
            for f in files}


@torch.inference_mode()
def predict_tiled(model: torch.nn.Module, image: torch.Tensor, tile: int = 256, overlap: int = 32,
                  batch_size: int = 4) -> torch.Tensor:
    """Overlap-tile prediction (Ronneberger et al. 2015): logits for a normalised image
    ``[C, H, W]`` of any size, computed tile by tile.

    The image is mirror-padded by ``overlap`` on every side, cut into tiles of
    ``tile + 2 * overlap`` pixels, and only the central ``tile x tile`` of each tile's
    prediction is kept: every kept pixel saw ``overlap`` pixels of real (or mirrored)
    context, so no seam shows where tiles meet, and memory stays bounded.
    """
    device = next(model.parameters()).device
    c, h, w = image.shape
    ph, pw = (-h) % tile, (-w) % tile  # pad to a whole number of tiles
    pad = [overlap, overlap + pw, overlap, overlap + ph]
    mode = "reflect" if overlap + max(ph, pw) < min(h, w) else "replicate"
    padded = F.pad(image[None].float(), pad, mode=mode)[0]
    windows, origins = [], []
    for top in range(0, h + ph, tile):
        for left in range(0, w + pw, tile):
            windows.append(padded[:, top:top + tile + 2 * overlap, left:left + tile + 2 * overlap])
            origins.append((top, left))
    out = None
    for start in range(0, len(windows), batch_size):
        batch = torch.stack(windows[start:start + batch_size]).to(device)
        logits = model(batch).float()
        if out is None:
            out = torch.zeros(logits.shape[1], h + ph, w + pw, device=logits.device)
        for (top, left), lg in zip(origins[start:start + batch_size], logits):
            out[:, top:top + tile, left:left + tile] = lg[:, overlap:overlap + tile, overlap:overlap + tile]
    return out[:, :h, :w]
