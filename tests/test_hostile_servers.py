"""What a hostile world does to a read over http and S3: lying ranges, stalls, trickles, compressed or whole-file
answers, files rewritten or deleted after the open. Each case ends in exact rows or in the named error, in
bounded time (a short `timeout` and few attempts keep the suite fast; the bounds hold for any setting)."""

from __future__ import annotations

import os
import pickle
import socket
import threading
import time

import numpy as np
import pytest

from embedding_reader import CorruptFileError, EmbeddingReader, ReadFailedError, RetryPolicy
from embedding_reader.errors import FileChangedError
from tests.support.collections import read_all, write_npy_collection, write_parquet_collection
from tests.support.hostile_server import HostileServer, Misbehaviour, Script

pytestmark = pytest.mark.timeout(90)

ROWS, DIM = [2000, 2000], 64  # 512 KB a file: each piece read is one range request from byte 128 on
TIMEOUT_S = 1.0
FEW = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def collection(tmp_path):
    return write_npy_collection(tmp_path / "emb", ROWS, dim=DIM)


def open_reader(url: str, **kwargs) -> EmbeddingReader:
    return EmbeddingReader(url, retry_policy=kwargs.pop("retry_policy", FEW), timeout=TIMEOUT_S, **kwargs)


def read(reader: EmbeddingReader, **kwargs):
    return read_all(reader(1000, show_progress=False, **kwargs))


def assert_exact(result, collection) -> None:
    np.testing.assert_array_equal(result.embeddings, collection.embeddings.astype(np.float32))
    assert result.meta["i"].tolist() == list(range(collection.count))


def timed_failure(reader: EmbeddingReader, error=ReadFailedError, **kwargs):
    """The error a read ends in, and the seconds it took."""
    started = time.monotonic()
    with pytest.raises(error) as info:
        read(reader, **kwargs)
    return info.value, time.monotonic() - started


@pytest.mark.parametrize(
    "misbehaviour",
    [Misbehaviour.SHIFTED_RANGE, Misbehaviour.STALL_BEFORE_ANSWER, Misbehaviour.STALL_MID_BODY, Misbehaviour.TRICKLE],
)
def test_a_few_bad_answers_are_retried_into_exact_rows(collection, misbehaviour):
    """The first two piece answers misbehave; their retries are sound: every row exact."""
    with HostileServer(os.path.dirname(collection.folder), Script(misbehaviour, min_start=1, times=2)) as server:
        reader = open_reader(f"{server.url}/emb/")
        assert_exact(read(reader, parallel_pieces=1), collection)
        assert server.script.played == 2


@pytest.mark.parametrize(
    ("misbehaviour", "says"),
    [
        (Misbehaviour.SHIFTED_RANGE, "not the range asked"),
        (Misbehaviour.STALL_BEFORE_ANSWER, "no progress for 1 s"),
        (Misbehaviour.STALL_MID_BODY, "no progress for 1 s"),
        (Misbehaviour.TRICKLE, "no progress for 1 s"),
    ],
)
def test_always_bad_answers_end_in_a_named_error_in_bounded_time(collection, misbehaviour, says):
    """Never a wrong row: a server that keeps lying or stalling ends the read with an error naming the byte range,
    after at most attempts x (timeout + back-off)."""
    with HostileServer(os.path.dirname(collection.folder), Script(misbehaviour, min_start=1)) as server:
        error, seconds = timed_failure(open_reader(f"{server.url}/emb/"), parallel_pieces=1)
    assert "emb_0000.npy" in str(error) and "bytes [" in str(error) and says in str(error), error
    assert "failed after 3 attempts" in str(error)
    assert seconds < FEW.max_attempts * (TIMEOUT_S + FEW.max_delay) + 3, seconds


