"""The ANN benchmarks' own formats (TEXMEX *vecs, big-ann-benchmarks *bin), written here by numpy's `tofile` in the
documented layouts and read back row for row: locally, over http and from S3; by file pattern and by file list."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest

from embedding_reader import (
    CorruptFileError,
    EmbeddingReader,
    InconsistentCollectionError,
    InvalidArgumentError,
    NoEmbeddingsFoundError,
    detect_format,
    inspect_collection,
)
from embedding_reader.pieces import build_pieces
from embedding_reader.storage import local
from embedding_reader.storage.identity import FileIdentities
from tests.support.remote import FAST_RETRIES

pytestmark = pytest.mark.timeout(120)

# format -> stored dtype
VECS = {"fvecs": "<f4", "ivecs": "<i4", "bvecs": "u1"}
BINS = {"fbin": "<f4", "ibin": "<i4", "u8bin": "u1", "i8bin": "i1"}
ALL = {**VECS, **BINS}
ROWS = [37, 0, 50, 13]  # an empty file between non-empty ones
DIM = 12
BUCKET = "ann-formats"


def sample(rows: int, dtype: str, seed: int, dim: int = DIM) -> np.ndarray:
    """Random rows of the dtype (integers over its whole range, up to +-2**20)."""
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    if kind.kind == "f":
        return rng.standard_normal((rows, dim)).astype(kind)
    info = np.iinfo(kind)
    return rng.integers(max(info.min, -(2**20)), min(info.max, 2**20), (rows, dim), endpoint=True).astype(kind)


def write_vecs(path: Path, rows: np.ndarray) -> None:
    """TEXMEX layout: each row a little-endian int32 dimension, then its values."""
    with open(path, "wb") as file:
        for row in rows:
            np.array([len(row)], dtype="<i4").tofile(file)
            row.tofile(file)


def write_bin(path: Path, rows: np.ndarray) -> None:
    """big-ann-benchmarks layout: uint32 rows, uint32 dimension, then the rows."""
    with open(path, "wb") as file:
        np.array(rows.shape, dtype="<u4").tofile(file)
        rows.tofile(file)


def write(path: Path, file_format: str, rows: np.ndarray) -> None:
    """A file of the format holding `rows`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (write_vecs if file_format in VECS else write_bin)(path, rows)


def write_collection(folder: Path, file_format: str, counts: list[int] = ROWS) -> np.ndarray:
    """Files part_00.<format>, ... holding `counts` rows; all their rows, in order."""
    parts = [sample(count, ALL[file_format], seed) for seed, count in enumerate(counts)]
    for index, rows in enumerate(parts):
        write(folder / f"part_{index:02d}.{file_format}", file_format, rows)
    return np.concatenate(parts)


def read(reader: EmbeddingReader, batch_size: int, **kwargs) -> tuple[np.ndarray, list[int], list[int]]:
    """(embeddings, batch sizes, global row indices) of one pass."""
    batches = list(reader(batch_size, show_progress=False, **kwargs))
    embeddings = np.concatenate([batch for batch, _ in batches])
    return embeddings, [len(batch) for batch, _ in batches], [i for _, meta in batches for i in meta["i"]]


@pytest.mark.parametrize("file_format", ALL)
def test_every_format_row_for_row(tmp_path, file_format):
    """Several files, batches cutting files, pieces cut inside files, stored dtype and float32 out, start/end."""
    expected = write_collection(tmp_path, file_format)
    reader = EmbeddingReader(str(tmp_path), file_format=file_format)
    assert (reader.count, reader.dimension, reader.nb_files) == (100, DIM, 3)
    assert reader.dtype == np.dtype(ALL[file_format]) and reader.byte_per_item == DIM * reader.dtype.itemsize
    stored, sizes, indices = read(reader, 16, output_dtype=None, max_piece_size=7)
    assert stored.dtype == np.dtype(ALL[file_format]).newbyteorder("=")
    np.testing.assert_array_equal(stored, expected)
    assert sizes == [16] * 6 + [4] and indices == list(range(100))
    as_float, _, _ = read(reader, 30)
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, expected.astype(np.float32))
    ranged, sizes, indices = read(reader, 9, start=31, end=93, max_piece_size=5, output_dtype=np.float64)
    np.testing.assert_array_equal(ranged, expected[31:93].astype(np.float64))
    assert sizes == [9] * 6 + [8] and indices == list(range(31, 93))


