"""Every format through real servers on 127.0.0.1: an http server answering Range requests, and moto's S3 server
through s3fs with `storage_options`. Row for row against the written data, exact header reads, no HEAD per piece,
and a pickled reader that reads without listing again."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

import embedding_reader.reader as reader_module
from embedding_reader import EmbeddingReader, NoEmbeddingsFoundError, build_pieces
from embedding_reader.formats.npy import PROBE_BYTES
from embedding_reader.storage import http as storage_http
from embedding_reader.storage import s3 as storage_s3
from embedding_reader.storage.http import PIECE_BYTES as HTTP_PIECE_BYTES
from embedding_reader.storage.local import PIECE_BYTES as LOCAL_PIECE_BYTES
from embedding_reader.storage.remote import Streamer
from embedding_reader.storage.s3 import PIECE_BYTES as S3_PIECE_BYTES
from tests.support.collections import (
    ALL_FORMATS,
    Collection,
    record_pieces,
    write_npy_collection,
    write_parquet_collection,
    write_parquet_npy_collection,
)
from tests.support.http_server import RangeHTTPServer, _StaticFileHandler
from tests.support.remote import (
    Remote,
    assert_rows,
    bytes_of_collection,
    open_remote,
    read_pass,
)
from tests.support.s3_server import DUMMY_SECRET, FaultProxy, MotoS3Server

pytestmark = pytest.mark.timeout(120)

ROWS = [37, 0, 50, 1, 0, 29]  # 117 rows; empty files between and after non-empty ones
# (batch_size, start, end): batches cutting files, one row, one batch larger than the collection, a sub-range
READS = [(7, 0, None), (1, 90, None), (1000, 0, None), (20, 13, 101)]
BIG_ROWS = [2000, 0, 2000]  # 2 MB of float32 embeddings of dimension 256 per non-empty file
BIG_DIM = 256
BIG_ROW_GROUP = 250
WIRE_OVERHEAD = 1.05
BUCKET = "remote-tests"
LISTING_BYTES = 1024  # an html listing of a few files


class _RecordingHandler(_StaticFileHandler):
    """The static file handler, remembering the method and path of every request."""

    def begin_request(self) -> None:
        """Log the request, then count it and wait the latency as usual."""
        self.owner.log.append((self.command, unquote(urlsplit(self.path).path)))  # type: ignore[attr-defined]
        super().begin_request()


class RecordingHTTPServer(RangeHTTPServer):
    """RangeHTTPServer whose `log` lists every (method, path) asked, to tell listings from file reads."""

    handler_class = _RecordingHandler

    def __init__(self, root, **kwargs) -> None:
        """Serve `root` and start an empty log."""
        super().__init__(root, **kwargs)
        self.log: list[tuple[str, str]] = []

    def listings(self) -> list[str]:
        """Paths of the folder listings asked since the log was last cleared."""
        return [path for _, path in self.log if (self.root / path.lstrip("/")).is_dir()]

    def clear(self) -> None:
        """Zero the statistics and the log."""
        self.reset_stats()
        self.log.clear()


def write_tree(root) -> dict[str, Collection]:
    """Small collections of every format (nested folders, 0-row files) and few-MB ones, under `root`."""
    return {
        "npy": write_npy_collection(root / "npy", ROWS, dim=8, nested=True),
        "parquet": write_parquet_collection(root / "parquet", ROWS, dim=8, row_group_size=10, nested=True),
        "parquet_npy": write_parquet_npy_collection(root / "parquet_npy", ROWS, dim=8, row_group_size=10),
        "big_npy": write_npy_collection(root / "big_npy", BIG_ROWS, dim=BIG_DIM),
        "big_parquet": write_parquet_collection(
            root / "big_parquet", BIG_ROWS, dim=BIG_DIM, row_group_size=BIG_ROW_GROUP
        ),
        "big_parquet_npy": write_parquet_npy_collection(
            root / "big_parquet_npy", BIG_ROWS, dim=BIG_DIM, row_group_size=BIG_ROW_GROUP
        ),
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[str, dict[str, Collection]]:
    """The local root and the collections written under it."""
    root = tmp_path_factory.mktemp("remote")
    return str(root), write_tree(root)


@pytest.fixture(scope="module")
def http(tree) -> Iterator[tuple[RecordingHTTPServer, Remote]]:
    """A recording http server over the tree, and where it serves it."""
    root, _ = tree
    with RecordingHTTPServer(root) as server:
        yield server, Remote(root, server.url)


@pytest.fixture(scope="module")
def s3(tree, moto_s3: MotoS3Server, fault_proxy_factory) -> tuple[Remote, Remote, FaultProxy]:
    """The tree uploaded to moto: reached directly, and through a fault-free proxy that counts requests and bytes."""
    root, _ = tree
    moto_s3.upload_folder(root, BUCKET, "data")
    proxy = fault_proxy_factory(moto_s3.endpoint_url)
    direct = Remote(root, f"s3://{BUCKET}/data", moto_s3.storage_options())
    return direct, Remote(root, f"s3://{BUCKET}/data", moto_s3.storage_options(proxy.url)), proxy


def pieces_of(reader: EmbeddingReader, batch_size: int) -> int:
    """Number of pieces of a full read cut only at file and batch boundaries (what the default piece size gives
    for these small files)."""
    return len(build_pieces(reader.headers, batch_size, max_piece_size=10**9))


# ---------------------------------------------------------------- row for row


@pytest.mark.parametrize("transport", ["http", "s3"])
@pytest.mark.parametrize("file_format", ALL_FORMATS)
def test_row_for_row(tree, http, s3, transport, file_format):
    """Every format over http and over the S3 protocol (moto's server, s3fs, storage_options): batch sizes, a
    start/end range, nested folders and 0-row files, metadata aligned."""
    _, collections = tree
    collection = collections[file_format]
    reader = open_remote(collection, http[1] if transport == "http" else s3[0])
    assert reader.count == collection.count and reader.nb_files == len(collection.non_empty_paths)
    for batch_size, start, end in READS:
        assert_rows(read_pass(reader, batch_size, start=start, end=end), collection, batch_size, start, end)


# ---------------------------------------------------------------- bytes on the wire


@pytest.mark.parametrize("file_format", ALL_FORMATS)
def test_http_wire_bytes_and_no_head_per_piece(tree, http, file_format):
    """A full read of a few-MB collection moves at most 5% more than its files' bytes, and sends no HEAD per piece:
    none for npy (sizes are never needed), at most one per parquet file (fsspec http's listings have no sizes)."""
    _, collections = tree
    collection = collections[f"big_{file_format}"]
    server, remote = http
    server.clear()
    reader = open_remote(collection, remote)
    header_bytes = server.stats.bytes_sent
    assert_rows(read_pass(reader, 1000), collection, 1000)
    print(f"WIRE http {file_format}: {server.stats.bytes_sent / bytes_of_collection(collection):.4f}x, {server.stats}")
    assert server.stats.bytes_sent <= WIRE_OVERHEAD * bytes_of_collection(collection), server.stats
    parquet_files = len(collection.paths) if file_format == "parquet" else len(collection.metadata_paths)
    assert server.stats.head_requests <= parquet_files < pieces_of(reader, 1000)  # per file at most, not per piece
    if file_format == "npy":  # one probe of the first PROBE_BYTES per file, plus small html listings
        assert server.stats.head_requests == 0
        assert header_bytes <= PROBE_BYTES * len(collection.paths) + LISTING_BYTES * len(server.listings())


@pytest.mark.parametrize("file_format", ALL_FORMATS)
def test_s3_wire_bytes_and_no_head(tree, s3, file_format):
    """The same read over S3 (through a counting proxy): at most 5% over the files' bytes, and no HEAD at all,
    since S3 listings give sizes."""
    _, collections = tree
    collection = collections[f"big_{file_format}"]
    _, remote, proxy = s3
    proxy.reset_stats()
    reader = open_remote(collection, remote)
    assert_rows(read_pass(reader, 1000), collection, 1000)
    print(f"WIRE s3 {file_format}: {proxy.stats.bytes_sent / bytes_of_collection(collection):.4f}x, {proxy.stats}")
    assert proxy.stats.bytes_sent <= WIRE_OVERHEAD * bytes_of_collection(collection), proxy.stats
    assert proxy.stats.head_requests == 0, proxy.stats


def test_default_piece_size_suits_the_storage(tree, http, s3):
    """Pieces of about 50 MB locally, 16 MB over http (as 4 MB parts) and 64 MB over S3 (one GET each)."""
    _, collections = tree
    collection = collections["big_npy"]
    readers = {
        LOCAL_PIECE_BYTES: EmbeddingReader(collection.folder, file_format="npy"),
        HTTP_PIECE_BYTES: open_remote(collection, http[1]),
        S3_PIECE_BYTES: open_remote(collection, s3[0]),
    }
    for piece_bytes, reader in readers.items():
        assert reader._piece_rows(None) == piece_bytes // reader.byte_per_item


def test_streamed_pieces_need_no_side_buffer(tree, http, s3):
    """For the RAM budget, a remote npy piece streamed into its batch costs only its slice; a cast needs the
    downloaded rows on the side."""
    _, collections = tree
    collection = collections["big_npy"]
    for reader in (open_remote(collection, http[1]), open_remote(collection, s3[0])):
        piece = build_pieces(reader.headers, 1000)[0]
        header = reader.headers[piece.file_index]
        assert reader._format.transient_bytes(piece, header, np.dtype("float32")) == 0
        assert reader._format.transient_bytes(piece, header, np.dtype("float16")) == piece.rows * header.row_bytes


@pytest.mark.parametrize(
    ("part_bytes", "nbytes", "expected"),
    [
        (4 << 20, 16 << 20, 4 << 20),
        (4 << 20, 5 << 20, 1310720),
        (4 << 20, 2 << 20, 1 << 20),
        (4 << 20, 1000, 1 << 20),
        (256, 5 << 20, 256),
        (None, 64 << 20, 64 << 20),
    ],
)
def test_part_sizes(part_bytes, nbytes, expected):
    """About four parts per range, at most part_bytes and at least 1 MB each (unless part_bytes is smaller); no
    parts at all for S3."""
    assert Streamer(storage_http.read_into, part_bytes, 16 << 20, 256).part_size(nbytes) == expected


def test_http_first_batch_cut_into_a_piece_per_thread(tree, http, monkeypatch):
    """Over http the first batch is read as one piece per thread (4 of 250 rows), later batches in their planned
    pieces (500 rows); rows exact. FIRST_BATCH_MIN_PIECE lowered to one row."""
    _, collections = tree
    collection = collections["big_npy"]
    _, remote = http
    monkeypatch.setattr(reader_module, "FIRST_BATCH_MIN_PIECE", 1)
    pieces = record_pieces(monkeypatch)
    reader = open_remote(collection, remote)
    assert_rows(read_pass(reader, 1000, max_piece_size=500, parallel_pieces=4), collection, 1000)
    assert sorted(pieces) == [(0, 250)] * 4 + [(batch, 500) for batch in (1, 1, 2, 2, 3, 3)]


def test_s3_one_get_per_piece(tree, s3, monkeypatch):
    """Over S3 each piece is one ranged GET streamed into the batch (here 512 KB pieces of 2 MB files)."""
    _, collections = tree
    collection = collections["big_npy"]
    _, remote, proxy = s3
    monkeypatch.setattr(storage_s3, "PIECE_BYTES", 512 * 1024)
    reader = open_remote(collection, remote)
    proxy.reset_stats()
    assert_rows(read_pass(reader, 2000), collection, 2000)
    piece_rows = 512 * 1024 // reader.byte_per_item
    assert proxy.stats.get_requests == sum(-(-rows // piece_rows) for rows in BIG_ROWS) == 8, proxy.stats


# ---------------------------------------------------------------- pickling, missing folders, secrets


@pytest.mark.parametrize("file_format", ALL_FORMATS)
def test_pickled_reader_reads_without_listing(tree, http, file_format):
    """A pickled reader is small, and its copy reads the same rows over http without listing a folder or sending a
    HEAD; for npy, with exactly one request per piece (no header read again)."""
    _, collections = tree
    collection = collections[file_format]
    server, remote = http
    reader = open_remote(collection, remote)
    data = pickle.dumps(reader)
    assert len(data) < 20_000
    server.clear()
    copy = pickle.loads(data)
    assert_rows(read_pass(copy, 20, parallel_pieces=2), collection, 20)
    assert server.listings() == [] and server.stats.head_requests == 0, server.log
    if file_format == "npy":
        assert server.stats.get_requests == len(build_pieces(copy.headers, 20, max_piece_size=10**9))


@pytest.mark.parametrize("file_format", ALL_FORMATS)
def test_s3_pickled_reader(tree, s3, file_format):
    """Over S3 too, the copy of a pickled reader (storage options included) reads the same rows; for npy with one
    request per piece (no listing, no header read again)."""
    _, collections = tree
    collection = collections[file_format]
    _, remote, proxy = s3
    copy = pickle.loads(pickle.dumps(open_remote(collection, remote)))
    proxy.reset_stats()
    assert_rows(read_pass(copy, 20, parallel_pieces=2), collection, 20)
    assert proxy.stats.head_requests == 0
    if file_format == "npy":
        assert proxy.stats.requests == len(build_pieces(copy.headers, 20, max_piece_size=10**9))


def test_missing_folder_over_http_and_s3(tree, http, s3):
    """A folder missing on the server is the same clear error as a missing local folder, naming the folder."""
    root, _ = tree
    for remote in (http[1], s3[0]):
        with pytest.raises(NoEmbeddingsFoundError, match="no_such_folder"):
            EmbeddingReader(remote.url(os.path.join(root, "no_such_folder")), storage_options=remote.storage_options)


def test_s3_secret_never_shown(tree, s3):
    """The secret key in storage_options appears neither in the reader's repr nor in an error message."""
    root, collections = tree
    direct = s3[0]
    reader = open_remote(collections["npy"], direct)
    assert DUMMY_SECRET not in repr(reader) and DUMMY_SECRET not in repr(reader._storage)
    with pytest.raises(NoEmbeddingsFoundError) as info:
        EmbeddingReader(direct.url(os.path.join(root, "missing")), storage_options=direct.storage_options)
    assert DUMMY_SECRET not in str(info.value) and DUMMY_SECRET not in repr(info.value)


def test_the_private_client_hooks_the_streamed_reads_need_are_there(moto_s3, http_server_factory, tmp_path):
    """Streamed reads use hooks of fsspec's HTTPFileSystem (set_session, encode_url) and s3fs's private _call_s3
    (its public `open` adds a HEAD and read-ahead per read). Without them reads fall back to cat_file silently
    (slower, a copy more): this test is what fails when a release of either drops them."""
    from embedding_reader.retry import RetryPolicy
    from embedding_reader.storage import Storage

    server = http_server_factory(tmp_path)
    http_storage = Storage(f"{server.url}/", None, RetryPolicy())
    s3_storage = Storage("s3://bucket/", moto_s3.storage_options(), RetryPolicy())
    assert http_storage.streamer is not None and http_storage.streamer.read_into is storage_http.read_into
    assert s3_storage.streamer is not None and s3_storage.streamer.read_into is storage_s3.read_into
