"""hdf5 (the optional h5py extra): ann-benchmarks style files written by h5py, read back row for row: contiguous
datasets by exact byte ranges, chunked (compressed) ones through h5py, locally and over http."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from embedding_reader import (
    CorruptFileError,
    EmbeddingReader,
    InvalidArgumentError,
    MissingColumnError,
    ReadFailedError,
    RetryPolicy,
    UnsupportedFileError,
    detect_format,
)
from embedding_reader.formats import hdf5 as hdf5_format
from tests.support.hostile_server import HostileServer, Misbehaviour, Script
from tests.support.remote import FAST_RETRIES

h5py = pytest.importorskip("h5py")
pytestmark = pytest.mark.timeout(120)

DIM = 16


def write_ann_file(path, train: np.ndarray, test: np.ndarray, **options) -> None:
    """An ann-benchmarks style file: train and test vectors, neighbors, distances (options: h5py's, e.g. chunks)."""
    with h5py.File(path, "w") as file:
        file.create_dataset("train", data=train, **options)
        file.create_dataset("test", data=test)
        file.create_dataset("neighbors", data=np.arange(len(test) * 10, dtype=np.int32).reshape(len(test), 10))
        file.create_dataset("distances", data=np.ones((len(test), 10), dtype=np.float32))


def rows(count: int, seed: int, dtype="float32") -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, DIM)).astype(dtype)


def read(reader: EmbeddingReader, batch_size: int, **kwargs) -> np.ndarray:
    return np.concatenate([batch for batch, _ in reader(batch_size, show_progress=False, **kwargs)])


@pytest.fixture(scope="module")
def collections(tmp_path_factory):
    """Two contiguous files (float32, big-endian float64) and a chunked gzip file; their train and test rows."""
    root = tmp_path_factory.mktemp("hdf5")
    contiguous = root / "contiguous"
    contiguous.mkdir()
    train = [rows(70, 0), rows(45, 1)]
    test = [rows(5, 2), rows(4, 3)]
    write_ann_file(contiguous / "a-16-euclidean.hdf5", train[0], test[0])
    write_ann_file(contiguous / "b-16-euclidean.hdf5", train[1], test[1])
    chunked = root / "chunked"
    chunked.mkdir()
    big_endian = rows(130, 4).astype(">f8")
    write_ann_file(chunked / "c.hdf5", big_endian, rows(3, 5), chunks=(32, DIM), compression="gzip")
    return root, {
        "train": np.concatenate(train),
        "test": np.concatenate(test),
        "chunked": big_endian.astype(np.float64),
    }


def test_contiguous_datasets_by_byte_range(collections, monkeypatch):
    """Contiguous datasets are read as npy files are: exact ranges from the dataset's offset, never through h5py."""
    root, expected = collections
    reader = EmbeddingReader(str(root / "contiguous"), file_format="hdf5")
    assert (reader.count, reader.dimension, reader.dtype) == (115, DIM, np.float32)
    assert all(header.data_offset > 0 and not header.units for header in reader.headers)
    monkeypatch.setattr(hdf5_format, "_read_rows", lambda *args: pytest.fail("a contiguous piece went through h5py"))
    np.testing.assert_array_equal(read(reader, 16, max_piece_size=9), expected["train"])
    np.testing.assert_array_equal(read(reader, 7, start=60, end=101, output_dtype=None), expected["train"][60:101])
    queries = EmbeddingReader(str(root / "contiguous"), file_format="hdf5", hdf5_dataset="test")
    np.testing.assert_array_equal(read(queries, 4), expected["test"])
    neighbors = EmbeddingReader(str(root / "contiguous"), file_format="hdf5", hdf5_dataset="neighbors")
    assert neighbors.dtype == np.int32 and neighbors.count == 9


def test_chunked_dataset_chunk_by_chunk(collections):
    """A compressed dataset is read through h5py, its pieces cut at chunk boundaries; big-endian values cast."""
    root, expected = collections
    reader = EmbeddingReader(str(root / "chunked" / "c.hdf5"), file_format="hdf5")
    assert reader.headers[0].units == (32, 32, 32, 32, 2)
    np.testing.assert_array_equal(read(reader, 50, max_piece_size=40, output_dtype=np.float64), expected["chunked"])
    np.testing.assert_array_equal(read(reader, 9, start=33, end=100), expected["chunked"][33:100].astype(np.float32))


@pytest.mark.parametrize("options", [{}, {"chunks": (32, DIM)}, {"chunks": (7, DIM), "compression": "gzip"}])
@pytest.mark.parametrize("output_dtype", [np.float32, np.float64])
def test_shuffled_reads_row_for_row(tmp_path, options, output_dtype):
    """Shuffled reads of contiguous and chunked datasets: each row once, equal to the row its index names (a chunked
    dataset's rows are not at a byte range of the file: they must not be read as npy's are)."""
    train = rows(300, 6)
    write_ann_file(tmp_path / "a.hdf5", train, rows(3, 7), **options)
    reader = EmbeddingReader(str(tmp_path), file_format="hdf5")
    batches = list(reader(40, shuffle=True, seed=3, show_progress=False, output_dtype=output_dtype, max_piece_size=50))
    embeddings = np.concatenate([batch for batch, _ in batches])
    index = np.concatenate([meta["i"].to_numpy() for _, meta in batches])
    assert sorted(index.tolist()) == list(range(300)) and index.tolist() != list(range(300))
    np.testing.assert_array_equal(embeddings, train[index].astype(output_dtype))