@pytest.mark.parametrize(
    ("misbehaviour", "says"),
    [
        (Misbehaviour.GZIP, "compressed a range answer"),
        (Misbehaviour.WHOLE_FILE, "the server ignores Range"),
        (Misbehaviour.WRONG_TOTAL, "changed since the reader opened it"),
        (Misbehaviour.NOT_FOUND, "FileNotFoundError"),
    ],
)
def test_permanent_faults_fail_at_once(collection, misbehaviour, says):
    """A compressed range, a whole-file 200, another file size or a 404 after the open: no retry can mend them, so
    the read fails on the first answer, asking once per piece part."""
    with HostileServer(os.path.dirname(collection.folder), Script(misbehaviour, min_start=1)) as server:
        reader = open_reader(f"{server.url}/emb/", retry_policy=RetryPolicy(max_attempts=8))
        error, seconds = timed_failure(reader, parallel_pieces=1)
        assert says in str(error) and "emb_0000.npy" in str(error), error
        assert server.script.played == 1 and seconds < 3, (server.script.played, seconds)


def test_header_read_of_a_lying_server_is_retried(collection):
    """Header reads are checked like pieces: a shifted answer to an npy header read is refused and retried."""
    script = Script(Misbehaviour.SHIFTED_RANGE, min_start=0, times=1, path_part="emb_0001")
    with HostileServer(os.path.dirname(collection.folder), script) as server:
        reader = open_reader(f"{server.url}/emb/")
        assert [header.count for header in reader.headers] == ROWS and script.played == 1
        assert_exact(read(reader), collection)


# ------------------------------------------------------------------ a file is what it was at open


def rewrite_same_size(path: str) -> None:
    """Replace an npy file by another of the same size (float32 rows as int32), dated a second later."""
    before = os.stat(path)
    array = np.load(path)
    np.save(path, array.view(np.int32))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert os.path.getsize(path) == before.st_size


def rewrite_longer_header(path: str) -> None:
    """Replace an npy file by the same rows behind a longer (version 2) header."""
    array = np.load(path)
    with open(path, "wb") as file:
        np.lib.format.write_array(file, array, version=(2, 0))


@pytest.mark.parametrize("rewrite", [rewrite_same_size, rewrite_longer_header])
def test_local_file_rewritten_after_open(collection, rewrite):
    reader = EmbeddingReader(collection.folder)
    rewrite(collection.paths[1])
    error, _ = timed_failure(reader, FileChangedError)
    assert "emb_0001.npy" in str(error) and "changed since the reader opened it" in str(error)


@pytest.mark.parametrize("rewrite", [rewrite_same_size, rewrite_longer_header])
def test_http_file_rewritten_after_open(collection, rewrite):
    with HostileServer(os.path.dirname(collection.folder)) as server:
        reader = open_reader(f"{server.url}/emb/")
        rewrite(collection.paths[1])
        error, _ = timed_failure(reader, FileChangedError)
    assert "emb_0001.npy" in str(error)


def test_pickled_reader_keeps_what_the_files_were(collection):
    """A reader shipped to a worker (pickled) still knows each file's identity from the open."""
    reader = EmbeddingReader(collection.folder)
    rewrite_same_size(collection.paths[0])
    copy = pickle.loads(pickle.dumps(reader))
    timed_failure(copy, FileChangedError)


def test_s3_object_rewritten_after_open(moto_s3, tmp_path):
    collection = write_npy_collection(tmp_path / "emb", ROWS, dim=DIM)
    moto_s3.upload_folder(collection.folder, "hostile", "rewritten")
    url = "s3://hostile/rewritten"
    reader = EmbeddingReader(url, storage_options=moto_s3.storage_options(), retry_policy=FEW, timeout=5)
    rewrite_same_size(collection.paths[1])
    moto_s3.upload_folder(collection.folder, "hostile", "rewritten")
    error, _ = timed_failure(reader, FileChangedError)
    assert "emb_0001.npy" in str(error)


def test_parquet_file_deleted_after_open_fails_at_once(tmp_path):
    collection = write_parquet_collection(tmp_path / "emb", [300, 300], dim=8, row_group_size=100)
    with HostileServer(str(tmp_path)) as server:
        reader = open_reader(f"{server.url}/emb/", file_format="parquet", retry_policy=RetryPolicy(max_attempts=8))
        os.remove(collection.paths[1])
        error, seconds = timed_failure(reader)
    assert "part_0001.parquet" in str(error) and "not retried" in str(error) and seconds < 3, (error, seconds)


