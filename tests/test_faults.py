"""Reads through fault-injecting servers: 500/503, 429, connection resets, cut bodies and short 206 answers, on
piece and header reads, over http and over the S3 protocol. Every read either returns exactly the stored rows,
aligned with their metadata, or fails with a clear ReadFailedError naming the file, the byte range and the attempts.

Each test prints one line of the fault matrix (`pytest -rP` shows them): format, faults, seed, outcome, requests
and the faults the server injected (each one cost the reader one retry).
"""

from __future__ import annotations

import os
import re
import statistics
import time

import psutil
import pytest
import s3fs

from embedding_reader import EmbeddingReader, ReadFailedError, RetryPolicy
from embedding_reader.storage import http as storage_http
from tests.support.collections import (
    ALL_FORMATS,
    Collection,
    write_collection,
    write_npy_collection,
    write_parquet_npy_collection,
)
from tests.support.faults import FaultConfig, FaultInjector, FaultKind
from tests.support.http_server import RangeHTTPServer, _StaticFileHandler
from tests.support.remote import (
    NO_BOTOCORE_RETRIES,
    Remote,
    assert_rows,
    open_remote,
    read_pass,
    reader_threads,
)
from tests.support.s3_server import FaultProxy, MotoS3Server

pytestmark = pytest.mark.timeout(120)

ROWS = [60, 0, 45, 80, 33, 0, 70, 52, 61, 20, 5, 74]  # 500 rows in 12 files, two of them empty
ROW_GROUP = 10
BATCH, PIECE = 50, 10  # about 55 pieces: 70 requests per read with the header reads (120 for parquet_npy)
SEEDS = [1, 2, 3]
MIXED = {"error_rate": 0.05, "reset_rate": 0.02, "truncate_rate": 0.02, "short_206_rate": 0.02, "status_429_rate": 0.01}
HEAVY = {  # one kind at a time, often enough to hit header reads of most files
    "error_500_503": {"error_rate": 0.3},
    "status_429": {"status_429_rate": 0.3},
    "reset": {"reset_rate": 0.2},
    "truncate": {"truncate_rate": 0.2},
    "short_206": {"short_206_rate": 0.3},
}
ALWAYS_FAIL_POLICY = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01)
FAIL_DEADLINE_S = 30
BUCKET = "fault-tests"
SOAK_TOLERANCE = 16 * 2**20  # RSS noise between passes is a few MB; the collection read is 5 MB


def faults_collection(file_format: str, folder) -> Collection:
    """A 500-row collection of the format in 12 files (dimension 16, parquet row groups of 10 rows)."""
    return write_collection(file_format, folder, ROWS, 16, ROW_GROUP)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[str, dict[str, Collection]]:
    """A root folder holding one collection per format."""
    root = tmp_path_factory.mktemp("faults")
    return str(root), {name: faults_collection(name, root / name) for name in ALL_FORMATS}


def matrix_line(transport: str, file_format: str, kind: str, seed: int, outcome: str, stats, header_faults=0) -> None:
    """Print one row of the fault matrix (see the module docstring)."""
    faults = {str(getattr(k, "value", k)): v for k, v in sorted(stats.faults.items())}
    line = (
        f"MATRIX {transport:5} {file_format:12} {kind:14} seed={seed} {outcome:4} requests={stats.requests} "
        f"head={stats.head_requests} faults={sum(faults.values())} (opening: {header_faults}) {faults}"
    )
    print(line)


def faulty_http_read(tree, http_server_factory, file_format: str, faults: FaultConfig, kind: str) -> int:
    """Read a whole collection through an http server injecting `faults` (header reads included): exact rows.
    Returns the number of faults played while the reader was opened (header reads)."""
    root, collections = tree
    collection = collections[file_format]
    server = http_server_factory(root, faults=faults)
    reader = open_remote(collection, Remote(root, server.url))
    header_faults = sum(server.stats.faults.values())
    assert_rows(read_pass(reader, BATCH, max_piece_size=PIECE, parallel_pieces=4), collection, BATCH)
    matrix_line("http", file_format, kind, faults.seed, "ok", server.stats, header_faults)
    assert server.stats.faults, "no fault was played"
    return header_faults


