"""The loopback test servers work with the real clients (fsspec/aiohttp, http.client, s3fs), faults included.

Several tests also pin client behaviours the reader's retry design relies on (see the docstrings).
"""

from __future__ import annotations

import errno
import http.client
import logging
import random
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import botocore.exceptions
import fsspec
import pytest
import s3fs

from tests.support.async_http_server import AsyncRangeHTTPServer
from tests.support.faults import FaultConfig, FaultKind
from tests.support.http_server import RangeHTTPServer
from tests.support.s3_server import FaultProxy, MotoS3Server

BIG = 200_000
LARGE = 1_500_000  # sent by sendfile on the asyncio server
FILES = {"folder/a.bin": BIG, "folder/large.bin": LARGE, "folder/sub/b.bin": 10_000, "folder/sub/deeper/c.txt": 12}
BUCKET = "support-servers"
NO_RETRIES = {"config_kwargs": {"retries": {"total_max_attempts": 1}}}
# The fault-free behaviour both static servers share (the asyncio one measures clients in the benchmark).
STATIC_SERVERS = {"threaded": RangeHTTPServer, "asyncio": AsyncRangeHTTPServer}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small tree of seeded random files."""
    root = tmp_path_factory.mktemp("served")
    rng = random.Random(42)
    for name, size in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    return root


@pytest.fixture(scope="module", params=list(STATIC_SERVERS))
def plain_server(request: pytest.FixtureRequest, data_root: Path) -> Iterator[RangeHTTPServer]:
    """A fault-free server over ``data_root``, of each kind."""
    with STATIC_SERVERS[request.param](data_root) as server:
        yield server


@pytest.fixture(scope="module")
def s3_data(moto_s3: MotoS3Server, data_root: Path) -> list[str]:
    """``data_root`` uploaded under ``BUCKET/data``."""
    return moto_s3.upload_folder(data_root, BUCKET, prefix="data")


def http_fs(**kwargs: Any) -> fsspec.AbstractFileSystem:
    """A fresh fsspec HTTP filesystem (no instance cache, no listings cache)."""
    return fsspec.filesystem("http", skip_instance_cache=True, use_listings_cache=False, **kwargs)


def s3_fs(options: dict[str, Any], own_retries: int | None = None) -> s3fs.S3FileSystem:
    """A fresh s3fs filesystem; ``own_retries`` overrides s3fs's own retry loop (a class attribute, 5)."""
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    if own_retries is not None:
        fs.retries = own_retries
    return fs