def test_over_http(collections, http_server_factory):
    root, expected = collections
    base = http_server_factory(root).url
    contiguous = EmbeddingReader(f"{base}/contiguous/", file_format="hdf5", retry_policy=FAST_RETRIES)
    np.testing.assert_array_equal(read(contiguous, 16, max_piece_size=9), expected["train"])
    chunked = EmbeddingReader(f"{base}/chunked/c.hdf5", file_format="hdf5", retry_policy=FAST_RETRIES)
    np.testing.assert_array_equal(read(chunked, 50, output_dtype=np.float64), expected["chunked"])
    assert gc.isenabled()  # paused only while h5py reads a remote file (hdf5.collection_paused)


@pytest.fixture(scope="module")
def large_chunked(tmp_path_factory):
    """A 3.8 MB chunked file: its chunks lie past the first read-ahead block, so their reads are range requests."""
    root = tmp_path_factory.mktemp("hdf5_large")
    train = rows(60_000, 6)
    write_ann_file(root / "big.hdf5", train, rows(3, 7), chunks=(1000, DIM))
    return root, train


@pytest.mark.parametrize("misbehaviour", [Misbehaviour.STALL_MID_BODY, Misbehaviour.TRICKLE])
def test_remote_reads_through_h5py_retry_and_fail_in_bounded_time(large_chunked, misbehaviour):
    """h5py reads a remote file through the storage's own reads: a server that stalls or trickles a byte at a time
    (which held fsspec's file objects for hours) is retried into exact rows when it mends, and otherwise fails the
    read within attempts x timeout, naming the byte range."""
    root, train = large_chunked
    few = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)
    with HostileServer(root, Script(misbehaviour, min_start=1, times=1)) as server:
        reader = EmbeddingReader(f"{server.url}/big.hdf5", file_format="hdf5", retry_policy=few, timeout=1.0)
        np.testing.assert_array_equal(read(reader, 20_000), train)
        assert server.script.played == 1
    with HostileServer(root, Script(misbehaviour, min_start=1)) as server:
        started = time.monotonic()
        with pytest.raises(ReadFailedError, match=r"big\.hdf5 bytes \[.*failed after 2 attempts.*no progress for 1 s"):
            read(EmbeddingReader(f"{server.url}/big.hdf5", file_format="hdf5", retry_policy=few, timeout=1.0), 20_000)
        assert time.monotonic() - started < 2 * (1.0 + 1.0) + 5


KEEP_AN_H5PY_ERROR = """
import io, sys
from embedding_reader import RetryPolicy
from embedding_reader.formats.hdf5 import Hdf5Format
from embedding_reader.storage import Storage

class FailingFile(io.RawIOBase):  # what a RangeFile does when its storage gives up
    def readable(self): return True
    def seekable(self): return True
    def seek(self, offset, whence=0): return 0
    def tell(self): return 0
    def readinto(self, buffer): raise ValueError("the storage gave up")

hdf5 = Hdf5Format.__new__(Hdf5Format)
hdf5.storage = Storage(sys.argv[1], None, RetryPolicy(max_attempts=1))
hdf5._open = lambda path, size, cancel: FailingFile()
kept = []
try:
    hdf5._with_file(sys.argv[1], 100, lambda file: None)
except ValueError as error:
    kept.append(error)  # as a caller collecting failures would
print(kept)
"""


def test_an_error_out_of_h5py_kept_by_the_caller_does_not_crash_the_interpreter_at_exit(tmp_path):
    """h5py crashes the interpreter at exit (a segfault) when a traceback through it outlives it, so the errors of
    its reads leave without their tracebacks."""
    result = subprocess.run(
        [sys.executable, "-c", KEEP_AN_H5PY_ERROR, str(tmp_path / "x.hdf5")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and "the storage gave up" in result.stdout, (result.returncode, result.stderr[-500:])


def test_bad_files_and_arguments(tmp_path):
    path = tmp_path / "x.hdf5"
    write_ann_file(path, rows(3, 0), rows(2, 1))
    with pytest.raises(MissingColumnError, match=re.escape(f"{path}: no dataset 'base' (found: distances, neighbors")):
        EmbeddingReader(str(tmp_path), file_format="hdf5", hdf5_dataset="base")
    with h5py.File(path, "a") as file:
        file.create_dataset("cube", data=np.zeros((2, 3, 4), dtype=np.float32))
    with pytest.raises(UnsupportedFileError, match="dataset 'cube' is"):
        EmbeddingReader(str(tmp_path), file_format="hdf5", hdf5_dataset="cube")
    with pytest.raises(InvalidArgumentError, match="hdf5_dataset"):
        EmbeddingReader(str(tmp_path), file_format="hdf5", hdf5_dataset="")
    (tmp_path / "y.hdf5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(CorruptFileError, match=re.escape(f"{tmp_path / 'y.hdf5'}: not a readable HDF5 file")):
        EmbeddingReader(str(tmp_path), file_format="hdf5")
    assert detect_format(str(path)) == "hdf5"


def test_truncated_contiguous_file_is_refused(tmp_path):
    """A contiguous dataset whose bytes the file no longer holds is refused at open, naming the file."""
    path = tmp_path / "cut.hdf5"
    with h5py.File(path, "w") as file:
        file.create_dataset("train", data=rows(200, 0))
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size - 100)
    with pytest.raises(CorruptFileError, match=re.escape(str(path))):
        EmbeddingReader(str(path), file_format="hdf5")