@pytest.mark.parametrize("file_format", ALL)
@pytest.mark.parametrize("output_dtype", [None, np.float32])
def test_every_format_shuffled(tmp_path, file_format, output_dtype):
    """A shuffled read over files and an empty one, start/end: each row of the range once, equal to the row its index
    names; the same order whatever the pieces."""
    expected = write_collection(tmp_path, file_format)
    reader = EmbeddingReader(str(tmp_path), file_format=file_format)
    options = dict(shuffle=True, seed=5, start=3, end=97, output_dtype=output_dtype)
    embeddings, sizes, indices = read(reader, 10, max_piece_size=7, **options)
    assert sorted(indices) == list(range(3, 97)) and indices != sorted(indices) and sizes == [10] * 9 + [4]
    want = expected[indices] if output_dtype is None else expected[indices].astype(output_dtype)
    np.testing.assert_array_equal(embeddings, want)
    assert read(reader, 10, max_piece_size=40, **options)[2] == indices


@pytest.mark.parametrize("file_format", ["fvecs", "bvecs", "u8bin"])
def test_local_reads_through_small_blocks(tmp_path, file_format):
    """A piece larger than the 2 MB side buffer (vecs) or the cast buffer (bin) is read block after block."""
    rows = sample(20_000, ALL[file_format], 7, dim=200)
    write(tmp_path / f"big.{file_format}", file_format, rows)
    reader = EmbeddingReader(str(tmp_path), file_format=file_format)
    embeddings, _, _ = read(reader, 16_000, max_piece_size=15_000)
    np.testing.assert_array_equal(embeddings, rows.astype(np.float32))


