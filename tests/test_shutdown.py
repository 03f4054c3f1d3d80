"""Stopping early, caller exceptions, worker errors and concurrent iterators: no hang, no thread or file left behind."""

from __future__ import annotations

import _thread
import gc
import os
import re
import threading
import time

import numpy as np
import psutil
import pytest

from embedding_reader import EmbeddingReader, EmbeddingReaderError, build_pieces
from embedding_reader.formats import FORMATS
from embedding_reader.storage import remote as storage_remote
from embedding_reader.storage.http import MAX_CONNECTIONS
from tests.support.collections import (
    ALL_FORMATS,
    META_COLUMNS,
    Collection,
    read_all,
    write_collection,
    write_npy_collection,
    write_parquet_collection,
)

pytestmark = pytest.mark.timeout(60)

ROWS = [400, 0, 400, 400, 400, 400]
THREAD_PREFIX = "embedding_reader"
PIECE_DELAY_S = 0.003


class CallerError(Exception):
    """Raised by a test's loop body."""


def open_reader(collection: Collection) -> EmbeddingReader:
    """A reader of the collection, with meta columns when the format has them."""
    meta_columns = None if collection.file_format == "npy" else META_COLUMNS
    return EmbeddingReader(collection.folder, **collection.reader_kwargs(meta_columns))


def root_of(collection: Collection) -> str:
    """The folder holding every file of the collection (embeddings and metadata)."""
    folders = [collection.folder] + ([collection.metadata_folder] if collection.metadata_folder else [])
    return os.path.commonpath(folders)  # type: ignore[arg-type]


def reader_threads() -> list[threading.Thread]:
    """Live threads started by embedding_reader."""
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]


def open_files_under(folder: str) -> list[str]:
    """Files under `folder` that this process has open."""
    return [f.path for f in psutil.Process().open_files() if f.path.startswith(folder + os.sep)]