def host_port(url: str) -> tuple[str, int]:
    """Host and port of a loopback server URL."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def raw_request(
    url: str, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request with http.client: status, headers and the whole body."""
    connection = http.client.HTTPConnection(*host_port(url), timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def content(root: Path, name: str) -> bytes:
    """Bytes of a served file."""
    return (root / name).read_bytes()


# --- the static HTTP server with fsspec ---------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end"), [(0, 1), (10, 5000), (BIG - 7, BIG), (70_000, None), (-100, None)])
def test_cat_file_returns_exact_bytes(plain_server: RangeHTTPServer, data_root: Path, start: int, end: int | None):
    """fsspec's ranged cat_file gets exactly the asked bytes."""
    got = http_fs().cat_file(f"{plain_server.url}/folder/a.bin", start, end)
    assert got == content(data_root, "folder/a.bin")[start:end]


@pytest.mark.parametrize(("start", "end"), [(None, None), (1, LARGE - 1), (300_000, 1_300_000)])
def test_large_bodies_come_whole(plain_server: RangeHTTPServer, data_root: Path, start: int | None, end: int | None):
    """Bodies larger than one socket write (sendfile on the asyncio server) arrive exact, and counted."""
    plain_server.reset_stats()
    got = http_fs().cat_file(f"{plain_server.url}/folder/large.bin", start, end)
    assert got == content(data_root, "folder/large.bin")[start:end]
    assert plain_server.stats.bytes_sent == len(got)


def test_find_lists_nested_files_and_info_gives_sizes(plain_server: RangeHTTPServer, data_root: Path):
    """``find(detail=True)`` walks the HTML listings with GETs only and reports size None; ``info`` HEADs the size."""
    fs = http_fs()
    plain_server.reset_stats()
    found = fs.find(f"{plain_server.url}/folder/", detail=True)
    assert sorted(found) == sorted(f"{plain_server.url}/{name}" for name in FILES)
    assert {info["size"] for info in found.values()} == {None}
    assert plain_server.stats.head_requests == 0 and plain_server.stats.get_requests == 3  # one per folder
    for name, size in FILES.items():
        assert fs.info(f"{plain_server.url}/{name}")["size"] == size
    assert plain_server.stats.head_requests == len(FILES)


def test_listing_works_with_and_without_trailing_slash(plain_server: RangeHTTPServer):
    """A folder URL answers an HTML listing whose links name files, and sub-folders with a trailing slash."""
    for path in ("/folder", "/folder/"):
        status, headers, body = raw_request(plain_server.url, path)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert '<a href="a.bin">' in body.decode() and '<a href="sub/">' in body.decode()


@pytest.mark.parametrize(
    ("range_header", "status", "first", "last"),
    [
        ("bytes=0-0", 206, 0, 0),
        ("bytes=100-199", 206, 100, 199),
        ("bytes=100-", 206, 100, BIG - 1),
        ("bytes=-10", 206, BIG - 10, BIG - 1),
        ("bytes=-999999", 206, 0, BIG - 1),
        ("bytes=199990-300000", 206, 199990, BIG - 1),
        ("bytes=0-1,5-6", 200, 0, BIG - 1),
        ("items=0-1", 200, 0, BIG - 1),
    ],
)
def test_range_answers(
    plain_server: RangeHTTPServer, data_root: Path, range_header: str, status: int, first: int, last: int
):
    """Satisfiable ranges get a 206 with matching Content-Range/Content-Length; unparsable ones the whole file."""
    got_status, headers, body = raw_request(plain_server.url, "/folder/a.bin", {"Range": range_header})
    assert got_status == status
    assert body == content(data_root, "folder/a.bin")[first : last + 1]
    assert headers["Content-Length"] == str(len(body)) and headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Range"] == (f"bytes {first}-{last}/{BIG}" if status == 206 else None)


@pytest.mark.parametrize("range_header", [f"bytes={BIG}-", "bytes=10-5", "bytes=-0"])
def test_unsatisfiable_range_is_416(plain_server: RangeHTTPServer, range_header: str):
    """Ranges past the end, inverted or empty are answered 416 with ``Content-Range: bytes */size``."""
    status, headers, _ = raw_request(plain_server.url, "/folder/a.bin", {"Range": range_header})
    assert status == 416 and headers["Content-Range"] == f"bytes */{BIG}"


def test_malformed_request_closes_the_connection_quietly(plain_server: RangeHTTPServer, capfd, caplog):
    """A request line that does not parse is refused without a traceback; the server goes on serving others."""
    with socket.create_connection(host_port(plain_server.url)) as client:
        client.sendall(b"NONSENSE\r\n\r\n")
        client.settimeout(5)
        client.recv(1000)  # the asyncio server closes the connection, the threaded one answers a 400 page
    assert raw_request(plain_server.url, "/folder/sub/deeper/c.txt")[0] == 200
    assert "Traceback" not in capfd.readouterr().err
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text


def test_head_and_missing_files(plain_server: RangeHTTPServer):
    """HEAD gives the length without a body; a missing file is a 404 (FileNotFoundError in fsspec)."""
    status, headers, body = raw_request(plain_server.url, "/folder/a.bin", method="HEAD")
    assert (status, headers["Content-Length"], body) == (200, str(BIG), b"")
    assert raw_request(plain_server.url, "/folder/nope.bin")[0] == 404
    assert raw_request(plain_server.url, "/../etc/passwd")[0] == 404
    with pytest.raises(FileNotFoundError):
        http_fs().cat_file(f"{plain_server.url}/folder/nope.bin")


def test_keep_alive_is_reused_by_http_client_and_aiohttp(plain_server: RangeHTTPServer):
    """Responses are self-delimited, so one connection carries many requests."""
    connection = http.client.HTTPConnection(*host_port(plain_server.url))
    connection.request("GET", "/folder/sub/b.bin")
    connection.getresponse().read()
    first_socket = connection.sock
    connection.request("GET", "/folder")
    connection.getresponse().read()
    assert connection.sock is first_socket
    connection.close()

    created: list[int] = []
    reused: list[int] = []
    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(lambda *args: _append(created))
    trace.on_connection_reuseconn.append(lambda *args: _append(reused))
    fs = http_fs(client_kwargs={"trace_configs": [trace]})
    for _ in range(5):
        fs.cat_file(f"{plain_server.url}/folder/sub/b.bin", 0, 100)
    assert len(created) == 1 and len(reused) == 4


async def _append(calls: list[int]) -> None:
    """aiohttp trace callback: note one call."""
    calls.append(1)


def test_stats_count_requests_and_body_bytes(plain_server: RangeHTTPServer):
    """Requests are counted by method and only body bytes are counted as sent."""
    plain_server.reset_stats()
    raw_request(plain_server.url, "/folder/a.bin", {"Range": "bytes=0-999"})
    raw_request(plain_server.url, "/folder/a.bin", method="HEAD")
    stats = plain_server.stats
    assert (stats.requests, stats.get_requests, stats.head_requests, stats.bytes_sent) == (2, 1, 1, 1000)
    plain_server.reset_stats()
    assert (stats.requests, stats.bytes_sent, sum(stats.faults.values())) == (0, 0, 0)


@pytest.mark.parametrize("server_class", STATIC_SERVERS.values())
def test_client_disconnect_leaves_stderr_clean(server_class, data_root: Path, capfd: pytest.CaptureFixture[str]):
    """A client hanging up mid-body prints no traceback."""
    with server_class(data_root, bytes_per_s_per_connection=1_000_000) as server:
        with socket.create_connection(host_port(server.url)) as client:
            client.sendall(b"GET /folder/a.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            client.recv(1000)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.3)
    assert capfd.readouterr().err == ""


# --- latency and throttling -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("server_class", STATIC_SERVERS.values())
def test_latency_delays_each_request(server_class, data_root: Path):
    """Each request waits ``latency_s`` before its answer."""
    with server_class(data_root, latency_s=0.1) as server:
        fs = http_fs()
        started = time.monotonic()
        for _ in range(3):
            assert fs.cat_file(f"{server.url}/folder/sub/deeper/c.txt") == content(data_root, "folder/sub/deeper/c.txt")
        assert time.monotonic() - started >= 0.8 * 0.3


@pytest.mark.parametrize("server_class", STATIC_SERVERS.values())
@pytest.mark.parametrize(("start", "end"), [(None, None), (1000, 151_000)])
def test_throttle_caps_body_rate(server_class, data_root: Path, start: int | None, end: int | None):
    """A body of N bytes takes about N / bytes_per_s_per_connection seconds, and comes whole."""
    with server_class(data_root, bytes_per_s_per_connection=1_000_000) as server:
        started = time.monotonic()
        got = http_fs().cat_file(f"{server.url}/folder/a.bin", start, end)
        assert got == content(data_root, "folder/a.bin")[start:end]
        assert time.monotonic() - started >= 0.8 * len(got) / 1_000_000


# --- injected faults on the static server, seen by http.client and fsspec ---------------------------------------


def test_error_faults_are_500_or_503_and_keep_the_connection(
    http_server_factory: Callable[..., RangeHTTPServer], data_root: Path
):
    """``error_rate`` answers 500/503 (fsspec raises aiohttp.ClientResponseError with ``.status``)."""
    server = http_server_factory(data_root, faults=FaultConfig(error_rate=1.0))
    statuses = {raw_request(server.url, "/folder/a.bin")[0] for _ in range(20)}
    assert statuses == {500, 503}
    with pytest.raises(aiohttp.ClientResponseError) as caught:
        http_fs().cat_file(f"{server.url}/folder/a.bin", 0, 10)
    assert caught.value.status in (500, 503)
    assert server.stats.faults[FaultKind.ERROR_500] + server.stats.faults[FaultKind.ERROR_503] == 21


def test_429_fault_has_retry_after(http_server_factory: Callable[..., RangeHTTPServer], data_root: Path):
    """``status_429_rate`` answers 429 with ``Retry-After: 0``."""
    server = http_server_factory(data_root, faults=FaultConfig(status_429_rate=1.0))
    status, headers, _ = raw_request(server.url, "/folder/a.bin")
    assert (status, headers["Retry-After"]) == (429, "0")
    with pytest.raises(aiohttp.ClientResponseError) as caught:
        http_fs().cat_file(f"{server.url}/folder/a.bin", 0, 10)
    assert caught.value.status == 429


def test_info_turns_any_http_error_into_file_not_found(
    http_server_factory: Callable[..., RangeHTTPServer], data_root: Path
):
    """Pinned fsspec behaviour: ``info``/``open`` on a 503 (HEAD, then GET) raise FileNotFoundError, cause kept."""
    server = http_server_factory(data_root, faults=FaultConfig(always_fail=True))
    with pytest.raises(FileNotFoundError) as caught:
        http_fs().info(f"{server.url}/folder/a.bin")
    assert isinstance(caught.value.__cause__, aiohttp.ClientResponseError) and caught.value.__cause__.status == 503
    assert (server.stats.head_requests, server.stats.get_requests) == (1, 1)


def test_always_fail_also_fails_listings(http_server_factory: Callable[..., RangeHTTPServer], data_root: Path):
    """``always_fail`` answers 503 to everything, listings included."""
    server = http_server_factory(data_root, faults=FaultConfig(always_fail=True))
    assert raw_request(server.url, "/folder/")[0] == 503
    assert raw_request(server.url, "/folder/a.bin", method="HEAD")[0] == 503
    with pytest.raises(aiohttp.ClientResponseError):
        http_fs().find(f"{server.url}/folder/")


@pytest.mark.parametrize(
    ("faults", "raw_error"),
    [(FaultConfig(reset_rate=1.0), ConnectionResetError), (FaultConfig(truncate_rate=1.0), http.client.IncompleteRead)],
)
def test_body_faults_cut_the_body(
    http_server_factory: Callable[..., RangeHTTPServer], data_root: Path, faults: FaultConfig, raw_error: type
):
    """Resets (TCP RST) and truncations (FIN) both surface in fsspec as aiohttp.ClientPayloadError."""
    server = http_server_factory(data_root, faults=faults)
    with pytest.raises(raw_error):
        raw_request(server.url, "/folder/a.bin")
    with pytest.raises(aiohttp.ClientPayloadError):
        http_fs().cat_file(f"{server.url}/folder/a.bin", 0, 100_000)
    assert http_fs().info(f"{server.url}/folder/a.bin")["size"] == BIG  # HEAD has no body to cut
    assert server.stats.bytes_sent == BIG // 2 + 50_000


def test_short_206_is_self_consistent_and_fsspec_accepts_it(
    http_server_factory: Callable[..., RangeHTTPServer], data_root: Path
):
    """Pinned fsspec behaviour: a short 206 is returned silently, so callers must check lengths themselves."""
    server = http_server_factory(data_root, faults=FaultConfig(short_206_rate=1.0))
    status, headers, body = raw_request(server.url, "/folder/a.bin", {"Range": "bytes=1000-1999"})
    assert (status, headers["Content-Range"], len(body)) == (206, f"bytes 1000-1499/{BIG}", 500)
    got = http_fs().cat_file(f"{server.url}/folder/a.bin", 0, 1000)
    assert got == content(data_root, "folder/a.bin")[:500]
    assert raw_request(server.url, "/folder/a.bin")[2] == content(data_root, "folder/a.bin")  # 200s stay whole


def test_listings_and_small_requests_can_be_spared(
    http_server_factory: Callable[..., RangeHTTPServer], data_root: Path
):
    """Listings are never faulted; with ``fault_small_requests=False`` neither are bodies under 4096 bytes."""
    server = http_server_factory(data_root, faults=FaultConfig(error_rate=1.0, fault_small_requests=False))
    fs = http_fs()
    assert len(fs.find(f"{server.url}/folder/")) == len(FILES)
    assert len(fs.cat_file(f"{server.url}/folder/a.bin", 0, 4095)) == 4095
    assert fs.info(f"{server.url}/folder/a.bin")["size"] == BIG
    assert raw_request(server.url, "/folder/a.bin", {"Range": "bytes=0-4095"})[0] in (500, 503)


def test_paths_only_limits_faults(http_server_factory: Callable[..., RangeHTTPServer], data_root: Path):
    """``paths_only`` faults only URL paths containing the substring."""
    server = http_server_factory(data_root, faults=FaultConfig(error_rate=1.0, paths_only="/sub/"))
    assert raw_request(server.url, "/folder/a.bin")[0] == 200
    assert raw_request(server.url, "/folder/sub/b.bin")[0] in (500, 503)


def test_fault_sequence_is_reproducible(http_server_factory: Callable[..., RangeHTTPServer], data_root: Path):
    """The same seed gives the same faults for the same sequential requests."""

    def statuses(seed: int) -> list[int]:
        """Statuses of 30 sequential GETs on a fresh server seeded with ``seed``."""
        server = http_server_factory(data_root, faults=FaultConfig(error_rate=0.3, status_429_rate=0.2, seed=seed))
        return [raw_request(server.url, "/folder/sub/b.bin")[0] for _ in range(30)]

    first = statuses(7)
    assert first == statuses(7) and first != statuses(8)
    assert {200, 429} <= set(first)


# --- moto S3 and the fault proxy with s3fs --------------------------------------------------------------------------


def test_s3fs_lists_and_reads_moto_directly(moto_s3: MotoS3Server, s3_data: list[str], data_root: Path):
    """The uploaded folder keeps its relative paths, and s3fs finds sizes and reads ranges."""
    assert s3_data == sorted(f"data/{name}" for name in FILES)
    fs = s3_fs(moto_s3.storage_options())
    found = fs.find(f"{BUCKET}/data", detail=True)
    assert {name: info["size"] for name, info in found.items()} == {f"{BUCKET}/data/{n}": s for n, s in FILES.items()}
    got = fs.cat_file(f"{BUCKET}/data/folder/a.bin", start=5, end=5005)  # the 3rd positional is version_id
    assert got == content(data_root, "folder/a.bin")[5:5005]


def test_s3fs_through_fault_free_proxy(
    moto_s3: MotoS3Server,
    s3_data: list[str],
    data_root: Path,
    fault_proxy_factory: Callable[..., FaultProxy],
):
    """Signed requests pass the proxy unchanged: listing, ranged reads and writes all work; stats count them."""
    proxy = fault_proxy_factory(moto_s3.endpoint_url)
    fs = s3_fs(moto_s3.storage_options(proxy.url))
    assert len(fs.find(f"{BUCKET}/data")) == len(FILES)
    assert (
        fs.cat_file(f"{BUCKET}/data/folder/a.bin", start=100, end=1100) == content(data_root, "folder/a.bin")[100:1100]
    )
    fs.pipe_file(f"{BUCKET}/written/x.bin", b"x" * 100_000)
    assert s3_fs(moto_s3.storage_options()).cat_file(f"{BUCKET}/written/x.bin") == b"x" * 100_000
    assert proxy.stats.requests >= 3 and proxy.stats.get_requests >= 2 and proxy.stats.bytes_sent >= 1000
    assert not proxy.stats.faults


def test_proxy_refuses_chunked_request_bodies(moto_s3: MotoS3Server, fault_proxy_factory: Callable[..., FaultProxy]):
    """Request bodies are relayed by Content-Length only; a chunked one is refused, not silently dropped."""
    proxy = fault_proxy_factory(moto_s3.endpoint_url)
    status, _, _ = raw_request(proxy.url, f"/{BUCKET}/k", {"Transfer-Encoding": "chunked"}, method="PUT")
    assert status == 501


def test_s3fs_error_faults_become_oserrors(
    moto_s3: MotoS3Server, s3_data: list[str], fault_proxy_factory: Callable[..., FaultProxy]
):
    """Pinned s3fs behaviour: a 500 is OSError(EREMOTEIO), a 503 OSError(EBUSY), a 429 OSError(EIO).

    ``__cause__`` is botocore's ClientError with the status; ``config_kwargs.retries.total_max_attempts=1`` and
    ``fs.retries=1`` make exactly one request per call, while listings are never faulted.
    """
    proxy = fault_proxy_factory(moto_s3.endpoint_url, FaultConfig(error_rate=0.5, status_429_rate=0.5))
    fs = s3_fs({**moto_s3.storage_options(proxy.url), **NO_RETRIES}, own_retries=1)
    assert len(fs.find(f"{BUCKET}/data")) == len(FILES)
    expected_errno = {500: errno.EREMOTEIO, 503: errno.EBUSY, 429: errno.EIO}
    proxy.reset_stats()
    for _ in range(6):
        with pytest.raises(OSError) as caught:
            fs.cat_file(f"{BUCKET}/data/folder/a.bin", start=0, end=100)
        cause = caught.value.__cause__
        assert isinstance(cause, botocore.exceptions.ClientError)
        assert caught.value.errno == expected_errno[cause.response["ResponseMetadata"]["HTTPStatusCode"]]
    assert proxy.stats.requests == 6


@pytest.mark.parametrize("faults", [FaultConfig(reset_rate=1.0), FaultConfig(truncate_rate=1.0)])
def test_s3fs_body_faults_raise_client_payload_error(
    moto_s3: MotoS3Server, s3_data: list[str], fault_proxy_factory: Callable[..., FaultProxy], faults: FaultConfig
):
    """Pinned s3fs behaviour: a cut body escapes as aiohttp.ClientPayloadError after s3fs's own retries."""
    proxy = fault_proxy_factory(moto_s3.endpoint_url, faults)
    fs = s3_fs({**moto_s3.storage_options(proxy.url), **NO_RETRIES}, own_retries=2)
    with pytest.raises(aiohttp.ClientPayloadError):
        fs.cat_file(f"{BUCKET}/data/folder/a.bin", start=0, end=100_000)
    assert proxy.stats.get_requests == 2 and proxy.stats.bytes_sent == 2 * 50_000


def test_s3fs_accepts_short_206_silently(
    moto_s3: MotoS3Server,
    s3_data: list[str],
    data_root: Path,
    fault_proxy_factory: Callable[..., FaultProxy],
):
    """Pinned s3fs behaviour: a short but self-consistent 206 comes back as fewer bytes, without error."""
    proxy = fault_proxy_factory(moto_s3.endpoint_url, FaultConfig(short_206_rate=1.0))
    fs = s3_fs(moto_s3.storage_options(proxy.url))
    assert fs.cat_file(f"{BUCKET}/data/folder/a.bin", start=0, end=1000) == content(data_root, "folder/a.bin")[:500]
