"""From an inbox of handed-in files to nbgrader's ``submitted/<student>/<assignment>/``.

Every file is looked at on its own: which student (folder name, flat file name, or a
Canvas / Moodle download name, through the roster), which assignment (the notebook's name
inside the file name or, for a renamed file, the nbgrader ids inside the notebook), and
whether it is a notebook at all. A file that fails any of these gets a reason instead of
stopping the others.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from roster import Roster, ids_without_roster

# Canvas: lastfirst[_LATE]_<user id>_<submission id>_<file name>, a resubmission "name-1.ipynb"
CANVAS = re.compile(r"^(?P<name>[a-z]+)(?P<late>_LATE)?_(?P<lms>\d+)_(?P<sub>\d+)_(?P<file>.+)$")
# Moodle: Full Name_<participant id>_assignsubmission_file_<file name> (a file or a folder)
MOODLE = re.compile(r"^(?P<name>.+?)_(?P<lms>\d+)_assignsubmission_file_?(?P<file>.*)$")
MANIFEST = "imported.json"      # what this tool copied into submitted/, and from where


@dataclass
class Submission:
    rel: str                        # path inside the inbox (for messages)
    path: Path
    name: str = ""                  # the student as the file names them
    lms_id: str = ""
    student: str | None = None      # gradebook id
    assignment: str | None = None
    notebook: str | None = None
    late_marker: bool = False       # the LMS marked it late
    problem: str = ""               # why it cannot be graded; '' if it can
    notes: list[str] = field(default_factory=list)


def _assignment_ids(course: Path, notebooks: dict[str, str]) -> dict[str, str]:
    """nbgrader grade id -> assignment, from the instructor versions."""
    ids = {}
    for nb, a in notebooks.items():
        for cell in json.loads((course / "source" / a / f"{nb}.ipynb").read_text())["cells"]:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid:
                ids[gid] = nb
    return ids


def read_notebook(path: Path) -> tuple[dict | None, str]:
    """(the notebook as JSON, '') or (None, what is wrong with the file and the fix)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        return None, f"cannot be read ({err.strerror})"
    text = raw.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    if not text:
        return None, "is empty: ask for the notebook again (File > Download > .ipynb)"
    if text[:1] == "<":
        return None, "is a web page, not a notebook: ask for File > Download > Download .ipynb"
    try:
        nb = json.loads(text)
    except ValueError:
        return None, "is not a notebook (not JSON): ask for File > Download > Download .ipynb"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return None, "is JSON but not a notebook (no cells): ask for the .ipynb file"
    return nb, ""


def match_by_content(path: Path, grade_ids: dict[str, str], notebooks: dict[str, str]) -> tuple[str | None, str]:
    """The course notebook a renamed file is a copy of, from its nbgrader grade ids or
    cell ids: (notebook, '') or (None, why not)."""
    nb, problem = read_notebook(path)
    if nb is None:
        return None, problem
    found = set()
    for cell in nb["cells"]:
        gid = (cell.get("metadata") or {}).get("nbgrader", {}).get("grade_id")
        if gid in grade_ids:
            found.add(grade_ids[gid])
        cid = str(cell.get("id", ""))
        found.update(n for n in notebooks if cid.startswith(n + "-"))
    if len(found) == 1:
        return found.pop(), ""
    if found:
        return None, f"holds cells of several assignments ({', '.join(sorted(found))}): ask which one it is"
    return None, f"is none of the assignments (its name and cells match none of {', '.join(notebooks)})"


def _match_name(stem: str, notebooks: dict[str, str]) -> str | None:
    """The course notebook whose name occurs in the file name (the longest, if several)."""
    found = [n for n in notebooks if n.lower() in stem.lower()]
    return max(found, key=len) if found else None


