"""Downloads and imports: every failure leaves only verified files under their final names.

A local HTTP server on 127.0.0.1 serves a tiny generated data set and can misbehave on
demand (404, 500, a connection dropped half-way, wrong bytes); a monkeypatched
``load_manifest`` makes seglab expect exactly those files. No test touches the network.
"""
from __future__ import annotations

import errno
import hashlib
import importlib
import importlib.resources
import io
import os
import random
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from seglab import safe_files
from seglab.errors import DataError, DownloadError

dl = importlib.import_module("seglab.download")  # the module (seglab.download may be a function)

_rng = random.Random(0)
FILES: dict[str, bytes] = {
    "train/a.png": _rng.randbytes(3_000),
    "train/b.png": _rng.randbytes(5_000),
    "trainannot/a.png": _rng.randbytes(1_000),
    "trainannot/b.png": _rng.randbytes(1_200),
    "train.txt": b"/SegNet/CamVid/train/a.png /SegNet/CamVid/trainannot/a.png\n",
    "big.bin": _rng.randbytes(600_000),  # several read chunks: drops happen mid-file
}
MANIFEST = [dl.ManifestEntry(p, len(b), hashlib.sha256(b).hexdigest()) for p, b in sorted(FILES.items())]


# --------------------------------------------------------------------------- test server

