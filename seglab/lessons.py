"""The lessons experiments (notebook 06): small changes to the recipe, measured.

Every row is the lessons *baseline* with one thing changed (skip connections, class
weights, augmentation, resolution, width, optimiser, a stride-2 stem). Each row runs the
``seglab`` command line in a fresh process, exactly as a learner would type it:

    python -m seglab train --recipe lessons <the row's options> --out runs/lessons/<row> --quiet
    python -m seglab evaluate --checkpoint runs/lessons/<row>/last.pt --split val --json

and writes one JSON line into ``seglab/results/lessons.jsonl`` (re-running a row
replaces its line): the row, the exact commands, the commit (``code_version``), the
machine (the CPU class line of ``seglab info``, threads, load average), the date (UTC),
the full training config, the cost (parameters, GFLOPs per image, wall and CPU seconds,
images/s) and the validation scores (mIoU, pixel accuracy, mean class accuracy,
per-class IoU, the confusion matrix).

Only committed code makes a row: the runner refuses, in one line, while a tracked file
under ``seglab/`` (the code that trains; the results folder aside) has uncommitted
changes, and checks again before it records each row. Quick rows are smoke runs: they may
run on any tree, and never into the shipped results file.

Fair and repeatable: every row trains for the same number of steps with the same seed
(never a wall-clock budget: on a shared machine a time budget would give a row more or
fewer steps depending on who else was busy). Times are reported, but accuracy is compared
at equal steps. Rows are scored on the *validation* split: choosing between settings is
model selection, and the test split stays untouched until the final evaluation.

    python -m seglab.lessons list
    python -m seglab.lessons run                         # every row, into the shipped file
    python -m seglab.lessons run baseline no_skip        # some rows
    python -m seglab.lessons run baseline --quick --results /tmp/x.jsonl   # a smoke run

(``--rows a,b``, ``--all`` and ``--list`` are the same as ``run a b``, ``run`` and ``list``;
``python benchmarks/lessons.py`` is the same runner.) The runner and its results ship
inside the package, so notebook 06 reads them wherever seglab is installed, Colab included.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from seglab.datasets import repo_root

REPO = repo_root()     # None where seglab is installed from a package (commands then run in the current folder)
RESULTS = Path(__file__).resolve().parent / "results" / "lessons.jsonl"   # the committed rows, shipped

# The baseline: the `lessons` recipe at a lower working resolution and for a short, fixed
# number of steps, so that the rows stay affordable on a 2-core CPU. The options listed here
# (and a row's changes) go on the command line, the switches the rows flip included, so
# that a change of the recipe cannot change the baseline unseen; everything else is the
# `lessons` recipe's default (and every result line stores the full config).
BASELINE: dict = {"size": (120, 160), "crop": (112, 160), "width": 16, "skip": True, "stem_stride": 1,
                  "augment": True, "class_weights": "none", "epochs": 4, "batch_size": 8,
                  "optimizer": "adam", "lr": 1e-3, "seed": 0, "val_subset": 8}

# name -> (changes relative to BASELINE, what the row tests)
ROWS: dict[str, tuple[dict, str]] = {
    "baseline": ({}, "U-Net width 16, 120x160 (112x160 crops), Adam 1e-3, augmentation on, no class weights"),
    "baseline_seed1": ({"seed": 1}, "the baseline with seed 1: run-to-run noise"),
    "baseline_seed2": ({"seed": 2}, "the baseline with seed 2: run-to-run noise"),
    "no_skip": ({"skip": False}, "skip connections off (a plain encoder-decoder)"),
    "weights_median": ({"class_weights": "median"}, "median-frequency class weights in the loss"),
    "weights_sqrt": ({"class_weights": "sqrt"}, "square root of the median-frequency weights"),
    "no_augment": ({"augment": False}, "no scale jitter, flips or colour jitter (random crop only)"),
    "res_90x120": ({"size": (90, 120), "crop": (88, 120)}, "lower working resolution, 90x120"),
    "res_180x240": ({"size": (180, 240), "crop": (176, 240)}, "higher working resolution, 180x240 (the lessons recipe's)"),
    "width_8": ({"width": 8}, "half the channels (width 8)"),
    "width_32": ({"width": 32}, "twice the channels (width 32)"),
    "stem_stride2": ({"stem_stride": 2}, "a stride-2 stem: the U-Net works at half resolution"),
    "sgd_lr0.05": ({"optimizer": "sgd", "lr": 0.05}, "plain SGD (no momentum), lr 0.05"),
    "sgd_lr0.2": ({"optimizer": "sgd", "lr": 0.2}, "plain SGD (no momentum), lr 0.2"),
    "sgd_lr0.8": ({"optimizer": "sgd", "lr": 0.8}, "plain SGD (no momentum), lr 0.8"),
}

# --quick: the same code path on a few images for a couple of steps (tests, notebook quick mode).
QUICK: dict = {"size": (48, 64), "crop": (48, 64), "epochs": 1, "max_steps": 2, "batch_size": 4,
               "subset": 8, "val_subset": 4}

# TrainConfig field -> `seglab train` option
FLAGS = {"size": "--size", "crop": "--crop", "width": "--width", "depth": "--depth", "epochs": "--epochs",
         "max_steps": "--max-steps", "batch_size": "--batch-size", "optimizer": "--optimizer", "lr": "--lr",
         "weight_decay": "--weight-decay", "schedule": "--schedule", "loss": "--loss",
         "class_weights": "--class-weights", "skip": "--skip", "batchnorm": "--batchnorm",
         "bilinear": "--bilinear", "stem_stride": "--stem-stride", "augment": "--augment", "seed": "--seed",
         "subset": "--subset", "val_subset": "--val-subset", "fast": "--fast"}

BASE_RECIPE = "lessons"

# the fields every result line carries (the test checks them)
REQUIRED = ("row", "description", "changes", "quick", "status", "commands", "code_version", "machine", "date",
            "config", "steps", "params", "gflops_per_image", "train_wall_s", "train_cpu_s",
            "train_images_per_s", "val")


# --------------------------------------------------------------------------- rows -> commands

def row_config(name: str, quick: bool = False) -> dict:
    """The options of row ``name``: the baseline, the row's changes, and in quick mode the
    small sizes and step counts of QUICK (widths scaled down, so their order is kept)."""
    changes, _ = ROWS[name]
    options = {**BASELINE, **changes}
    if quick:
        options.update(QUICK, width=max(2, options["width"] // 4))
    return options


def _value(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def train_argv(options: dict, out: str, root: str | None = None) -> list[str]:
    argv = ["train", "--recipe", BASE_RECIPE]
    for key, value in options.items():
        argv += [FLAGS[key], _value(value)]
    if root:
        argv += ["--root", root]
    return argv + ["--out", out, "--quiet"]


def evaluate_argv(checkpoint: str, root: str | None = None) -> list[str]:
    return ["evaluate", "--checkpoint", checkpoint, "--split", "val", "--json"] + (["--root", root] if root else [])


def as_command(argv: list[str], threads: int | None) -> str:
    """The command as one types it in the repository folder."""
    prefix = f"OMP_NUM_THREADS={threads} " if threads else ""
    return prefix + shlex.join(["python", "-m", "seglab", *argv])


# --------------------------------------------------------------------------- cost

def model_cost(options: dict) -> tuple[int, float]:
    """(parameters, forward GFLOPs per training crop) of the row's U-Net: machine-independent
    cost figures (a training step costs about 3x the forward pass)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from seglab.models import UNet, count_parameters
    model = UNet(3, 11, width=options["width"], skip=options.get("skip", True),
                 stem_stride=options.get("stem_stride", 1))
    h, w = options.get("crop") or options["size"]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, h, w))
    return count_parameters(model), counter.get_total_flops() / 1e9


