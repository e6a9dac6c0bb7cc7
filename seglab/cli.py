"""The ``seglab`` command: download, train, evaluate, predict, info (also ``python -m seglab``).

Bad input never ends in a traceback: every error is one line that names the option or
file and the fix, and the exit status is non-zero (2 for bad options or files, 1 for a
failed run, 130 for a run stopped with Ctrl-C after saving its checkpoint).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .errors import SeglabError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ('seglab train: error: ...')."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        if h <= 0 or w <= 0:
            raise ValueError
        return h, w
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 180x240 (got {text!r})") from None


def _scales(text: str) -> tuple[float, ...]:
    from .config import EVAL_SCALE_RANGE
    low, high = EVAL_SCALE_RANGE
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"scales must look like 0.75,0.875,1 (got {text!r})") from None
    if not all(low <= v <= high for v in values):
        raise argparse.ArgumentTypeError(f"each scale must be between {low:g} and {high:g} (got {text!r})")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < math.inf:  # also refuses nan and inf, which would only diverge later
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive finite number, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _device(text: str) -> str:
    """A device this machine has: checked here, so a typo or a missing GPU is one line, not a
    traceback from deep inside torch."""
    import torch
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use cpu, cuda, cuda:1 or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: no CUDA GPU is available here; use --device cpu "
                                             f"or leave --device out")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {count} CUDA GPU(s), "
                                             f"cuda:0 to cuda:{count - 1}")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: Apple MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}: use cpu, cuda, cuda:1 or mps")
    return text


def _on_off(text: str) -> bool:
    if text.lower() in ("on", "true", "yes", "1"):
        return True
    if text.lower() in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")


SCALES_HELP = ("multi-scale test-time augmentation: predict at these scales of the trained size and average "
               "the class probabilities, e.g. 0.75,0.875,1 (default: the run's own --eval-scales; 1 = off)")
FLIP_HELP = "flip test-time augmentation: also predict the mirrored image and average (2x compute)"
REBALANCE_HELP = ("for a model trained with class weights: the share of the weighting (0 to 1) taken back by "
                  "per-class logit offsets; default: the run's own setting (0: the weighted model as trained)")


def _names(text: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {text!r}")
    return values


def _pair(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers such as 0.75,1.5, got {text!r}") from None
    if not 0 < low <= high < math.inf:
        raise argparse.ArgumentTypeError(f"expected 0 < low <= high, got {text!r}")
    return low, high


def _duration(text: str) -> float:
    from .config import parse_duration
    try:
        return parse_duration(text)
    except SeglabError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# How each kind of TrainConfig option is read from the command line (its metadata's "read").
READERS = {"str": str, "int": int, "size": _size, "scales": _scales, "names": _names, "pair": _pair,
           "duration": _duration, "device": _device, "positive_int": _positive_int,
           "non_negative_int": _non_negative_int, "positive_float": _positive_float,
           "non_negative_float": _non_negative_float}


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`seglab.TrainConfig` field, with the field's help and default.
    A flag left out is not set (``argparse.SUPPRESS``), so the recipe's value stands."""
    from .config import default_of, options

    for f in options():
        meta = f.metadata
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        default = default_of(f)
        read = READERS[meta["read"]] if meta["read"] else (_on_off if isinstance(default, bool) else str)
        shown = "on" if default is True else "off" if default is False else default
        shown = "x".join(map(str, shown)) if meta["read"] == "size" and shown else shown
        shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in shown) if isinstance(shown, tuple) \
            else shown
        told = "default" in meta["help"] or default is None   # the help says it, or there is none
        parser.add_argument(flag, dest=f.name, type=read, choices=meta["choices"], default=argparse.SUPPRESS,
                            help=meta["help"] if told else f"{meta['help']} (default: {shown})")


