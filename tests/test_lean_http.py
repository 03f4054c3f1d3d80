"""The lean http client (header reads over plain http): the exact bytes of every range over real servers, one
keep-alive connection reused, and NotLean (the caller then asks aiohttp) for every answer it does not expect.
The reader's use of it (and its fallback) is checked on whole collections at the end."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import fsspec
import pytest

from embedding_reader import EmbeddingReader
from embedding_reader.lean_http import LeanHTTPClient, NotLean
from embedding_reader.retry import RetryPolicy
from tests.support.async_http_server import AsyncRangeHTTPServer
from tests.support.collections import write_npy_collection
from tests.support.http_server import RangeHTTPServer

pytestmark = pytest.mark.timeout(60)

SIZE = 5000
ODD_NAME = "a b%c é#d.bin"  # a space, a percent sign, non-ASCII and a hash: all quoted in the URL
FAST_FAILURE = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01)
SERVERS = {"threaded": RangeHTTPServer, "asyncio": AsyncRangeHTTPServer}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two files of seeded random bytes, one with a name that must be quoted."""
    root = tmp_path_factory.mktemp("lean")
    rng = random.Random(7)
    for name in ("plain.bin", ODD_NAME):
        (root / name).write_bytes(rng.randbytes(SIZE))
    return root


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest, served: Path) -> Iterator[Any]:
    """Each kind of loopback server over `served`."""
    with SERVERS[request.param](served) as started:
        yield started


def get_ranges(requests: list[tuple[str, int, int]], encoded: bool = False) -> list[Any]:
    """Each request's bytes through one client, one after another (one connection); exceptions as answers."""

    async def run() -> list[Any]:
        answers: list[Any] = []
        async with LeanHTTPClient(encoded=encoded) as client:
            for url, start, end in requests:
                try:
                    answers.append(await client.get_range(url, start, end))
                except Exception as exc:  # pylint: disable=broad-except
                    answers.append(exc)
        return answers

    return asyncio.run(run())


RANGES = [(0, 1), (0, 128), (17, 4000), (4999, 5000), (0, SIZE), (4000, 9000), (SIZE - 10, SIZE + 100)]


def test_every_range_is_the_files_bytes_over_one_connection(server, served):
    """Ranges inside the file, up to its end and past it (the part it has): the file's bytes, on one connection."""
    data = (served / "plain.bin").read_bytes()
    server.reset_stats()
    answers = get_ranges([(f"{server.url}/plain.bin", start, end) for start, end in RANGES])
    assert answers == [data[start:end] for start, end in RANGES]
    assert server.stats.get_requests == len(RANGES)
    assert server.peak_connections == 1


def test_quoted_names_read_as_fsspec_reads_them(server, served):
    """A name needing quotes, as fsspec's listing gives it (quoted) and as a user may write it (not quoted):
    the same bytes as fsspec's own client reads."""
    fs = fsspec.filesystem("http")
    listed = [path for path in fs.ls(server.url + "/", detail=False) if "plain" not in path]
    assert len(listed) == 1
    written = f"{server.url}/{ODD_NAME}".replace("#", quote("#"))  # an unquoted '#' would start a fragment
    expected = (served / ODD_NAME).read_bytes()[10:300]
    for url in (listed[0], written):
        assert fs.cat_file(url, start=10, end=300) == expected
        assert get_ranges([(url, 10, 300)]) == [expected]


def test_missing_file_is_not_lean(server):
    """A 404 is left to the full client (which raises FileNotFoundError)."""
    [answer] = get_ranges([(f"{server.url}/nope.bin", 0, 10)])
    assert isinstance(answer, NotLean) and "404" in str(answer)


def test_range_past_the_end_is_not_lean(server):
    """A 416 (range starting past the end) is left to the full client."""
    [answer] = get_ranges([(f"{server.url}/plain.bin", SIZE + 10, SIZE + 20)])
    assert isinstance(answer, NotLean) and "416" in str(answer)


@pytest.mark.parametrize("url", ["https://127.0.0.1:1/x", "http://user:secret@127.0.0.1:1/x"])
def test_urls_it_does_not_take(url):
    """https and URLs carrying credentials go to the full client, before any connection is made."""
    [answer] = get_ranges([(url, 0, 10)])
    assert isinstance(answer, NotLean)


# ---------------------------------------------------------------- answers a scripted server gives


