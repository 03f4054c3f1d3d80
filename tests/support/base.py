"""Plumbing shared by the loopback test servers: a threaded 127.0.0.1 server and a fault-playing request handler."""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from .faults import (
    BODY_FAULTS,
    STATUS_OF_FAULT,
    FaultConfig,
    FaultInjector,
    FaultKind,
    ResponsePlan,
    ServerStats,
)

CHUNK_BYTES = 64 * 1024
POLL_INTERVAL_S = 0.05  # how often serve_forever checks for shutdown: bounds stop() time
QUIET_ERRORS = (ConnectionError, TimeoutError)  # clients going away, or our own RST


class _ThreadingServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its owner, tracks open connections and never prints client disconnects."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024  # the default of 5 drops connections when a client opens many at once

    def __init__(self, owner: LoopbackServer, handler: type[BaseHTTPRequestHandler]) -> None:
        """Bind 127.0.0.1 on a port chosen by the OS."""
        self.owner = owner
        self.open_connections: set[socket.socket] = set()
        self.peak_connections = 0  # most connections open at once
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember the connection so ``stop()`` can shut it down, then serve it in a thread."""
        with self._connections_lock:
            self.open_connections.add(request)
            self.peak_connections = max(self.peak_connections, len(self.open_connections))
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection and close it."""
        with self._connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Shut down every connection still open, waking handler threads blocked on idle keep-alive sockets."""
        with self._connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients going away (and our own aborts); report anything else as usual."""
        if not isinstance(sys.exc_info()[1], QUIET_ERRORS):
            super().handle_error(request, client_address)


_Server = TypeVar("_Server", bound="LoopbackServer")


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1:<free port> with fault injection, latency, throttling and statistics."""

    handler_class: type[BaseHTTPRequestHandler]

    def __init__(
        self,
        faults: FaultConfig | None = None,
        latency_s: float = 0.0,
        bytes_per_s_per_connection: float | None = None,
    ) -> None:
        """Configure the server; nothing listens before ``start()``."""
        self.faults = FaultInjector(faults)
        self.latency_s = latency_s
        self.bytes_per_s_per_connection = bytes_per_s_per_connection
        self.stats = ServerStats()
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server, without trailing slash."""
        if self._server is None:
            raise RuntimeError("server is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self: _Server) -> _Server:
        """Bind a free port and serve in a daemon thread; return self."""
        if self._server is None:
            self._server = _ThreadingServer(self, self.handler_class)
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(POLL_INTERVAL_S,), name=type(self).__name__, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the listening socket and every open connection."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_open_connections()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    @property
    def peak_connections(self) -> int:
        """The most client connections this server has had open at once."""
        return self._server.peak_connections if self._server is not None else 0

    def reset_stats(self) -> None:
        """Zero the statistics and the peak of connections."""
        self.stats.reset()
        if self._server is not None:
            self._server.peak_connections = 0

    def __enter__(self: _Server) -> _Server:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()


class FaultHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler that is silent, simulates latency and plays faults while writing bodies."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall
    server: _ThreadingServer

    @property
    def owner(self) -> LoopbackServer:
        """The LoopbackServer this handler serves for."""
        return self.server.owner

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: test servers must keep stderr clean."""

    def begin_request(self) -> None:
        """Count the request and wait the simulated round-trip latency."""
        self.owner.stats.count_request(self.command)
        if self.owner.latency_s > 0:
            time.sleep(self.owner.latency_s)

    def error_body(self, status: int) -> tuple[bytes, str]:
        """Return the body and content type of an injected error answer."""
        return f"injected HTTP {status}\n".encode(), "text/plain; charset=utf-8"

    def decide_fault(self, plan: ResponsePlan) -> FaultKind | None:
        """Draw the fault (if any) to play on the planned response, and count it."""
        fault = self.owner.faults.decide(plan)
        if fault is not None:
            self.owner.stats.count_fault(fault)
        return fault

    def send_status_fault(self, kind: FaultKind) -> None:
        """Answer an injected 500/503/429 with a small self-delimited body (the connection stays usable)."""
        status = STATUS_OF_FAULT[kind]
        body, content_type = self.error_body(status)
        headers = {"Content-Type": content_type}
        if status in (429, 503):
            headers["Retry-After"] = "0"
        self.write_head(status, headers, len(body))
        if self.command != "HEAD":
            self.write_body([body], len(body))

    def write_head(self, status: int, headers: dict[str, str], content_length: int) -> None:
        """Write the status line and headers, always with Content-Length so keep-alive works."""
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(content_length))
        self.end_headers()

    def write_body(self, chunks: Iterable[bytes], length: int, fault: FaultKind | None = None) -> None:
        """Write ``length`` body bytes from ``chunks``; a RESET or TRUNCATE fault stops at half and drops the link."""
        cut = fault in BODY_FAULTS
        limit = length // 2 if cut else length
        sent = 0
        started = time.monotonic()
        for chunk in chunks:
            for start in range(0, len(chunk), CHUNK_BYTES):
                piece = chunk[start : min(start + CHUNK_BYTES, len(chunk), start + limit - sent)]
                if not piece:
                    break
                self.owner.stats.count_bytes(len(piece))  # before the write: counted once the client has it
                self.wfile.write(piece)
                sent += len(piece)
                self._throttle(sent, started)
            if sent >= limit:
                break
        if cut:
            self._drop_connection(reset=fault is FaultKind.RESET)

    def _throttle(self, sent: int, started: float) -> None:
        """Sleep so that this response body does not go faster than the configured bytes per second."""
        rate = self.owner.bytes_per_s_per_connection
        if rate:
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _drop_connection(self, reset: bool) -> None:
        """Close the connection now: with a TCP RST (SO_LINGER 0) if ``reset``, else with a clean FIN."""
        self.close_connection = True
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
