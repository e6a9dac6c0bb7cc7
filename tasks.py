#!/usr/bin/env python3
"""One-file task runner: needs only Python 3.10+ (no make, no conda).

    python3 tasks.py course      set up .venv, get the data, open notebook 01 in JupyterLab
    python3 tasks.py test        set up .venv, run the whole test suite (package + notebooks)
    python3 tasks.py notebooks   re-execute every notebook in full mode and write the outputs back
                                 (and the header time tables; refuses uncommitted code unless --allow-dirty)
    python3 tasks.py student     build the student versions of the assignments (nbgrader)
    python3 tasks.py autograde   autograde submissions in classroom/submitted (nbgrader)
    python3 tasks.py validate    check the instructor notebooks pass their own tests (nbgrader)
    python3 tasks.py stamp       rewrite every notebook's Colab badge, bootstrap cell and time table
    python3 tasks.py site        build the course website into docs/_build/html (no notebook is run)

Everything runs inside ./.venv, created on first use. The exact torch/torchvision pair
is pinned here and only here (pyproject.toml keeps loose ranges, because Colab brings
its own torch).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PINNED = ["torch==2.14.1", "torchvision==0.29.1"]
SHARED = ROOT.parent / "shared"
NOTEBOOKS = ROOT / "notebooks"
FIRST_NOTEBOOK = NOTEBOOKS / "01_introduction.ipynb"
# nbval's rules for outputs that differ between runs (times, addresses, paths)
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"


def python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(*cmd, env=None, check=True) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    code = subprocess.call([str(c) for c in cmd], env=env, cwd=ROOT)
    if check and code != 0:
        sys.exit(code)
    return code


def setup(extras: str = "course,test") -> None:
    """Create .venv and install seglab (editable) with the pinned torch pair and extras.
    Re-running is cheap: pip skips what is already installed."""
    if sys.version_info < (3, 10):
        sys.exit(f"seglab needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    if not python().exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    run(python(), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINNED, "-e", f".[{extras}]")


def data_env(env: dict | None = None) -> dict:
    """Point seglab at the real data where this checkout sits beside ../shared (CI), unless
    SEGLAB_DATA / SEGLAB_ISBI_DATA already say where it is."""
    env = dict(os.environ if env is None else env)
    for var, folder in (("SEGLAB_DATA", SHARED / "camvid"), ("SEGLAB_ISBI_DATA", SHARED / "isbi-em")):
        if not env.get(var) and folder.is_dir():
            env[var] = str(folder)
    return env


def synthetic_data_env(env: dict) -> dict:
    """Without the real data (offline, no ../shared), the notebooks run on small synthetic
    data in the real layouts, generated into a temporary folder."""
    missing = [v for v in ("SEGLAB_DATA", "SEGLAB_ISBI_DATA") if not env.get(v)]
    if missing:
        folder = Path(tempfile.mkdtemp(prefix="seglab-synthetic-"))
        # at CamVid's own size: the notebooks show what resizing from it does
        code = ("import sys; from seglab.synthetic import make_synthetic_camvid, make_synthetic_isbi;"
                "from seglab.datasets import CAMVID;"
                "make_synthetic_camvid(sys.argv[1] + '/camvid', 24, 8, 8, CAMVID.native_size);"
                "make_synthetic_isbi(sys.argv[1] + '/isbi-em', 128)")
        run(python(), "-c", code, folder)
        print(f"real data not found: notebooks run on synthetic data in {folder}", flush=True)
        env["SEGLAB_SYNTHETIC_DATA"] = "1"   # the real-data tests skip instead of testing these files
        if not env.get("SEGLAB_DATA"):
            env["SEGLAB_DATA"] = str(folder / "camvid")
        if not env.get("SEGLAB_ISBI_DATA"):
            env["SEGLAB_ISBI_DATA"] = str(folder / "isbi-em")
    return env


def cmd_course() -> None:
    setup("course")
    env = data_env()
    if not env.get("SEGLAB_DATA") and not (ROOT / "data" / "camvid" / "test").is_dir():
        run(python(), "-m", "seglab", "download", "camvid", env=env)
    # Jupyter refuses to start as root unless told; containers and cloud machines often are root
    as_root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    # open notebook 01 itself (not an empty launcher); the file browser shows notebooks/
    run(python(), "-m", "jupyter", "lab", f"--ServerApp.root_dir={NOTEBOOKS}", FIRST_NOTEBOOK, *as_root, env=env)


def cmd_test(extra: list[str]) -> None:
    setup("course,test,docs")  # docs: the browser test builds the website
    env = synthetic_data_env(data_env())
    env["SEGLAB_QUICK"] = "1"
    env.setdefault("SEGLAB_CACHE", tempfile.mkdtemp(prefix="seglab-cache-"))
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("SEGLAB_COLAB", "1")   # the Colab emulation (tests/test_colab_emulation.py), a few minutes
    # as in an activated .venv: nbgrader calls its `alembic` command by name
    env["PATH"] = os.pathsep.join([str(python().parent), env.get("PATH", "")])
    code = run(python(), "-m", "pytest", "tests", "notebooks", "--nbval-lax",
               "--nbval-sanitize-with", SANITIZE, "-p", "no:cacheprovider", *extra,
               env=env, check=False)
    sys.exit(code)


# what a notebook's outputs depend on: a run records them only when they match the commit
RECORDED_CODE = ["seglab", "notebooks", "tasks.py"]
# the header's time block, which the run itself rewrites (seglab/notebook_record.py)
TIMES_BLOCK = re.compile(r"<!-- times -->.*?<!-- /times -->", re.S)


def _cell_sources(text: str) -> list[str]:
    """A notebook's cell sources without the time block: what its author wrote, not what a run writes."""
    cells = json.loads(text)["cells"]
    return [TIMES_BLOCK.sub("", "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
            for c in cells]


def uncommitted_changes() -> list[str]:
    """Tracked files under RECORDED_CODE that differ from the commit. A notebook counts only
    when one of its cells' sources differs: new outputs and metadata are what a run writes."""
    diff = subprocess.run(["git", "diff", "--name-only", "HEAD", "--", *RECORDED_CODE],
                          capture_output=True, text=True, cwd=ROOT)
    if diff.returncode != 0:
        return ["(not a git checkout: nothing tells which code made the outputs)"]
    changed = []
    for name in diff.stdout.splitlines():
        if name.endswith(".ipynb") and (ROOT / name).is_file():
            committed = subprocess.run(["git", "show", f"HEAD:{name}"], capture_output=True, text=True, cwd=ROOT)
            if committed.returncode == 0 and _cell_sources(committed.stdout) == _cell_sources(
                    (ROOT / name).read_text(encoding="utf-8")):
                continue
        changed.append(name)
    return changed


def cmd_notebooks(args: list[str]) -> None:
    allow_dirty = "--allow-dirty" in args
    names = [a for a in args if a != "--allow-dirty"]
    changed = uncommitted_changes()
    if changed and not allow_dirty:
        sys.exit(f"tasks.py notebooks: {', '.join(changed)} differ from the last commit; commit them first, so that "
                 f"the outputs record the code that made them, or pass --allow-dirty (recorded in the metadata)")
    setup("course,test")
    env = data_env()
    run_id = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())   # one id for every notebook of this run
    code = ("import json, sys\n"
            "from seglab.course import course_notebooks, execute\n"
            "from seglab.notebook_record import run_facts, write_time_table\n"
            "wanted = [n for n in sys.argv[1].split(',') if n]\n"
            "facts = run_facts(sys.argv[2], json.loads(sys.argv[3]))\n"
            "for nb in course_notebooks():\n"
            "    if wanted and not any(w in nb.name for w in wanted):\n"
            "        continue\n"
            "    seconds = execute(nb, quick=False, record=facts)\n"
            "    write_time_table(nb)\n"
            "    print(f'{nb.name}: {seconds:.0f} s', flush=True)\n")
    run(python(), "-c", code, ",".join(names), run_id, json.dumps(changed), env=env)


