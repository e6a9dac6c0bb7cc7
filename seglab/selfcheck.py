"""The self-check cell of the classroom assignments: run the test cells again, in the
notebook's own namespace, and score them as the grader (nbgrader) does: a test cell that
raises an error, or writes anything but a warning to stderr, scores 0. Works wherever
IPython runs the notebook (Jupyter, Colab, VS Code)."""
from __future__ import annotations

import contextlib
import io
import re
import warnings

_WARNING = re.compile(r"\w*Warning: ")     # the same pattern as classroom/nbgrader_config.py


def _latest_sources(history: list[str], headers: list[str]) -> dict[str, str]:
    """The last executed source of each test cell, found by its first line."""
    found: dict[str, str] = {}
    for source in history:
        first = source.lstrip().split("\n", 1)[0].strip()
        if first in headers:
            found[first] = source
    return found


def run(headers: list[str]) -> bool:
    """Run the test cells whose first lines are ``headers``; print one line each and
    return True if all would score full points."""
    from IPython import get_ipython
    shell = get_ipython()
    if shell is None:
        print("The self-check runs inside a notebook.")
        return False
    found = _latest_sources(list(shell.user_ns.get("In", [])), headers)
    ok = True
    for header in headers:
        name = header.lstrip("# ").replace(" (do not edit)", "")
        if header not in found:
            print(f"NOT RUN  {name}: run every cell first (Restart and Run All)")
            ok = False
            continue
        err, out = io.StringIO(), io.StringIO()
        try:
            with warnings.catch_warnings(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                warnings.simplefilter("default")
                exec(compile(found[header], f"<{name}>", "exec"), shell.user_ns)
        except Exception as error:  # noqa: BLE001 (any error scores 0, as in the grader)
            message = str(error).strip().split("\n")[0] or "(no message)"
            print(f"FAIL     {name}: {type(error).__name__}: {message[:300]}")
            ok = False
            continue
        other = [line for line in err.getvalue().splitlines() if line.strip() and not _WARNING.search(line)
                 and not line.startswith("  ")]
        if other:
            print(f"FAIL     {name}: writes to stderr, which the grader scores 0: {other[0][:200]}")
            ok = False
        else:
            print(f"ok       {name}")
    print("All visible tests pass: hand in the .ipynb file." if ok else
          "Fix the lines marked above, then Restart and Run All again.")
    return ok
