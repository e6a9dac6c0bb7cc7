"""Downloads and imports under hostile conditions: servers that stall, drip or answer with
the wrong thing, Ctrl-C in the middle of a read, damaged archives, and a data folder that
holds the learner's own edits or a symbolic link.

Every wait is bounded by short limits given to ``download`` (``Limits``); the servers run
on 127.0.0.1 in threads. No test touches the network.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from seglab.errors import DownloadError
from seglab.manifest import load_manifest

dl = importlib.import_module("seglab.download")
REPO = Path(__file__).resolve().parents[1]

FILES: dict[str, bytes] = {
    "train/a.png": bytes(range(256)) * 20,
    "train.txt": b"/SegNet/CamVid/train/a.png /SegNet/CamVid/trainannot/a.png\n",
}
MANIFEST = [dl.ManifestEntry(p, len(b), hashlib.sha256(b).hexdigest()) for p, b in sorted(FILES.items())]
QUICK = dl.Limits(connect_s=2, stall_s=0.5, min_rate=1e9, base_s=1.0)  # short waits for tests
CAMVID_SIZES = {e.path: e.size for e in load_manifest("camvid")}  # the real files' lengths
PAGE = b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n"


class BadServer:
    """Serves FILES under /data/, or misbehaves for every path as ``mode`` says:
    'ok', 'silent' (reads the request, never answers), 'stall' (headers and a few bytes,
    then nothing), 'drip' (one byte every 0.1 s), 'html' (a web page, no length, then
    close), 'html-length' (a web page with its length)."""

    def __init__(self, mode: str = "ok"):
        self.mode, self.requests, self.stop, self.asked = mode, [], threading.Event(), threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                rel = urllib.parse.unquote(self.path).removeprefix("/data/")
                owner.requests.append(rel)
                owner.asked.set()
                body = FILES.get(rel) or b"x" * CAMVID_SIZES.get(rel, 5000)
                if owner.mode == "silent":
                    owner.stop.wait(60)
                    return
                if owner.mode.startswith("html"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    if owner.mode == "html-length":
                        self.send_header("Content-Length", str(len(PAGE)))
                    self.end_headers()
                    self.wfile.write(PAGE)
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.mode == "ok":
                    self.wfile.write(body)
                    return
                try:
                    self.wfile.write(body[:10])
                    self.wfile.flush()
                    for byte in body[10:]:
                        if owner.stop.wait(0.1 if owner.mode == "drip" else 60):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                except OSError:
                    pass  # the client gave up: that is the point

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_manifest(monkeypatch):
    monkeypatch.setattr(dl, "load_manifest", lambda dataset: list(MANIFEST))
    monkeypatch.setattr(dl, "RETRY_BACKOFF_S", 0.01)
    monkeypatch.delenv("SEGLAB_CAMVID_URL", raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


@pytest.fixture
def serve(fake_manifest):
    servers: list[BadServer] = []

    def start(mode: str = "ok") -> BadServer:
        servers.append(BadServer(mode))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def fetch(server: BadServer, root: Path, **kw) -> Path:
    kw = {"base_url": server.url, "progress": False, "workers": 2, "retries": 0, "limits": QUICK, **kw}
    return dl.download("camvid", root=root, **kw)


def files_in(folder: Path) -> set[str]:
    """Every file under ``folder`` except the folder's (empty) lock file."""
    if not folder.exists():
        return set()
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if not p.is_dir() and p.name != dl.LOCK_NAME}


# --------------------------------------------------------------------------- every wait is bounded

def test_server_that_never_answers_is_reported_as_connected_but_no_data(serve, tmp_path):
    server = serve("silent")
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        fetch(server, tmp_path / "camvid")
    message = str(info.value)
    assert time.monotonic() - start < 10  # the stall timeout (0.5 s) ends it, not minutes of retries
    assert "connected to 127.0.0.1" in message and "no data came for 0.5 s" in message
    assert "cannot connect" not in message
    assert files_in(tmp_path / "camvid") == set()


def test_server_that_stops_sending_mid_file_is_given_up_after_the_stall_timeout(serve, tmp_path):
    server = serve("stall")
    with pytest.raises(DownloadError) as info:
        fetch(server, tmp_path / "camvid", limits=dl.Limits(stall_s=0.5, base_s=60))
    assert "no data came for 0.5 s after 10 of" in str(info.value)
    assert files_in(tmp_path / "camvid") == set()


def test_server_that_drips_bytes_is_stopped_by_the_deadline_of_the_file(serve, tmp_path):
    server = serve("drip")  # one byte every 0.1 s: never a stall, never the end
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        fetch(server, tmp_path / "camvid", limits=dl.Limits(stall_s=5, base_s=1.0, min_rate=1e9))
    message = str(info.value)
    assert time.monotonic() - start < 10
    assert "too slow" in message and "--min-rate" in message
    assert files_in(tmp_path / "camvid") == set()


def test_progress_bar_counts_bytes_as_they_arrive(serve, tmp_path, monkeypatch):
    server = serve("drip")
    seen: list[int] = []

    class Bar:
        def __init__(self, **kw):
            pass

        def update(self, n):
            seen.append(n)

        def close(self):
            pass

    monkeypatch.setattr("tqdm.auto.tqdm", Bar)
    with pytest.raises(DownloadError):
        fetch(server, tmp_path / "camvid", progress=True, limits=dl.Limits(stall_s=5, base_s=0.6, min_rate=1e9))
    assert sum(n for n in seen if n > 0) >= 12  # the first 10 bytes, then single drips