# ------------------------------------------------------------------ stalled and refused S3 endpoints


class SilentServer:
    """Accepts connections and never answers (a stalled endpoint)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        for connection in self.accepted:
            connection.close()
        self.sock.close()


def s3_options(endpoint: str) -> dict:
    return {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}


def test_stalled_s3_endpoint_fails_in_bounded_time():
    """botocore's timeouts are the library's, and neither botocore nor s3fs retries inside its attempts."""
    silent = SilentServer()
    try:
        started = time.monotonic()
        with pytest.raises(ReadFailedError, match="failed after 3 attempts"):
            EmbeddingReader("s3://bucket/emb", storage_options=s3_options(silent.url), retry_policy=FEW, timeout=1)
        assert time.monotonic() - started < 3 * (1 + 1) + 4
    finally:
        silent.close()


def test_refused_s3_endpoint_fails_fast():
    with socket.create_server(("127.0.0.1", 0)) as reserved:
        endpoint = f"http://127.0.0.1:{reserved.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(ReadFailedError):
        EmbeddingReader("s3://bucket/emb", storage_options=s3_options(endpoint), retry_policy=FEW, timeout=1)
    assert time.monotonic() - started < 5


# ------------------------------------------------------------------ no client outlives its reader


def open_sockets_to(port: int) -> int:
    """This process's TCP connections to the loopback port."""
    import psutil

    return sum(1 for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port)


@pytest.mark.parametrize("protocol", ["http", "s3"])
def test_no_session_or_socket_outlives_its_reader(collection, moto_s3, protocol):
    """Readers with distinct storage_options each get their own client, closed with the reader (fsspec's instance
    cache used to keep one aiohttp session and its sockets per distinct options for the life of the process)."""
    import gc

    if protocol == "s3":
        moto_s3.upload_folder(collection.folder, "sessions", "emb")
        server, url = None, "s3://sessions/emb"
        port = int(moto_s3.endpoint_url.rsplit(":", 1)[1])
    else:
        server = HostileServer(os.path.dirname(collection.folder)).__enter__()
        url, port = f"{server.url}/emb/", int(server.url.rsplit(":", 1)[1])
    try:
        for k in range(30):
            options = {"headers": {"X-Reader": str(k)}} if protocol == "http" else moto_s3.storage_options()
            if protocol == "s3":
                options["config_kwargs"] = {"user_agent_extra": f"reader-{k}"}
            reader = EmbeddingReader(url, storage_options=options)
            assert len(next(reader(500, show_progress=False))[0]) == 500
            del reader
        gc.collect()
        from tests.support.hostile_server import wait_until

        assert wait_until(lambda: open_sockets_to(port) <= 2, 10), open_sockets_to(port)
    finally:
        if server is not None:
            server.__exit__(None, None, None)