def assert_all_stopped(folder: str, timeout_s: float = 1.0) -> None:
    """Within `timeout_s`, no embedding_reader thread is alive and no file under `folder` is open."""
    deadline = time.monotonic() + timeout_s
    while (reader_threads() or open_files_under(folder)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not reader_threads(), f"threads left behind: {reader_threads()}"
    assert not open_files_under(folder), f"files left open: {open_files_under(folder)}"


@pytest.fixture(scope="module", params=ALL_FORMATS)
def collection(request, tmp_path_factory) -> Collection:
    """One 2000-row collection per format, shared by the tests of this module (none of which modifies it)."""
    return write_collection(request.param, tmp_path_factory.mktemp(request.param), ROWS, 16, row_group_size=10)


@pytest.fixture
def slow_pieces(collection, monkeypatch) -> list[int]:
    """Make every piece read take a few milliseconds (so reads are in flight when the caller stops); count them."""
    cls = FORMATS[collection.file_format]
    original = cls.read_piece
    calls: list[int] = []

    def slow_read_piece(self, piece, *args, **kwargs):
        calls.append(piece.batch_id)
        time.sleep(PIECE_DELAY_S)
        return original(self, piece, *args, **kwargs)

    monkeypatch.setattr(cls, "read_piece", slow_read_piece)
    return calls


def small_batches(reader: EmbeddingReader, parallel_pieces: int, **kwargs):
    """An iterator of 100-row batches made of 10-row pieces (200 pieces in all)."""
    assert len(build_pieces(reader.headers, 100, max_piece_size=10)) == 200
    return reader(100, max_piece_size=10, parallel_pieces=parallel_pieces, show_progress=False, **kwargs)


def check_first_batch(batch, collection: Collection) -> None:
    """The first 100-row batch holds rows 0..99."""
    emb, meta = batch
    np.testing.assert_array_equal(emb, collection.embeddings[:100])
    assert meta["i"].tolist() == list(range(100))


@pytest.mark.parametrize("parallel_pieces", [1, 2, 8])
def test_break_early(collection, slow_pieces, parallel_pieces):
    """Breaking out of the loop after one batch stops the read at once: few pieces read, nothing left behind."""
    reader = open_reader(collection)
    for batch in small_batches(reader, parallel_pieces):
        check_first_batch(batch, collection)
        break
    assert_all_stopped(root_of(collection))
    assert len(slow_pieces) < 100, f"{len(slow_pieces)} of 200 pieces read after an early break"


@pytest.mark.parametrize("parallel_pieces", [1, 2, 8])
def test_exception_in_loop_body(collection, slow_pieces, parallel_pieces):
    """An exception raised by the caller's loop body propagates unchanged and stops the read."""
    reader = open_reader(collection)
    with pytest.raises(CallerError):
        for k, batch in enumerate(small_batches(reader, parallel_pieces)):
            if k == 2:
                raise CallerError("stop here")
            assert len(batch[0]) == 100
    assert_all_stopped(root_of(collection))
    assert len(slow_pieces) < 150


@pytest.mark.parametrize("parallel_pieces", [1, 8])
def test_keyboard_interrupt_in_loop_body(collection, slow_pieces, parallel_pieces):
    """Ctrl-C while the caller processes a batch propagates as KeyboardInterrupt and stops the read."""
    reader = open_reader(collection)
    with pytest.raises(KeyboardInterrupt):
        for k, _ in enumerate(small_batches(reader, parallel_pieces)):
            if k == 1:
                raise KeyboardInterrupt
    assert_all_stopped(root_of(collection))


@pytest.mark.parametrize("parallel_pieces", [1, 8])
def test_keyboard_interrupt_while_waiting_for_a_batch(collection, slow_pieces, parallel_pieces):
    """Ctrl-C delivered while the caller waits inside next() for pieces stops the read just the same. The garbage
    collector is held off meanwhile: an interrupt landing in a gc callback (hypothesis installs one) is lost."""
    reader = open_reader(collection)
    timer = threading.Timer(0.02, _thread.interrupt_main)
    gc.disable()
    try:
        with pytest.raises(KeyboardInterrupt):
            timer.start()
            for _ in small_batches(reader, parallel_pieces):
                time.sleep(0.005)  # 20 batches: the read outlasts the timer; with 1 thread it waits mostly in next()
    finally:
        gc.enable()
    timer.join()
    assert_all_stopped(root_of(collection))
    assert len(slow_pieces) < 200


@pytest.mark.parametrize("parallel_pieces", [1, 8])
def test_dropped_iterator(collection, slow_pieces, parallel_pieces):
    """An iterator dropped after one next() releases its threads and files."""
    reader = open_reader(collection)
    iterator = small_batches(reader, parallel_pieces)
    check_first_batch(next(iterator), collection)
    del iterator  # no gc.collect(): reference counting alone must stop the read
    assert_all_stopped(root_of(collection))


def test_iterator_never_started(collection, slow_pieces):
    """Calling the reader without iterating starts nothing, and dropping that iterator leaves nothing."""
    reader = open_reader(collection)
    iterator = small_batches(reader, 4)
    time.sleep(0.05)
    assert not slow_pieces
    assert_all_stopped(root_of(collection), timeout_s=0)
    del iterator
    assert_all_stopped(root_of(collection))


def test_close_then_read_again(collection):
    """After an early stop, the same reader reads a full, correct pass."""
    reader = open_reader(collection)
    iterator = small_batches(reader, 3)
    next(iterator)
    iterator.close()
    result = read_all(small_batches(reader, 3))
    np.testing.assert_array_equal(result.embeddings, collection.embeddings.astype(np.float32))
    assert result.meta["i"].tolist() == list(range(collection.count))
    assert_all_stopped(root_of(collection))


@pytest.mark.parametrize("parallel_pieces", [1, 4])
def test_worker_error_surfaces_in_caller(tmp_path, parallel_pieces):
    """A file truncated after the reader was built fails in the caller's loop at its first piece, naming the file,
    the rows and the change; the batches before it were delivered intact, and nothing is left running."""
    collection = write_npy_collection(tmp_path, [300, 300, 300], dim=8)
    reader = open_reader(collection)
    os.truncate(collection.paths[1], os.path.getsize(collection.paths[1]) - 8 * 4 * 100)  # rows 200..299 gone
    delivered = []
    with pytest.raises(EmbeddingReaderError) as info:
        for batch in reader(100, max_piece_size=50, parallel_pieces=parallel_pieces, show_progress=False):
            delivered.append(batch)
    message = str(info.value)
    assert "emb_0001.npy rows [0, 50)" in message and "changed since the reader opened it" in message, message
    assert len(delivered) == 3  # rows 0..299; the error comes with the batch of rows 300..399
    np.testing.assert_array_equal(read_all(delivered).embeddings, collection.embeddings[:300])
    assert_all_stopped(str(tmp_path))


def test_parquet_worker_error_surfaces_in_caller(tmp_path):
    """A parquet file rewritten with garbage after the reader was built fails in the caller's loop, named."""
    collection = write_parquet_collection(tmp_path, [100, 100], dim=8, row_group_size=25)
    reader = open_reader(collection)
    path = collection.paths[1]
    size = os.path.getsize(path)
    with open(path, "r+b") as file:
        file.write(b"PAR1" + os.urandom(size // 2))
    with pytest.raises(EmbeddingReaderError) as info:
        read_all(reader(50, parallel_pieces=2, show_progress=False))
    assert "part_0001.parquet" in str(info.value)
    assert re.search(r"rows \[\d+, \d+\)", str(info.value)), info.value
    assert_all_stopped(str(tmp_path))


def test_concurrent_iterators_in_threads(collection):
    """Two iterators of one reader consumed at the same time by two threads both give correct data."""
    reader = open_reader(collection)
    results: dict[str, object] = {}

    def consume(name: str, **kwargs) -> None:
        try:
            results[name] = read_all(reader(show_progress=False, **kwargs))
        except BaseException as exc:  # reported below, in the test's thread
            results[name] = exc

    threads = [
        threading.Thread(target=consume, args=("a",), kwargs={"batch_size": 64, "parallel_pieces": 3}),
        threading.Thread(target=consume, args=("b",), kwargs={"batch_size": 333, "start": 17, "end": 1900}),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for name, first, last in (("a", 0, collection.count), ("b", 17, 1900)):
        result = results[name]
        assert not isinstance(result, BaseException), result
        np.testing.assert_array_equal(result.embeddings, collection.embeddings[first:last].astype(np.float32))
        assert result.meta["i"].tolist() == list(range(first, last))
        if collection.file_format != "npy":
            assert result.meta["caption"].tolist() == collection.meta["caption"][first:last].tolist()
    assert_all_stopped(root_of(collection))


def ctrl_c(*args, **kwargs):
    """Stands for a wait that the user interrupts."""
    raise KeyboardInterrupt


def test_keyboard_interrupt_while_opening_over_http(tmp_path, http_server_factory, monkeypatch):
    """Ctrl-C while the header reads of an open are in flight abandons them: the requests not yet sent never are
    (without the cancel, all 300 go out within about 0.6 s at 0.2 s each, 128 at a time)."""
    write_npy_collection(tmp_path / "embeddings", [1] * 300, dim=4)
    server = http_server_factory(tmp_path, latency_s=0.2)
    monkeypatch.setattr(storage_remote, "wait_futures", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        EmbeddingReader(f"{server.url}/embeddings/", file_format="npy")
    time.sleep(1.0)
    assert 1 <= server.stats.requests <= 1 + MAX_CONNECTIONS, server.stats  # the listing, at most one wave