@pytest.mark.parametrize("mode", ["html", "html-length"])
def test_html_page_from_a_bad_mirror_is_not_blamed_on_the_network(serve, tmp_path, mode):
    server = serve(mode)
    with pytest.raises(DownloadError) as info:
        fetch(server, tmp_path / "camvid")
    message = str(info.value)
    assert "the server sent an HTML page" in message and "not the file" in message
    assert "check the base URL" in message
    assert "network" not in message and "connection" not in message.split("\n")[1]
    assert files_in(tmp_path / "camvid") == set()


CTRL_C = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job (CI) inherits SIGINT ignored; a terminal does not
from seglab.download import download
try:
    download("camvid", sys.argv[1], base_url=sys.argv[2], progress=False)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
"""


@pytest.mark.parametrize("mode", ["stall", "silent"])
def test_ctrl_c_stops_a_download_blocked_in_a_read_at_once(serve, tmp_path, mode):
    server = serve(mode)  # the real CamVid manifest: every file stalls
    root = tmp_path / "camvid"
    env = {**os.environ, "PYTHONPATH": str(REPO), "no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"}
    env.pop("SEGLAB_CAMVID_URL", None)
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C, str(root), server.url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.asked.wait(120), "the download never started"
        time.sleep(0.5)  # the workers are now blocked: waiting for headers, or for the next byte
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        _, err = proc.communicate(timeout=60)
        waited = time.monotonic() - start
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted"
    assert waited < 10  # the stall timeout is 30 s: the abort reached the blocked reads
    assert files_in(root) == set()  # temporary files removed on the way out


# --------------------------------------------------------------------------- the learner's files

def test_hand_edited_data_file_is_named_and_kept_unless_overwrite(serve, tmp_path, capsys):
    server = serve("ok")
    root = tmp_path / "camvid"
    fetch(server, root)
    (root / "train.txt").write_text("my own split\n")
    server.requests.clear()
    with pytest.raises(DownloadError) as info:
        fetch(server, root)
    message = str(info.value)
    assert "train.txt" in message and "--overwrite" in message and "Nothing was replaced" in message
    assert (root / "train.txt").read_text() == "my own split\n" and server.requests == []

    fetch(server, root, overwrite=True)
    assert capsys.readouterr().err.count(f"replacing {root / 'train.txt'}") == 1
    assert (root / "train.txt").read_bytes() == FILES["train.txt"]


def test_import_does_not_replace_a_hand_edited_file_without_overwrite(fake_manifest, tmp_path):
    archive = tmp_path / "camvid.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, body in FILES.items():
            zf.writestr(name, body)
    root = tmp_path / "camvid"
    (root / "train").mkdir(parents=True)
    (root / "train/a.png").write_bytes(b"edited")
    with pytest.raises(DownloadError, match=r"train/a.png.*--overwrite"):
        dl.import_local("camvid", archive, root, progress=False)
    assert (root / "train/a.png").read_bytes() == b"edited"
    dl.import_local("camvid", archive, root, progress=False, overwrite=True)
    assert dl.verify("camvid", root) == []


def test_symbolic_link_inside_the_data_folder_is_not_written_through(serve, tmp_path):
    server = serve("ok")
    root, elsewhere = tmp_path / "camvid", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "train").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DownloadError) as info:
        fetch(server, root)
    assert f"{root / 'train'} is a symbolic link" in str(info.value)
    assert list(elsewhere.iterdir()) == [] and server.requests == []


def test_symbolic_link_under_a_file_name_is_not_replaced_or_followed(fake_manifest, tmp_path):
    source = tmp_path / "copy"
    for name, body in FILES.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(body)
    root, outside = tmp_path / "camvid", tmp_path / "outside.txt"
    outside.write_text("someone else's file")
    root.mkdir()
    (root / "train.txt").symlink_to(outside)
    with pytest.raises(DownloadError, match="is a symbolic link"):
        dl.import_local("camvid", source, root, progress=False, overwrite=True)
    assert outside.read_text() == "someone else's file" and (root / "train.txt").is_symlink()


# --------------------------------------------------------------------------- damaged archives

def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, body in FILES.items():
            zf.writestr(name, body)
    return buf.getvalue()


def test_truncated_zip_is_called_damaged_not_something_else(fake_manifest, tmp_path):
    archive = tmp_path / "camvid.zip"
    archive.write_bytes(_zip_bytes()[:3000])  # a download of the zip that stopped early
    with pytest.raises(DownloadError) as info:
        dl.import_local("camvid", archive, tmp_path / "camvid", progress=False)
    message = str(info.value)
    assert str(archive) in message and "damaged or truncated" in message
    assert "not a folder" not in message and not (tmp_path / "camvid").exists()


def test_damaged_archive_member_is_named_as_damaged_not_as_a_download_problem(fake_manifest, tmp_path):
    data = bytearray(_zip_bytes())
    at = bytes(data).index(FILES["train/a.png"][:64]) + 100
    data[at] ^= 0xFF  # one flipped byte inside train/a.png: its CRC no longer matches
    archive = tmp_path / "camvid.zip"
    archive.write_bytes(bytes(data))
    root = tmp_path / "camvid"
    with pytest.raises(DownloadError) as info:
        dl.import_local("camvid", archive, root, progress=False)
    line = next(x for x in str(info.value).splitlines() if x.strip().startswith("train/a.png"))
    assert "damaged" in line and str(archive) in line
    assert not any(w in line for w in ("transfer", "download", "network", "connection"))
    assert files_in(root) == {"train.txt"}  # the good member was imported
