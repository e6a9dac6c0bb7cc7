"""Writing output files without losing anything a user made.

- A file is written under a fresh temporary name in its own folder and renamed into
  place: a crash leaves the old file whole, and a symbolic link already at the target is
  replaced, never followed (the file it points to, outside the folder, stays untouched).
- A command refuses to replace a file it did not create in this same run unless the user
  says so (``--overwrite``); the error is one line naming the file.
- A run folder is recognised by any file a training run writes, not by one.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from .errors import SeglabError

RUN_FILES = ("last.pt", "best.pt", "config.json", "history.json", "history.csv")


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: changing it briefly while other threads create files is unsafe


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary file next to ``path`` to write; when the block ends without an
    error it is flushed to disk and renamed over ``path``, else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        raise SeglabError(f"{path} is a folder; choose another output name")
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # O_EXCL: no link followed
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # the permissions an ordinary new file gets
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)  # replaces a link at path itself, not what it points to
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def refuse_existing(paths: Iterable[str | os.PathLike], overwrite: bool, option: str = "--overwrite") -> None:
    """Raise :class:`SeglabError` naming the first of ``paths`` that already exists (a file,
    a folder, or a symbolic link, even a broken one), unless ``overwrite``. A folder is
    refused either way: replacing it would delete everything in it."""
    for path in map(Path, paths):
        if path.is_dir() and not path.is_symlink():
            raise SeglabError(f"{path} is a folder where an output file goes; move it or choose another output")
        if not overwrite and os.path.lexists(path):
            kind = "a symbolic link" if path.is_symlink() else "a file"
            raise SeglabError(f"{path} already exists ({kind}); pass {option} to replace it, "
                              f"or choose another output")


def run_files(folder: str | os.PathLike) -> list[str]:
    """The names of the files of a training run present in ``folder``."""
    return [name for name in RUN_FILES if os.path.lexists(Path(folder) / name)]


def check_run_folder(out: str | os.PathLike, resume: str | os.PathLike | None, overwrite: bool) -> None:
    """Refuse to train into a folder that holds another run unless ``overwrite``.

    A run continued (``resume``) in its own folder rewrites its own files; resumed into
    any other folder that holds a run, it would replace that run. With ``overwrite`` the
    old run's files are removed first, so none of them is mistaken for the new run's."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SeglabError(f"--out {out} is a file, not a folder: choose another path")
    found = run_files(out)
    if not found:
        return
    if resume is not None and Path(resume).parent.resolve() == out.resolve():
        return
    if overwrite:
        for name in found:
            (out / name).unlink(missing_ok=True)  # torchrun: every rank runs this check
        return
    files = ", ".join(found)
    if resume is not None:
        raise SeglabError(f"--out {out} already holds another run ({files}); continuing {resume} there "
                          f"would replace it: choose another --out, leave --out out to continue in "
                          f"{Path(resume).parent}, or pass --overwrite to replace that run")
    resume_hint = f"continue it with --resume {out / 'last.pt'}, " if "last.pt" in found else ""
    raise SeglabError(f"--out {out} already holds a run ({files}): {resume_hint}choose another --out, "
                      f"or pass --overwrite to replace it")