# ---------------------------------------------------------------- the matrix over http


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("file_format", ALL_FORMATS)
def test_http_mixed_faults(tree, http_server_factory, file_format, seed):
    """5% 500/503, 2% resets, 2% cut bodies, 2% short 206, 1% 429 on every request: the read is exact."""
    faulty_http_read(tree, http_server_factory, file_format, FaultConfig(**MIXED, seed=seed), "mixed")


@pytest.mark.parametrize("kind", sorted(HEAVY))
@pytest.mark.parametrize("file_format", ALL_FORMATS)
def test_http_heavy_single_fault(tree, http_server_factory, file_format, kind):
    """One fault kind at a high rate (429 included): still exact, with faults played on header reads too."""
    faults = FaultConfig(**HEAVY[kind], seed=7)
    assert faulty_http_read(tree, http_server_factory, file_format, faults, kind) > 0


@pytest.mark.parametrize("file_format", ["npy", "parquet"])
def test_http_faults_in_streamed_parts(tree, http_server_factory, monkeypatch, file_format):
    """Pieces streamed as several concurrent range requests (parts of 256 bytes): exact under mixed faults,
    and each fault costs one request, that of its own part (no sibling part is fetched again). For npy the
    count is exact; for parquet, pieces sharing a row group sometimes fetch it twice (the shared cache is bounded),
    so there it is a bound: a refetch of sibling parts would cost about 50 more requests here."""
    monkeypatch.setattr(storage_http, "PART_BYTES", 256)
    root, collections = tree
    collection = collections[file_format]
    clean = http_server_factory(root)
    assert_rows(
        read_pass(open_remote(collection, Remote(root, clean.url)), BATCH, max_piece_size=PIECE), collection, BATCH
    )
    server = http_server_factory(root, faults=FaultConfig(**MIXED, seed=5))
    reader = open_remote(collection, Remote(root, server.url))
    assert_rows(read_pass(reader, BATCH, max_piece_size=PIECE, parallel_pieces=4), collection, BATCH)
    faults = sum(server.stats.faults.values())
    assert faults and clean.stats.requests > 2 * len(collection.paths)  # several parts per piece
    if file_format == "npy":
        assert server.stats.requests == clean.stats.requests + faults, (server.stats, clean.stats)
    else:
        assert server.stats.requests <= clean.stats.requests + faults + 10, (server.stats, clean.stats)


@pytest.mark.parametrize("file_format", ["npy", "parquet"])
def test_server_ignoring_ranges_is_refused(http_server_factory, file_format, tmp_path):
    """A server answering every range request with the whole file (200): a clear error at once, never wrong rows."""
    collection = faults_collection(file_format, tmp_path / file_format)
    server = http_server_factory(tmp_path)
    reader = open_remote(collection, Remote(str(tmp_path), server.url), retry_policy=ALWAYS_FAIL_POLICY)
    server.ignore_ranges = True
    server.reset_stats()
    with pytest.raises(ReadFailedError, match="status 200 to a range request: the server ignores Range"):
        read_pass(reader, BATCH, max_piece_size=PIECE, parallel_pieces=1)
    assert server.stats.requests < ALWAYS_FAIL_POLICY.max_attempts  # permanent: not retried


@pytest.mark.parametrize("file_format", ["npy", "parquet_npy"])
@pytest.mark.parametrize("options", [None, {"headers": {"X-Test": "1"}}], ids=["lean", "aiohttp"])
def test_server_ignoring_ranges_is_refused_at_open(http_server_factory, file_format, options, tmp_path):
    """npy header reads answered with the whole file (200): the open stops at once with the same clear error,
    through the lean client or aiohttp alone, not after a round of retries. (These parquet files are smaller
    than a footer read, so their whole file is the range asked: a 200 is then a right answer.)"""
    collection = faults_collection(file_format, tmp_path / file_format)
    server = http_server_factory(tmp_path)
    server.ignore_ranges = True
    remote = Remote(str(tmp_path), server.url, options)
    with pytest.raises(ReadFailedError, match=r"bytes \[\d+, \d+\): status 200 to a range request: the server ignores"):
        open_remote(collection, remote, retry_policy=ALWAYS_FAIL_POLICY)
    header_reads = len(collection.paths) + len(collection.metadata_paths)
    assert server.stats.get_requests <= 2 * header_reads + 2  # lean, then aiohttp, once each; and the listings


