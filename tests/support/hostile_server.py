"""A loopback http server that serves a folder with byte ranges and ETags, and misbehaves on cue: it lies about
the range it sends, stalls before answering or mid-body, trickles, compresses, ignores Range, or answers for
another file size. Each misbehaviour plays on the range requests it is told to (by default those that start at
or after ``min_start``, so that headers read fine and pieces do not), for the first ``times`` of them."""

from __future__ import annotations

import enum
import gzip
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .http_server import listing_html, parse_range, stat_under

STALL_S = 60.0  # how long a stall lasts at most (the server's stop ends it sooner)
TRICKLE_INTERVAL_S = 0.05  # one byte per interval


class Misbehaviour(str, enum.Enum):
    SHIFTED_RANGE = "shifted_range"  # a 206 naming and holding another range of the same length
    STALL_BEFORE_ANSWER = "stall_before_answer"  # the request is read, nothing is ever sent
    STALL_MID_BODY = "stall_mid_body"  # headers and half the body, then nothing
    TRICKLE = "trickle"  # headers, then one byte per TRICKLE_INTERVAL_S
    GZIP = "gzip"  # the range's bytes gzip-compressed, with Content-Encoding: gzip
    WHOLE_FILE = "whole_file"  # a 200 with the whole file, whatever the range asked
    WRONG_TOTAL = "wrong_total"  # the right bytes, but a Content-Range total of another file size
    NOT_FOUND = "not_found"  # a 404, as for a file deleted after the listing
    CUT_WITHOUT_LENGTH = "cut_without_length"  # no Content-Length, half the body, then the connection closes
    LAST_MODIFIED_ONLY = "last_modified_only"  # the right answer, with a Last-Modified date and no ETag
    RANGE_BEYOND_TOTAL = "range_beyond_total"  # a Content-Range whose end lies past its own total


@dataclass
class Script:
    """What to break and when: ``misbehaviour`` on range requests starting at or after ``min_start``, for paths
    containing ``path_part``, the first ``times`` of them (None: always)."""

    misbehaviour: Misbehaviour | None = None
    min_start: int = 1
    times: int | None = None
    path_part: str = ""
    played: int = 0
    requests: int = 0
    range_requests: list[tuple[str, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, path: str, first: int) -> Misbehaviour | None:
        """Count a range request; the misbehaviour to play on it, if any."""
        with self.lock:
            if self.misbehaviour is None or first < self.min_start or self.path_part not in path:
                return None
            if self.times is not None and self.played >= self.times:
                return None
            self.played += 1
            return self.misbehaviour


class HostileServer:
    """``with HostileServer(root, Script(...)) as server:`` serves ``root`` at ``server.url``."""

    def __init__(self, root: str | os.PathLike[str], script: Script | None = None) -> None:
        self.root = os.path.abspath(root)
        self.script = script or Script()
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def etag(status: os.stat_result) -> str:
    """An ETag as nginx makes one: from the modification time and the size."""
    return f'"{status.st_mtime_ns:x}-{status.st_size:x}"'


def _handler_for(server: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_HostileHandler):
        owner = server

    return Handler


class _HostileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: HostileServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        script = self.owner.script
        with script.lock:
            script.requests += 1
        url_path = unquote(urlsplit(self.path).path)
        found = stat_under(self.owner.root, url_path)
        if found is None:
            return self._send(404, b"not found", {})
        path, status = found
        if os.path.isdir(path):
            return self._send(200, listing_html(url_path, Path(path)), {"Content-Type": "text/html"})
        asked = parse_range(self.headers.get("Range"), status.st_size)
        if asked is None:
            return self._send(200, Path(path).read_bytes(), {"ETag": etag(status)})
        first, last = asked
        with script.lock:
            script.range_requests.append((url_path, first, last + 1))
        self._serve_range(path, status, first, last, script.take(url_path, first))

    def _serve_range(self, path: str, status: os.stat_result, first: int, last: int, cue: Misbehaviour | None) -> None:
        data = _read(path, first, last + 1)
        size = status.st_size
        headers = {"ETag": etag(status), "Content-Range": f"bytes {first}-{last}/{size}"}
        if cue is Misbehaviour.STALL_BEFORE_ANSWER:
            self.owner.stopping.wait(STALL_S)
            return self._close()
        if cue is Misbehaviour.NOT_FOUND:
            return self._send(404, b"not found", {})
        if cue is Misbehaviour.WHOLE_FILE:
            return self._send(200, Path(path).read_bytes(), {"ETag": etag(status)})
        if cue is Misbehaviour.SHIFTED_RANGE:
            shift = len(data) if last + 1 + len(data) <= size else -min(first, len(data))
            data = _read(path, first + shift, last + 1 + shift)
            headers["Content-Range"] = f"bytes {first + shift}-{last + shift}/{size}"
        _alter_headers(headers, cue, first, last, size)
        if cue is Misbehaviour.CUT_WITHOUT_LENGTH:
            self.send_response(206)
            for name, value in {**headers, "Connection": "close"}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            return self._close()
        if cue is Misbehaviour.GZIP:
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        if cue is Misbehaviour.STALL_MID_BODY:
            self._head(206, headers, len(data))
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.owner.stopping.wait(STALL_S)
            return self._close()

        if cue is Misbehaviour.TRICKLE:
            self._head(206, headers, len(data))
            try:
                for k in range(len(data)):
                    if self.owner.stopping.wait(TRICKLE_INTERVAL_S):
                        break
                    self.wfile.write(data[k : k + 1])
                    self.wfile.flush()
            except OSError:  # the client gave up
                pass
            return self._close()
        self._send(206, data, headers)

    def _head(self, code: int, headers: dict[str, str], length: int) -> None:
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
        try:
            self._head(code, headers, len(body))
            self.wfile.write(body)
        except OSError:  # the client gave up
            self.close_connection = True

    def _close(self) -> None:
        self.close_connection = True


def _alter_headers(headers: dict[str, str], cue: Misbehaviour | None, first: int, last: int, size: int) -> None:
    """The misbehaviours that only change what the headers say."""
    if cue is Misbehaviour.WRONG_TOTAL:
        headers["Content-Range"] = f"bytes {first}-{last}/{size + 4096}"
    if cue is Misbehaviour.RANGE_BEYOND_TOTAL:
        headers["Content-Range"] = f"bytes {first}-{last}/{last}"
    if cue is Misbehaviour.LAST_MODIFIED_ONLY:
        del headers["ETag"]
        headers["Last-Modified"] = "Mon, 01 Jan 2024 00:00:00 GMT"


def _read(path: str, start: int, end: int) -> bytes:
    with open(path, "rb") as file:
        file.seek(start)
        return file.read(end - start)


def wait_until(predicate: Any, timeout_s: float = 10.0) -> bool:
    """Poll `predicate` until it is true or `timeout_s` passed; whether it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
