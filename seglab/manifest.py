"""The committed list of published files of a data set, and checking a folder against it.

Each data set has a manifest (``seglab/manifests/<name>.json``) with the path, size and
SHA-256 of every published file. A file in a data folder is either the published file,
missing, or *changed*: present but different (a damaged copy, or a learner's edit).
"""
from __future__ import annotations

import hashlib
import json
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

from .datasets import DatasetSpec, get_spec
from .errors import DataError, DownloadError

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ManifestEntry:
    """One published file: path relative to the data root (posix), size in bytes, SHA-256 (hex)."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Problem:
    """Why a file in the data folder is not the published one. ``missing`` is False when
    something else stands under the file's name (wrong size, wrong checksum, a folder)."""

    entry: ManifestEntry
    text: str
    missing: bool


def is_safe_relpath(path: str) -> bool:
    """A relative path that stays inside the folder it is joined to, on any OS."""
    if not path or path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path) or "\x00" in path:
        return False
    parts = re.split(r"[\\/]+", path)
    return all(part not in ("", ".", "..") for part in parts)


def load_manifest(dataset: str | DatasetSpec) -> list[ManifestEntry]:
    """The committed list of files of ``dataset``, checked for sanity.

    A manifest path is joined to the user's data folder, so each one is checked to stay
    inside it: a damaged manifest must not be able to write anywhere else.
    """
    spec = get_spec(dataset)
    if spec.source is None:
        raise DownloadError(f"{spec.name} has no download source; copy its files into the data "
                            f"folder yourself, or use seglab.download.import_local.")
    name = spec.source.manifest
    fix = "Reinstall seglab (or `git checkout seglab/manifests`) to restore it."
    try:
        text = resources.files(__package__).joinpath("manifests").joinpath(name).read_text(encoding="utf-8")
        blob = json.loads(text)
        entries = [ManifestEntry(str(i["path"]), int(i["size"]), str(i["sha256"]).lower()) for i in blob["files"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"the manifest seglab/manifests/{name} of {spec.name} is missing or damaged "
                        f"({type(err).__name__}: {err}). {fix}") from None
    for entry in entries:
        if not is_safe_relpath(entry.path) or entry.size < 0 or not _SHA256_RE.match(entry.sha256):
            raise DataError(f"the manifest seglab/manifests/{name} has an invalid entry {entry}. {fix}")
    if not entries or blob.get("dataset", spec.name) != spec.name:
        raise DataError(f"the manifest seglab/manifests/{name} does not list the files of {spec.name}. {fix}")
    return entries


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, entry: ManifestEntry) -> Problem | None:
    """Why ``path`` is not the published file ``entry``, or None when it is (size first:
    cheap, and it catches truncated files without hashing them)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return Problem(entry, f"{path}: missing", True)
    except OSError as err:
        return Problem(entry, f"{path}: cannot be read ({err.strerror or err})", False)
    if not stat.S_ISREG(st.st_mode):
        return Problem(entry, f"{path}: not a regular file", False)
    if st.st_size != entry.size:
        return Problem(entry, f"{path}: wrong size ({st.st_size} bytes, expected {entry.size})", False)
    try:
        digest = sha256_file(path)
    except OSError as err:
        return Problem(entry, f"{path}: cannot be read ({err.strerror or err})", False)
    if digest != entry.sha256:
        return Problem(entry, f"{path}: wrong checksum (SHA-256 {digest[:12]}..., expected "
                              f"{entry.sha256[:12]}...)", False)
    return None


def find_problems(root: Path, entries: Sequence[ManifestEntry], workers: int = 4) -> list[Problem]:
    """Check every entry under ``root``; hashing runs in threads (hashlib releases the GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = pool.map(lambda e: check_file(root / e.path, e), entries)
        return [p for p in found if p is not None]