def build_parser() -> argparse.ArgumentParser:
    from .images import MAX_PIXELS
    from .recipes import RECIPES

    parser = _Parser(prog="seglab", description="seglab: semantic segmentation course tools "
                     "(CamVid 11 classes + void, ISBI 2012 EM membranes).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    from .download import OVERWRITE_RULE
    from .fetch import Limits
    p = sub.add_parser("download", help="download and verify a data set",
                       description="Download a data set from its pinned source, verifying every file's "
                                   "SHA-256; files already present and valid are kept, so an interrupted "
                                   "download resumes where it stopped. " + OVERWRITE_RULE)
    p.add_argument("dataset", nargs="?", default="camvid", help="camvid (default) or isbi-em")
    p.add_argument("--root", help="target folder (default: $SEGLAB_DATA / $SEGLAB_ISBI_DATA, else data/<name>)")
    p.add_argument("--base-url", help="mirror to download from (default: the pinned GitHub commit; "
                                      "also $SEGLAB_CAMVID_URL / $SEGLAB_ISBI_URL)")
    p.add_argument("--from", dest="source", help="a local folder or archive (.zip, .tar.gz) you already "
                                                 "have: its files are verified and copied instead of downloaded")
    p.add_argument("--overwrite", action="store_true",
                   help="replace data files that differ from the published ones (each is named first)")
    p.add_argument("--workers", type=_positive_int, default=4, help="parallel downloads (default 4)")
    p.add_argument("--stall-timeout", type=_positive_float, default=Limits.stall_s, metavar="S",
                   help=f"give up on a file when no byte arrives for S seconds (default {Limits.stall_s:g})")
    p.add_argument("--min-rate", type=_positive_float, default=Limits.min_rate / 1000, metavar="KB_S",
                   help=f"give up on a file slower than this many kB/s on average, after a grace of "
                        f"{Limits.base_s:g} s (default {Limits.min_rate / 1000:g}; lower it on a very slow link)")

    p = sub.add_parser("train", help="train a U-Net and write a run folder",
                       description="Train a U-Net. Writes config.json, history.json/.csv, best.pt and "
                                   "last.pt into --out. Ctrl-C saves last.pt; --resume continues it. "
                                   "Every option below is a field of seglab.TrainConfig, shown with its "
                                   "default there; a recipe sets several at once, and an option given "
                                   "here wins over both.")
    p.add_argument("--recipe", default="course", help=f"preset to start from: {', '.join(RECIPES)} (default course)")
    add_train_options(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (any of its files: last.pt, best.pt, config.json, "
                        "history); without it an existing run is never overwritten, also not by --resume")
    p.add_argument("--quiet", action="store_true", help="no progress bar (the same as --progress off)")

    p = sub.add_parser("evaluate", help="score a checkpoint on a split",
                       description="Score a checkpoint at the data's full resolution (CamVid 360x480): "
                                   "predictions are resized back to each label's size; void is ignored.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a .pt file written by seglab train")
    src.add_argument("--pretrained", action="store_true", help="the course's shipped pretrained model")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--root", help="data folder")
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--device", type=_device, help="cpu, cuda or mps")
    p.add_argument("--fast", type=_on_off, default=True, help="per-device speed settings on/off")
    p.add_argument("--flip", action="store_true", help=FLIP_HELP)
    p.add_argument("--scales", type=_scales, help=SCALES_HELP)
    p.add_argument("--rebalance", type=_non_negative_float, help=REBALANCE_HELP)
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="the full result as JSON: printed, or written to FILE")
    p.add_argument("--overwrite", action="store_true", help="with --json FILE: replace an existing FILE")

    p = sub.add_parser("predict", help="write label PNGs for images",
                       description="Predict one 8-bit label PNG (class indices) per input image, at the "
                                   "input's own size. A file that is not a readable image, or has more than "
                                   f"{MAX_PIXELS:,} pixels, is skipped with one line saying why; the others "
                                   "are predicted, and the exit status is 1 if any was skipped. Existing "
                                   "files in --output are never replaced without --overwrite.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a .pt file written by seglab train")
    src.add_argument("--pretrained", action="store_true", help="the course's shipped pretrained model")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="folder for the label PNGs")
    p.add_argument("--color", action="store_true", help="also write colourised PNGs (<name>_color.png)")
    p.add_argument("--overwrite", action="store_true", help="replace label PNGs already in --output")
    p.add_argument("--device", type=_device, help="cpu, cuda or mps")
    p.add_argument("--flip", action="store_true", help=FLIP_HELP)
    p.add_argument("--scales", type=_scales, help=SCALES_HELP)
    p.add_argument("--rebalance", type=_non_negative_float, help=REBALANCE_HELP)

    sub.add_parser("info", help="print the device, CPU class and the settings seglab would use")
    return parser


# --------------------------------------------------------------------------- commands

def _cmd_download(args) -> int:
    from .download import download, import_local
    from .fetch import Limits
    if args.source:
        path = import_local(args.dataset, args.source, args.root, overwrite=args.overwrite)
    else:
        limits = Limits(stall_s=args.stall_timeout, min_rate=args.min_rate * 1000)
        path = download(args.dataset, args.root, base_url=args.base_url, workers=args.workers,
                        overwrite=args.overwrite, limits=limits)
    print(f"{args.dataset}: complete and verified in {path}")
    return 0