def test_vecs_side_buffer_is_counted_and_bounded(tmp_path):
    """Vecs pieces hold their stored rows beside the batch slice: counted for the budget, a 2 MB block at most
    locally (a piece of a million rows included), plus a page to place it where the file's bytes sit in theirs."""
    write_collection(tmp_path, "fvecs", [5000])
    reader = EmbeddingReader(str(tmp_path), file_format="fvecs")
    header, stride = reader.headers[0], 4 + DIM * 4
    (piece,) = build_pieces([header], 5000)
    assert reader._format.transient_bytes(piece, header, np.dtype(np.float32)) == 5000 * stride + 4096
    (big,) = build_pieces([dataclasses.replace(header, count=10**6)], 10**6, max_piece_size=10**6)
    assert reader._format.transient_bytes(big, header, np.dtype(np.float32)) == (2 * 2**20 // stride) * stride + 4096


def test_wrong_dimension_prefix_names_the_file_and_row(tmp_path):
    """A row whose prefix is not the file's dimension fails the read: the file, the row and its bytes are named."""
    rows = sample(40, "<f4", 1)
    path = tmp_path / "base.fvecs"
    write_vecs(path, rows)
    stride = 4 + DIM * 4
    with open(path, "r+b") as file:
        file.seek(23 * stride)
        file.write(np.array([DIM + 1], dtype="<i4").tobytes())
    reader = EmbeddingReader(str(tmp_path), file_format="fvecs")
    assert reader.count == 40
    message = f"{path} bytes [{23 * stride}, {24 * stride}): row 23 has dimension {DIM + 1}, the file's is {DIM}"
    with pytest.raises(CorruptFileError, match=re.escape(message)):
        read(reader, 10)
    np.testing.assert_array_equal(read(reader, 10, end=20)[0], rows[:20])  # the rows before the bad one read


def test_vecs_size_not_a_whole_number_of_rows(tmp_path):
    """A vecs file cut inside a row (or with bytes after its last one) is refused at open, by name."""
    path = tmp_path / "cut.ivecs"
    write_vecs(path, sample(10, "<i4", 2))
    with open(path, "ab") as file:
        file.write(b"\x00\x01\x02")
    size = 10 * (4 + DIM * 4) + 3
    message = f"{path}: {size} bytes is not a whole number of rows of {4 + DIM * 4} bytes (4 + {DIM} x 4)"
    with pytest.raises(CorruptFileError, match=re.escape(message)):
        EmbeddingReader(str(tmp_path), file_format="ivecs")


@pytest.mark.parametrize("prefix", [0, -3, 2**30])
def test_vecs_impossible_first_dimension(tmp_path, prefix):
    path = tmp_path / "bad.bvecs"
    path.write_bytes(np.array([prefix], dtype="<i4").tobytes() + bytes(60))
    with pytest.raises(CorruptFileError, match=re.escape(f"{path}: row 0 has dimension {prefix}")):
        EmbeddingReader(str(tmp_path), file_format="bvecs")


def test_bin_header_claiming_more_rows_than_the_file(tmp_path):
    """A bin header whose rows x dimension do not fit in the file is refused at open, before any row is read."""
    path = tmp_path / "base.u8bin"
    write_bin(path, sample(20, "u1", 3))
    with open(path, "r+b") as file:
        file.write(np.array([21], dtype="<u4").tobytes())
    message = f"{path}: file has {8 + 20 * DIM} bytes but its header (21, {DIM}) uint8 needs {8 + 21 * DIM}"
    with pytest.raises(CorruptFileError, match=re.escape(message)):
        EmbeddingReader(str(tmp_path), file_format="u8bin")
    with open(path, "r+b") as file:
        file.write(np.array([2**32 - 1, DIM], dtype="<u4").tobytes())
    with pytest.raises(CorruptFileError, match=re.escape(str(path))):
        EmbeddingReader(str(tmp_path), file_format="u8bin")


def test_bin_bytes_after_the_rows_are_ignored_and_short_files_refused(tmp_path):
    rows = sample(20, "<f4", 4)
    path = tmp_path / "base.fbin"
    write_bin(path, rows)
    with open(path, "ab") as file:
        file.write(b"trailing bytes")
    np.testing.assert_array_equal(read(EmbeddingReader(str(tmp_path), file_format="fbin"), 7)[0], rows)
    path.write_bytes(b"\x01\x00\x00")
    with pytest.raises(CorruptFileError, match=re.escape(f"{path}: 3 bytes, shorter than the 8-byte header")):
        EmbeddingReader(str(tmp_path), file_format="fbin")


def test_mismatched_dimensions_across_files(tmp_path):
    write_collection(tmp_path, "fbin", [5])
    write(tmp_path / "part_09.fbin", "fbin", np.zeros((3, DIM + 1), dtype="<f4"))
    with pytest.raises(InconsistentCollectionError, match="dimension 13"):
        EmbeddingReader(str(tmp_path), file_format="fbin")


def big_ann_folder(root: Path) -> dict[str, np.ndarray]:
    """A big-ann-benchmarks style folder: a cropped base file, the full base, queries and ground truth."""
    data = {
        "base.1B.u8bin.crop_nb_30": sample(30, "u1", 10),
        "base.1B.u8bin": sample(45, "u1", 11),
        "query.public.10K.u8bin": sample(8, "u1", 12),
        "GT.public.1B.ibin": sample(8, "<i4", 13),
    }
    for name, rows in data.items():
        write(root / name, "ibin" if name.endswith("ibin") else "u8bin", rows)
    return data


def test_file_pattern_and_explicit_files(tmp_path):
    """file_pattern chooses the files of a folder; a file given as the folder is read whatever its name."""
    data = big_ann_folder(tmp_path)
    folder = str(tmp_path)
    by_extension = EmbeddingReader(folder, file_format="u8bin")
    assert [os.path.basename(header.path) for header in by_extension.headers] == [
        "base.1B.u8bin",
        "query.public.10K.u8bin",
    ]
    crop = EmbeddingReader(folder, file_format="u8bin", file_pattern="base.1B.u8bin.crop*")
    np.testing.assert_array_equal(read(crop, 8, output_dtype=None)[0], data["base.1B.u8bin.crop_nb_30"])
    queries = EmbeddingReader(folder, file_format="u8bin", file_pattern="query.*")
    np.testing.assert_array_equal(read(queries, 8, output_dtype=None)[0], data["query.public.10K.u8bin"])
    single = EmbeddingReader(str(tmp_path / "base.1B.u8bin.crop_nb_30"), file_format="u8bin")
    np.testing.assert_array_equal(read(single, 7, output_dtype=None)[0], data["base.1B.u8bin.crop_nb_30"])
    files = [str(tmp_path / "query.public.10K.u8bin"), str(tmp_path / "base.1B.u8bin.crop_nb_30")]
    listed = EmbeddingReader(files, file_format="u8bin")
    expected = np.concatenate([data["base.1B.u8bin.crop_nb_30"], data["query.public.10K.u8bin"]])  # paths sorted
    np.testing.assert_array_equal(read(listed, 7, output_dtype=None)[0], expected)
    truth = EmbeddingReader(folder, file_format="ibin")
    np.testing.assert_array_equal(read(truth, 3, output_dtype=None)[0], data["GT.public.1B.ibin"])
    with pytest.raises(NoEmbeddingsFoundError, match=re.escape(f"no 'nothing*' file found in {folder}")):
        EmbeddingReader(folder, file_format="u8bin", file_pattern="nothing*")
    with pytest.raises(InvalidArgumentError, match="file_pattern"):
        EmbeddingReader(folder, file_format="u8bin", file_pattern="")


def test_pattern_keeps_hidden_files_skipped_and_paths_sorted(tmp_path, caplog):
    a, b = sample(3, "<f4", 20), sample(4, "<f4", 21)
    write(tmp_path / "sub" / "b_learn.fvecs", "fvecs", b)
    write(tmp_path / "a_learn.fvecs", "fvecs", a)
    write(tmp_path / "._a_learn.fvecs", "fvecs", a)
    write(tmp_path / "base.fvecs", "fvecs", sample(5, "<f4", 22))
    with caplog.at_level(logging.WARNING, logger="embedding_reader"):
        reader = EmbeddingReader(str(tmp_path), file_format="fvecs", file_pattern="*_learn.fvecs")
    np.testing.assert_array_equal(read(reader, 2)[0], np.concatenate([a, b]))
    assert f"{tmp_path}: skipped 1 '*_learn.fvecs' files whose names start with '.' or '_'" in caplog.messages


def test_meta_columns_are_ignored_with_a_warning(tmp_path, caplog):
    write_collection(tmp_path, "fvecs", [4])
    with caplog.at_level(logging.WARNING, logger="embedding_reader"):
        reader = EmbeddingReader(str(tmp_path), file_format="fvecs", meta_columns=["id"])
    assert reader.meta_columns == [] and any("fvecs files hold no metadata" in m for m in caplog.messages)
    assert list(reader.reader.headers.columns)[:3] == ["filename", "count", "count_before"]


@pytest.mark.parametrize("file_format", ALL)
def test_detection_and_inspection(tmp_path, file_format):
    write_collection(tmp_path, file_format, [4, 6])
    assert detect_format(str(tmp_path)) == file_format
    report = inspect_collection(str(tmp_path))
    assert report.ok and report.file_format == file_format and report.count == 10


def test_inspection_reports_each_bad_file_and_ambiguity(tmp_path):
    write_collection(tmp_path / "vecs", "fvecs", [4, 6])
    (tmp_path / "vecs" / "part_01.fvecs").write_bytes(b"\x0c\x00\x00\x00" + bytes(10))
    report = inspect_collection(str(tmp_path / "vecs"))
    assert not report.ok and [file.ok for file in report.files] == [True, False]
    assert "is not a whole number of rows" in str(report.files[1].problem)
    big_ann_folder(tmp_path / "big")
    with pytest.raises(InconsistentCollectionError, match=re.escape("both .ibin (1) and .u8bin (2) files found")):
        detect_format(str(tmp_path / "big"))
    assert detect_format(str(tmp_path / "big"), file_pattern="GT*") == "ibin"
    assert inspect_collection(str(tmp_path / "big"), "u8bin", file_pattern="base.1B.u8bin.crop*").count == 30
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoEmbeddingsFoundError, match=r"nor any \.fvecs"):
        detect_format(str(tmp_path / "empty"))


