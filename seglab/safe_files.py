"""Writing data files so that only a verified copy ever has a published file's name.

Every file seglab puts into a data folder (downloaded or imported) streams into a
temporary file in its target folder, is checked against the manifest on the way (size
and SHA-256), and is renamed into place only when both match: ``os.replace`` within one
folder is atomic, so an interrupted run never leaves a wrong file under a real name.
Nothing is written through a symbolic link found inside the data folder.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Sequence

from .errors import DownloadError
from .manifest import ManifestEntry

# Temporary files of a killed run: pooch's and ours (tempfile's "tmp" + 8 characters),
# and those of older seglab versions (<name>.part-<pid>-<hex>).
LEFTOVER_RE = re.compile(r"^tmp[a-z0-9_]{8}$|^.+\.part-\d+-[0-9a-f]+$")


class Failed(Exception):
    """One file could not be fetched or imported: why (for the user), what kind of problem
    (to choose the fix) and whether trying again may help."""

    def __init__(self, reason: str, kind: str, transient: bool = False, code: int | None = None):
        super().__init__(reason)
        self.reason, self.kind, self.transient, self.code = reason, kind, transient, code


def local_failure(err: OSError, path: Path) -> Failed:
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return Failed(f"disk full while writing {path} ({err.strerror or err})", "disk")
    return Failed(f"cannot write {path} ({err.strerror or err})", "local")


def open_output(path: str | os.PathLike) -> BinaryIO:
    """Open a temporary file for writing: the one place data bytes reach the disk."""
    return open(path, "wb")


def copy_checked(chunks: Iterable[bytes], path: str | os.PathLike, entry: ManifestEntry,
                 on_bytes: Callable[[int], None] | None = None,
                 abort: threading.Event | None = None) -> None:
    """Write ``chunks`` to ``path`` and check them against ``entry`` on the way: never more
    than ``entry.size`` bytes (an archive bomb or a wrong file stops early), then the size
    and the SHA-256. Raises :class:`Failed`; ``path`` is then garbage for the caller."""
    digest, got = hashlib.sha256(), 0
    try:
        with open_output(path) as out:
            for chunk in chunks:
                if abort is not None and abort.is_set():
                    raise Failed("stopped before it finished", "stopped")
                got += len(chunk)
                if got > entry.size:
                    raise Failed(f"more than the expected {entry.size} bytes: not the published file",
                                 "mismatch")
                digest.update(chunk)
                out.write(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
    except OSError as err:  # chunk sources raise Failed, so an OSError here is the write side
        raise local_failure(err, Path(path)) from None
    if got < entry.size:
        raise Failed(f"{got} bytes where the published file has {entry.size}: not the published file",
                     "mismatch")
    if digest.hexdigest() != entry.sha256:
        raise Failed(f"wrong checksum: SHA-256 {digest.hexdigest()[:12]}..., the manifest expects "
                     f"{entry.sha256[:12]}...: not the published file", "mismatch")


def new_temporary(folder: Path) -> Path:
    """An empty new file in ``folder`` (so the final rename stays in one file system)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix="tmp")
    os.close(fd)
    return Path(name)


def write_verified(chunks: Iterable[bytes], entry: ManifestEntry, dest: Path,
                   on_bytes: Callable[[int], None] | None = None) -> None:
    """Put the verified bytes of ``chunks`` at ``dest``, or leave ``dest`` untouched."""
    try:
        part = new_temporary(dest.parent)
    except OSError as err:
        raise local_failure(err, dest) from None
    try:
        copy_checked(chunks, part, entry, on_bytes)
        try:
            os.replace(part, dest)
        except OSError as err:
            raise local_failure(err, dest) from None
    except BaseException:
        remove_quietly(part)
        raise


def remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def remove_leftovers(root: Path, entries: Sequence[ManifestEntry]) -> None:
    """Delete temporary files that a killed run left next to the data files. Only called
    while holding the folder lock, so no live writer can own them."""
    for folder in {(root / e.path).parent for e in entries}:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if LEFTOVER_RE.match(name) and (folder / name).is_file() and not (folder / name).is_symlink():
                remove_quietly(folder / name)


def refuse_links(root: Path, entries: Iterable[ManifestEntry]) -> None:
    """Raise :class:`DownloadError` if writing ``entries`` would pass through a symbolic
    link inside ``root`` (a linked subfolder, or a link under a file's name): a write
    there would land outside the data folder."""
    seen: set[Path] = set()
    for entry in entries:
        path = root
        for part in entry.path.split("/"):
            path = path / part
            if path in seen:
                continue
            seen.add(path)
            if path.is_symlink():
                raise DownloadError(
                    f"{path} is a symbolic link (to {os.readlink(path)}); seglab does not write "
                    f"through links, so that nothing lands outside {root}. Remove the link (or "
                    f"replace it with a real folder or file), or choose another folder with --root.")
