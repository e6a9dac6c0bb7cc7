#!/usr/bin/env python3
"""Package a trained run as the course's pretrained model, and write its model card.

    python -m seglab train --recipe pretrained --out runs/pretrained   # the training (resumable)
    python -m seglab train --resume runs/pretrained/last.pt --more-epochs 40   # optional: train on
    python benchmarks/pretrained.py runs/pretrained/last.pt            # export + score + card

A run trained elsewhere (a GPU machine, a budget) passes the command it was trained with,
``--command "..."``, and ``--notes FILE``: markdown added to the card (how the run was chosen,
what else shared the machine).

``--rebalance S`` exports the run set to take back a share S of its class weighting at
prediction time (seglab.losses.logit_offsets), for a run trained before its recipe said so;
the setting does not change training.

The export keeps only what inference needs (weights, model and training config, history),
with the weights stored in half precision (fp16; loading turns them back into fp32), so the
file stays small: 8 MB for a width-24 U-Net instead of 16. The card's figures are measured
here, on the 233 test images at 360x480, and a test (tests/test_pretrained.py) re-scores the
shipped file in CI and checks them within 0.005.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seglab.checkpoint import PRETRAINED_DIR, PRETRAINED_FILE, load_checkpoint, save_checkpoint, sha256_of  # noqa: E402
from seglab.outputs import write_text  # noqa: E402
from seglab.config import TrainConfig  # noqa: E402
from seglab.evaluation import evaluate_checkpoint  # noqa: E402
from seglab.train import build_datasets, loss_weights  # noqa: E402
from seglab.hardware import SpeedSettings, describe, get_device  # noqa: E402
from seglab.models import UNet, count_parameters  # noqa: E402
from seglab.recipes import get_recipe  # noqa: E402

CARD = PRETRAINED_DIR / "MODEL_CARD.md"
KEEP = ("model_config", "model", "class_weights", "train_config", "dataset", "class_names", "epoch", "step",
        "history", "code_version")


def export(source: Path, target: Path = PRETRAINED_FILE, rebalance: float | None = None,
           root: str | None = None) -> Path:
    """Copy the inference-relevant part of a checkpoint to ``target`` (atomically);
    ``rebalance``: set the run's ``rebalance`` (see :func:`seglab.load_model`); a run saved
    before checkpoints kept their class weights gets them from its own training data, as
    ``fit`` computes them."""
    state = load_checkpoint(source)
    if state["train_config"].get("budget") and state.get("epoch"):
        # a budget run's plan, as `fit` records it (runs saved before it did kept the epochs asked for)
        state["train_config"] = {**state["train_config"], "epochs": state["epoch"]}
    if rebalance is not None:
        state["train_config"] = {**state["train_config"], "rebalance": rebalance}
        config = TrainConfig.from_dict({**state["train_config"], "root": root, "progress": False})
        config.validate()
        if state.get("class_weights") is None:
            spec, parts, _, _ = build_datasets(config)
            state["class_weights"] = loss_weights(config, spec, parts)
    slim = {k: state[k] for k in KEEP if k in state}
    # fp16 storage halves the file; the card's scores are measured on the stored weights
    slim["model"] = {k: v.half() if v.is_floating_point() else v for k, v in slim["model"].items()}
    slim.pop("format", None)
    save_checkpoint(target, slim)
    # load_pretrained checks the shipped file against this record
    write_text(target.with_name(target.name + ".sha256"), f"{sha256_of(target)}  {target.name}\n")
    return target


def duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def write_card(result: dict, state: dict, command: str, train_info: dict, notes: str = "") -> None:
    config = state["train_config"]
    model = UNet.from_config(state["model_config"])
    rows = "\n".join(f"| {name} | {value:.4f} |" if value is not None else f"| {name} | n/a |"
                     for name, value in result["iou"].items())
    measured = {"test_miou": round(result["miou"], 4), "test_pixel_accuracy": round(result["pixel_accuracy"], 4),
                "test_mean_class_accuracy": round(result["mean_class_accuracy"], 4),
                "iou": {k: (round(v, 4) if v is not None else None) for k, v in result["iou"].items()}}
    rebalanced = (f" (at prediction time, logit offsets take back {config['rebalance']:g} of the weighting: "
                  f"`rebalance`, see seglab.losses.logit_offsets; `load_pretrained(rebalance=0)` or "
                  f"`--rebalance 0` gives the weighted model as trained)" if config.get("rebalance") else "")
    text = f"""# Model card: seglab's pretrained CamVid U-Net

`seglab.load_pretrained()` · `seglab evaluate --pretrained` · `seglab predict --pretrained ...`

| | |
|---|---|
| architecture | U-Net, width {config['width']}, depth {config['depth']}, bilinear upsampling, BatchNorm, {count_parameters(model):,} parameters |
| input | RGB, resized to {config['size'][0]}x{config['size'][1]} inside `predict_logits`; logits resized back to the label's size |
| classes | 11 CamVid classes (SegNet tutorial version); void (label 11) ignored in training and scoring |
| training data | CamVid splits: {', '.join(config['train_splits'])} ({'train + val: the validation split was used for training, so the validation scores in the history are not held-out' if 'val' in config['train_splits'] else 'train only'}); the test split was never used for training or model selection |
| recipe | `{config['optimizer']}` lr {config['lr']:g}, {train_info['schedule']}, batch {config['batch_size']}, {train_info['epochs']} epochs, loss `{config['loss']}` with class weights `{config['class_weights']}`{rebalanced}, augmentation: random scale {tuple(config['scale'])}, crop {config['crop'][0]}x{config['crop'][1]}, horizontal flip, colour jitter {config['color_jitter']} |
| command | `{command}` |
| training time and hardware | {duration(train_info['seconds'])} of training on {train_info['device']} (median epoch {train_info['median_epoch_s']:.1f} s x {train_info['epochs']} epochs{train_info['note']}) |
| status | {train_info['status']} |
| file size | {PRETRAINED_FILE.stat().st_size / 1e6:.1f} MB (weights stored in fp16, loaded as fp32) |
| code version | {state.get('code_version', '?')} |
| scored | {result['images']} test images at {result['resolution'][0]}x{result['resolution'][1]}, {describe(get_device())}, {datetime.now(timezone.utc).date().isoformat()} |