def uncommitted_changes(repo: Path | None) -> list[str] | None:
    """The tracked files under ``seglab/`` (the results folder aside) that differ from the
    commit ``code_version()`` names; None outside a git checkout (an installed release is
    its own code version)."""
    if repo is None:
        return None
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "seglab",
                              ":(exclude)seglab/results"], capture_output=True, text=True, cwd=repo, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return [line[3:] for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else None


def refuse_uncommitted(repo: Path | None) -> None:
    """Stop, in one line, when ``repo`` has uncommitted changes to the code that trains."""
    changed = uncommitted_changes(repo)
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise SystemExit(f"seglab.lessons: not recording rows: {shown} under {repo}/seglab has uncommitted "
                         f"changes; commit (or stash) them and run again, so that every row names the code it ran")


def machine(threads: int | None) -> dict:
    import torch

    from seglab.hardware import cpu_info, describe
    info = cpu_info()
    info["threads"] = threads or info["threads"]
    return {"device": describe("cpu"), "cpu": info, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(terse=True)}


# --------------------------------------------------------------------------- running

def _cpu_seconds(who) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_seglab(argv: list[str], threads: int | None, in_process: bool) -> tuple[int, str, str, float, float]:
    """Run ``python -m seglab <argv>``; returns (exit status, stdout, stderr, wall s, CPU s).
    ``in_process`` calls the same ``seglab.cli.main`` in this interpreter (tests, quick
    mode: it saves the seconds a fresh interpreter spends importing torch)."""
    start = time.perf_counter()
    if in_process:
        import torch

        from seglab.cli import main
        cpu0 = _cpu_seconds(resource.RUSAGE_SELF)
        out, err = io.StringIO(), io.StringIO()
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except Exception as exc:  # noqa: BLE001 - reported in the result line
                code, _ = 1, err.write(f"{type(exc).__name__}: {exc}")
            finally:
                torch.set_num_threads(before)
        return code, out.getvalue(), err.getvalue(), time.perf_counter() - start, \
            _cpu_seconds(resource.RUSAGE_SELF) - cpu0
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cpu0 = _cpu_seconds(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "seglab", *argv], capture_output=True, text=True, env=env,
                          cwd=REPO)
    return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start, \
        _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0