class ScriptedServer:
    """Answers requests with canned bytes in order, whatever they ask; `CLOSE` in the script closes the connection.

    Records the request heads and counts connections. For answers real servers give but the test servers don't.
    """

    CLOSE = b""

    def __init__(self, script: list[bytes]) -> None:
        self.script = list(script)
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self.serve, args=(connection,), daemon=True).start()

    def serve(self, connection: socket.socket) -> None:
        with connection:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                with self.lock:
                    self.requests.append(head)
                    answer = self.script.pop(0) if self.script else self.CLOSE
                if answer == self.CLOSE:
                    return
                connection.sendall(answer)
                if self.script and self.script[0] == self.CLOSE:
                    with self.lock:
                        self.script.pop(0)
                    return

    def close(self) -> None:
        self.listener.close()


def ranged(body: bytes, start: int = 0, total: int = 100, extra: str = "") -> bytes:
    """A well-formed 206 answer for `body` at `start`."""
    end = start + len(body) - 1
    head = f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end}/{total}\r\n"
    return f"{head}Content-Length: {len(body)}\r\n{extra}\r\n".encode() + body


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def start(*script: bytes) -> ScriptedServer:
        servers.append(ScriptedServer(list(script)))
        return servers[-1]

    yield start
    for each in servers:
        each.close()