def _cmd_train(args) -> int:
    from .config import TrainConfig, options
    from .outputs import check_run_folder
    from .recipes import get_recipe
    from .sizing import user_sizes_win
    from .train import fit

    values = get_recipe(args.recipe)
    given = {f.name: getattr(args, f.name) for f in options() if hasattr(args, f.name)}
    values = user_sizes_win({**values, **given}, given)   # a --size of yours is kept, not chosen for you
    # A resumed run continues in its own folder unless --out says otherwise.
    values["out_dir"] = getattr(args, "out_dir", None) or (str(Path(args.resume).parent)
                                                           if getattr(args, "resume", None) else f"runs/{args.recipe}")
    values.setdefault("resume", None)
    if args.quiet:
        values["progress"] = False
    config = TrainConfig.from_dict(values, source=f"recipe {args.recipe!r}")
    config.validate()
    args.resume = config.resume   # the checks below read it
    if args.resume and not Path(args.resume).is_file():
        raise SeglabError(f"--resume {args.resume}: no such checkpoint file (look for last.pt in the run folder)")
    check_run_folder(values["out_dir"], args.resume, args.overwrite)
    run = fit(config)
    if run.out_dir is None:  # not rank 0 of a torchrun job
        return 0
    if run.interrupted:
        print(f"interrupted: saved {run.last_path}; resume with "
              f"`seglab train --resume {run.last_path} --out {run.out_dir}`", file=sys.stderr)
        return 130
    last = run.history[-1] if run.history else {}
    print(f"done in {run.seconds:.0f} s: {len(run.history)} epochs, best val mIoU {run.best_miou:.3f}, "
          f"last val pixel accuracy {last.get('val_pixel_accuracy', float('nan')):.3f}; run folder {run.out_dir}")
    return 0


def _resolve_checkpoint(args) -> str:
    if args.pretrained:
        from .checkpoint import check_pretrained
        return str(check_pretrained())
    return args.checkpoint


def _cmd_evaluate(args) -> int:
    from .evaluation import evaluate_checkpoint
    from .outputs import refuse_existing, write_text
    if args.json not in (None, "-"):  # checked before the work, not after it
        refuse_existing([args.json], args.overwrite)
    result = evaluate_checkpoint(_resolve_checkpoint(args), args.split, args.root, args.batch_size,
                                 args.device, args.fast, flip=args.flip, rebalance=args.rebalance,
                                 scales=args.scales)
    if args.json == "-":
        print(json.dumps(result, indent=2))
        return 0
    if args.json:
        write_text(args.json, json.dumps(result, indent=2) + "\n")
    h, w = result["resolution"]
    extras = ((", with flip test-time augmentation" if args.flip else "")
              + (f", scales {','.join(f'{v:g}' for v in result['scales'])} averaged"
                 if tuple(result["scales"]) != (1.0,) else "")
              + (f", rebalance {result['rebalance']:g}" if result["rebalance"] else ""))
    print(f"{result['checkpoint']} on {result['split']} ({result['images']} images at {h}x{w}, "
          f"{result['device']}, {result['seconds']:.1f} s{extras})")
    for name, value in result["iou"].items():
        print(f"  IoU {name:<12} {'  n/a' if value is None else f'{value:.3f}'}")
    print(f"mean IoU        {result['miou']:.4f}")
    print(f"pixel accuracy  {result['pixel_accuracy']:.4f}")
    print(f"mean class acc. {result['mean_class_accuracy']:.4f}")
    return 0


def _cmd_predict(args) -> int:
    from .predict import predict_files
    written, skipped = predict_files(_resolve_checkpoint(args), args.input, args.output, args.color,
                                     args.device, flip=args.flip, rebalance=args.rebalance, scales=args.scales,
                                     overwrite=args.overwrite, report=_report_skip)
    print(f"wrote {len(written)} label PNG(s) to {args.output}; skipped {len(skipped)}")
    return 1 if skipped or not written else 0


def _report_skip(path, reason: str) -> None:
    print(f"skipped {path}: {reason}", file=sys.stderr, flush=True)


def _cmd_info(args) -> int:
    from .hardware import bf16_reason, choose_settings, cpu_info, describe, get_device
    device = get_device()
    print(f"device: {describe(device)}")
    print(f"cpu: {json.dumps(cpu_info())}")
    print(f"cpu precision: {bf16_reason()}")
    print(f"training settings: {choose_settings(device).as_dict()}")
    return 0


COMMANDS = {"download": _cmd_download, "train": _cmd_train, "evaluate": _cmd_evaluate,
            "predict": _cmd_predict, "info": _cmd_info}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SeglabError as err:
        print(f"seglab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"seglab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
