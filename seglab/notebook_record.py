"""What one ``python3 tasks.py notebooks`` run records in each notebook it executes, and
the time table in each notebook's header that is generated from that record.

The record (``metadata.seglab.executed``) holds the mode, the wall time in seconds, the
code version, the CPU class, the device the notebook ran on, and the run id that every
notebook of one run shares; a test checks that all committed notebooks come from one run
of committed code on one machine. The header's time table sits between
:data:`TIMES_START` and :data:`TIMES_END` and is rewritten from the record; nobody edits
it by hand. GPU rows come from :data:`GPU_TIMES`, a committed JSON list of objects
``{"notebook": "04_training", "device": "GPU NVIDIA H100", "seconds": 312.5,
"code_version": "0.1.0+abc1234"}``, one per notebook timed on a GPU in full mode.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

TIMES_START = "<!-- times -->"
TIMES_END = "<!-- /times -->"
GPU_TIMES = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "notebook_gpu_times.json"
_BLOCK = re.compile(re.escape(TIMES_START) + r".*?" + re.escape(TIMES_END), re.S)


def run_facts(run_id: str, uncommitted: list[str] | None = None) -> dict:
    """What every notebook of one run records besides its mode and seconds: the code
    version, the machine, the run id, and the files that differed from the commit (only
    when the run was told to go ahead with them: ``tasks.py notebooks --allow-dirty``)."""
    from .checkpoint import code_version
    from .hardware import cpu_class, describe

    facts = {"code_version": code_version(), "cpu": cpu_class(), "device": describe(), "run_id": run_id}
    if uncommitted:
        facts["uncommitted_changes"] = sorted(uncommitted)
    return facts


def format_seconds(seconds: float) -> str:
    """'45 s' below two minutes, '16.5 min (990 s)' above."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def gpu_rows(notebook: str, path: Path = GPU_TIMES) -> list[dict]:
    """The GPU timings recorded for ``notebook`` (its stem, such as '04_training')."""
    if not path.is_file():
        return []
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise ValueError(f"{path} must hold a JSON list of timings (see seglab/notebook_record.py)")
    return [row for row in rows if row.get("notebook") == notebook]


def time_table(executed: dict, gpus: list[dict] = ()) -> str:
    """The header's time block, markers included, for a notebook's ``executed`` record."""
    if executed.get("mode") == "full" and isinstance(executed.get("seconds"), (int, float)):
        machine = executed.get("device") or "machine not recorded"
        rows = [(machine, format_seconds(executed["seconds"]))]
    else:
        rows = [("not measured in full mode yet", "")]
    rows += [(row["device"], format_seconds(row["seconds"])) for row in gpus]
    lines = ["| machine | full mode, whole notebook |", "| --- | --- |"]
    lines += [f"| {machine} | {time} |" for machine, time in rows]
    return "\n".join([TIMES_START, "", *lines, "", TIMES_END])


def replace_time_table(header: str, table: str, name: str = "the notebook") -> str:
    """``header`` with its time block replaced by ``table``; the rest stays as it is."""
    if len(_BLOCK.findall(header)) != 1:
        raise ValueError(f"{name}: its first cell needs one time block, a line {TIMES_START} and a line "
                         f"{TIMES_END} where the time table goes (see CONTRIBUTING.md)")
    return _BLOCK.sub(lambda _: table, header)


def write_time_table(path: Path, gpu_times: Path = GPU_TIMES) -> bool:
    """Rewrite the time block in the notebook's first cell from its recorded run. True if
    the file changed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    first = nb["cells"][0]
    header = "".join(first["source"]) if isinstance(first["source"], list) else first["source"]
    executed = nb.get("metadata", {}).get("seglab", {}).get("executed", {})
    updated = replace_time_table(header, time_table(executed, gpu_rows(path.stem, gpu_times)), path.name)
    if updated == header:
        return False
    first["source"] = updated.splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True
