"""Who the students are: ``roster.csv`` (id, name, email, lms_id), and turning the name
found in a file or folder name into a gradebook id.

With a roster, a name is matched by LMS id first, then by id, name or e-mail ignoring
case, then ignoring accents and the order of first and last name (Canvas writes
"martinchloe"), but only where exactly one student fits. Without a roster, the id is the
name in ASCII letters, digits and ``._@-``; names that differ only by case are one student,
names that differ by accents are reported (they may be two people).
"""
from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("id", "name", "email", "lms_id")


@dataclass(frozen=True)
class Student:
    id: str
    name: str = ""
    email: str = ""
    lms_id: str = ""


def ascii_id(text: str) -> str:
    """A student id nbgrader accepts: 'Chloé Martin' -> 'Chloe_Martin'."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", text).strip("_.-")


def exact_key(text: str) -> str:
    """Case and spacing ignored, accents kept ('Chloé' and 'Chloe' differ)."""
    return re.sub(r"[\s_]+", " ", unicodedata.normalize("NFC", text)).strip().casefold()


def loose_key(text: str) -> str:
    """Case, accents, spaces and punctuation ignored: 'Chloé Martin' -> 'chloemartin'."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", text.lower())


def read_roster(path: Path) -> list[Student]:
    """The roster's students; a missing file is an empty roster."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("id", "name") if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{path}: needs the columns {', '.join(COLUMNS)} (missing: {', '.join(missing)})")
        students = [Student(**{c: (row.get(c) or "").strip() for c in COLUMNS}) for row in reader if row.get("id")]
    bad = [s.id for s in students if s.id != ascii_id(s.id)]
    if bad:
        raise SystemExit(f"{path}: ids must be ASCII letters, digits and ._@- (fix {', '.join(bad)})")
    return students


class Roster:
    def __init__(self, students: list[Student]):
        self.students = students

    def __bool__(self) -> bool:
        return bool(self.students)

    def find(self, name: str, lms_id: str = "") -> tuple[str | None, str]:
        """(student id, '') or (None, why not)."""
        if lms_id:
            hits = [s for s in self.students if s.lms_id == lms_id]
            if len(hits) == 1:
                return hits[0].id, ""
        key = exact_key(name)
        hits = {s.id for s in self.students
                if key in (exact_key(s.id), exact_key(s.name), exact_key(s.email), exact_key(s.email.split("@")[0]))}
        if len(hits) == 1:
            return hits.pop(), ""
        loose = loose_key(name)
        hits = set()
        for s in self.students:
            words = s.name.split()
            forms = {loose_key(s.id), loose_key(s.name)}
            if len(words) > 1:      # Canvas: last name first, all in one word
                forms.add(loose_key(words[-1] + "".join(words[:-1])))
            if loose in forms:
                hits.add(s.id)
        if len(hits) == 1:
            return hits.pop(), ""
        if hits:
            return None, f"'{name}' fits several students of the roster ({', '.join(sorted(hits))}): rename the file"
        return None, f"'{name}' is not on the roster: add them to roster.csv, or rename the file"


def ids_without_roster(names: list[str]) -> dict[str, tuple[str | None, str]]:
    """name -> (id, '') or (None, why not), for a class without a roster."""
    groups: dict[str, set[str]] = {}
    for name in names:
        groups.setdefault(ascii_id(name).casefold(), set()).add(name)
    result = {}
    for key, group in groups.items():
        spellings = {exact_key(n) for n in group}
        first = ascii_id(sorted(group)[0])
        for name in group:
            if not key:
                result[name] = (None, "no student name: put the file in a folder named after the student")
            elif len(spellings) > 1:
                others = " and ".join(repr(n) for n in sorted(group))
                result[name] = (None, f"{others} would both become '{first}': list the students in roster.csv")
            else:
                result[name] = (first, "")
    return result
