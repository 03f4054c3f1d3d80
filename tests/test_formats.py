"""Conformance suite: every format (npy, parquet, parquet_npy) read row for row against the data written."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from numpy.lib import format as npy_format

import embedding_reader.reader as reader_module
from embedding_reader import EmbeddingReader
from embedding_reader.formats import FORMATS, NpyFormat
from embedding_reader.formats.parquet_io import ParquetIO
from embedding_reader.storage import Storage
from tests.support.collections import (
    ALL_FORMATS,
    FIXED_SIZE_LIST,
    LIST_TYPES,
    META_COLUMNS,
    PANDAS_LIST,
    Collection,
    ReadResult,
    concat_collections,
    embedding_array,
    expected_batch_sizes,
    read_all,
    record_pieces,
    sample_embeddings,
    sample_meta,
    write_npy_collection,
    write_parquet_collection,
    write_parquet_file,
    write_parquet_npy_collection,
)

STANDARD_ROWS = [37, 0, 50, 1, 0, 29]  # 117 rows; empty files between and after non-empty ones
STANDARD_COUNT = sum(STANDARD_ROWS)
ROW_GROUP_SIZE = 10


def write_collection(file_format: str, folder, rows, dim: int = 8, dtype="float32", **options) -> Collection:
    """Write a collection of the given format; parquet files get row groups of ROW_GROUP_SIZE rows unless told."""
    if file_format == "npy":
        return write_npy_collection(folder, rows, dim, dtype, **options)
    options.setdefault("row_group_size", ROW_GROUP_SIZE)
    if file_format == "parquet":
        return write_parquet_collection(folder, rows, dim, dtype, **options)
    return write_parquet_npy_collection(folder, rows, dim, dtype, **options)


def default_kwargs(collection: Collection) -> dict:
    """EmbeddingReader keywords for the collection, with the meta columns `caption` and `n` when the format has them."""
    return collection.reader_kwargs(None if collection.file_format == "npy" else META_COLUMNS)


def open_reader(collection: Collection, meta_columns: list[str] | None = None) -> EmbeddingReader:
    """A reader of the collection: with the given meta columns, or the default ones (see default_kwargs)."""
    if meta_columns is None:
        return EmbeddingReader(collection.folder, **default_kwargs(collection))
    return EmbeddingReader(collection.folder, **collection.reader_kwargs(meta_columns))


def read(reader: EmbeddingReader, batch_size: int, **kwargs) -> ReadResult:
    """One full pass over reader(batch_size, **kwargs), without a progress bar."""
    return read_all(reader(batch_size, show_progress=False, **kwargs))


def check_result(
    result: ReadResult,
    collection: Collection,
    batch_size: int,
    start: int = 0,
    end: int | None = None,
    out_dtype=np.float32,
    meta_columns: list[str] | None = None,
) -> None:
    """Assert the pass returned exactly rows [start, min(end, count)): values, dtype, batch sizes, aligned meta."""
    end = collection.count if end is None else min(end, collection.count)
    assert result.batch_sizes == expected_batch_sizes(end - start, batch_size)
    if end == start:
        return
    assert result.dtypes == {np.dtype(out_dtype)}
    np.testing.assert_array_equal(result.embeddings, collection.embeddings[start:end].astype(out_dtype))
    if meta_columns is None:
        meta_columns = [] if collection.file_format == "npy" else META_COLUMNS
    assert sorted(result.meta.columns) == sorted(["i", *meta_columns])
    expected = collection.meta.iloc[start:end]
    for column in ["i", *meta_columns]:
        assert result.meta[column].tolist() == expected[column].tolist(), column


@pytest.fixture(scope="module", params=ALL_FORMATS)
def standard(request, tmp_path_factory) -> tuple[Collection, EmbeddingReader]:
    """The standard collection of each format (117 rows in 6 files, two of them empty) and its reader."""
    collection = write_collection(request.param, tmp_path_factory.mktemp(request.param), STANDARD_ROWS)
    return collection, open_reader(collection)


class TestConformance:
    """Properties every format must have, run against the standard collection of each format."""

    @pytest.mark.parametrize("batch_size", [1, 2, 7, 10, 36, 37, 38, 50, 87, 88, 116, 117, 118, 10_000])
    def test_batch_sizes(self, standard, batch_size):
        """Every batch size, including 1, sizes that cut files, and sizes beyond the collection."""
        collection, reader = standard
        check_result(read(reader, batch_size), collection, batch_size)

    @pytest.mark.parametrize(
        ("start", "end"),
        [(0, 1), (36, 38), (37, 88), (5, None), (116, None), (100, 10_000), (0, STANDARD_COUNT), (20, 20), (88, 89)],
    )
    @pytest.mark.parametrize("batch_size", [1, 9, 1000])
    def test_ranges(self, standard, start, end, batch_size):
        """start/end ranges: inside one file, across files, to the end, and end past the count (clamped)."""
        collection, reader = standard
        result = read(reader, batch_size, start=start, end=end)
        check_result(result, collection, batch_size, start, end)

    @pytest.mark.parametrize("max_piece_size", [1, 3, 64])
    @pytest.mark.parametrize("parallel_pieces", [1, 3, 8])
    def test_pieces_and_parallelism(self, standard, max_piece_size, parallel_pieces):
        """Small and large pieces, read by one to eight threads, give the same rows."""
        collection, reader = standard
        result = read(reader, 10, start=3, max_piece_size=max_piece_size, parallel_pieces=parallel_pieces)
        check_result(result, collection, 10, start=3)

    @pytest.mark.parametrize("budget", [1, 100, 2_000])
    def test_ram_budget_smaller_than_a_batch(self, standard, budget):
        """A RAM budget below one batch (even one byte) slows the read down but still completes it correctly."""
        collection, reader = standard
        result = read(reader, 20, max_ram_usage_in_bytes=budget, parallel_pieces=4, max_piece_size=4)
        check_result(result, collection, 20)

    def test_attributes(self, standard):
        """count, dimension, dtype, byte_per_item, total_size, nb_files, max_file_size, embeddings_folder."""
        collection, reader = standard
        assert reader.count == STANDARD_COUNT
        assert reader.dimension == 8
        assert reader.dtype == np.dtype("float32")
        assert reader.byte_per_item == 32
        assert reader.total_size == STANDARD_COUNT * 32
        assert reader.nb_files == len(collection.non_empty_paths) == 4
        assert reader.max_file_size == max(os.path.getsize(path) for path in collection.non_empty_paths)
        assert reader.embeddings_folder == collection.folder
        assert collection.file_format in repr(reader) and str(STANDARD_COUNT) in repr(reader)

    @pytest.mark.parametrize("out_dtype", [np.float16, np.float64, "float32"])
    def test_output_dtype(self, standard, out_dtype):
        """output_dtype casts the embeddings to the type asked."""
        collection, reader = standard
        check_result(read(reader, 40, output_dtype=out_dtype), collection, 40, out_dtype=out_dtype)

    def test_read_twice(self, standard):
        """Two passes over one reader give the same result."""
        collection, reader = standard
        first, second = read(reader, 13), read(reader, 13)
        check_result(first, collection, 13)
        np.testing.assert_array_equal(first.embeddings, second.embeddings)
        assert first.meta.equals(second.meta)

    def test_interleaved_iterators(self, standard):
        """Two iterators of one reader, advanced in turn, each give their own correct rows."""
        collection, reader = standard
        iterators = [reader(7, show_progress=False), reader(11, start=3, end=100, show_progress=False)]
        batches: list[list] = [[], []]
        active = [0, 1]
        while active:
            for k in list(active):
                batch = next(iterators[k], None)
                if batch is None:
                    active.remove(k)
                else:
                    batches[k].append(batch)
        check_result(read_all(batches[0]), collection, 7)
        check_result(read_all(batches[1]), collection, 11, 3, 100)

    def test_pickle(self, standard, monkeypatch):
        """A pickled reader is small, and its copy reads the same rows without listing or reading headers again."""
        collection, reader = standard
        data = pickle.dumps(reader)
        assert len(data) < 4096

        def forbidden(*args, **kwargs):
            raise AssertionError("the unpickled reader listed folders or read headers again")

        for cls in {*FORMATS.values(), NpyFormat}:
            monkeypatch.setattr(cls, "read_headers", forbidden)
        for owner, name in [
            (Storage, "find"),
            (Storage, "read_ranges"),
            (Storage, "size"),
            (ParquetIO, "read_footers"),
        ]:
            monkeypatch.setattr(owner, name, forbidden)
        monkeypatch.setattr(NpyFormat, "read_npy_headers", forbidden)
        clone = pickle.loads(data)
        assert (clone.count, clone.dimension, clone.nb_files) == (reader.count, reader.dimension, reader.nb_files)
        check_result(read(clone, 13, start=2), collection, 13, start=2)

    @pytest.mark.parametrize("n", [1, 2, 3, 7, 150])
    def test_split(self, standard, n):
        """split(n): n contiguous balanced ranges covering [0, count), which read back to the whole collection."""
        collection, reader = standard
        ranges = reader.split(n)
        assert len(ranges) == n
        assert ranges[0][0] == 0 and ranges[-1][1] == STANDARD_COUNT
        assert all(prev[1] == cur[0] for prev, cur in zip(ranges, ranges[1:]))
        assert max(e - s for s, e in ranges) - min(e - s for s, e in ranges) <= 1
        parts = [read(reader, 16, start=s, end=e) for s, e in ranges if e > s]
        np.testing.assert_array_equal(np.concatenate([part.embeddings for part in parts]), collection.embeddings)
        assert [i for part in parts for i in part.meta["i"]] == list(range(STANDARD_COUNT))

    def test_numpy_integer_arguments(self, standard):
        """numpy integers are accepted wherever an int is (ranges often come from numpy arithmetic)."""
        collection, reader = standard
        result = read(reader, np.int64(9), start=np.int32(4), end=np.int64(90), max_piece_size=np.int64(5))
        check_result(result, collection, 9, 4, 90)

    def test_first_batch_as_training_sample(self, standard):
        """autofaiss takes next(reader(batch_size=n, start=0, end=n)) as a sample: exactly the first n rows."""
        collection, reader = standard
        emb, meta = next(reader(batch_size=50, start=0, end=50))
        np.testing.assert_array_equal(emb, collection.embeddings[:50])
        assert meta["i"].tolist() == list(range(50))


@pytest.mark.parametrize("file_format", ALL_FORMATS)
class TestCollectionShapes:
    """Collections of other shapes: empty files at both ends, one row, several folders, nested folders."""

    def test_empty_files_at_both_ends(self, file_format, tmp_path):
        """Empty files first, last and everywhere are skipped."""
        collection = write_collection(file_format, tmp_path, [0, 0, 5, 0, 3, 0])
        reader = open_reader(collection)
        assert reader.count == 8 and reader.nb_files == 2
        check_result(read(reader, 3), collection, 3)

    def test_single_row(self, file_format, tmp_path):
        """A one-row collection."""
        collection = write_collection(file_format, tmp_path, [1], dim=4)
        check_result(read(open_reader(collection), 5), collection, 5)

    def test_many_small_files(self, file_format, tmp_path):
        """Forty files of 0 to 4 rows, read in batches that span many files."""
        rows = [k % 5 for k in range(40)]
        collection = write_collection(file_format, tmp_path, rows, dim=5)
        reader = open_reader(collection)
        check_result(read(reader, 9, parallel_pieces=3), collection, 9)

    def test_large_dimension_and_rows(self, file_format, tmp_path):
        """A few thousand rows of dimension 32, read with default pieces and parallelism."""
        collection = write_collection(file_format, tmp_path, [1500, 0, 1700, 800], dim=32)
        check_result(read(open_reader(collection), 1000), collection, 1000)


@pytest.mark.parametrize("meta_columns", [[], ["n"], ["caption"], ["n", "caption"]])
@pytest.mark.parametrize("file_format", ["parquet", "parquet_npy"])
def test_meta_column_subsets(file_format, tmp_path, meta_columns):
    """meta_columns None gives only `i`; a subset gives exactly those columns, aligned with their rows."""
    collection = write_collection(file_format, tmp_path, [6, 0, 9])
    reader = EmbeddingReader(collection.folder, **collection.reader_kwargs(meta_columns or None))
    check_result(read(reader, 4), collection, 4, meta_columns=meta_columns)


@pytest.mark.parametrize("file_format", ["npy", "parquet"])
class TestFolders:
    """Nested folders and lists of folders (npy and parquet: parquet_npy pairs one folder with one metadata folder)."""

    def test_nested_folders(self, file_format, tmp_path):
        """Files are found recursively and read in sorted path order; other files are ignored."""
        collection = write_collection(file_format, tmp_path, [4, 0, 7, 3, 5], nested=True)
        assert any(os.sep + "sub" + os.sep in path for path in collection.paths)
        check_result(read(open_reader(collection), 6), collection, 6)

    def test_list_of_folders(self, file_format, tmp_path):
        """A list of folders is read in the order of all their paths sorted together, as 1.8.1 does, whatever
        order the folders are given in (autofaiss's ids are global row numbers)."""
        later = write_collection(file_format, tmp_path / "b", [3, 5], seed=1, first_row=6)
        sooner = write_collection(file_format, tmp_path / "a", [4, 0, 2], seed=2, first_row=0)
        collection = concat_collections([sooner, later])
        for folders in ([later.folder, sooner.folder], [sooner.folder, later.folder]):
            reader = EmbeddingReader(folders, **default_kwargs(collection))
            assert reader.count == 14 and reader.nb_files == 4
            check_result(read(reader, 5), collection, 5)

    def test_interleaved_folders_sorted_together(self, file_format, tmp_path):
        """Paths of several folders interleave when sorted together: x/y/... sorts before x1/... ('/' < '1')."""
        nested = write_collection(file_format, tmp_path / "x" / "y", [4], seed=4, first_row=0)
        outer = write_collection(file_format, tmp_path / "x1", [2, 3], seed=3, first_row=4)
        reader = EmbeddingReader([str(tmp_path / "x1"), str(tmp_path / "x")], **default_kwargs(nested))
        assert [header.path for header in reader.headers] == nested.paths + outer.paths
        check_result(read(reader, 4), concat_collections([nested, outer]), 4)

    @pytest.mark.parametrize("spelling", ["file_url", "trailing_slash", "pathlib"])
    def test_folder_spellings(self, file_format, tmp_path, spelling):
        """A local folder may be given as a file:// URL, with a trailing slash, or as a pathlib.Path."""
        collection = write_collection(file_format, tmp_path / "data", [5, 0, 4])
        folder = {
            "file_url": f"file://{collection.folder}",
            "trailing_slash": f"{collection.folder}{os.sep}",
            "pathlib": tmp_path / "data",
        }[spelling]
        reader = EmbeddingReader(folder, **default_kwargs(collection))
        assert reader.count == 9 and reader.embeddings_folder == folder
        check_result(read(reader, 4), collection, 4)

    def test_relative_folder_survives_pickling_elsewhere(self, file_format, tmp_path, monkeypatch):
        """A relative folder is resolved when the reader is built: a copy unpickled in another directory still reads."""
        collection = write_collection(file_format, tmp_path / "data", [5, 3])
        monkeypatch.chdir(tmp_path)
        reader = EmbeddingReader("data", **default_kwargs(collection))
        monkeypatch.chdir(tmp_path.parent)
        check_result(read(pickle.loads(pickle.dumps(reader)), 3), collection, 3)


def test_parquet_npy_folders_as_paths(tmp_path):
    """parquet_npy accepts pathlib.Path folders for embeddings and metadata."""
    collection = write_collection("parquet_npy", tmp_path, [5, 0, 4])
    reader = EmbeddingReader(
        tmp_path / "emb", file_format="parquet_npy", metadata_folder=tmp_path / "meta", meta_columns=META_COLUMNS
    )
    check_result(read(reader, 4), collection, 4)


NPY_DTYPES = ["float16", "float32", "float64", "int8", "uint8", "int32", ">f4"]


@pytest.mark.parametrize("dtype", NPY_DTYPES)
def test_npy_dtypes(tmp_path, dtype):
    """Every numeric npy dtype: stored dtype and byte_per_item reported, float32 by default, kept with None."""
    collection = write_collection("npy", tmp_path, [9, 0, 14], dim=6, dtype=dtype)
    reader = open_reader(collection)
    assert reader.dtype == np.dtype(dtype)
    assert reader.byte_per_item == 6 * np.dtype(dtype).itemsize
    assert reader.total_size == 23 * reader.byte_per_item
    check_result(read(reader, 5), collection, 5)
    native = np.dtype(dtype).newbyteorder("=")
    check_result(read(reader, 5, output_dtype=None), collection, 5, out_dtype=native)


@pytest.mark.parametrize("dtype", ["float16", "int8", ">f4", "float64"])
def test_parquet_npy_dtypes(tmp_path, dtype):
    """parquet_npy reads its npy part in any dtype, with metadata aligned."""
    collection = write_collection("parquet_npy", tmp_path, [9, 0, 14], dim=6, dtype=dtype)
    reader = open_reader(collection)
    assert reader.dtype == np.dtype(dtype) and reader.byte_per_item == 6 * np.dtype(dtype).itemsize
    check_result(read(reader, 4), collection, 4)
    check_result(read(reader, 4, output_dtype=None), collection, 4, out_dtype=np.dtype(dtype).newbyteorder("="))


def test_parquet_npy_pieces_share_metadata_row_groups(tmp_path, monkeypatch):
    """npy pieces are cut freely across metadata row groups; each row group is decoded once for all of them."""
    collection = write_collection("parquet_npy", tmp_path, [40, 0, 25], row_group_size=30)
    reader = open_reader(collection)
    assert all(header.units == () for header in reader.headers)
    decodes = []
    original = ParquetIO._decode

    def counting_decode(self, footer, group, *rest):
        decodes.append((footer.path, group))
        return original(self, footer, group, *rest)

    monkeypatch.setattr(ParquetIO, "_decode", counting_decode)
    result = read(reader, 7, max_piece_size=4, parallel_pieces=4)  # the piece of rows [28, 32) spans two groups
    check_result(result, collection, 7)
    assert sorted(decodes) == sorted(set(decodes)) and len(decodes) == 3  # row groups of 30 and 10 rows, and 25


@pytest.mark.parametrize("list_type", LIST_TYPES)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_parquet_value_types(tmp_path, dtype, list_type):
    """fixed_size_list and pandas-written list columns of float16/32/64: byte_per_item counts stored bytes."""
    collection = write_collection("parquet", tmp_path, [11, 0, 8, 13], dim=6, dtype=dtype, list_type=list_type)
    reader = open_reader(collection)
    assert reader.dtype == np.dtype(dtype)
    assert reader.byte_per_item == 6 * np.dtype(dtype).itemsize
    check_result(read(reader, 5, start=2), collection, 5, start=2)
    check_result(read(reader, 5, output_dtype=None), collection, 5, out_dtype=dtype)


def test_parquet_list_types_mixed_across_files(tmp_path):
    """One file with a fixed_size_list column, the next with a pandas-written list column: one collection."""
    embeddings, meta = sample_embeddings(10, 4, seed=3), sample_meta(0, 10)
    write_parquet_file(str(tmp_path / "a.parquet"), embeddings[:4], meta.iloc[:4], FIXED_SIZE_LIST, 2)
    write_parquet_file(str(tmp_path / "b.parquet"), embeddings[4:], meta.iloc[4:], PANDAS_LIST, 3)
    collection = Collection("parquet", str(tmp_path), embeddings, meta)
    check_result(read(open_reader(collection), 3), collection, 3)


def test_parquet_empty_row_groups(tmp_path):
    """Row groups of 0 rows (between and after others) are planned and read like any other."""
    embeddings, meta = sample_embeddings(10, 4, seed=4), sample_meta(0, 10)
    parts = [(0, 4), (4, 4), (4, 10), (10, 10)]
    tables = [
        pa.table({"embedding": embedding_array(embeddings[a:b]), "n": meta["n"].to_numpy()[a:b]}) for a, b in parts
    ]
    with pq.ParquetWriter(tmp_path / "a.parquet", tables[0].schema) as writer:
        for table in tables:
            writer.write_table(table)
    reader = EmbeddingReader(str(tmp_path), file_format="parquet", meta_columns=["n"])
    assert reader.headers[0].units == (4, 0, 6, 0)
    collection = Collection("parquet", str(tmp_path), embeddings, meta)
    for batch_size, start, max_piece_size in [(1, 0, 1), (3, 2, 2), (4, 4, 1), (10, 0, 10)]:
        result = read(reader, batch_size, start=start, max_piece_size=max_piece_size)
        check_result(result, collection, batch_size, start, meta_columns=["n"])


def test_parquet_large_list(tmp_path):
    """A large_list<float> embedding column (64-bit offsets) reads like a list column."""
    embeddings = np.random.default_rng(9).standard_normal((13, 5)).astype(np.float32)
    offsets = pa.array(np.arange(0, 13 * 5 + 1, 5, dtype=np.int64))
    column = pa.LargeListArray.from_arrays(offsets, pa.array(embeddings.reshape(-1)))
    pq.write_table(
        pa.table({"embedding": column, "n": np.arange(13) * 7 + 3}), tmp_path / "a.parquet", row_group_size=4
    )
    reader = EmbeddingReader(str(tmp_path), file_format="parquet", meta_columns=["n"])
    result = read(reader, 6, start=1)
    np.testing.assert_array_equal(result.embeddings, embeddings[1:])
    assert result.meta["n"].tolist() == (np.arange(1, 13) * 7 + 3).tolist()


@pytest.mark.parametrize("row_group_size", [1, 3, 1000])
def test_parquet_row_group_sizes(tmp_path, row_group_size):
    """Row groups of one row, a few rows, and whole files, cut by batches and pieces anywhere."""
    collection = write_collection("parquet", tmp_path, [17, 0, 23], row_group_size=row_group_size)
    reader = open_reader(collection)
    for batch_size, start, max_piece_size in [(4, 0, 2), (7, 5, 5), (100, 1, 100)]:
        result = read(reader, batch_size, start=start, max_piece_size=max_piece_size)
        check_result(result, collection, batch_size, start)


def write_npy_with_header(path, array: np.ndarray, version: tuple[int, int], header_bytes: int) -> None:
    """An npy file whose header (magic to newline) is exactly `header_bytes` long, padded with spaces."""
    text = repr({"descr": npy_format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": array.shape})
    prefix = 10 if version[0] == 1 else 12
    padded = text + " " * (header_bytes - prefix - len(text) - 1) + "\n"
    with open(path, "wb") as file:
        file.write(npy_format.magic(*version))
        file.write(len(padded).to_bytes(prefix - 8, "little"))
        file.write(padded.encode("latin1"))
        file.write(array.tobytes())


def write_versioned_npy(path, array: np.ndarray, version: tuple[int, int]) -> None:
    """An npy file written by numpy with the given header version."""
    with open(path, "wb") as file:
        npy_format.write_array(file, array, version=version)


def test_npy_header_versions_and_lengths(tmp_path):
    """Headers of versions 1.0, 2.0, 3.0 and long ones (1000 bytes; 70,000 in 2.0) are read at the right offset."""
    embeddings = np.random.default_rng(5).standard_normal((60, 7)).astype(np.float32)
    parts = np.split(embeddings, [10, 20, 30, 40, 50])
    writers = [
        lambda path, part: write_versioned_npy(path, part, (1, 0)),
        lambda path, part: write_versioned_npy(path, part, (2, 0)),
        lambda path, part: write_versioned_npy(path, part, (3, 0)),
        lambda path, part: write_npy_with_header(path, part, (1, 0), 320),
        lambda path, part: write_npy_with_header(path, part, (1, 0), 1000),
        lambda path, part: write_npy_with_header(path, part, (2, 0), 70_000),
    ]
    for k, (writer, part) in enumerate(zip(writers, parts)):
        path = tmp_path / f"emb_{k}.npy"
        writer(path, part)
        np.testing.assert_array_equal(np.load(path, max_header_size=100_000), part)  # the files are valid npy
    reader = EmbeddingReader(str(tmp_path), file_format="npy")
    assert reader.count == 60 and reader.dimension == 7
    for batch_size in (1, 7, 60):
        result = read(reader, batch_size, max_piece_size=3)
        np.testing.assert_array_equal(result.embeddings, embeddings)
        assert result.meta["i"].tolist() == list(range(60))


def test_parquet_npy_file_names_differ(tmp_path):
    """parquet_npy pairs files by the number in their names: img_emb_0000.npy with metadata_0000.parquet."""
    collection = write_collection("parquet_npy", tmp_path, [5, 6])
    assert [os.path.basename(path) for path in collection.paths] == ["img_emb_0000.npy", "img_emb_0001.npy"]
    assert os.path.basename(collection.metadata_paths[1]) == "metadata_0001.parquet"
    check_result(read(open_reader(collection), 4), collection, 4)


@pytest.mark.parametrize(("output_dtype", "cores", "threads"), [(None, 2, 4), ("float32", 2, 2), ("float32", 1, 1)])
def test_default_threads_one_per_core_when_casting(tmp_path, monkeypatch, output_dtype, cores, threads):
    """Local reads use 4 threads, but a read that casts (CPU-bound) uses one per core; the rows stay exact."""
    collection = write_collection("npy", tmp_path, STANDARD_ROWS, dtype="float16")
    used = []
    real_pipeline = reader_module.Pipeline
    monkeypatch.setattr(reader_module, "usable_cores", lambda: cores)
    monkeypatch.setattr(reader_module, "Pipeline", lambda *args: used.append(args[4]) or real_pipeline(*args))
    out_dtype = np.float16 if output_dtype is None else np.float32
    check_result(read(open_reader(collection), 10, output_dtype=output_dtype), collection, 10, out_dtype=out_dtype)
    assert used == [threads]


def test_local_first_batch_keeps_planned_pieces(tmp_path, monkeypatch):
    """Local files: the first batch is read in its planned pieces like the others (cutting it finer did not
    make it sooner, see README); over http it is cut (test_remote.py). FIRST_BATCH_MIN_PIECE lowered to one row."""
    import embedding_reader.reader as reader_module

    collection = write_collection("npy", tmp_path, [300], dim=8)
    monkeypatch.setattr(reader_module, "FIRST_BATCH_MIN_PIECE", 1)
    pieces = record_pieces(monkeypatch)
    check_result(read(open_reader(collection), 100, max_piece_size=100, parallel_pieces=4), collection, 100)
    assert sorted(pieces) == [(0, 100), (1, 100), (2, 100)]
