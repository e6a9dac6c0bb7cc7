"""Grade the notebooks in ``submitted/``, each on its own: one ``nbgrader autograde`` and
one ``nbgrader generate_feedback`` per student and assignment, several at a time, each
kernel in the sandbox where the machine allows it. A notebook that crashes the grader
gets a status and a log file; the others go on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import sandbox
from repair import repair_metadata


@dataclass
class Result:
    student: str
    assignment: str
    status: str          # 'graded', or what went wrong
    seconds: float = 0.0


def kernel_env(threads: int = 1) -> dict:
    """The environment for nbgrader and the kernels it starts.

    nbgrader calls the ``alembic`` program by name when it creates a gradebook, so this
    environment's ``bin`` goes first on PATH. Each kernel gets ``threads`` CPU threads:
    the graded cells use tiny tensors, and on a shared or busy machine PyTorch's default
    of one thread per core is many times slower."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env.pop("SEGLAB_QUICK", None)  # the assignments have no quick mode; never inherit one
    return env


def needs_grading(course: Path, student: str, assignment: str, notebook: str) -> bool:
    """True unless the feedback is newer than the submitted notebook."""
    submitted = course / "submitted" / student / assignment / f"{notebook}.ipynb"
    feedback = course / "feedback" / student / assignment / f"{notebook}.html"
    return not feedback.exists() or feedback.stat().st_mtime < submitted.stat().st_mtime


def _timed_out_cells(path: Path) -> int:
    if not path.exists():
        return 0
    nb = json.loads(path.read_text())
    return sum(1 for c in nb["cells"] for o in c.get("outputs", []) if o.get("ename") == "CellTimeoutError")


def _last_error(log: str) -> str:
    lines = [l.strip() for l in log.splitlines() if "[ERROR]" in l or "Error" in l or "error" in l]
    return (lines[-1] if lines else "see the log")[:200]


def grade_one(course: Path, student: str, assignment: str, notebook: str, *, slot: int, hide: list[Path],
              use_sandbox: bool, timeout: int, threads: int) -> Result:
    """Autograde and write the feedback of one notebook; never raises."""
    start = time.perf_counter()
    log_path = course / "logs" / student / f"{assignment}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    release = course / "release" / assignment / f"{notebook}.ipynb"
    path = course / "submitted" / student / assignment / f"{notebook}.ipynb"
    try:
        restored = repair_metadata(path, release)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        log_path.write_text(f"{path}: {err!r}\n")
        status = f"unreadable ({type(err).__name__}): ask for the .ipynb file again"
        log_path.with_suffix(".status").write_text(status + "\n")
        return Result(student, assignment, status, time.perf_counter() - start)
    env = kernel_env(threads)
    scratch = None
    if use_sandbox:
        scratch, extra = sandbox.prepare(slot, hide)
        env.update(extra)
    log = [f"restored the nbgrader metadata of {restored} cells\n"] if restored else []
    status = "graded"
    try:
        for command in ("autograde", "generate_feedback"):
            args = [sys.executable, "-m", "nbgrader", command, assignment, "--student", student, "--force",
                    f"--Execute.timeout={timeout}"]
            try:
                proc = subprocess.run(args, cwd=course, env=env, capture_output=True, text=True,
                                      timeout=20 * timeout + 300)
            except subprocess.TimeoutExpired as err:
                log.append(f"$ {' '.join(args)}\n{err.stdout or ''}{err.stderr or ''}\nkilled after {err.timeout} s\n")
                status = f"{command} did not finish in {err.timeout:.0f} s"
                break
            log.append(f"$ {' '.join(args)}\n{proc.stdout}{proc.stderr}")
            if proc.returncode != 0:
                status = f"{command} failed: {_last_error(proc.stderr)}"
                break
    finally:
        if scratch is not None:
            sandbox.cleanup(scratch)
    log_path.write_text("".join(log))
    slow = _timed_out_cells(course / "autograded" / student / assignment / f"{notebook}.ipynb")
    if status == "graded" and slow:
        status = f"graded ({slow} cells stopped after {timeout} s)"
    log_path.with_suffix(".status").write_text(status + "\n")     # kept for later runs' grade tables
    return Result(student, assignment, status, time.perf_counter() - start)


def last_status(course: Path, student: str, assignment: str) -> str:
    """The status the last grading of this notebook ended with ('' if never graded)."""
    path = course / "logs" / student / f"{assignment}.status"
    return path.read_text().strip() if path.exists() else ""


def grade_all(course: Path, todo: list[tuple[str, str, str]], *, hide: list[Path], use_sandbox: bool,
              jobs: int, timeout: int, threads: int) -> list[Result]:
    """Grade ``todo`` ((student, assignment, notebook) each) with ``jobs`` at a time,
    printing one line per notebook as it finishes."""
    done: list[Result] = []

    def work(item):
        i, (student, assignment, notebook) = item
        result = grade_one(course, student, assignment, notebook, slot=i, hide=hide, use_sandbox=use_sandbox,
                           timeout=timeout, threads=threads)
        done.append(result)
        print(f"  [{len(done)}/{len(todo)}] {student} {assignment}: {result.status} ({result.seconds:.0f} s)",
              flush=True)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(work, enumerate(todo)))