def test_stock_http_server_ignoring_range_is_refused_before_its_bodies(collection):
    """`python -m http.server` answers every range with the whole file: refused from the status and headers, at
    once, without reading the bodies (which it used to keep whole, to check them afterwards)."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    import psutil

    handler = functools.partial(SimpleHTTPRequestHandler, directory=os.path.dirname(collection.folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        rss_before = psutil.Process().memory_info().rss
        started = time.monotonic()
        with pytest.raises(ReadFailedError, match="the server ignores Range"):
            EmbeddingReader(f"http://127.0.0.1:{httpd.server_address[1]}/emb/", retry_policy=RetryPolicy(8))
        assert time.monotonic() - started < 3
        assert psutil.Process().memory_info().rss - rss_before < 50 * 2**20
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_npy_shorter_than_its_header_is_corrupt_at_open(collection):
    """Over http the listing gives no sizes: the header read's Content-Range total is the file's size, so a file
    shorter than its header says is a CorruptFileError at open, not a read failing after retries."""
    path = collection.paths[1]
    os.truncate(path, os.path.getsize(path) - 64 * 4 * 10)  # ten rows short
    with HostileServer(os.path.dirname(collection.folder)) as server:
        started = time.monotonic()
        with pytest.raises(CorruptFileError, match=r"emb_0001.npy: file has \d+ bytes but its header"):
            EmbeddingReader(f"{server.url}/emb/", retry_policy=RetryPolicy(8))
        assert time.monotonic() - started < 3


def test_local_parquet_rewritten_after_open_through_pyarrow(tmp_path):
    """Files the direct decoder leaves to pyarrow (here float16 values) are opened by pyarrow itself: checked too."""
    collection = write_parquet_collection(tmp_path / "emb", [50, 50], dim=8, dtype="float16", row_group_size=25)
    reader = EmbeddingReader(collection.folder, file_format="parquet")
    before = os.stat(collection.paths[1])
    os.utime(collection.paths[1], ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    error, _ = timed_failure(reader, FileChangedError)
    assert "part_0001.parquet" in str(error)


def test_retries_are_logged_stalls_as_warnings(collection, caplog):
    """What happened goes to the 'embedding_reader' logger: a stall (a whole timeout lost) as a WARNING, other
    retried faults at DEBUG; nothing is printed."""
    import logging

    script = Script(Misbehaviour.STALL_BEFORE_ANSWER, min_start=1, times=1)
    with HostileServer(os.path.dirname(collection.folder), script) as server:
        reader = open_reader(f"{server.url}/emb/")
        with caplog.at_level(logging.DEBUG, logger="embedding_reader"):
            assert_exact(read(reader, parallel_pieces=1), collection)
        script.misbehaviour, script.times, script.played = Misbehaviour.SHIFTED_RANGE, 1, 0
        with caplog.at_level(logging.DEBUG, logger="embedding_reader"):
            assert_exact(read(reader, parallel_pieces=1), collection)
    stalls = [r for r in caplog.records if "StalledReadError" in r.getMessage()]
    shifted = [r for r in caplog.records if "not the range asked" in r.getMessage()]
    assert [r.levelno for r in stalls] == [logging.WARNING] and "attempt 1 of 3 failed" in stalls[0].getMessage()
    assert [r.levelno for r in shifted] == [logging.DEBUG]


def test_a_body_cut_short_without_a_length_is_retried_not_taken_as_a_short_file(collection):
    """A 206 with no Content-Length whose connection closes halfway looks like a short file to the client: the
    Content-Range says how many bytes must come, so the header read is retried, even where short answers are
    allowed (at the end of a file)."""
    from embedding_reader.storage import Storage

    script = Script(Misbehaviour.CUT_WITHOUT_LENGTH, min_start=0, times=1)
    with HostileServer(os.path.dirname(collection.folder), script) as server:
        storage = Storage(f"{server.url}/emb/", None, FEW, timeout=TIMEOUT_S)
        url = f"{server.url}/emb/emb_0000.npy"
        assert storage.read_ranges([(url, 0, 256), (url, 256, 512)], allow_short=True) == [
            open(collection.paths[0], "rb").read()[:256],
            open(collection.paths[0], "rb").read()[256:512],
        ]
        assert script.played == 1


@pytest.mark.parametrize("misbehaviour", [Misbehaviour.LAST_MODIFIED_ONLY, Misbehaviour.RANGE_BEYOND_TOTAL])
def test_answers_without_an_etag_or_with_a_contradictory_range(collection, misbehaviour):
    """An answer carrying a date instead of the ETag seen before is no sign of change (tags of different kinds are
    not compared); a Content-Range ending past its own total is refused and retried. Rows exact either way."""
    with HostileServer(os.path.dirname(collection.folder), Script(misbehaviour, min_start=1, times=2)) as server:
        reader = open_reader(f"{server.url}/emb/")
        assert_exact(read(reader, parallel_pieces=1), collection)
        assert server.script.played == 2
