"""A lean asyncio static file server (byte ranges, listings, latency, per-connection throttling) for measuring clients.

The threaded RangeHTTPServer (a thread per connection, http.server's parsing, fault injection) spends about 1.2 ms
of CPU per request: 12 s for 10,000 small GETs, more than the client being measured, on the same two cores. This
server is an asyncio protocol (no stream reader or task per request) that finds a file with one stat and answers
a small range with one pread and one write: under 0.1 ms of CPU a request. Large bodies go by sendfile. It plays
no faults: the fault tests use RangeHTTPServer. Same interface otherwise: ``url``, ``stats``, ``reset_stats()``,
``peak_connections``, ``start()``/``stop()`` or a context manager.
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from .faults import ServerStats
from .http_server import UnsatisfiableRange, listing_html, parse_range, stat_under

SMALL_BODY_BYTES = 256 * 1024  # written with the headers in one send; larger bodies go by sendfile
THROTTLED_CHUNK_BYTES = 256 * 1024  # a throttled body is sent in chunks this size, each when its time has come
MAX_HEAD_BYTES = 64 * 1024  # a request head longer than this closes the connection
REASONS = {200: "OK", 206: "Partial Content", 404: "Not Found", 405: "Method Not Allowed", 416: "Range Not Satisfiable"}


@dataclass(frozen=True)
class _Request:
    """One parsed request head."""

    method: str
    url_path: str
    range_header: Optional[str]
    keep_alive: bool


@dataclass(frozen=True)
class _BodyFromFile:
    """An answer whose body is sent from the file by sendfile (large or throttled) after its head."""

    head: bytes
    path: str
    first: int
    length: int


@dataclass
class _LoopThread:
    """One event loop serving the shared port from its own thread, and the connections it holds."""

    loop: asyncio.AbstractEventLoop
    server: asyncio.AbstractServer
    thread: threading.Thread
    connections: set[_Connection] = field(default_factory=set)


class AsyncRangeHTTPServer:
    """Static file server over ``root`` on http://127.0.0.1:<free port>, run by event loops in daemon threads.

    ``latency_s`` is waited before answering each request; ``bytes_per_s_per_connection`` caps each body's rate.
    ``loops`` event loops share the port (SO_REUSEPORT): the kernel spreads connections over them, and their
    sendfile calls (which release the GIL) copy bodies on as many cores.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        latency_s: float = 0.0,
        bytes_per_s_per_connection: float | None = None,
        loops: int = 2,
    ) -> None:
        """Configure the server; nothing listens before ``start()``."""
        self.root = Path(root).resolve()
        self.latency_s = latency_s
        self.bytes_per_s_per_connection = bytes_per_s_per_connection
        self.loops = loops
        self.stats = ServerStats()
        self.peak_connections = 0
        self._open_connections = 0
        self._lock = threading.Lock()
        self._threads: list[_LoopThread] = []

    @property
    def url(self) -> str:
        """Base URL of the running server, without trailing slash."""
        if not self._threads:
            raise RuntimeError("server is not started")
        return f"http://127.0.0.1:{self._threads[0].server.sockets[0].getsockname()[1]}"

    def start(self) -> AsyncRangeHTTPServer:
        """Bind a free port and serve it from `loops` event loops; return self."""
        port = 0
        while len(self._threads) < self.loops:
            loop = asyncio.new_event_loop()
            connections: set[_Connection] = set()
            server = loop.run_until_complete(
                loop.create_server(
                    functools.partial(_Connection, self, connections), "127.0.0.1", port, backlog=1024, reuse_port=True
                )
            )
            port = server.sockets[0].getsockname()[1]
            thread = threading.Thread(target=loop.run_forever, name="AsyncRangeHTTPServer", daemon=True)
            self._threads.append(_LoopThread(loop, server, thread, connections))
            thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every open connection and the event loops."""
        for each in self._threads:
            asyncio.run_coroutine_threadsafe(_shut_down(each), each.loop).result()
            each.loop.call_soon_threadsafe(each.loop.stop)
            each.thread.join()
            each.loop.close()
        self._threads = []

    def reset_stats(self) -> None:
        """Zero the statistics and the peak of connections."""
        self.stats.reset()
        with self._lock:
            self.peak_connections = 0

    def __enter__(self) -> AsyncRangeHTTPServer:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    def count_connection(self, change: int) -> None:
        """One connection more (+1) or fewer (-1), keeping the peak."""
        with self._lock:
            self._open_connections += change
            self.peak_connections = max(self.peak_connections, self._open_connections)

    def answer(self, request: _Request) -> bytes | _BodyFromFile:
        """The whole answer to a request, or its head and the part of a file to send after it."""
        if request.method not in ("GET", "HEAD"):
            return self._small(request, 405, {}, b"method not allowed\n")
        found = stat_under(str(self.root), request.url_path)
        if found is None:
            return self._small(request, 404, {}, b"not found\n")
        path, status = found
        if stat.S_ISDIR(status.st_mode):
            return self._small(request, 200, {"Content-Type": "text/html"}, listing_html(request.url_path, Path(path)))
        return self._file(request, path, status.st_size)

    def _small(self, request: _Request, status: int, headers: dict[str, Any], body: bytes) -> bytes:
        """A small body (or none for HEAD) with its head, counted before the client can have it."""
        body = b"" if request.method == "HEAD" else body
        self.stats.count_bytes(len(body))
        return _head(status, headers, len(body)) + body

    def _file(self, request: _Request, path: str, size: int) -> bytes | _BodyFromFile:
        """The file, or the asked byte range of it (206), or 416 for a range it does not have."""
        try:
            byte_range = parse_range(request.range_header, size)
        except UnsatisfiableRange:
            return self._small(request, 416, {"Content-Range": f"bytes */{size}"}, b"range not satisfiable\n")
        first, last = byte_range or (0, size - 1)
        headers: dict[str, Any] = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if byte_range is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        status, length = (206 if byte_range is not None else 200), last - first + 1
        head = _head(status, headers, length)
        if request.method == "HEAD":
            return head
        if length > SMALL_BODY_BYTES or self.bytes_per_s_per_connection:
            return _BodyFromFile(head, path, first, length)
        descriptor = os.open(path, os.O_RDONLY)
        try:
            body = os.pread(descriptor, length, first)
        finally:
            os.close(descriptor)
        self.stats.count_bytes(len(body))
        return head + body


class _Connection(asyncio.Protocol):
    """One client connection: request heads are parsed as they arrive and answered one at a time, in order."""

    def __init__(self, server: AsyncRangeHTTPServer, connections: set[_Connection]) -> None:
        self.server = server
        self.connections = connections
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = bytearray()
        self.busy = False  # a request is waiting for its latency or its body is being sent
        self.pending: Optional[asyncio.TimerHandle | asyncio.Task[None]] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection."""
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self.server.count_connection(+1)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        """Forget the connection and drop any answer still on its way."""
        self.connections.discard(self)
        self.server.count_connection(-1)
        if self.pending is not None:
            self.pending.cancel()

    def data_received(self, data: bytes) -> None:
        """Buffer the bytes; start on the next request unless one is being answered."""
        self.buffer += data
        if not self.busy:
            self.next_request()

    def abort(self) -> None:
        """Drop the connection at once."""
        assert self.transport is not None
        self.transport.abort()

    def next_request(self) -> None:
        """Take the next complete request head from the buffer and answer it after the latency."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self.abort()
            return
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        try:
            request = _parse_head(head)
        except ValueError:  # a malformed request line: no answer can be framed for it
            self.abort()
            return
        self.server.stats.count_request(request.method)
        self.busy = True
        loop = asyncio.get_running_loop()
        if self.server.latency_s > 0:
            self.pending = loop.call_later(self.server.latency_s, self.answer, request)
        else:
            self.answer(request)

    def answer(self, request: _Request) -> None:
        """Send the answer: at once if small, else from a task sending the file's bytes."""
        assert self.transport is not None
        if self.transport.is_closing():
            return
        answer = self.server.answer(request)
        if isinstance(answer, bytes):
            self.transport.write(answer)
            self.finished(request)
        else:
            self.pending = asyncio.get_running_loop().create_task(self.send_file_body(request, answer))

    async def send_file_body(self, request: _Request, answer: _BodyFromFile) -> None:
        """Send a head and its body by sendfile, paced to the per-connection rate if set."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        rate = self.server.bytes_per_s_per_connection
        step = THROTTLED_CHUNK_BYTES if rate else answer.length
        self.transport.write(answer.head)
        try:
            with open(answer.path, "rb") as file:
                started, sent = loop.time(), 0
                while sent < answer.length:
                    count = min(step, answer.length - sent)
                    if rate:  # a chunk leaves when a link of this rate would have carried it
                        await asyncio.sleep(max(0.0, started + (sent + count) / rate - loop.time()))
                    self.server.stats.count_bytes(count)
                    await loop.sendfile(self.transport, file, answer.first + sent, count)
                    sent += count
        except ConnectionError:
            self.abort()
            return
        self.finished(request)

    def finished(self, request: _Request) -> None:
        """One answer sent: close if asked, else go on with the next request already buffered."""
        assert self.transport is not None
        self.busy, self.pending = False, None
        if not request.keep_alive:
            self.transport.close()
        elif self.buffer:
            self.next_request()


def _parse_head(head: str) -> _Request:
    """Method, path, Range header and keep-alive of a request head; ValueError if the request line does not parse."""
    request_line, *lines = head.split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    keep_alive = headers.get("connection", "").lower() != "close"
    return _Request(method, unquote(urlsplit(target).path), headers.get("range"), keep_alive)


async def _shut_down(each: _LoopThread) -> None:
    """Close one loop's listening socket and abort its connections (run on that loop)."""
    each.server.close()
    for connection in list(each.connections):
        connection.abort()
    await each.server.wait_closed()


def _head(status: int, headers: dict[str, Any], content_length: int) -> bytes:
    """The status line and headers of an answer, always with Content-Length so keep-alive works."""
    lines = [f"HTTP/1.1 {status} {REASONS[status]}", *(f"{name}: {value}" for name, value in headers.items())]
    lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