def cmd_site(extra: list[str]) -> None:
    setup("docs")
    run(python(), "docs/build_site.py", *extra)


def cmd_classroom(action: str, extra: list[str]) -> None:
    setup("course,test")
    # the script runs from the repository root: make paths given relative to here absolute
    extra = [str(Path(a).resolve()) if not a.startswith("-") and Path(a).exists() else a for a in extra]
    run(python(), "classroom/classroom.py", action, *extra, env=data_env())


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return
    task, rest = argv[0], argv[1:]
    if task == "course":
        cmd_course()
    elif task == "test":
        cmd_test(rest)
    elif task == "notebooks":
        cmd_notebooks(rest)
    elif task == "site":
        cmd_site(rest)
    elif task in ("student", "autograde", "validate"):
        cmd_classroom(task, rest)
    elif task == "stamp":
        setup("course,test")
        run(python(), "-c", "from seglab.course import course_notebooks, stamp_bootstrap\n"
                             "from seglab.notebook_record import write_time_table\n"
                             "for nb in course_notebooks():\n"
                             "    changed = [stamp_bootstrap(nb), write_time_table(nb)]\n"
                             "    print(nb.name, 'updated' if any(changed) else 'ok')")
    elif task == "setup":
        setup()
    else:
        sys.exit(f"unknown task {task!r}; run `python3 tasks.py --help`")


if __name__ == "__main__":
    main(sys.argv[1:])