def _training_throughput(out_dir: Path) -> tuple[list[dict], float | None]:
    """The run's history and its training images per second (epoch times, which include
    the run's small per-epoch validation on ``val_subset`` images)."""
    path = out_dir / "history.json"
    if not path.exists():
        return [], None
    history = json.loads(path.read_text())
    seconds = sum(h["seconds"] for h in history)
    images = sum(h["images_per_second"] * h["seconds"] for h in history)
    return history, (images / seconds if seconds > 0 else None)


def run_row(name: str, quick: bool = False, root: str | None = None, runs: Path | None = None,
            threads: int | None = None, in_process: bool = False) -> dict:
    """Train and evaluate row ``name``; return its result line (a dict)."""
    from seglab.course import runs_dir
    from seglab.checkpoint import code_version

    if name not in ROWS:
        raise SystemExit(f"unknown row {name!r}: choose from {', '.join(ROWS)}")
    options = row_config(name, quick)
    out_dir = Path(runs or runs_dir() / "lessons") / name
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a stale best.pt / history of an older run must not mix in
    inside = REPO is not None and out_dir.resolve().is_relative_to(REPO)
    out = os.path.relpath(out_dir, REPO) if inside else str(out_dir)
    t_argv = train_argv(options, out, root)
    e_argv = evaluate_argv(str(Path(out) / "last.pt"), root)
    params, gflops = model_cost(options)
    record = {"row": name, "description": ROWS[name][1], "changes": ROWS[name][0], "quick": quick,
              "status": "ok", "commands": {"train": as_command(t_argv, threads),
                                           "evaluate": as_command(e_argv, threads)},
              "code_version": code_version(), "machine": machine(threads),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "load_average": [round(v, 1) for v in os.getloadavg()],
              "params": params, "gflops_per_image": round(gflops, 4)}
    print(f"[{name}] {record['commands']['train']}", flush=True)
    code, stdout, stderr, wall, cpu = run_seglab(t_argv, threads, in_process)
    history, images_per_s = _training_throughput(out_dir)
    config_file = out_dir / "config.json"
    config = json.loads(config_file.read_text())["config"] if config_file.exists() else {}
    record.update(config=config, steps=history[-1]["step"] if history else 0, epochs=len(history),
                  train_wall_s=round(wall, 1), train_cpu_s=round(cpu, 1),
                  train_images_per_s=None if images_per_s is None else round(images_per_s, 3),
                  train_loss=[round(h["train_loss"], 4) for h in history], val=None)
    if code != 0:
        record.update(status="diverged" if "diverged" in stderr else "failed",
                      error=(stderr.strip().splitlines() or [f"exit status {code}"])[-1][-500:])
        print(f"[{name}] {record['status']}: {record['error']}", flush=True)
        return record
    print(f"[{name}] trained {record['steps']} steps in {wall:.0f} s; {record['commands']['evaluate']}", flush=True)
    code, stdout, stderr, wall, cpu = run_seglab(e_argv, threads, in_process)
    if code != 0:
        record.update(status="failed", error=(stderr.strip().splitlines() or [f"exit status {code}"])[-1][-500:])
        return record
    result = json.loads(stdout[stdout.index("{"):])
    record["val"] = {k: result[k] for k in ("miou", "pixel_accuracy", "mean_class_accuracy", "mean_dice", "loss",
                                           "iou", "images", "resolution", "confusion")}
    record.update(eval_wall_s=round(wall, 1), wall_s=round(record["train_wall_s"] + wall, 1),
                  load_average_after=[round(v, 1) for v in os.getloadavg()])
    print(f"[{name}] val mIoU {result['miou']:.4f}, pixel accuracy {result['pixel_accuracy']:.4f}", flush=True)
    return record


