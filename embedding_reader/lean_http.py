"""A lean HTTP/1.1 client for many small ranged GETs over plain http: the header reads of opening many files.

Opening 10,000 npy files over http is 10,000 GETs of a few hundred bytes. aiohttp spends about 0.3 ms of CPU on
each on a 2-core VM (3 s, more than the 30 ms latency costs with 128 in flight); this client, keep-alive
connections each carrying one request at a time and parsing `Content-Length` framed answers in a small
`asyncio.Protocol`, spends under 0.1 ms.
It only takes the plain case: an answer it does not expect (not a 206 for the asked range, chunked, compressed,
a redirect, an error status) raises NotLean, and the caller asks again through fsspec's aiohttp client, which
gives the usual answers and errors. It is used only for http:// without storage options (no headers, auth,
proxies or client settings to honour).
"""

import asyncio
import re
from typing import Any, Dict, List, Optional, Tuple

MAX_HEAD_BYTES = 64 * 1024  # an answer's head longer than this is not one this client expects
CONNECT_TIMEOUT_S = 30.0  # aiohttp's defaults, so a dead server fails the same way through either client
TOTAL_TIMEOUT_S = 300.0

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class NotLean(Exception):
    """The answer is not a plain ranged answer: ask again through the full client."""


class _Answer(asyncio.Protocol):
    """One keep-alive connection: sends a GET and collects the answer it frames by Content-Length."""

    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = bytearray()
        self.waiter: Optional[asyncio.Future[Tuple[int, Dict[str, str], bytes]]] = None
        self.head: Optional[Tuple[int, Dict[str, str], int]] = None  # status, headers, body start
        self.body_end = 0
        self.keep_alive = True
        self.timer: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._fail(exc or ConnectionResetError("connection closed before the whole answer"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # bytes nobody asked for: the connection is not used again
        try:
            if self.head is None and not self._parse_head():
                return
        except NotLean as exc:
            self._fail(exc)
            return
        if len(self.buffer) >= self.body_end:
            status, headers, body_start = self.head  # type: ignore[misc]
            body = bytes(self.buffer[body_start : self.body_end])
            del self.buffer[: self.body_end]
            self.head = None
            self._settle()
            waiter.set_result((status, headers, body))

    def _parse_head(self) -> bool:
        """Parse the answer's head once it has all arrived; whether it has."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise NotLean("answer head too long")
            return False
        status_line, *lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0") or not rest[:3].isdigit():
            raise NotLean(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = headers.get("content-length", "")
        if not length.isdigit() or "transfer-encoding" in headers:
            raise NotLean("answer not framed by Content-Length")
        connection = headers.get("connection", "").lower()
        self.keep_alive = connection == "keep-alive" or (version == "HTTP/1.1" and connection != "close")
        self.head = (int(rest[:3]), headers, end + 4)
        self.body_end = end + 4 + int(length)
        return True

    def send(self, request: bytes) -> "asyncio.Future[Tuple[int, Dict[str, str], bytes]]":
        """Send one request; the future of its (status, headers, body), failed after TOTAL_TIMEOUT_S."""
        if not self.reusable():
            raise ConnectionResetError("connection closed, or holding bytes nobody asked for")
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.timer = loop.call_later(TOTAL_TIMEOUT_S, self._fail, TimeoutError(f"no answer in {TOTAL_TIMEOUT_S} s"))
        self.transport.write(request)  # type: ignore[union-attr]
        return self.waiter

    def reusable(self) -> bool:
        """Whether a request may go on this connection: open, idle, kept alive, nothing left over."""
        idle = self.waiter is None or (
            self.waiter.done() and not self.waiter.cancelled() and not self.waiter.exception()
        )
        transport = self.transport
        return transport is not None and not transport.is_closing() and idle and self.keep_alive and not self.buffer

    def _fail(self, exc: BaseException) -> None:
        """End the request in flight with `exc` and drop the connection."""
        self._settle()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.keep_alive = False
        self.close()

    def _settle(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LeanHTTPClient:
    """Keep-alive connections per host, each carrying one request at a time; `async with` closes them all."""

    def __init__(self, encoded: bool = False) -> None:
        """`encoded`: whether URLs are already percent-encoded (fsspec's HTTPFileSystem `encoded` option)."""
        import yarl  # pylint: disable=import-outside-toplevel  # aiohttp's, like all http reads (an optional extra)

        self._url: Any = yarl.URL
        self.encoded = encoded
        self._idle: Dict[Tuple[str, int], List[_Answer]] = {}
        self._open: List[_Answer] = []

    async def __aenter__(self) -> "LeanHTTPClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for connection in self._open:
            connection.close()
        self._open.clear()
        self._idle.clear()

    async def get_range(self, url: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of `url`, fewer if the file ends first; NotLean for any answer but that."""
        parsed = self._url(url, encoded=self.encoded)  # quoted as aiohttp would: the same request
        if parsed.scheme != "http" or parsed.user is not None or parsed.raw_host is None or parsed.port is None:
            raise NotLean(f"not a plain http URL: {parsed.scheme}")
        if end <= start:
            raise NotLean(f"empty range [{start}, {end})")
        host = parsed.raw_authority  # host[:port] as written, IPv6 in brackets
        request = f"GET {parsed.raw_path_qs} HTTP/1.1\r\nHost: {host}\r\nRange: bytes={start}-{end - 1}\r\n\r\n"
        key = (parsed.raw_host, parsed.port)
        status, headers, body = await self._exchange(key, request.encode("latin-1"))
        _check_ranged_answer(status, headers, body, start, end)
        return body

    async def _exchange(self, key: Tuple[str, int], request: bytes) -> Tuple[int, Dict[str, str], bytes]:
        """Send on an idle connection (a fresh one if the server closed it meanwhile) and wait for the answer."""
        idle = self._idle.setdefault(key, [])
        while idle:
            connection = idle.pop()
            try:
                return await self._send(key, connection, request)
            except ConnectionError:
                continue  # closed by the server while idle: a keep-alive race, not a failure of this request
        return await self._send(key, await self._connect(key), request)

    async def _send(
        self, key: Tuple[str, int], connection: _Answer, request: bytes
    ) -> Tuple[int, Dict[str, str], bytes]:
        """One request on one connection, kept for the next request if both sides may, else closed."""
        try:
            answer = await connection.send(request)
        except BaseException:
            connection.close()
            raise
        if connection.reusable():
            self._idle[key].append(connection)
        else:
            connection.close()
        return answer

    async def _connect(self, key: Tuple[str, int]) -> _Answer:
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(loop.create_connection(_Answer, *key), CONNECT_TIMEOUT_S)
        self._open.append(connection)
        return connection


def _check_ranged_answer(status: int, headers: Dict[str, str], body: bytes, start: int, end: int) -> None:
    """NotLean unless the answer is the asked range (or its part up to the end of the file), uncompressed."""
    if status != 206:
        raise NotLean(f"status {status}")
    if headers.get("content-encoding", "identity").lower() != "identity":
        raise NotLean("compressed answer")
    match = _CONTENT_RANGE.fullmatch(headers.get("content-range", ""))
    if match is None or int(match[1]) != start or int(match[2]) - start + 1 != len(body) or len(body) > end - start:
        raise NotLean(f"Content-Range {headers.get('content-range')!r} for bytes {start}-{end - 1}")