class DataServer:
    """Serves FILES under /data/. ``modes[path]`` makes one file misbehave: '404', '500',
    '500-once' (fail once, then serve), 'drop' (announce the full length, send half, hang
    up) or 'wrong' (right length, wrong bytes). ``requests`` records every path asked for."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.modes: dict[str, str] = {}
        self.requests: list[str] = []
        self.delay = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                rel = urllib.parse.unquote(self.path).removeprefix("/data/")
                owner.requests.append(rel)
                if owner.delay:
                    time.sleep(owner.delay)
                mode = owner.modes.get(rel, "ok")
                if mode == "500-once":
                    owner.modes[rel] = "ok"
                    mode = "500"
                if rel not in owner.files or mode == "404":
                    return self.send_error(404)
                if mode == "500":
                    return self.send_error(500)
                body = owner.files[rel]
                if mode == "wrong":
                    body = bytes(b ^ 0xFF for b in body)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "drop":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def count(self, path: str) -> int:
        return self.requests.count(path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_manifest(monkeypatch):
    """Make seglab expect FILES; make retries and lock polling fast; keep the network out."""
    monkeypatch.setattr(dl, "load_manifest", lambda dataset: list(MANIFEST))
    monkeypatch.setattr(dl, "RETRY_BACKOFF_S", 0.01)
    monkeypatch.setattr(dl, "LOCK_POLL_S", 0.02)
    monkeypatch.delenv("SEGLAB_CAMVID_URL", raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    return MANIFEST


@pytest.fixture
def server(fake_manifest):
    srv = DataServer(FILES)
    yield srv
    srv.close()


def fetch(server: DataServer, root: Path, **kw) -> Path:
    kw = {"base_url": server.url, "progress": False, "workers": 2, "timeout": 10, **kw}
    return dl.download("camvid", root=root, **kw)


def tree(folder: Path) -> set[str]:
    """Every file under ``folder`` (hidden ones too), relative, posix, except the folder's
    lock file (an OS lock via filelock: the file stays, the lock ends with its process)."""
    if not folder.exists():
        return set()
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if not p.is_dir() and p.name != dl.LOCK_NAME}


def assert_complete(root: Path):
    assert dl.verify("camvid", root) == []
    assert tree(root) == set(FILES)  # no temporary files left behind
    for path, body in FILES.items():
        assert (root / path).read_bytes() == body


# --------------------------------------------------------------------------- download

def test_download_fetches_every_file_and_verify_is_empty(server, tmp_path):
    root = tmp_path / "camvid"
    assert fetch(server, root) == root.resolve()
    assert_complete(root)
    assert sorted(server.requests) == sorted(FILES)


def test_second_run_fetches_nothing_and_takes_no_lock(server, tmp_path, monkeypatch):
    fetch(server, tmp_path / "camvid")
    server.requests.clear()
    monkeypatch.setattr(dl, "folder_lock", None)  # a complete folder is only read
    fetch(server, tmp_path / "camvid")
    assert server.requests == []
    assert_complete(tmp_path / "camvid")


def test_second_run_fetches_only_missing_or_damaged_files(server, tmp_path):
    root = tmp_path / "camvid"
    fetch(server, root)
    (root / "train/a.png").unlink()
    (root / "train/b.png").write_bytes(FILES["train/b.png"][:-10])
    (root / "train.txt").write_bytes(FILES["train.txt"].upper())  # same size, other bytes
    server.requests.clear()
    fetch(server, root, overwrite=True)  # changed files are replaced only when asked
    assert sorted(server.requests) == ["train.txt", "train/a.png", "train/b.png"]
    assert_complete(root)


def test_verify_names_missing_wrong_size_and_wrong_checksum_files(server, tmp_path):
    root = tmp_path / "camvid"
    fetch(server, root)
    (root / "train/a.png").unlink()
    (root / "train/b.png").write_bytes(b"short")
    (root / "train.txt").write_bytes(FILES["train.txt"].upper())
    problems = dl.verify("camvid", root)
    assert len(problems) == 3
    text = "\n".join(problems)
    assert f"{root / 'train/a.png'}: missing" in text
    assert f"{root / 'train/b.png'}: wrong size" in text
    assert f"{root / 'train.txt'}: wrong checksum" in text


def test_dropped_connection_is_retried_then_reported_and_leaves_no_file(server, tmp_path):
    root = tmp_path / "camvid"
    server.modes["big.bin"] = "drop"
    with pytest.raises(DownloadError) as info:
        fetch(server, root, retries=1)
    message = str(info.value)
    assert server.count("big.bin") == 2  # a dropped connection is worth one more try
    assert f"{server.url}big.bin" in message and "1 of 6" in message
    assert "re-run the same command: files already verified are kept" in message
    assert tree(root) == set(FILES) - {"big.bin"}  # no partial file, no .part file, no lock

    server.modes.clear()
    server.requests.clear()
    fetch(server, root)
    assert server.requests == ["big.bin"]
    assert_complete(root)


def test_wrong_checksum_is_rejected_not_retried_and_file_absent(server, tmp_path):
    root = tmp_path / "camvid"
    server.modes["train/b.png"] = "wrong"
    with pytest.raises(DownloadError, match="checksum") as info:
        fetch(server, root, retries=2)
    assert f"{server.url}train/b.png" in str(info.value)
    assert server.count("train/b.png") == 1
    assert not (root / "train/b.png").exists()
    assert tree(root) == set(FILES) - {"train/b.png"}


@pytest.mark.parametrize("code, tries", [("404", 1), ("500", 3)])
def test_http_errors_name_the_url_and_only_server_errors_are_retried(server, tmp_path, code, tries):
    root = tmp_path / "camvid"
    server.modes["trainannot/a.png"] = code
    with pytest.raises(DownloadError) as info:
        fetch(server, root, retries=2)
    message = str(info.value)
    assert f"{server.url}trainannot/a.png: HTTP {code}" in message
    assert server.count("trainannot/a.png") == tries
    if code == "404":
        assert "check the base URL" in message
    assert tree(root) == set(FILES) - {"trainannot/a.png"}


def test_transient_server_error_is_retried_and_succeeds(server, tmp_path):
    server.modes["big.bin"] = "500-once"
    fetch(server, tmp_path / "camvid", retries=1)
    assert server.count("big.bin") == 2
    assert_complete(tmp_path / "camvid")


def test_unreachable_server_gives_network_advice(fake_manifest, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as info:
        dl.download("camvid", tmp_path / "camvid", base_url=f"http://127.0.0.1:{port}/",
                    progress=False, retries=0, timeout=5)
    message = str(info.value)
    assert "6 of 6" in message and "cannot connect" in message
    assert "$SEGLAB_CAMVID_URL" in message and "--from PATH" in message
    assert tree(tmp_path / "camvid") == set()


def test_download_stops_early_when_the_first_files_all_fail(server, tmp_path, monkeypatch):
    absent = [dl.ManifestEntry(f"nowhere/{i}.png", 10, "0" * 64) for i in range(40)]
    monkeypatch.setattr(dl, "load_manifest", lambda dataset: absent)
    with pytest.raises(DownloadError) as info:
        fetch(server, tmp_path / "camvid", workers=2)
    assert len(server.requests) <= 10  # not 40 files, each retried
    assert "40 of 40" in str(info.value) and "were not tried" in str(info.value)


class FullDisk:
    """A file whose writes store half the data and then fail as a full disk does."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_full_disk_gives_clear_error_and_leaves_no_partial_file(server, tmp_path, monkeypatch):
    root = tmp_path / "camvid"
    real = safe_files.open_output
    monkeypatch.setattr(safe_files, "open_output", lambda path: FullDisk(real(path)))
    with pytest.raises(DownloadError) as info:
        fetch(server, root, workers=1, retries=2)
    message = str(info.value)
    assert "disk" in message and "full" in message and "Free some space" in message
    assert "re-run the same command: files already verified are kept" in message
    assert len(server.requests) == 1  # not retried, and the other files were not tried
    assert tree(root) == set()

    monkeypatch.setattr(safe_files, "open_output", real)
    fetch(server, root)
    assert_complete(root)