## Test scores (233 images, 360x480, void ignored)

| metric | value |
|---|---|
| mean IoU | {result['miou']:.4f} |
| pixel accuracy | {result['pixel_accuracy']:.4f} |
| mean class accuracy | {result['mean_class_accuracy']:.4f} |

| class | test IoU |
|---|---|
{rows}
{notes}
Data: CamVid (Brostow, Fauqueur and Cipolla, 2009) as prepared for SegNet (Badrinarayanan,
Kendall and Cipolla, 2017), CC BY-NC 4.0: personal and research use.

<!-- measured (tests/test_pretrained.py re-scores the shipped file and checks these within 0.005):
{json.dumps(measured)}
-->
"""
    CARD.write_text(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="last.pt of the pretrained run")
    parser.add_argument("--root", help="CamVid folder (default $SEGLAB_DATA or data/camvid)")
    parser.add_argument("--command", help="the training command, for the card (default: the recipe's, "
                                          "with --more-epochs if the run was extended)")
    parser.add_argument("--notes", type=Path, help="a markdown file added to the card")
    parser.add_argument("--rebalance", type=float,
                        help="set the exported run's rebalance: the share (0 to 1) of its class weighting taken "
                             "back at prediction time")
    args = parser.parse_args(argv)
    source = load_checkpoint(args.checkpoint)
    run_dir = args.checkpoint.parent
    meta = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}
    epoch_seconds = sorted(h.get("seconds", 0) for h in source.get("history", []))
    seconds = sum(epoch_seconds)
    # A long run may be paused or share the machine for a while: the median epoch times the
    # number of epochs is the training time of an undisturbed run on this machine.
    median = epoch_seconds[len(epoch_seconds) // 2] if epoch_seconds else 0.0
    planned = source["train_config"]["epochs"]
    done = len(source.get("history", []))
    budget_run = bool(source["train_config"].get("budget"))
    command = "python -m seglab train --recipe pretrained --out runs/pretrained"
    train_info = {"epochs": done, "seconds": median * done, "schedule": "cosine schedule with warm-up",
                  "median_epoch_s": median, "device": meta.get("device", "unknown"), "note": ""}
    if budget_run:   # one sitting under a clock, planned in steps: its own epoch times, validation included
        total, steps = source.get("total_steps"), source.get("step", 0)
        train_info["status"] = (f"complete: {steps} of {total} planned steps ({done} epochs)" if steps >= total else
                                f"stopped after {steps} of {total} planned steps")
        train_info["seconds"] = seconds
        train_info["note"] = f", validation every {source['train_config'].get('val_every', 1)} epochs included"
    else:
        train_info["status"] = (
            f"complete: {done} of {planned} planned epochs" if done >= planned else
            f"stopped after {done} of {planned} planned epochs, at a learning rate still high in its cosine "
            f"schedule; continue it with `python -m seglab train --resume runs/pretrained/last.pt`, then "
            f"re-run `python benchmarks/pretrained.py runs/pretrained/last.pt`")
        if seconds > 1.2 * median * done:
            train_info["note"] = (f"; the run's wall clock, {duration(seconds)}, includes times when it was "
                                  f"paused or shared the machine with other jobs")
        first = get_recipe("pretrained")["epochs"]
        if planned > first:   # the run was trained on with --more-epochs (a budget run's plan is its own)
            command += (f"`, then `python -m seglab train --resume runs/pretrained/last.pt "
                        f"--more-epochs {planned - first}")
            train_info["schedule"] = (f"cosine schedule with warm-up over {first} epochs, then stretched to "
                                      f"{planned} (`--more-epochs {planned - first}`: the learning rate rose again "
                                      f"to {source['history'][first]['lr']:.2g} and decayed to zero)")
    if args.command:
        command = args.command
    if args.rebalance is not None:
        command += f"`, exported with `python benchmarks/pretrained.py {args.checkpoint} --rebalance {args.rebalance:g}"
    export(args.checkpoint, rebalance=args.rebalance, root=args.root)
    # fp32 on every CPU class (as tests/test_pretrained.py re-scores it); folding and channels_last
    # give the same logits in half the time
    fp32 = SpeedSettings(channels_last=True, fold_batchnorm=True)
    result = evaluate_checkpoint(PRETRAINED_FILE, "test", args.root, settings=fp32)
    notes = "\n" + args.notes.read_text().strip() + "\n" if args.notes else ""
    write_card(result, load_checkpoint(PRETRAINED_FILE), command, train_info, notes)
    print(f"exported {PRETRAINED_FILE} ({PRETRAINED_FILE.stat().st_size / 1e6:.1f} MB); test mIoU "
          f"{result['miou']:.4f}, pixel accuracy {result['pixel_accuracy']:.4f}; card {CARD}")


if __name__ == "__main__":
    main()