@pytest.fixture(scope="module")
def remote_tree(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Every format's collection and a big-ann folder, under one root served by http and S3."""
    root = tmp_path_factory.mktemp("ann")
    expected = {name: write_collection(root / name, name) for name in ALL}
    big_ann_folder(root / "big")
    return root, expected


@pytest.fixture(scope="module")
def http_base(remote_tree, http_server_factory) -> str:
    return str(http_server_factory(remote_tree[0]).url)


@pytest.fixture(scope="module")
def s3_base(remote_tree, moto_s3) -> tuple[str, dict]:
    moto_s3.upload_folder(remote_tree[0], BUCKET, "ann")
    return f"s3://{BUCKET}/ann", moto_s3.storage_options()


def remote_reader(base: str, options: dict | None, path: str, file_format: str, **kwargs) -> EmbeddingReader:
    return EmbeddingReader(
        f"{base}/{path}", file_format=file_format, storage_options=options, retry_policy=FAST_RETRIES, **kwargs
    )


@pytest.mark.parametrize("file_format", ALL)
def test_over_http(remote_tree, http_base, file_format):
    expected = remote_tree[1][file_format]
    reader = remote_reader(http_base, None, f"{file_format}/", file_format)
    assert reader.count == 100
    np.testing.assert_array_equal(read(reader, 16, output_dtype=None, max_piece_size=7)[0], expected)
    np.testing.assert_array_equal(read(reader, 40, start=5, end=77)[0], expected[5:77].astype(np.float32))


@pytest.mark.parametrize("file_format", ALL)
def test_from_s3(remote_tree, s3_base, file_format):
    base, options = s3_base
    expected = remote_tree[1][file_format]
    reader = remote_reader(base, options, file_format, file_format)
    np.testing.assert_array_equal(read(reader, 16, output_dtype=None, max_piece_size=7)[0], expected)
    np.testing.assert_array_equal(read(reader, 40, start=5, end=77)[0], expected[5:77].astype(np.float32))


def test_remote_file_pattern_and_single_files(remote_tree, http_base, s3_base):
    """Over http and on S3: a pattern chooses the files, a file given as the folder is read whatever its name."""
    crop = sample(30, "u1", 10)
    for base, options in [(http_base, None), s3_base]:
        chosen = remote_reader(base, options, "big", "u8bin", file_pattern="base.1B.u8bin.crop*")
        np.testing.assert_array_equal(read(chosen, 7, output_dtype=None)[0], crop)
        single = remote_reader(base, options, "big/base.1B.u8bin.crop_nb_30", "u8bin")
        assert single.headers[0].file_size == 8 + 30 * DIM
        np.testing.assert_array_equal(read(single, 7, output_dtype=None)[0], crop)
        named = remote_reader(base, options, "fvecs/part_02.fvecs", "fvecs")
        np.testing.assert_array_equal(read(named, 7)[0], remote_tree[1]["fvecs"][37:87])


def test_remote_corrupt_vecs_row(tmp_path, http_server_factory):
    rows = sample(30, "u1", 5)
    path = tmp_path / "base.bvecs"
    write_vecs(path, rows)
    stride = 4 + DIM
    with open(path, "r+b") as file:
        file.seek(17 * stride)
        file.write(np.array([7], dtype="<i4").tobytes())
    reader = remote_reader(str(http_server_factory(tmp_path).url), None, "", "bvecs")
    message = f"base.bvecs bytes [{17 * stride}, {18 * stride}): row 17 has dimension 7, the file's is {DIM}"
    with pytest.raises(CorruptFileError, match=re.escape(message)):
        read(reader, 100)


@pytest.mark.parametrize("file_format", ["u8bin", "fbin", "fvecs", "bvecs"])
@pytest.mark.parametrize("output_dtype", [None, np.float64])
def test_local_reads_are_never_aliased(tmp_path, file_format, output_dtype, monkeypatch):
    """No local read copies file bytes to a destination 1 to 63 bytes ahead of them modulo the page (the slow
    kernel copy): side buffers sit where the file's bytes sit in their page, and a batch slice that would be such
    a destination is filled through the bounce buffer (reads under a page excepted); the rows land row for row."""
    parts = [sample(count, ALL[file_format], seed, dim=200) for seed, count in enumerate([300, 217])]
    for index, rows in enumerate(parts):
        write(tmp_path / f"part_{index}.{file_format}", file_format, rows)
    expected = np.concatenate(parts)
    reader = EmbeddingReader(str(tmp_path), file_format=file_format)
    copies: list[tuple[int, int]] = []
    original = local.read_into
    original_bounced = local._read_bounced

    def recording(path, start, out, identities):
        if out.nbytes >= local.BOUNCE_MIN_BYTES:
            copies.append((start, local.address(out)))
        original(path, start, out, identities)

    def bounced(file, path, start, out):
        copies.pop()  # the bounce buffer is the kernel's destination: half a page away
        original_bounced(file, path, start, out)

    monkeypatch.setattr(local, "read_into", recording)
    monkeypatch.setattr(local, "_read_bounced", bounced)
    embeddings, _, _ = read(reader, 64, max_piece_size=33, output_dtype=output_dtype)
    np.testing.assert_array_equal(embeddings, expected.astype(output_dtype or expected.dtype))
    assert copies and not [copy for copy in copies if local.is_aliased(*copy)], copies


@pytest.mark.parametrize("file_format", ["u8bin", "fvecs"])
def test_pieces_at_every_offset_modulo_64(tmp_path, file_format):
    """Pieces starting at every byte offset modulo 64 (and batches at every row modulo 64, so that some batch slices
    are aliased with the file and some are not) read row for row what numpy's tofile wrote."""
    dim = 129 if file_format == "u8bin" else 3  # rows of 129 bytes / 16 bytes: starts cover every offset mod 64
    rows = sample(4000, ALL[file_format], 11, dim=dim)
    write(tmp_path / f"base.{file_format}", file_format, rows)
    reader = EmbeddingReader(str(tmp_path), file_format=file_format)
    for batch_size, piece in [(1000, 64), (997, 61), (4000, 67)]:
        got, _, _ = read(reader, batch_size, max_piece_size=piece, output_dtype=None)
        np.testing.assert_array_equal(got, rows)
    as_float, _, _ = read(reader, 1000, max_piece_size=63)
    np.testing.assert_array_equal(as_float, rows.astype(np.float32))


@pytest.mark.parametrize("start", [0, 1, 8, 63, 64, 4095, 4096 + 8])
@pytest.mark.parametrize("shift", [0, 1, 8, 16, 24, 63, 64, 2048, 4095])
def test_local_read_into_every_distance(tmp_path, start, shift):
    """storage.local.read_into lands the same bytes whatever the distance between the file's position and the
    destination modulo the page, aliased (1 to 63 bytes ahead, through the bounce buffer) or not, across several
    bounce buffers and to the file's end; past it, CorruptFileError."""
    data = np.random.default_rng(start + shift).integers(0, 256, 3 * 2**20 + 12345, dtype=np.uint8)
    path = tmp_path / "bytes"
    data.tofile(path)
    nbytes = len(data) - start
    raw = np.zeros(nbytes + 2 * local.PAGE, dtype=np.uint8)
    out = local.page_congruent(raw, start + shift, nbytes)
    assert local.is_aliased(start, local.address(out.data)) == (0 < shift < 64)
    local.read_into(str(path), start, out.data, FileIdentities())
    np.testing.assert_array_equal(out, data[start:])
    with pytest.raises(CorruptFileError, match="file ends early"):
        local.read_into(str(path), start + 1, out.data, FileIdentities())


def test_local_read_scattered_fills_every_view_and_refuses_a_short_file(tmp_path):
    """storage.local.read_scattered fills its views in order from `start` (more views than one preadv takes); views
    reaching past the file's end fill what the file holds, then raise CorruptFileError naming the bytes."""
    data = np.random.default_rng(7).integers(0, 256, 50_000, dtype=np.uint8)
    path = tmp_path / "bytes"
    data.tofile(path)
    out = np.zeros(3000 * 16, dtype=np.uint8)
    views = [out[k * 16 : (k + 1) * 16].data for k in range(3000)]
    local.read_scattered(str(path), 100, views, FileIdentities())
    np.testing.assert_array_equal(out, data[100 : 100 + len(out)])
    out[:] = 0
    with pytest.raises(CorruptFileError, match=r"bytes \[49988, 50004\): file ends early, after 12 bytes"):
        local.read_scattered(str(path), 2020, views, FileIdentities())
    np.testing.assert_array_equal(out[:47980], data[2020:])