# ---------------------------------------------------------------- failures that must be reported, fast


def serve_copy(http_server_factory, file_format: str, tmp_path) -> tuple[Collection, RangeHTTPServer, Remote]:
    """A private copy of a format's collection served over http (so a test may delete or break its files)."""
    collection = faults_collection(file_format, tmp_path / file_format)
    server = http_server_factory(tmp_path)
    return collection, server, Remote(str(tmp_path), server.url)


@pytest.mark.parametrize("file_format", ALL_FORMATS)
def test_always_failing_server_ends_in_clear_error(http_server_factory, file_format, tmp_path):
    """A server that starts answering 503 to everything ends the read with a ReadFailedError naming the file,
    the byte range and the attempts, quickly with a fast policy."""
    collection, server, remote = serve_copy(http_server_factory, file_format, tmp_path)
    reader = open_remote(collection, remote, retry_policy=ALWAYS_FAIL_POLICY)
    server.faults = FaultInjector(FaultConfig(always_fail=True))
    server.reset_stats()
    started = time.monotonic()
    with pytest.raises(ReadFailedError) as info:
        read_pass(reader, BATCH, max_piece_size=PIECE, parallel_pieces=1)
    elapsed = time.monotonic() - started
    message = str(info.value)
    first_file = os.path.basename(collection.non_empty_paths[0])
    assert first_file in message and re.search(r"bytes \[\d+, \d+\)", message), message
    assert f"after {ALWAYS_FAIL_POLICY.max_attempts} attempts" in message and "503" in message, message
    assert elapsed < FAIL_DEADLINE_S
    assert server.stats.requests >= ALWAYS_FAIL_POLICY.max_attempts
    matrix_line("http", file_format, "always_fail", 0, "err", server.stats)
    print(f"       {elapsed:.2f} s: {message}")


def test_always_failing_server_while_opening(http_server_factory, tmp_path):
    """A server failing every request while the reader lists its folder: a clear error naming the listing."""
    collection, server, remote = serve_copy(http_server_factory, "npy", tmp_path)
    server.faults = FaultInjector(FaultConfig(always_fail=True))
    with pytest.raises(ReadFailedError, match=r"listing .*npy.* failed after 4 attempts"):
        open_remote(collection, remote, retry_policy=ALWAYS_FAIL_POLICY)
    assert server.stats.requests == ALWAYS_FAIL_POLICY.max_attempts


@pytest.mark.parametrize("file_format", ALL_FORMATS)
def test_deleted_file_fails_at_once(http_server_factory, file_format, tmp_path):
    """A file deleted after the reader was built is a 404: a permanent ReadFailedError after one request."""
    collection, server, remote = serve_copy(http_server_factory, file_format, tmp_path)
    reader = open_remote(collection, remote, retry_policy=RetryPolicy(max_attempts=8, base_delay=0.5, max_delay=1))
    first = collection.non_empty_paths[0]
    os.remove(first)
    server.reset_stats()
    with pytest.raises(ReadFailedError, match="permanent") as info:
        read_pass(reader, ROWS[0], max_piece_size=ROWS[0], parallel_pieces=1, end=ROWS[0])
    assert os.path.basename(first) in str(info.value)
    assert server.stats.requests == 1, server.stats  # not retried, so no backoff either
    matrix_line("http", file_format, "404", 0, "err", server.stats)


# ---------------------------------------------------------------- the S3 protocol


@pytest.fixture(scope="module")
def s3_tree(tree, moto_s3: MotoS3Server) -> tuple[str, dict[str, Collection], MotoS3Server]:
    """The tree uploaded to moto under s3://fault-tests/data."""
    root, collections = tree
    moto_s3.upload_folder(root, BUCKET, "data")
    return root, collections, moto_s3


@pytest.fixture
def s3fs_single_attempt(monkeypatch) -> None:
    """s3fs's own retry loop (5 attempts, not settable through storage_options) down to one attempt."""
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)


