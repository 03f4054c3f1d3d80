"""A lean asyncio static file server (byte ranges, listings, latency, per-connection throttling) for measuring clients.

The threaded RangeHTTPServer (a thread per connection, http.server's parsing, fault injection) spends about 1.2 ms
of CPU per request: 12 s for 10,000 small GETs, more than the client being measured, on the same two cores. This
server answers one in about 0.3 ms and sends large bodies with sendfile, so a benchmark measures the client, as
against a real server. It plays no faults: the fault tests use RangeHTTPServer. Same interface otherwise: ``url``,
``stats``, ``reset_stats()``, ``peak_connections``, ``start()``/``stop()`` or a context manager.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .faults import ServerStats
from .http_server import UnsatisfiableRange, listing_html, parse_range, resolve_under

SMALL_BODY_BYTES = 256 * 1024  # written with the headers in one send; larger bodies go by sendfile
THROTTLED_CHUNK_BYTES = 256 * 1024  # a throttled body is sent in chunks this size, each when its time has come
REASONS = {200: "OK", 206: "Partial Content", 404: "Not Found", 405: "Method Not Allowed", 416: "Range Not Satisfiable"}


@dataclass
class _LoopThread:
    """One event loop serving the shared port from its own thread, and the connections it holds."""

    loop: asyncio.AbstractEventLoop
    server: asyncio.AbstractServer
    thread: threading.Thread
    writers: set[asyncio.StreamWriter] = field(default_factory=set)


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
            writers: set[asyncio.StreamWriter] = set()
            serve = functools.partial(self._serve_connection, writers)
            server = loop.run_until_complete(
                asyncio.start_server(serve, "127.0.0.1", port, backlog=1024, reuse_port=True)
            )
            port = server.sockets[0].getsockname()[1]
            thread = threading.Thread(target=loop.run_forever, name="AsyncRangeHTTPServer", daemon=True)
            self._threads.append(_LoopThread(loop, server, thread, writers))
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

    def _count_connection(self, change: int) -> None:
        with self._lock:
            self._open_connections += change
            self.peak_connections = max(self.peak_connections, self._open_connections)

    async def _serve_connection(
        self, writers: set[asyncio.StreamWriter], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer the requests of one keep-alive connection until the client closes it."""
        writers.add(writer)
        self._count_connection(+1)
        try:
            while await self._answer(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away, or sent no request head, an oversized or a malformed one
        finally:
            writers.discard(writer)
            self._count_connection(-1)
            writer.transport.abort()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; whether the connection stays open."""
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head.split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)
        }
        self.stats.count_request(method)
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        url_path = unquote(urlsplit(target).path)
        path = resolve_under(self.root, url_path)
        if method not in ("GET", "HEAD"):
            await self._send(writer, method, 405, {}, b"method not allowed\n")
        elif path is None:
            await self._send(writer, method, 404, {}, b"not found\n")
        elif path.is_dir():
            await self._send(writer, method, 200, {"Content-Type": "text/html"}, listing_html(url_path, path))
        else:
            await self._send_file(writer, method, path, headers.get("range"))
        return headers.get("connection", "").lower() != "close"

    async def _send(
        self, writer: asyncio.StreamWriter, method: str, status: int, headers: dict[str, Any], body: bytes
    ) -> None:
        """Answer a small body (or its headers alone for HEAD) in one write."""
        self.stats.count_bytes(0 if method == "HEAD" else len(body))  # counted before the client can have it
        writer.write(_head(status, headers, len(body)) + (b"" if method == "HEAD" else body))
        await writer.drain()

    async def _send_file(self, writer: asyncio.StreamWriter, method: str, path: Path, ranges: str | None) -> None:
        """Answer the file, or the asked byte range of it (206), or 416 for a range it does not have."""
        size = path.stat().st_size
        try:
            byte_range = parse_range(ranges, size)
        except UnsatisfiableRange:
            await self._send(writer, method, 416, {"Content-Range": f"bytes */{size}"}, b"range not satisfiable\n")
            return
        first, last = byte_range or (0, size - 1)
        headers: dict[str, Any] = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if byte_range is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        status, length = (206 if byte_range is not None else 200), last - first + 1
        with path.open("rb") as file:
            if method == "HEAD" or (length <= SMALL_BODY_BYTES and not self.bytes_per_s_per_connection):
                body = b"" if method == "HEAD" else os.pread(file.fileno(), length, first)
                self.stats.count_bytes(len(body))
                writer.write(_head(status, headers, length) + body)
                await writer.drain()
                return
            writer.write(_head(status, headers, length))
            await self._send_body(writer, file, first, length)

    async def _send_body(self, writer: asyncio.StreamWriter, file: Any, first: int, length: int) -> None:
        """Send `length` bytes of the file from `first` with sendfile, paced to the per-connection rate if set."""
        loop = asyncio.get_running_loop()
        rate = self.bytes_per_s_per_connection
        step = THROTTLED_CHUNK_BYTES if rate else length
        started, sent = loop.time(), 0
        while sent < length:
            count = min(step, length - sent)
            if rate:  # a chunk leaves when a link of this rate would have carried it
                await asyncio.sleep(max(0.0, started + (sent + count) / rate - loop.time()))
            self.stats.count_bytes(count)
            await loop.sendfile(writer.transport, file, first + sent, count)
            sent += count


async def _shut_down(each: _LoopThread) -> None:
    """Close one loop's listening socket and abort its connections (run on that loop)."""
    each.server.close()
    for writer in list(each.writers):
        writer.transport.abort()
    await each.server.wait_closed()


def _head(status: int, headers: dict[str, Any], content_length: int) -> bytes:
    """The status line and headers of an answer, always with Content-Length so keep-alive works."""
    lines = [f"HTTP/1.1 {status} {REASONS[status]}", *(f"{name}: {value}" for name, value in headers.items())]
    lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
