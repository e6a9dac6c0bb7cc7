"""Fetching one published file with every wait bounded: the downloader seglab gives pooch.

pooch picks the temporary file, checks the hash and moves the file into place; this
downloader does the transfer, and answers three questions pooch's default leaves open:

* How long may it take? Connecting has a timeout; once connected, a *stall timeout*
  ends a transfer when no byte arrives for that long (waiting for the reply included),
  and a *deadline* (derived from the file's size and a minimum rate) ends a server that
  drips a byte now and then. All three are in :class:`Limits`.
* What went wrong? "cannot connect", "connected but no data", "too slow", "the server
  sent something that is not the file" (an HTML page from a bad mirror, a file of the
  wrong size) and "the connection broke" are told apart; only the last is worth a retry.
* How to stop now? :class:`Transfers` shuts the socket of every live transfer, which
  ends a read blocked inside the network library at once (Ctrl-C, a full disk).
"""
from __future__ import annotations

import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .manifest import ManifestEntry
from .safe_files import Failed, copy_checked

CHUNK = 1 << 16                 # most bytes per read; a read returns what has arrived
USER_AGENT = "seglab-download (python-requests)"


@dataclass(frozen=True)
class Limits:
    """How long the network may keep a download waiting (seconds, bytes per second)."""

    connect_s: float = 20.0      # to open the connection
    stall_s: float = 30.0        # longest wait for the next byte, the reply's headers included
    min_rate: float = 4_000.0    # a file gets base_s + size / min_rate seconds in all
    base_s: float = 60.0

    def deadline_s(self, size: int) -> float:
        return self.base_s + size / self.min_rate


class Transfers:
    """The responses being read right now, so that :meth:`stop` can end them all."""

    def __init__(self) -> None:
        self.abort = threading.Event()
        self.outputs: set[str] = set()  # temporary files being written, for a last clean-up
        self._live: set = set()
        self._guard = threading.Lock()

    def add(self, response) -> None:
        with self._guard:
            self._live.add(response)
        if self.abort.is_set():
            _shut(response)

    def discard(self, response) -> None:
        with self._guard:
            self._live.discard(response)

    def stop(self) -> None:
        self.abort.set()
        with self._guard:
            live = list(self._live)
        for response in live:
            _shut(response)