def s3_remote(root: str, moto: MotoS3Server, proxy: FaultProxy) -> Remote:
    """The tree through a fault proxy, botocore's retries off."""
    return Remote(root, f"s3://{BUCKET}/data", {**moto.storage_options(proxy.url), **NO_BOTOCORE_RETRIES})


@pytest.mark.usefixtures("s3fs_single_attempt")
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("file_format", ALL_FORMATS)
def test_s3_mixed_faults(s3_tree, fault_proxy_factory, file_format, seed):
    """The mixed faults through a proxy in front of moto, s3fs and botocore retries off: the read is exact."""
    root, collections, moto = s3_tree
    proxy = fault_proxy_factory(moto.endpoint_url, FaultConfig(**MIXED, seed=seed))
    collection = collections[file_format]
    reader = open_remote(collection, s3_remote(root, moto, proxy))
    header_faults = sum(proxy.stats.faults.values())
    assert_rows(read_pass(reader, BATCH, max_piece_size=PIECE, parallel_pieces=4), collection, BATCH)
    matrix_line("s3", file_format, "mixed", seed, "ok", proxy.stats, header_faults)


@pytest.mark.usefixtures("s3fs_single_attempt")
def test_s3_always_failing_ends_in_clear_error(s3_tree, fault_proxy_factory):
    """S3 answering 503 SlowDown to everything: a ReadFailedError naming the object, the range and the attempts."""
    root, collections, moto = s3_tree
    proxy = fault_proxy_factory(moto.endpoint_url)
    collection = collections["npy"]
    reader = open_remote(collection, s3_remote(root, moto, proxy), retry_policy=ALWAYS_FAIL_POLICY)
    proxy.faults = FaultInjector(FaultConfig(always_fail=True))
    proxy.reset_stats()
    started = time.monotonic()
    with pytest.raises(ReadFailedError) as info:
        read_pass(reader, BATCH, max_piece_size=PIECE, parallel_pieces=1)
    message = str(info.value)
    assert os.path.basename(collection.non_empty_paths[0]) in message and "after 4 attempts" in message, message
    assert re.search(r"bytes \[\d+, \d+\)", message), message
    assert time.monotonic() - started < FAIL_DEADLINE_S
    assert proxy.stats.requests >= ALWAYS_FAIL_POLICY.max_attempts
    matrix_line("s3", "npy", "always_fail", 0, "err", proxy.stats)


# ---------------------------------------------------------------- soak and shutdown


def rss_bytes() -> int:
    """Resident memory of this process."""
    return psutil.Process().memory_info().rss


def test_soak_rss_stays_flat(tmp_path, http_server_factory):
    """One few-MB collection read 20 times in one process through a faulty server: every pass exact, and RSS
    does not grow from pass to pass (median of the last 5 passes against passes 3 to 5)."""
    collection = write_parquet_npy_collection(tmp_path, [2500, 2500, 2500, 2500], dim=128, row_group_size=500)
    server = http_server_factory(tmp_path, faults=FaultConfig(**MIXED, seed=11))
    reader = open_remote(collection, Remote(str(tmp_path), server.url))
    rss = []
    for _ in range(20):
        assert_rows(read_pass(reader, 1000, max_piece_size=500), collection, 1000)
        rss.append(rss_bytes())
    early, late = statistics.median(rss[2:5]), statistics.median(rss[-5:])
    print(f"SOAK rss MB per pass: {[round(r / 2**20) for r in rss]} faults={dict(server.stats.faults)}")
    assert late <= early + SOAK_TOLERANCE, f"RSS grew from {early / 2**20:.0f} MB to {late / 2**20:.0f} MB"


def wait_for_no_reader_threads(timeout_s: float) -> None:
    """Return once no embedding_reader thread is alive, or after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while reader_threads() and time.monotonic() < deadline:
        time.sleep(0.01)


class CallerError(Exception):
    """Raised by a test's loop body."""


def batches_of_500(reader: EmbeddingReader, parallel_pieces: int):
    """A new iterator of 500-row batches in pieces of 500 rows (no other reference to it is kept)."""
    return reader(500, max_piece_size=500, parallel_pieces=parallel_pieces, show_progress=False)