def test_leftover_temporary_files_of_a_killed_run_are_removed(server, tmp_path):
    root = tmp_path / "camvid"
    (root / "train").mkdir(parents=True)
    (root / "train/a.png.part-999999-0badcafe").write_bytes(b"half a file")  # an older seglab's
    with tempfile.NamedTemporaryFile(dir=root / "train", delete=False) as f:  # pooch's
        f.write(b"half a file")
    (root / "train/notes.txt").write_text("the user's own file")
    fetch(server, root)
    assert tree(root) == set(FILES) | {"train/notes.txt"}


def test_base_url_comes_from_environment_variable_unless_given(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGLAB_CAMVID_URL", server.url.rstrip("/"))  # a missing '/' is fine
    dl.download("camvid", root=tmp_path / "env", progress=True)
    assert_complete(tmp_path / "env")
    assert "downloading 6 of 6 camvid files" in capsys.readouterr().err

    monkeypatch.setenv("SEGLAB_CAMVID_URL", "http://127.0.0.1:9/nothing-here/")
    fetch(server, tmp_path / "arg")  # base_url argument wins over the variable
    assert_complete(tmp_path / "arg")


def test_base_url_may_be_a_local_folder(fake_manifest, tmp_path):
    mirror = tmp_path / "mirror"
    for path, body in FILES.items():
        (mirror / path).parent.mkdir(parents=True, exist_ok=True)
        (mirror / path).write_bytes(body)
    dl.download("camvid", tmp_path / "camvid", base_url=str(mirror), progress=False)
    assert_complete(tmp_path / "camvid")


# --------------------------------------------------------------------------- concurrency

def test_two_downloads_into_one_folder_both_end_complete(server, tmp_path):
    root = tmp_path / "camvid"
    server.delay = 0.02
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run():
        start.wait()
        try:
            fetch(server, root)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert_complete(root)
    assert Counter(server.requests) == Counter(list(FILES))  # the second run waited, then fetched nothing


HOLD_LOCK = """
import sys
from pathlib import Path
from seglab.download import folder_lock
with folder_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()  # hold the lock until told (or killed)
"""


def hold_lock(root: Path) -> subprocess.Popen:
    """Another process, holding the folder lock of ``root`` once this returns."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(root)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def cleanup():
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def test_lock_of_a_live_process_makes_download_wait_then_fail_clearly(server, tmp_path, cleanup):
    root = tmp_path / "camvid"
    cleanup.append(hold_lock(root))
    with pytest.raises(DownloadError) as info:
        fetch(server, root, lock_timeout=0.3)
    message = str(info.value)
    assert str(root / dl.LOCK_NAME) in message and "another seglab download" in message
    assert "re-run the same command" in message
    assert server.requests == []


def test_waiting_download_goes_on_when_the_other_one_finishes(server, tmp_path, cleanup):
    root = tmp_path / "camvid"
    other = hold_lock(root)
    cleanup.append(other)
    threading.Timer(0.3, lambda: other.stdin.close()).start()
    fetch(server, root, lock_timeout=20)
    assert_complete(root)


def test_lock_of_a_killed_process_does_not_block(server, tmp_path):
    root = tmp_path / "camvid"
    dead = hold_lock(root)
    dead.kill()
    dead.wait()
    fetch(server, root, lock_timeout=5)
    assert_complete(root)


# --------------------------------------------------------------------------- import_local

def _write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for path, body in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(body)
    return folder


def _zip(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, body in files.items():
            zf.writestr(prefix + name, body)
    return path


def _tar_add(tf: tarfile.TarFile, name: str, body: bytes = b"", type_=tarfile.REGTYPE, linkname: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = type_, linkname, len(body)
    tf.addfile(info, io.BytesIO(body) if type_ == tarfile.REGTYPE else None)


def _targz(path: Path, files: dict[str, bytes], prefix: str = "", extra=()) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        _tar_add(tf, prefix.rstrip("/") or ".", type_=tarfile.DIRTYPE)
        for name, body in files.items():
            _tar_add(tf, prefix + name, body)
        for args in extra:
            _tar_add(tf, *args)
    return path


def test_import_local_from_a_folder_with_the_files_in_a_subfolder(fake_manifest, tmp_path):
    source = _write_folder(tmp_path / "copy" / "CamVid", FILES).parent
    (source / "CamVid" / "README.md").write_text("not a data file")
    root = dl.import_local("camvid", source, tmp_path / "camvid", progress=False)
    assert root == (tmp_path / "camvid").resolve()
    assert_complete(root)


def test_import_local_from_a_zip_with_files_at_top_level(fake_manifest, tmp_path):
    archive = _zip(tmp_path / "camvid.zip", FILES)
    assert_complete(dl.import_local("camvid", archive, tmp_path / "camvid", progress=False))


def test_import_local_from_a_tar_gz_with_a_top_level_subfolder(fake_manifest, tmp_path):
    archive = _targz(tmp_path / "camvid.tar.gz", {**FILES, "README.md": b"x"}, prefix="CamVid/")
    assert_complete(dl.import_local("camvid", archive, tmp_path / "camvid", progress=False))


def test_import_local_keeps_good_files_and_names_missing_and_corrupt_ones(fake_manifest, tmp_path):
    files = {**FILES, "train/b.png": b"corrupt"}
    del files["big.bin"]
    source = _write_folder(tmp_path / "copy", files)
    root = tmp_path / "camvid"
    with pytest.raises(DownloadError) as info:
        dl.import_local("camvid", source, root, progress=False)
    message = str(info.value)
    assert "2 of 6" in message and "big.bin: not in" in message and "train/b.png" in message
    assert f"seglab download camvid --root {root.resolve()}" in message
    assert tree(root) == set(FILES) - {"big.bin", "train/b.png"}


def test_import_local_rejects_what_is_neither_folder_nor_archive(fake_manifest, tmp_path):
    with pytest.raises(DownloadError, match="does not exist"):
        dl.import_local("camvid", tmp_path / "nothing.zip", tmp_path / "camvid", progress=False)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DownloadError, match="not a folder or a .zip"):
        dl.import_local("camvid", tmp_path / "notes.txt", tmp_path / "camvid", progress=False)
    with pytest.raises(DownloadError, match="found none of the camvid files"):
        dl.import_local("camvid", _zip(tmp_path / "other.zip", {"x/y.png": b"1"}), tmp_path / "camvid",
                        progress=False)
    assert not (tmp_path / "camvid").exists()


def _evil_tar(kind: str, tmp_path: Path) -> tuple[Path, str]:
    extra = {
        "dotdot": ("CamVid/../../evil", b"owned"),
        "absolute": (str(tmp_path / "abs-evil"), b"owned"),
        "symlink": ("CamVid/train/c.png", b"", tarfile.SYMTYPE, "/etc/passwd"),
        "hardlink": ("CamVid/train/c.png", b"", tarfile.LNKTYPE, "/etc/passwd"),
        "device": ("CamVid/train/c.png", b"", tarfile.CHRTYPE),
    }[kind]
    return _targz(tmp_path / "in" / "camvid.tgz", FILES, "CamVid/", extra=[extra]), extra[0]


def _evil_zip(kind: str, tmp_path: Path) -> tuple[Path, str]:
    path = _zip(tmp_path / "in" / "camvid.zip", FILES, "CamVid/")
    with zipfile.ZipFile(path, "a") as zf:
        if kind == "symlink":
            info = zipfile.ZipInfo("CamVid/train/c.png")
            info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
            return path, info.filename
        name = {"dotdot": "CamVid/../../evil", "absolute": str(tmp_path / "abs-evil")}[kind]
        zf.writestr(zipfile.ZipInfo(name), b"owned")
        return path, name


@pytest.mark.parametrize("make, kind", [
    (_evil_tar, "dotdot"), (_evil_tar, "absolute"), (_evil_tar, "symlink"), (_evil_tar, "hardlink"),
    (_evil_tar, "device"), (_evil_zip, "dotdot"), (_evil_zip, "absolute"), (_evil_zip, "symlink"),
])
def test_unsafe_archive_is_rejected_and_nothing_is_written(fake_manifest, tmp_path, make, kind):
    (tmp_path / "in").mkdir()
    archive, bad = make(kind, tmp_path)
    before, parent_before = tree(tmp_path), sorted(os.listdir(tmp_path.parent))
    root = tmp_path / "in" / "out" / "camvid"
    with pytest.raises(DownloadError) as info:
        dl.import_local("camvid", archive, root, progress=False)
    message = str(info.value)
    assert str(archive) in message and repr(bad) in message and "nothing was written" in message
    assert tree(tmp_path) == before and sorted(os.listdir(tmp_path.parent)) == parent_before
    assert not root.exists() and not (tmp_path / "abs-evil").exists()


# --------------------------------------------------------------------------- committed manifests

def test_committed_manifests_list_every_published_file():
    camvid = dl.load_manifest("camvid")
    folders = Counter(e.path.split("/")[0] for e in camvid if "/" in e.path)
    assert folders == {"train": 367, "trainannot": 367, "val": 101, "valannot": 101,
                       "test": 233, "testannot": 233}
    assert {e.path for e in camvid if "/" not in e.path} == {"train.txt", "val.txt", "test.txt"}
    isbi = {e.path for e in dl.load_manifest("isbi-em")}
    assert isbi == {f"{d}/{i}.png" for d in ("image", "label") for i in range(30)}
    for entry in camvid:
        assert entry.size > 0 and len(entry.sha256) == 64


@pytest.mark.realdata
@pytest.mark.parametrize("name, fixture", [("camvid", "real_camvid"), ("isbi-em", "real_isbi")])
def test_committed_manifest_verifies_against_the_real_data(name, fixture, request):
    root = request.getfixturevalue(fixture)
    assert dl.verify(name, root) == []
    # complete, so download() needs no network and writes nothing (the folder may be read-only)
    assert dl.download(name, root, base_url="http://127.0.0.1:9/", progress=False) == root.resolve()


def test_damaged_manifest_is_a_clear_data_error(monkeypatch):
    monkeypatch.setattr(importlib.resources, "files", lambda package: Path("/nonexistent-seglab"))
    with pytest.raises(DataError, match="manifests/camvid.json .* missing or damaged"):
        dl.load_manifest("camvid")