def _shut(response) -> None:
    """End a read blocked on ``response``'s socket from another thread."""
    try:
        shutdown = getattr(response.raw, "shutdown", None)  # urllib3 >= 2.3
        (shutdown or response.close)()
    except Exception:  # noqa: BLE001 - already closed, or released: nothing left to stop
        pass


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _cause(err: BaseException) -> BaseException:
    """The innermost exception of a requests/urllib3 error chain."""
    seen = err
    while True:
        nxt = getattr(seen, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        if nxt is None or nxt is seen:
            return seen
        seen = nxt


def _words(err: BaseException) -> str:
    err = _cause(err)
    text = str(err).split(": ", 1)[-1] if ": " in str(err) else str(err)
    return text or type(err).__name__


def _open_failure(err: Exception, url: str, limits: Limits) -> Failed:
    """Classify a failure before the reply's headers arrived."""
    import requests
    cause = _cause(err)
    name = type(cause).__name__
    if isinstance(err, requests.exceptions.ConnectTimeout) or "ConnectTimeout" in name:
        return Failed(f"cannot connect to {_host(url)} (no answer within {limits.connect_s:g} s)",
                      "connect", transient=True)
    if isinstance(err, requests.exceptions.ReadTimeout):
        return Failed(f"connected to {_host(url)}, but no data came for {limits.stall_s:g} s "
                      f"(the server accepted the connection and never answered)", "silent")
    if name in ("RemoteDisconnected", "ProtocolError", "BadStatusLine", "ConnectionResetError"):
        return Failed(f"connected to {_host(url)}, but the server closed the connection without "
                      f"answering ({_words(cause)})", "silent", transient=True)
    return Failed(f"cannot connect to {_host(url)} ({_words(cause)})", "connect", transient=True)


def _looks_like_a_page(first: bytes, content_type: str) -> str | None:
    """A short description when the reply is a web page or text instead of a data file."""
    head = first.lstrip()[:200].lower()
    if "html" in content_type.lower() or head.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<?xml")):
        snippet = first.strip()[:60].decode("utf-8", "replace").replace("\n", " ")
        return f"an HTML page ({snippet!r}...)"
    return None


class BoundedDownloader:
    """A pooch downloader (``downloader(url, output_file, pooch)``) for one manifest entry."""

    def __init__(self, entry: ManifestEntry, limits: Limits, transfers: Transfers,
                 on_bytes: Callable[[int], None], session=None):
        self.entry, self.limits, self.transfers, self.on_bytes = entry, limits, transfers, on_bytes
        self.session = session

    def __call__(self, url: str, output_file, pooch=None) -> None:
        if self.transfers.abort.is_set():
            raise Failed("not tried: the download stopped early", "stopped")
        self.transfers.outputs.add(str(output_file))
        try:
            self._fetch(url, output_file)
        finally:
            self.transfers.outputs.discard(str(output_file))

    def _fetch(self, url: str, output_file) -> None:
        if urllib.parse.urlsplit(url).scheme == "file":
            copy_checked(_file_chunks(url), output_file, self.entry, self.on_bytes, self.transfers.abort)
            return
        response = self._open(url)
        self.transfers.add(response)
        first: list[bytes] = []
        try:
            self._check_reply(response)
            chunks = self._body(response, url, time.monotonic() + self.limits.deadline_s(self.entry.size), first)
            copy_checked(chunks, output_file, self.entry, self.on_bytes, self.transfers.abort)
        except Failed as failure:
            page = _looks_like_a_page(first[0] if first else b"", response.headers.get("Content-Type", ""))
            if failure.kind == "mismatch" and page:  # a bad mirror's error page, not a network fault
                raise Failed(f"the server sent {page}, not the file", "notfile") from None
            raise
        finally:
            self.transfers.discard(response)
            response.close()

    def _open(self, url: str):
        import requests
        session = self.session or requests
        try:
            response = session.get(url, stream=True, timeout=(self.limits.connect_s, self.limits.stall_s),
                                   headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        except requests.exceptions.RequestException as err:
            if self.transfers.abort.is_set():
                raise Failed("stopped before it finished", "stopped") from None
            raise _open_failure(err, url, self.limits) from None
        return response

    def _check_reply(self, response) -> None:
        """Refuse an HTTP error, or a reply whose announced length is not the file's."""
        if response.status_code >= 400:
            code, reason = response.status_code, response.reason
            raise Failed(f"HTTP {code} {reason}", "http",
                         transient=code >= 500 or code in (408, 429), code=code)
        announced = response.headers.get("Content-Length", "").strip()
        if announced.isdigit() and int(announced) != self.entry.size:
            read = getattr(response.raw, "read1", None) or response.raw.read
            try:
                first = read(512)
            except Exception:  # noqa: BLE001 - only a hint for the message
                first = b""
            if self.transfers.abort.is_set():
                raise Failed("stopped before it finished", "stopped")
            page = _looks_like_a_page(first, response.headers.get("Content-Type", ""))
            what = page or f"{int(announced)} bytes"
            raise Failed(f"the server sent {what}, not the file (the manifest expects {self.entry.size} "
                         f"bytes)", "notfile")

    def _body(self, response, url: str, deadline: float, first: list[bytes]) -> Iterator[bytes]:
        """The reply's bytes as they arrive (the first chunk is kept in ``first``); every
        wait is bounded by the stall timeout, the whole by ``deadline``."""
        import requests
        raw, got, start = response.raw, 0, time.monotonic()
        read = getattr(raw, "read1", None) or raw.read
        while True:
            try:
                chunk = read(CHUNK)
            except Exception as err:  # noqa: BLE001 - urllib3/http.client/socket errors, classified below
                if self.transfers.abort.is_set():
                    raise Failed("stopped before it finished", "stopped") from None
                if "timeout" in type(_cause(err)).__name__.lower() or isinstance(err, requests.exceptions.Timeout):
                    raise Failed(f"connected to {_host(url)}, but no data came for {self.limits.stall_s:g} s "
                                 f"after {got} of {self.entry.size} bytes", "silent") from None
                raise Failed(f"the connection broke after {got} of {self.entry.size} bytes "
                             f"({_words(err)})", "broken", transient=True) from None
            if not chunk:
                return
            if got == 0:
                first.append(chunk)
            got += len(chunk)
            yield chunk
            if time.monotonic() > deadline and got < self.entry.size:
                raise Failed(f"too slow: {got} of {self.entry.size} bytes after {time.monotonic() - start:.0f} s "
                             f"(each file may take {self.limits.deadline_s(self.entry.size):.0f} s at most)", "slow")


def _file_chunks(url: str) -> Iterator[bytes]:
    """A file of a local mirror folder (a ``file://`` base URL)."""
    path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    except FileNotFoundError:
        raise Failed("no such file", "http", code=404) from None
    except OSError as err:
        raise Failed(f"cannot read {path} ({err.strerror or err})", "source") from None