def leave_loop_while_slowed(server, reader: EmbeddingReader, parallel_pieces: int, how: str) -> float:
    """Take two batches of 500 rows, slow `server` (an http server or an S3 proxy) to 10 kB/s per connection, so
    that each piece in flight now needs seconds, then leave the loop (`break` or an exception in the loop body);
    return the seconds from leaving the loop until no embedding_reader thread is alive (at most 10)."""
    try:
        for count, _ in enumerate(batches_of_500(reader, parallel_pieces)):
            if count == 1:  # the next pieces are on their way
                server.bytes_per_s_per_connection = 10_000
                started = time.monotonic()
                if how == "exception":
                    raise CallerError
                break
    except CallerError:
        pass
    wait_for_no_reader_threads(10)
    return time.monotonic() - started


def slow_collection(folder) -> Collection:
    """16 pieces of 128 kB (500 rows of dimension 64) in two npy files."""
    return write_npy_collection(folder, [4000, 4000], dim=64)


@pytest.mark.parametrize(("parallel_pieces", "how"), [(1, "break"), (4, "break"), (4, "exception")])
def test_leave_loop_with_slow_http_read_in_flight(tmp_path, http_server_factory, parallel_pieces, how):
    """Leaving the loop while pieces are being received from a server that has slowed to a crawl stops every
    worker within about a second: a worker blocked in a long request gives it up."""
    collection = slow_collection(tmp_path / "emb")
    server = http_server_factory(tmp_path, bytes_per_s_per_connection=4_000_000)
    reader = open_remote(collection, Remote(str(tmp_path), server.url))
    elapsed = leave_loop_while_slowed(server, reader, parallel_pieces, how)
    assert server.stats.bytes_sent < sum(os.path.getsize(p) for p in collection.paths)  # the read was cut short
    assert not reader_threads() and elapsed < 1.5, f"workers stopped {elapsed:.1f} s after leaving the loop"


def test_break_with_slow_s3_read_in_flight(tmp_path, moto_s3, fault_proxy_factory):
    """The same through the S3 protocol: a proxy in front of moto slows to a crawl, the break ends the read."""
    collection = slow_collection(tmp_path / "emb")
    moto_s3.upload_folder(tmp_path, BUCKET, "slow")
    proxy = fault_proxy_factory(moto_s3.endpoint_url, bytes_per_s_per_connection=4_000_000)
    remote = Remote(str(tmp_path), f"s3://{BUCKET}/slow", {**moto_s3.storage_options(proxy.url), **NO_BOTOCORE_RETRIES})
    reader = open_remote(collection, remote)
    elapsed = leave_loop_while_slowed(proxy, reader, 4, "break")
    assert not reader_threads() and elapsed < 1.5, f"workers stopped {elapsed:.1f} s after the break"


# ---------------------------------------------------------------- listings


class _FlakyListingHandler(_StaticFileHandler):
    """Answers 503 to the first request for each folder listing, then lists normally."""

    def _serve_listing(self, url_path: str, folder) -> None:
        owner = self.owner
        key = url_path.rstrip("/")
        if key not in owner.refused:  # type: ignore[attr-defined]
            owner.refused.add(key)  # type: ignore[attr-defined]
            self.send_status_fault(FaultKind.ERROR_503)
            return
        super()._serve_listing(url_path, folder)


class FlakyListingServer(RangeHTTPServer):
    """RangeHTTPServer whose folder listings each fail once (listings are spared by FaultConfig)."""

    handler_class = _FlakyListingHandler

    def __init__(self, root, **kwargs) -> None:
        """Serve `root`; no folder refused yet."""
        super().__init__(root, **kwargs)
        self.refused: set[str] = set()


def test_failed_listings_are_retried_not_skipped(tmp_path):
    """Every folder listing of a nested collection fails once: each is retried, no sub-folder is silently
    skipped (fsspec's own find would drop it), and every row is read."""
    collection = write_npy_collection(tmp_path / "emb", ROWS, dim=8, nested=True)
    with FlakyListingServer(tmp_path) as server:
        reader = open_remote(collection, Remote(str(tmp_path), server.url))
        assert_rows(read_pass(reader, BATCH), collection, BATCH)
    folders = {top for top, _, _ in os.walk(tmp_path / "emb")}
    assert len(server.refused) == len(folders) > 1
