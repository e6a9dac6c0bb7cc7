"""Giving back the nbgrader metadata that a submitted notebook lost."""
from __future__ import annotations

import copy
import json
from pathlib import Path


def _first_line(source) -> str:
    text = "".join(source) if isinstance(source, list) else source
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def repair_metadata(path: Path, release: Path) -> int:
    """Give back the nbgrader metadata that a submitted notebook lost (Colab, VS Code and
    some editors drop or mangle cell metadata; students delete cells). A cell without
    metadata is matched to the released cell with the same cell id or, failing that, the
    same first line. Test cells that are still missing are appended at the end and locked
    cells (imports, data) at the start; nbgrader then restores their content from the
    gradebook. Returns the number of cells changed; the file is rewritten only if any."""
    nb = json.loads(path.read_text())
    ref = json.loads(release.read_text())

    def grade_id(cell):
        return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")

    have = {grade_id(c) for c in nb["cells"]} - {None}
    wanted = [c for c in ref["cells"] if grade_id(c) and grade_id(c) not in have]
    if not wanted:
        return 0
    by_id = {c.get("id"): c for c in wanted if c.get("id")}
    by_line: dict[tuple[str, str], dict] = {}
    for c in wanted:
        by_line.setdefault((c["cell_type"], _first_line(c["source"])), c)
    changed = 0
    for cell in nb["cells"]:
        if grade_id(cell):
            continue
        match = by_id.get(cell.get("id")) or by_line.get((cell["cell_type"], _first_line(cell.get("source", ""))))
        if match is not None and grade_id(match) not in have:
            cell.setdefault("metadata", {})["nbgrader"] = copy.deepcopy(match["metadata"]["nbgrader"])
            have.add(grade_id(match))
            changed += 1
    front, back = [], []
    for c in ref["cells"]:
        meta = c.get("metadata", {}).get("nbgrader", {})
        if grade_id(c) and grade_id(c) not in have and (meta.get("grade") or meta.get("locked")):
            cell = copy.deepcopy(c)
            cell.pop("id", None)
            (back if meta.get("grade") else front).append(cell)
            changed += 1
    nb["cells"] = front + nb["cells"] + back
    if changed:
        if nb.get("nbformat_minor", 0) >= 5:
            for i, cell in enumerate(nb["cells"]):
                cell.setdefault("id", f"restored-{i}")
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed
