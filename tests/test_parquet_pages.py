"""The direct parquet page decoder (formats/parquet_pages.py) against pyarrow's own reading of the same files.

Every file pyarrow can write for an embedding column is read row for row equal to the data written, through
EmbeddingReader with pieces that cut row groups and pages; files the decoder handles must not fall back to
pyarrow (a silent fallback would keep the results right but lose the speed), and files it turns down
(other value types, nulls, ragged rows, corrupt pages) are decoded or refused by pyarrow exactly as before.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedding_reader import CorruptFileError, EmbeddingReader, EmbeddingReaderError
from embedding_reader.formats.parquet_levels import hybrid, is_regular_rows
from embedding_reader.formats.parquet_pages import NotFastPath, chunk_layout, decode_rows
from tests.support.collections import read_all, sample_embeddings

pytestmark = pytest.mark.timeout(120)

DIRECT_DTYPES = ["float32", "float64", "int32", "int64"]
CODECS = ["none", "snappy", "gzip", "zstd", "brotli"]  # lz4: pyarrow's footer names LZ4_RAW and Hadoop LZ4 alike


def embedding_table(embeddings: np.ndarray, list_type: str, element_nullable: bool = True) -> pa.Table:
    """A table with one `embedding` column of the given list type over the embeddings' rows."""
    dim = embeddings.shape[1]
    element = pa.field("element", pa.from_numpy_dtype(embeddings.dtype), nullable=element_nullable)
    values = pa.array(embeddings.reshape(-1))
    if list_type == "fixed_size_list":
        column = pa.FixedSizeListArray.from_arrays(values, type=pa.list_(element, dim))
    else:
        offsets = pa.array(np.arange(0, len(embeddings) * dim + 1, dim, dtype=np.int32))
        column = pa.ListArray.from_arrays(offsets, values, type=pa.list_(element))
    return pa.table({"embedding": column})


def write(folder: str, embeddings: np.ndarray, list_type: str = "fixed_size_list", files: int = 1, **options) -> None:
    """Write the embeddings into `files` parquet files with pyarrow's writer options."""
    element_nullable = options.pop("element_nullable", True)
    bounds = np.linspace(0, len(embeddings), files + 1).astype(int)
    for k in range(files):
        table = embedding_table(embeddings[bounds[k] : bounds[k + 1]], list_type, element_nullable)
        pq.write_table(table, os.path.join(folder, f"part_{k}.parquet"), **options)


def read(folder: str, **call) -> tuple[np.ndarray, EmbeddingReader]:
    """Every row in the requested range, and the reader (to ask whether pyarrow was needed)."""
    reader = EmbeddingReader(folder, file_format="parquet", embedding_column="embedding")
    call = {"batch_size": 7, "max_piece_size": 1, "show_progress": False, "output_dtype": None, **call}
    return read_all(reader(**call)).embeddings, reader


def used_pyarrow(reader: EmbeddingReader) -> set:
    """The files the direct decoder turned down in this reader."""
    return set(reader._format.parquet._pyarrow_only)  # type: ignore[attr-defined]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("page_version", ["1.0", "2.0"])
@pytest.mark.parametrize("use_dictionary", [False, True])
def test_codecs_page_versions_and_dictionaries(tmp_path, codec, page_version, use_dictionary):
    """Many small pages, some dictionary-encoded, in several row groups: all decoded directly."""
    embeddings = sample_embeddings(61, 12, "float32")
    embeddings[::3] = embeddings[0]  # repeated rows, so dictionaries have something to share
    options = {"compression": codec, "data_page_version": page_version, "use_dictionary": use_dictionary}
    write(str(tmp_path), embeddings, files=2, row_group_size=13, data_page_size=300, **options)
    got, reader = read(str(tmp_path))
    np.testing.assert_array_equal(got, embeddings)
    assert not used_pyarrow(reader)


@pytest.mark.parametrize("dtype", DIRECT_DTYPES)
@pytest.mark.parametrize("list_type", ["fixed_size_list", "list"])
@pytest.mark.parametrize("dim", [1, 5, 8, 16])
def test_value_types_list_types_and_dimensions(tmp_path, dtype, list_type, dim):
    """Every directly decoded value type, both list types, dimensions that do and do not fill bit-packed groups."""
    embeddings = sample_embeddings(40, dim, dtype)
    write(str(tmp_path), embeddings, list_type, row_group_size=17, data_page_size=200)
    got, reader = read(str(tmp_path), batch_size=9)
    np.testing.assert_array_equal(got, embeddings)
    assert got.dtype == embeddings.dtype
    assert not used_pyarrow(reader)


@pytest.mark.parametrize(
    "options",
    [
        {"element_nullable": False},
        {"use_byte_stream_split": True, "use_dictionary": False},
        {"write_statistics": False},
        {"write_page_index": True},
        {"write_page_checksum": True},
        {"data_page_size": 1},
    ],
    ids=["required_elements", "byte_stream_split", "no_statistics", "page_index", "checksums", "one_row_per_page"],
)
def test_writer_options(tmp_path, options):
    """Other writer options pyarrow offers: each still decoded directly, row for row."""
    embeddings = sample_embeddings(30, 6, "float32")
    write(str(tmp_path), embeddings, row_group_size=11, **options)
    got, reader = read(str(tmp_path))
    np.testing.assert_array_equal(got, embeddings)
    assert not used_pyarrow(reader)


def test_pandas_written_list_column_and_cast(tmp_path):
    """A column of numpy rows written by pandas, read as float32 from float64 storage."""
    import pandas as pd

    embeddings = sample_embeddings(25, 4, "float64")
    pd.DataFrame({"embedding": list(embeddings)}).to_parquet(tmp_path / "part.parquet", row_group_size=10)
    got, reader = read(str(tmp_path), output_dtype=np.float32)
    np.testing.assert_array_equal(got, embeddings.astype(np.float32))
    assert not used_pyarrow(reader)


@pytest.mark.parametrize("start,end", [(0, 1), (12, 13), (5, 29), (13, 26), (29, 30)])
def test_ranges_starting_inside_pages(tmp_path, start, end):
    """A read starting and ending inside pages and row groups decodes only what it needs, exactly."""
    embeddings = sample_embeddings(30, 3, "float32")
    write(str(tmp_path), embeddings, row_group_size=13, data_page_size=50)
    got, reader = read(str(tmp_path), start=start, end=end, batch_size=4)
    np.testing.assert_array_equal(got, embeddings[start:end])
    assert not used_pyarrow(reader)


@pytest.mark.parametrize("dtype", ["float16", "int8", "uint16"])
def test_other_value_types_fall_back_to_pyarrow(tmp_path, dtype):
    """Values whose stored type is not the numpy dtype (float16 in fixed-size binary, int8 in INT32) go to pyarrow."""
    embeddings = sample_embeddings(20, 4, dtype)
    write(str(tmp_path), embeddings, row_group_size=7)
    got, reader = read(str(tmp_path))
    np.testing.assert_array_equal(got, embeddings)
    assert used_pyarrow(reader)


def test_lz4_falls_back_to_pyarrow(tmp_path):
    """LZ4: the footer as pyarrow shows it does not tell raw LZ4 from Hadoop-framed LZ4, so pyarrow decodes it."""
    embeddings = sample_embeddings(20, 4, "float32")
    write(str(tmp_path), embeddings, row_group_size=7, compression="lz4")
    got, reader = read(str(tmp_path))
    np.testing.assert_array_equal(got, embeddings)
    assert used_pyarrow(reader)


def test_null_values_fall_back_and_are_refused(tmp_path):
    """A null inside an embedding: the decoder turns the file down, pyarrow's path names the problem."""
    values = pa.array([1.0, None, 3.0, 4.0, 5.0, 6.0], type=pa.float32())
    table = pa.table({"embedding": pa.FixedSizeListArray.from_arrays(values, 2)})
    pq.write_table(table, tmp_path / "part.parquet")
    with pytest.raises(CorruptFileError, match="null"):
        read(str(tmp_path))


def test_ragged_rows_fall_back_and_are_refused(tmp_path):
    """Rows of lengths 3 and 1 (4 values for 2 rows of a footer dimension of 2): refused, never re-cut."""
    column = pa.array([[1.0, 2.0, 3.0], [4.0]], type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"embedding": column}), tmp_path / "part.parquet")
    with pytest.raises(CorruptFileError, match="ragged"):
        read(str(tmp_path))


def test_empty_rows_are_refused(tmp_path):
    """An empty list beside a longer one: refused."""
    column = pa.array([[1.0, 2.0], [], [3.0, 4.0, 5.0, 6.0]], type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"embedding": column}), tmp_path / "part.parquet")
    with pytest.raises(CorruptFileError):
        read(str(tmp_path))


# ---------------------------------------------------------------- the decoder alone


def chunk_of(path: str, group: int = 0) -> tuple[bytes, object, int]:
    """(chunk bytes, layout, rows) of the embedding column chunk of one row group."""
    metadata = pq.read_metadata(path)
    layout = chunk_layout(metadata, group, 0, np.dtype("<f4"))
    with open(path, "rb") as file:
        file.seek(layout.start)
        return file.read(layout.size), layout, metadata.row_group(group).num_rows


def test_decode_rows_direct(tmp_path):
    """decode_rows on its own: any row window of a chunk equals the rows written."""
    embeddings = sample_embeddings(50, 10, "float32")
    write(str(tmp_path), embeddings, data_page_size=120)
    chunk, layout, rows = chunk_of(str(tmp_path / "part_0.parquet"))
    for first, count in [(0, 50), (0, 1), (49, 1), (17, 20)]:
        out = np.full((count, 10), np.nan, dtype=np.float32)
        decode_rows(chunk, layout, rows, 10, first, out)
        np.testing.assert_array_equal(out, embeddings[first : first + count])


def test_decode_rows_refuses_a_short_chunk(tmp_path):
    """A chunk cut short is not the chunk the footer describes."""
    embeddings = sample_embeddings(20, 4, "float32")
    write(str(tmp_path), embeddings)
    chunk, layout, rows = chunk_of(str(tmp_path / "part_0.parquet"))
    with pytest.raises(NotFastPath):
        decode_rows(chunk[:-1], layout, rows, 4, 0, np.empty((20, 4), np.float32))


def hybrid_rle(value: int, count: int, bit_width: int) -> bytes:
    """An RLE run of the hybrid encoding (a test's hand-made stream)."""
    return bytes([count << 1]) + value.to_bytes((bit_width + 7) // 8, "little")


def test_hybrid_runs():
    """Hand-made streams: an RLE run, then a bit-packed group of 8 two-bit values."""
    packed = bytes([0b11100100, 0b01001110])  # 0,1,2,3 then 2,3,0,1 in 2-bit little-endian groups
    stream = hybrid_rle(2, 3, 2) + bytes([(1 << 1) | 1]) + packed
    assert hybrid(memoryview(stream), 0, len(stream), 2, 11).tolist() == [2, 2, 2, 0, 1, 2, 3, 2, 3, 0, 1]
    with pytest.raises(NotFastPath):
        hybrid(memoryview(stream), 0, len(stream) - 1, 2, 11)


def test_regular_rows_check():
    """Repetition levels of rows of 3 values: [0,1,1] repeated; any other pattern is not regular."""
    regular = (hybrid_rle(0, 1, 1) + hybrid_rle(1, 2, 1)) * 4
    assert is_regular_rows(memoryview(regular), 1, 12, 3)
    shifted = (
        hybrid_rle(0, 1, 1)
        + hybrid_rle(1, 3, 1)
        + (hybrid_rle(0, 1, 1) + hybrid_rle(1, 2, 1)) * 2
        + hybrid_rle(1, 2, 1)
    )
    assert not is_regular_rows(memoryview(shifted), 1, 12, 3)


# ---------------------------------------------------------------- random files and mutated pages

FUZZ = settings(
    max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


@FUZZ
@given(
    rows=st.integers(1, 60),
    dim=st.integers(1, 20),
    dtype=st.sampled_from(DIRECT_DTYPES),
    codec=st.sampled_from(CODECS),
    page_version=st.sampled_from(["1.0", "2.0"]),
    use_dictionary=st.booleans(),
    page_size=st.integers(1, 400),
    group_rows=st.integers(1, 70),
    window=st.tuples(st.integers(0, 60), st.integers(0, 60)),
    batch_size=st.integers(1, 25),
)
def test_random_files(rows, dim, dtype, codec, page_version, use_dictionary, page_size, group_rows, window, batch_size):
    """Random shapes, codecs, page sizes, row groups and windows: row for row, never through pyarrow."""
    embeddings = sample_embeddings(rows, dim, dtype)
    start = window[0] % rows
    end = start + 1 + window[1] % (rows - start)
    with tempfile.TemporaryDirectory() as folder:
        options = {"compression": codec, "data_page_version": page_version, "use_dictionary": use_dictionary}
        write(folder, embeddings, row_group_size=group_rows, data_page_size=page_size, **options)
        got, reader = read(folder, start=start, end=end, batch_size=batch_size)
        np.testing.assert_array_equal(got, embeddings[start:end])
        assert not used_pyarrow(reader)


def pyarrow_rows(path: str) -> np.ndarray | None:
    """What pyarrow reads from a (maybe corrupt) file, or None if it refuses it."""
    try:
        column = pq.read_table(path).column("embedding").combine_chunks()
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
    except Exception:
        return None


ORIGINAL = sample_embeddings(24, 4, "float32")


def page_file(codec: str, page_version: str) -> bytes:
    """A small file of several pages to corrupt."""
    with tempfile.TemporaryDirectory() as folder:
        options = {"compression": codec, "data_page_version": page_version, "use_dictionary": False}
        write(folder, ORIGINAL, row_group_size=12, data_page_size=60, **options)
        with open(os.path.join(folder, "part_0.parquet"), "rb") as file:
            return file.read()


PAGE_FILES = [page_file(codec, version) for codec in ("none", "snappy") for version in ("1.0", "2.0")]


@FUZZ
@given(st.sampled_from(PAGE_FILES), st.lists(st.tuples(st.integers(4, 400), st.integers(1, 255)), max_size=3))
def test_mutated_pages(original, flips):
    """Bytes flipped in the pages (headers, levels, values): refused with the library's error, or the rows
    pyarrow reads from the same bytes, or (pyarrow refusing what the decoder needs not look at) the rows written."""
    data = bytearray(original)
    footer_start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    for position, mask in flips:
        data[position % footer_start] ^= mask  # leave the footer alone: footers are fuzzed in test_fuzz
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "part.parquet")
        with open(path, "wb") as file:
            file.write(bytes(data))
        expected = pyarrow_rows(path)
        try:
            got, _ = read(folder)
        except EmbeddingReaderError:
            return
        if expected is not None and expected.shape == got.shape:
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_array_equal(got, ORIGINAL)


def test_shared_decodes_last_taker_releases_in_any_order():
    """A shared value is made once for all the pieces that take its rows, whatever their order, then dropped."""
    from embedding_reader.formats.parquet_shared import SharedDecodes

    made: list[int] = []

    def make() -> int:
        made.append(1)
        return len(made)

    shared = SharedDecodes(size=4)
    assert shared.get("k", make, 6, 10) == 1  # the later rows first (an earlier piece was delayed)
    assert shared.get("k", make, 4, 10) == 1  # all 10 rows taken: made once, now dropped
    assert shared.get("k", make, 10, 10) == 2 and len(made) == 2


def test_reads_ending_inside_a_row_group_leave_nothing_cached(tmp_path):
    """A read that ends (or is stopped) inside a row group drops the chunk its pieces shared: the reader
    holds no row group between reads."""
    embeddings = sample_embeddings(40, 4, "float32")
    write(str(tmp_path), embeddings, row_group_size=20)
    got, reader = read(str(tmp_path), start=3, end=15, batch_size=5)
    np.testing.assert_array_equal(got, embeddings[3:15])
    shared = reader._format.parquet._decoded  # type: ignore[attr-defined]
    assert not shared._entries
    for _ in reader(batch_size=5, max_piece_size=1, show_progress=False):
        break
    assert not shared._entries