def parse(rel: Path, path: Path, notebooks: dict[str, str], grade_ids: dict[str, str]) -> Submission:
    """Student name, LMS markers and assignment of one file; no roster yet."""
    sub = Submission(rel.as_posix(), path)
    parts = rel.parts
    owner, file_name = (parts[0], parts[-1]) if len(parts) > 1 else ("", parts[0])
    for text in ([owner] if owner else []) + ([] if owner else [file_name]):
        m = CANVAS.match(text) or MOODLE.match(text)
        if m:
            sub.name, sub.lms_id = m["name"], m["lms"]
            sub.late_marker = bool(m.groupdict().get("late"))
            if not owner:
                file_name = m["file"] or file_name
            break
    else:
        sub.name = owner
    stem = Path(file_name).stem
    sub.notebook = _match_name(stem, notebooks)
    if not sub.name:        # flat file <student>_<notebook>.ipynb
        sub.name = re.sub(re.escape(sub.notebook), "", stem, flags=re.I) if sub.notebook else ""
        sub.name = re.sub(r"(\s*\(\d+\)|-\d+)$", "", sub.name).strip(" _-")
    if sub.notebook is None:
        sub.notebook, problem = match_by_content(path, grade_ids, notebooks)
        if sub.notebook is None:
            sub.problem = problem
        elif not sub.name:
            sub.problem = "renamed, and no student name: put it in a folder named after the student"
        else:
            sub.notes.append(f"renamed: recognised as {sub.notebook} from its cells")
    sub.assignment = notebooks.get(sub.notebook) if sub.notebook else None
    return sub


def find_submissions(folder: Path, course: Path, notebooks: dict[str, str], roster: Roster) -> list[Submission]:
    """Every notebook under ``folder``: the one that counts for each student and
    assignment (the newest file), and every other with its reason."""
    grade_ids = _assignment_ids(course, notebooks)
    subs = [parse(p.relative_to(folder), p, notebooks, grade_ids) for p in sorted(folder.rglob("*.ipynb"))
            if ".ipynb_checkpoints" not in p.parts]
    if roster:
        for s in subs:
            if not s.problem:
                s.student, s.problem = roster.find(s.name, s.lms_id)
    else:
        ids = ids_without_roster([s.name for s in subs if not s.problem])
        for s in subs:
            if not s.problem:
                s.student, s.problem = ids[s.name]
    newest: dict[tuple[str, str], Submission] = {}
    for s in subs:
        if s.problem:
            continue
        key = (s.student, s.notebook)
        old = newest.get(key)
        if old is None or (s.path.stat().st_mtime, s.rel) > (old.path.stat().st_mtime, old.rel):
            if old is not None:
                old.problem = f"older than {s.rel} (the newest file counts)"
            newest[key] = s
        else:
            s.problem = f"older than {old.rel} (the newest file counts)"
    return subs


def _load_manifest(course: Path) -> dict:
    path = course / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def import_into(course: Path, folder: Path, subs: list[Submission]) -> list[str]:
    """Copy the gradable files of ``folder`` into ``submitted/``, with the file's time as
    the submission time, and take back what an earlier import of this folder brought in
    and the folder no longer has. Returns one line per change."""
    manifest = _load_manifest(course)
    lines, keep = [], set()
    for s in subs:
        if s.problem:
            continue
        nb, problem = read_notebook(s.path)
        if nb is None:
            s.problem = problem
            continue
        key = f"{s.student}/{s.assignment}"
        keep.add(key)
        dest = course / "submitted" / s.student / s.assignment / f"{s.notebook}.ipynb"
        manifest[key] = {"inbox": str(folder), "file": s.rel}
        if dest.exists() and dest.read_bytes() == s.path.read_bytes():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(s.path, dest)
        stamp = datetime.fromtimestamp(s.path.stat().st_mtime, tz=timezone.utc)
        (dest.parent / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
        lines.append(f"copied {s.rel} -> submitted/{key}")
    for key, entry in list(manifest.items()):
        if entry["inbox"] == str(folder) and key not in keep:
            student, assignment = key.split("/")
            for top in ("submitted", "autograded", "feedback"):
                shutil.rmtree(course / top / student / assignment, ignore_errors=True)
            forget_submission(course, assignment, student)
            del manifest[key]
            lines.append(f"removed submitted/{key}: {entry['file']} is no longer gradable in {folder}")
    (course / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return lines


def forget_submission(course: Path, assignment: str, student: str) -> None:
    """Take a submission out of the gradebook (its file was taken back)."""
    if not (course / "gradebook.db").exists():
        return
    from nbgrader.api import Gradebook, MissingEntry
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "seglab") as gb:
        try:
            gb.remove_submission(assignment, student)
        except MissingEntry:
            pass