@pytest.mark.parametrize(
    "answer, reason, reusable",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nwhol", "status 200", True),
        (b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n", "status 302", True),
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "status 503", True),
        (b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n", "framed", False),
        (b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-3/100\r\n\r\nabcd", "framed", False),
        (ranged(b"abcd", extra="Content-Encoding: gzip\r\n"), "compressed", True),
        (ranged(b"abcd", start=1), "Content-Range", True),
        (ranged(b"abcd").replace(b"0-3/", b"0-4/"), "Content-Range", True),
        (ranged(b"abcd").replace(b"Content-Range", b"X-Range"), "Content-Range", True),
        (ranged(b"a" * 20), "Content-Range", True),  # more bytes than asked
        (b"ICY 200 OK\r\n\r\n", "status line", False),
        (b"HTTP/1.1 20x Odd\r\nContent-Length: 0\r\n\r\n", "status line", False),
        (b"HTTP/1.1 206 Partial Content\r\nX-Pad: " + b"p" * 70_000, "too long", False),
    ],
)
def test_unexpected_answers_are_not_lean(scripted, answer, reason, reusable):
    """Every answer but a plain 206 of the asked range is NotLean, naming why. The connection carries the next
    request if the answer was whole and framed by its Content-Length, else a new one does."""
    server = scripted(answer, ranged(b"wxyz"))
    first, second = get_ranges([(f"{server.url}/f", 0, 4), (f"{server.url}/f", 0, 4)])
    assert isinstance(first, NotLean) and reason in str(first)
    assert second == b"wxyz"
    assert server.connections == (1 if reusable else 2)


def test_requests_on_one_keep_alive_connection(scripted):
    """Three requests, one connection; each a plain GET of the path with Host and Range."""
    server = scripted(ranged(b"ab"), ranged(b"cd", start=2), ranged(b"ef", start=4))
    answers = get_ranges([(f"{server.url}/f?v=1", 0, 2), (f"{server.url}/f?v=1", 2, 4), (f"{server.url}/g", 4, 6)])
    assert answers == [b"ab", b"cd", b"ef"]
    assert server.connections == 1
    port = server.url.rsplit(":", 1)[1]
    assert [request.decode() for request in server.requests] == [
        f"GET /f?v=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nRange: bytes=0-1",
        f"GET /f?v=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nRange: bytes=2-3",
        f"GET /g HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nRange: bytes=4-5",
    ]


@pytest.mark.parametrize(
    "version, connection, reused",
    [
        ("HTTP/1.1", "", True),
        ("HTTP/1.1", "Connection: close\r\n", False),
        ("HTTP/1.0", "", False),
        ("HTTP/1.0", "Connection: keep-alive\r\n", True),
    ],
)
def test_keep_alive_as_the_answer_says(scripted, version, connection, reused):
    """HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes it unless told to keep it."""
    first = ranged(b"ab", extra=connection).replace(b"HTTP/1.1", version.encode())
    server = scripted(first, ranged(b"cd", start=2))
    assert get_ranges([(f"{server.url}/f", 0, 2), (f"{server.url}/f", 2, 4)]) == [b"ab", b"cd"]
    assert server.connections == (1 if reused else 2)


def test_bytes_after_an_answer_retire_the_connection(scripted):
    """An answer followed by bytes nobody asked for (a late '408 Request Timeout', say): the next request goes on
    a new connection, and reads its own answer, not those bytes."""
    timeout = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
    server = scripted(ranged(b"ab") + timeout, ranged(b"cd", start=2))
    assert get_ranges([(f"{server.url}/f", 0, 2), (f"{server.url}/f", 2, 4)]) == [b"ab", b"cd"]
    assert server.connections == 2


def test_ipv6_host_in_brackets():
    """An IPv6 literal: connected to, and named in the Host header in brackets."""
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    port = listener.getsockname()[1]
    heads: list[bytes] = []

    def answer_once() -> None:
        connection, _ = listener.accept()
        with connection:
            heads.append(connection.recv(65536))
            connection.sendall(ranged(b"v6"))

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    try:
        assert get_ranges([(f"http://[::1]:{port}/f", 0, 2)]) == [b"v6"]
    finally:
        thread.join(10)
        listener.close()
    assert f"Host: [::1]:{port}\r\n".encode() in heads[0]


def test_connection_closed_by_the_server_while_idle_is_replaced(scripted):
    """A keep-alive connection the server closed after its answer: the next request goes on a new one."""
    server = scripted(ranged(b"ab"), ScriptedServer.CLOSE, ranged(b"cd", start=2))
    assert get_ranges([(f"{server.url}/f", 0, 2), (f"{server.url}/f", 2, 4)]) == [b"ab", b"cd"]
    assert server.connections == 2


def test_answer_cut_short_is_a_connection_error(scripted):
    """A server closing in the middle of a body: a ConnectionError (the full client then asks again)."""
    server = scripted(ranged(b"abcdef")[:-3], ScriptedServer.CLOSE)
    [answer] = get_ranges([(f"{server.url}/f", 0, 6)])
    assert isinstance(answer, ConnectionError)


def test_connection_refused_is_an_os_error():
    """Nothing listening: the OSError of the connect (the full client then gives the usual error)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    [answer] = get_ranges([(f"http://127.0.0.1:{port}/f", 0, 6)])
    assert isinstance(answer, OSError)


# ---------------------------------------------------------------- the reader's use of it


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory):
    """40 small npy files of 1 to 5 rows."""
    folder = tmp_path_factory.mktemp("lean_collection") / "embeddings"
    return write_npy_collection(folder, [1 + k % 5 for k in range(40)], dim=8)


def spy_on_lean_reads(monkeypatch) -> list[Any]:
    """Record each answer (bytes or exception) of the lean client's reads."""
    answers: list[Any] = []
    real = LeanHTTPClient.get_range

    async def recorded(self, url: str, start: int, end: int) -> bytes:
        try:
            answers.append(await real(self, url, start, end))
        except Exception as exc:
            answers.append(exc)
            raise
        return answers[-1]

    monkeypatch.setattr(LeanHTTPClient, "get_range", recorded)
    return answers


@pytest.mark.parametrize("server_class", list(SERVERS.values()), ids=list(SERVERS))
def test_reader_reads_headers_through_it_without_options(server_class, collection, monkeypatch):
    """No storage options: every header is read by the lean client; the rows are the rows written."""
    answers = spy_on_lean_reads(monkeypatch)
    with server_class(Path(collection.folder).parent) as server:
        reader = EmbeddingReader(f"{server.url}/embeddings", file_format="npy")
        assert len(answers) == len(collection.paths) and all(isinstance(answer, bytes) for answer in answers)
        [(embeddings, meta)] = list(reader(batch_size=reader.count))
    assert (embeddings == collection.embeddings).all()
    assert meta["i"].tolist() == list(range(reader.count))


def test_reader_with_storage_options_uses_aiohttp(http_server_factory, collection, monkeypatch):
    """A user's options (here headers) must reach every request: the lean client is not used."""
    answers = spy_on_lean_reads(monkeypatch)
    server = http_server_factory(Path(collection.folder).parent)
    reader = EmbeddingReader(
        f"{server.url}/embeddings", file_format="npy", storage_options={"headers": {"X-Test": "1"}}
    )
    assert answers == [] and reader.count == len(collection.embeddings)


def open_outcome(url: str, **kwargs: Any) -> Any:
    """The reader's count, or the type and message of the error opening it raised."""
    try:
        return EmbeddingReader(url, file_format="npy", retry_policy=FAST_FAILURE, **kwargs).count
    except Exception as exc:  # pylint: disable=broad-except
        return type(exc), str(exc)


def test_reader_falls_back_to_aiohttp_for_what_it_does_not_take(http_server_factory, collection, monkeypatch):
    """Headers answered 200 (a server ignoring Range): the lean client refuses each, and the open ends as it does
    through aiohttp alone."""
    answers = spy_on_lean_reads(monkeypatch)
    server = http_server_factory(Path(collection.folder).parent)
    server.ignore_ranges = True
    url = f"{server.url}/embeddings"
    through_lean = open_outcome(url)
    assert len(answers) == len(collection.paths) and all(isinstance(answer, NotLean) for answer in answers)
    assert through_lean == open_outcome(url, storage_options={"headers": {}})