# --------------------------------------------------------------------------- the results file

def read_results(path: Path = RESULTS) -> list[dict]:
    """The result lines of ``path`` (an empty list when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_result(record: dict, path: Path = RESULTS) -> None:
    """Put ``record`` into ``path``, replacing the line of the same row; lines stay in the
    order of ROWS. Written to a temporary file and renamed, so a reader never sees half a file."""
    path = Path(path)
    lines = [r for r in read_results(path) if r["row"] != record["row"]] + [record]
    order = {name: i for i, name in enumerate(ROWS)}
    lines.sort(key=lambda r: order.get(r["row"], len(order)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lines))
    os.replace(tmp, path)


def _translate(argv: list[str]) -> list[str]:
    """``run [ROW ...]`` and ``list`` as the flags ``--rows``/``--all`` and ``--list``."""
    if argv and argv[0] == "list":
        return ["--list", *argv[1:]]
    if argv and argv[0] == "run":
        first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
        rows, rest = argv[1:first_option], argv[first_option:]      # `run ROW ... --option ...`
        return (["--rows", ",".join(rows)] if rows else ["--all"]) + rest
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--rows", help="comma-separated row names (or: run ROW ...)")
    which.add_argument("--all", action="store_true", help="every row, in order (or: run)")
    which.add_argument("--list", action="store_true", help="print the rows and what each changes (or: list)")
    parser.add_argument("--quick", action="store_true", help="a few images, 2 steps: a smoke run")
    parser.add_argument("--results", default=str(RESULTS),
                        help="results file (default: seglab/results/lessons.jsonl, the shipped rows)")
    parser.add_argument("--runs", help="folder for the run folders (default runs/lessons)")
    parser.add_argument("--root", help="CamVid folder (default $SEGLAB_DATA or data/camvid)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the runs (default: torch's choice)")
    parser.add_argument("--in-process", action="store_true", help="call seglab.cli.main here instead of a "
                                                                  "fresh `python -m seglab` (quick runs)")
    args = parser.parse_args(_translate(list(sys.argv[1:] if argv is None else argv)))
    if args.list:
        for name, (changes, description) in ROWS.items():
            change = ", ".join(f"{k}={_value(v)}" for k, v in changes.items()) or "-"
            print(f"{name:<15} {change:<30} {description}")
        return 0
    names = list(ROWS) if args.all else [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}: see --list")
    shipped = Path(args.results).resolve() == RESULTS.resolve()
    if args.quick and shipped:
        raise SystemExit("seglab.lessons: quick rows are smoke runs and never go into the shipped results; "
                         "add --results /tmp/lessons.jsonl")
    if not args.quick:
        refuse_uncommitted(REPO)
    failed = 0
    start = time.perf_counter()
    for name in names:
        record = run_row(name, args.quick, args.root, Path(args.runs) if args.runs else None, args.threads,
                         args.in_process)
        if not args.quick:
            refuse_uncommitted(REPO)   # the code changed while the row ran: its commit would be wrong
        write_result(record, Path(args.results))
        failed += record["status"] == "failed"
    print(f"{len(names)} row(s) in {time.perf_counter() - start:.0f} s; results in {args.results}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
