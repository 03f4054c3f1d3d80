"""Every bad input is refused with an EmbeddingReaderError (a ValueError) whose message names the file or argument."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedding_reader import (
    CorruptFileError,
    EmbeddingReader,
    EmbeddingReaderError,
    InconsistentCollectionError,
    InvalidArgumentError,
    MissingColumnError,
    NoEmbeddingsFoundError,
    UnsupportedFileError,
)
from tests.support.collections import (
    META_COLUMNS,
    PANDAS_LIST,
    read_all,
    sample_embeddings,
    write_npy_collection,
    write_parquet_collection,
    write_parquet_npy_collection,
)


def read_everything(folder, file_format: str = "npy", **kwargs) -> int:
    """Build a reader and read the whole collection; return the number of rows read."""
    reader = EmbeddingReader(str(folder), file_format=file_format, **kwargs)
    return len(read_all(reader(batch_size=4, show_progress=False)).embeddings)


def expect_error(error_type: type, *names, folder, **kwargs) -> EmbeddingReaderError:
    """Assert read_everything(folder, **kwargs) raises `error_type` (an EmbeddingReaderError and a ValueError)
    whose message contains each of `names` (file names or arguments); return the error."""
    with pytest.raises(error_type) as info:
        read_everything(folder, **kwargs)
    error = info.value
    assert isinstance(error, EmbeddingReaderError) and isinstance(error, ValueError)
    for name in names:
        assert str(name) in str(error), f"{name!r} not in {error}"
    return error


def write_npy_files(folder, *arrays: np.ndarray) -> list[str]:
    """Save arrays as emb_0.npy, emb_1.npy, ... in `folder`; return their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"emb_{k}.npy") for k in range(len(arrays))]
    for path, array in zip(paths, arrays):
        np.save(path, array, allow_pickle=array.dtype.hasobject)
    return paths


def good_rows(rows: int = 6, dim: int = 4, dtype="float32", seed: int = 0) -> np.ndarray:
    """A valid block of embeddings."""
    return sample_embeddings(rows, dim, dtype, seed)


def write_parquet_table(path, table: pa.Table) -> str:
    """Write an arrow table as a parquet file; return its path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path)
    return str(path)


# ---------------------------------------------------------------- folders and formats


def test_missing_folder(tmp_path):
    """A folder that does not exist is named (and the error is also a FileNotFoundError)."""
    error = expect_error(NoEmbeddingsFoundError, "does_not_exist", folder=tmp_path / "does_not_exist")
    assert isinstance(error, FileNotFoundError)


def test_empty_folder(tmp_path):
    """An empty folder: no embeddings found, the folder named."""
    (tmp_path / "empty").mkdir()
    expect_error(NoEmbeddingsFoundError, "empty", ".npy", folder=tmp_path / "empty")


def test_folder_without_files_of_the_format(tmp_path):
    """A folder holding only files of another format is like an empty one."""
    write_npy_collection(tmp_path / "npy_only", [3])
    write_parquet_collection(tmp_path / "parquet_only", [3])
    expect_error(NoEmbeddingsFoundError, "npy_only", ".parquet", folder=tmp_path / "npy_only", file_format="parquet")
    expect_error(NoEmbeddingsFoundError, "parquet_only", ".npy", folder=tmp_path / "parquet_only", file_format="npy")


def test_folder_of_empty_files(tmp_path):
    """Files that all hold 0 rows: no embeddings found, a file named."""
    collection = write_npy_collection(tmp_path, [0, 0])
    expect_error(NoEmbeddingsFoundError, os.path.basename(collection.paths[0]), folder=tmp_path)


@pytest.mark.parametrize("file_format", ["npz", "NPY", "", None, "parquet-npy"])
def test_unknown_format(tmp_path, file_format):
    """An unknown file_format lists the valid names."""
    write_npy_collection(tmp_path, [3])
    error = expect_error(
        InvalidArgumentError, "npy", "'parquet'", "parquet_npy", folder=tmp_path, file_format=file_format
    )
    assert repr(file_format) in str(error)


@pytest.mark.parametrize("folder", [[], [""], "", [3]])
def test_bad_folder_arguments(folder):
    """embeddings_folder must be a folder or a non-empty list of folders."""
    with pytest.raises(InvalidArgumentError, match="embeddings_folder"):
        EmbeddingReader(folder, file_format="npy")


@pytest.mark.parametrize("meta_columns", [[""], [3], ["id", None]])
def test_bad_meta_columns(tmp_path, meta_columns):
    """meta_columns must be column names: anything else is an argument error naming meta_columns."""
    write_npy_collection(tmp_path, [3])
    expect_error(InvalidArgumentError, "meta_columns", folder=tmp_path, meta_columns=meta_columns)


def test_parquet_npy_without_metadata_folder(tmp_path):
    """parquet_npy needs metadata_folder."""
    write_npy_collection(tmp_path, [3])
    expect_error(InvalidArgumentError, "metadata_folder", folder=tmp_path, file_format="parquet_npy")


# ---------------------------------------------------------------- reader(...) arguments

BAD_POSITIVE = [0, -1, 1.5, True, "4"]


@pytest.fixture(scope="module")
def reader_of_10(tmp_path_factory) -> EmbeddingReader:
    """A reader of a 10-row npy collection."""
    return EmbeddingReader(str(write_npy_collection(tmp_path_factory.mktemp("ten"), [6, 4]).folder), "npy")


@pytest.mark.parametrize("value", BAD_POSITIVE)
@pytest.mark.parametrize("argument", ["batch_size", "max_piece_size", "parallel_pieces", "max_ram_usage_in_bytes"])
def test_bad_positive_integers(reader_of_10, argument, value):
    """Sizes must be integers >= 1 (not bools, floats or strings); the error names the argument."""
    kwargs = {"batch_size": 3, argument: value}
    with pytest.raises(InvalidArgumentError, match=argument):
        reader_of_10(**kwargs)


@pytest.mark.parametrize(
    ("start", "end", "named"),
    [(-1, None, "start"), (1.5, None, "start"), (True, None, "start"), ("0", None, "start"), (0, 2.5, "end"),
     (0, -1, "end"), (5, 4, "start"), (10, None, "start"), (10, 20, "start"), (25, 30, "start"), (0, False, "end")],
)  # fmt: skip
def test_bad_ranges(reader_of_10, start, end, named):
    """start must be in [0, count) and <= end; the error names the argument at fault."""
    with pytest.raises(InvalidArgumentError, match=named):
        reader_of_10(batch_size=3, start=start, end=end)


def test_batch_size_is_required(reader_of_10):
    """batch_size has no default: None is refused like any other non-integer."""
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        reader_of_10(batch_size=None)


def test_split_argument(reader_of_10):
    """split(n) needs an integer n >= 1."""
    for n in (0, -2, 1.5, True):
        with pytest.raises(InvalidArgumentError, match="n must be"):
            reader_of_10.split(n)


# ---------------------------------------------------------------- npy files


def test_npy_bad_magic(tmp_path):
    """A file with a .npy name but other content is named."""
    paths = write_npy_files(tmp_path, good_rows())
    with open(os.path.join(tmp_path, "bad.npy"), "wb") as file:
        file.write(b"GARBAGE!" + bytes(200))
    error = expect_error(CorruptFileError, "bad.npy", folder=tmp_path)
    assert os.path.basename(paths[0]) not in str(error)


def test_npy_corrupted_magic_byte(tmp_path):
    """One flipped byte in the magic string is caught."""
    (path,) = write_npy_files(tmp_path, good_rows())
    data = bytearray(open(path, "rb").read())
    data[1] ^= 0xFF
    open(path, "wb").write(bytes(data))
    expect_error(CorruptFileError, "emb_0.npy", folder=tmp_path)


@pytest.mark.parametrize("keep", [5, 60, 127])
def test_npy_truncated_header(tmp_path, keep):
    """A file cut inside its header is named."""
    (path,) = write_npy_files(tmp_path, good_rows())
    data = open(path, "rb").read()
    open(path, "wb").write(data[:keep])
    expect_error(CorruptFileError, "emb_0.npy", folder=tmp_path)


def test_npy_garbled_header(tmp_path):
    """A header that is not a valid dictionary is named."""
    (path,) = write_npy_files(tmp_path, good_rows())
    data = bytearray(open(path, "rb").read())
    data[12:30] = b"not a python dict!"
    open(path, "wb").write(bytes(data))
    expect_error(CorruptFileError, "emb_0.npy", folder=tmp_path)


@pytest.mark.parametrize("missing_bytes", [1, 16, 90])
def test_npy_truncated_body(tmp_path, missing_bytes):
    """A file shorter than its header says is named, before any row is read."""
    write_npy_files(tmp_path, good_rows(seed=1), good_rows())
    path = os.path.join(tmp_path, "emb_1.npy")
    os.truncate(path, os.path.getsize(path) - missing_bytes)
    expect_error(CorruptFileError, "emb_1.npy", folder=tmp_path)


def test_npy_longer_than_header_says(tmp_path):
    """Bytes after the array the header describes are ignored, as np.load ignores them: the rows are exact."""
    (path,) = write_npy_files(tmp_path, good_rows())
    with open(path, "ab") as file:
        file.write(b"\x7f" * 16)
    reader = EmbeddingReader(str(tmp_path))
    (embeddings, meta), *rest = reader(batch_size=100, show_progress=False)
    assert rest == [] and reader.count == 6
    np.testing.assert_array_equal(embeddings, np.load(path))
    assert meta["i"].tolist() == list(range(6))


class _CreatesMarker:
    """Unpickling this object creates (opens for writing) the marker file: proof that a pickle was loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_npy_object_dtype_refused_without_unpickling(tmp_path):
    """An object-dtype npy (a pickle) is refused from its header alone; its payload never runs."""
    marker = tmp_path / "unpickled.marker"
    array = np.empty((2, 2), dtype=object)
    array[:] = [[_CreatesMarker(str(marker))] * 2] * 2
    (path,) = write_npy_files(tmp_path / "emb", array)
    canary = tmp_path / "canary.npy"
    shutil.copy(path, canary)
    np.load(canary, allow_pickle=True)  # the payload works: loading it creates the marker
    assert marker.exists()
    marker.unlink()
    error = expect_error(UnsupportedFileError, "emb_0.npy", "object", folder=tmp_path / "emb")
    assert not marker.exists(), f"the pickle was loaded while raising {error}"


@pytest.mark.parametrize(
    "array",
    [np.zeros((3, 2), dtype=np.complex64), np.zeros((3, 2), dtype=bool), np.zeros((3, 2), dtype="U3"),
     np.zeros((3, 2), dtype=[("a", "<f4"), ("b", "<f4")])],
    ids=["complex", "bool", "unicode", "structured"],
)  # fmt: skip
def test_npy_non_numeric_dtypes(tmp_path, array):
    """Only plain integer and float dtypes are embeddings."""
    write_npy_files(tmp_path, array)
    expect_error(UnsupportedFileError, "emb_0.npy", folder=tmp_path)


def test_npy_fortran_order(tmp_path):
    """A Fortran-order array is refused (its rows are not contiguous), the file named."""
    write_npy_files(tmp_path, good_rows(), np.asfortranarray(good_rows(seed=3)))
    expect_error(UnsupportedFileError, "emb_1.npy", "Fortran", folder=tmp_path)


@pytest.mark.parametrize("shape", [(12,), (3, 2, 2), (1, 1, 1, 1), ()])
def test_npy_not_2d(tmp_path, shape):
    """1-D, 3-D, 4-D and 0-D arrays are refused, the file and the shape named."""
    write_npy_files(tmp_path, good_rows(), np.zeros(shape, dtype=np.float32))
    expect_error(UnsupportedFileError, "emb_1.npy", str(shape), folder=tmp_path)


def test_npy_dimensions_differ(tmp_path):
    """Files of different dimensions: both files named."""
    write_npy_files(tmp_path, good_rows(dim=4), good_rows(dim=4), good_rows(dim=5))
    expect_error(InconsistentCollectionError, "emb_0.npy", "emb_2.npy", "dimension", folder=tmp_path)


def test_npy_dtypes_differ(tmp_path):
    """Files of different kinds of dtype (floats beside integers; float widths may mix): both files named."""
    write_npy_files(tmp_path, good_rows(dtype="float32"), good_rows(dtype="int8"))
    expect_error(InconsistentCollectionError, "emb_0.npy", "emb_1.npy", "int8", folder=tmp_path)


def test_npy_empty_file_of_other_dimension_is_ignored(tmp_path):
    """A 0-row file is skipped, so its dimension does not matter."""
    write_npy_files(tmp_path, good_rows(dim=4), np.zeros((0, 9), dtype=np.float32), good_rows(dim=4, seed=2))
    assert read_everything(tmp_path) == 12


# ---------------------------------------------------------------- parquet files


def test_parquet_without_embedding_column(tmp_path):
    """A parquet file without the embedding column: the file and the column named."""
    write_parquet_collection(tmp_path, [4])
    write_parquet_table(tmp_path / "zz_other.parquet", pa.table({"vector": [[1.0, 2.0]]}))
    expect_error(MissingColumnError, "zz_other.parquet", "'embedding'", folder=tmp_path, file_format="parquet")


def test_parquet_custom_embedding_column_missing(tmp_path):
    """embedding_column names a column that no file has."""
    collection = write_parquet_collection(tmp_path, [4])
    name = os.path.basename(collection.paths[0])
    expect_error(MissingColumnError, name, "'vec'", folder=tmp_path, file_format="parquet", embedding_column="vec")


def test_parquet_missing_meta_column(tmp_path):
    """A requested meta column that does not exist: the file and the column named."""
    collection = write_parquet_collection(tmp_path, [4])
    name = os.path.basename(collection.paths[0])
    error = expect_error(
        MissingColumnError, name, "'url'", folder=tmp_path, file_format="parquet", meta_columns=["caption", "url"]
    )
    assert isinstance(error, KeyError)


def test_parquet_embedding_column_not_a_list(tmp_path):
    """An embedding column of strings or scalars is refused, naming the file."""
    write_parquet_table(tmp_path / "a.parquet", pa.table({"embedding": ["x", "y"]}))
    expect_error(UnsupportedFileError, "a.parquet", folder=tmp_path, file_format="parquet")


def test_parquet_embedding_values_not_numbers(tmp_path):
    """A list column of strings is not an embedding column."""
    write_parquet_table(tmp_path / "a.parquet", pa.table({"embedding": [["x", "y"], ["z", "w"]]}))
    expect_error(UnsupportedFileError, "a.parquet", folder=tmp_path, file_format="parquet")


@pytest.mark.parametrize("list_type", ["list", "fixed_size_list"])
def test_parquet_null_embedding(tmp_path, list_type):
    """A null embedding (a missing row) is an error naming the file, never a silently shifted batch."""
    rows = [[1.0, 2.0, 3.0, 4.0], None, [5.0, 6.0, 7.0, 8.0]]
    value_type = pa.list_(pa.float32(), 4) if list_type == "fixed_size_list" else pa.list_(pa.float32())
    write_parquet_table(tmp_path / "nulls.parquet", pa.table({"embedding": pa.array(rows, type=value_type)}))
    expect_error(EmbeddingReaderError, "nulls.parquet", folder=tmp_path, file_format="parquet")


def test_parquet_null_values_inside_embeddings(tmp_path):
    """A null value inside an embedding is an error naming the file."""
    rows = [[1.0, 2.0], [None, 4.0], [5.0, 6.0]]
    write_parquet_table(tmp_path / "holes.parquet", pa.table({"embedding": pa.array(rows, pa.list_(pa.float32(), 2))}))
    expect_error(EmbeddingReaderError, "holes.parquet", folder=tmp_path, file_format="parquet")


@pytest.mark.parametrize(
    "rows",
    [[[1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0, 5.0]]],
    ids=["total-not-divisible", "total-divisible"],
)
def test_parquet_ragged_embeddings(tmp_path, rows):
    """Embeddings of different lengths in one file: an error naming the file (whether or not lengths average out)."""
    write_parquet_table(tmp_path / "ragged.parquet", pa.table({"embedding": pa.array(rows, pa.list_(pa.float32()))}))
    expect_error(CorruptFileError, "ragged.parquet", "ragged", folder=tmp_path, file_format="parquet")


def test_parquet_dimensions_differ(tmp_path):
    """Files of different dimensions: both named."""
    write_parquet_collection(tmp_path / "a", [4], dim=4)
    write_parquet_collection(tmp_path / "b", [4], dim=6, list_type=PANDAS_LIST)
    folders = [str(tmp_path / "a"), str(tmp_path / "b")]
    with pytest.raises(InconsistentCollectionError, match=r"dimension") as info:
        EmbeddingReader(folders, file_format="parquet")
    assert f"a{os.sep}part_0000.parquet" in str(info.value) and f"b{os.sep}part_0000.parquet" in str(info.value)


def test_parquet_dtypes_differ(tmp_path):
    """float32 embeddings in one file, int8 in the next (float widths may mix): both files named."""
    write_parquet_collection(tmp_path / "a", [4], dtype="float32")
    write_parquet_collection(tmp_path / "b", [4], dtype="int8")
    with pytest.raises(InconsistentCollectionError, match="int8") as info:
        EmbeddingReader([str(tmp_path / "a"), str(tmp_path / "b")], file_format="parquet")
    assert f"a{os.sep}part_0000.parquet" in str(info.value) and f"b{os.sep}part_0000.parquet" in str(info.value)


def test_parquet_garbage_file(tmp_path):
    """A file of garbage with a .parquet name is named."""
    write_parquet_collection(tmp_path, [4])
    (tmp_path / "junk.parquet").write_bytes(os.urandom(3000))
    expect_error(CorruptFileError, "junk.parquet", folder=tmp_path, file_format="parquet")


def test_parquet_tiny_file(tmp_path):
    """A file too short to hold a footer is named."""
    (tmp_path / "tiny.parquet").write_bytes(b"PAR1")
    expect_error(CorruptFileError, "tiny.parquet", folder=tmp_path, file_format="parquet")


def test_parquet_corrupt_footer(tmp_path):
    """A footer of garbage between valid magic bytes is named."""
    collection = write_parquet_collection(tmp_path, [20])
    path = collection.paths[0]
    data = bytearray(open(path, "rb").read())
    footer_length = int.from_bytes(data[-8:-4], "little")
    data[-8 - footer_length : -8] = os.urandom(footer_length)
    open(path, "wb").write(bytes(data))
    expect_error(CorruptFileError, "part_0000.parquet", folder=tmp_path, file_format="parquet")


def test_parquet_footer_length_too_large(tmp_path):
    """A footer length field pointing before the start of the file is named."""
    collection = write_parquet_collection(tmp_path, [20])
    path = collection.paths[0]
    data = bytearray(open(path, "rb").read())
    data[-8:-4] = (len(data) * 2).to_bytes(4, "little")
    open(path, "wb").write(bytes(data))
    expect_error(CorruptFileError, "part_0000.parquet", folder=tmp_path, file_format="parquet")


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.99])
def test_parquet_truncated(tmp_path, fraction):
    """A parquet file cut short (its footer lost) is named."""
    collection = write_parquet_collection(tmp_path, [30, 30], row_group_size=10)
    path = collection.paths[1]
    os.truncate(path, int(os.path.getsize(path) * fraction))
    expect_error(CorruptFileError, "part_0001.parquet", folder=tmp_path, file_format="parquet")


def test_parquet_corrupt_data_pages(tmp_path):
    """Garbage in the data pages (footer intact) fails when reading, naming the file and the rows."""
    collection = write_parquet_collection(tmp_path, [40], row_group_size=10)
    path = collection.paths[0]
    data = bytearray(open(path, "rb").read())
    footer_start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    data[4:footer_start] = os.urandom(footer_start - 4)
    open(path, "wb").write(bytes(data))
    error = expect_error(EmbeddingReaderError, "part_0000.parquet", folder=tmp_path, file_format="parquet")
    assert re.search(r"rows \[\d+, \d+\)", str(error)), error


# ---------------------------------------------------------------- parquet_npy pairs


def read_pairs(collection, meta_columns=None) -> int:
    """Read a parquet_npy collection; return the number of rows."""
    return read_everything(
        collection.folder,
        file_format="parquet_npy",
        metadata_folder=collection.metadata_folder,
        meta_columns=meta_columns,
    )


def test_parquet_npy_file_counts_differ(tmp_path):
    """One more metadata file than npy files: both folders and both counts named."""
    collection = write_parquet_npy_collection(tmp_path, [3, 4])
    shutil.copy(collection.metadata_paths[1], os.path.join(collection.metadata_folder, "metadata_0002.parquet"))
    with pytest.raises(InconsistentCollectionError) as info:
        read_pairs(collection, META_COLUMNS)
    message = str(info.value)
    assert "2 npy files" in message and "3 parquet" in message
    assert collection.folder in message and collection.metadata_folder in message


def test_parquet_npy_missing_npy_file(tmp_path):
    """One npy file fewer than metadata files."""
    collection = write_parquet_npy_collection(tmp_path, [3, 4, 5])
    os.remove(collection.paths[2])
    with pytest.raises(InconsistentCollectionError, match="2 npy files"):
        read_pairs(collection)


@pytest.mark.parametrize("meta_columns", [META_COLUMNS, None])
def test_parquet_npy_row_counts_differ(tmp_path, meta_columns):
    """A pair whose files hold different row counts: both files named (even when no meta column is asked)."""
    collection = write_parquet_npy_collection(tmp_path, [3, 4, 5])
    np.save(collection.paths[1], good_rows(rows=6, dim=8))
    with pytest.raises(InconsistentCollectionError) as info:
        read_pairs(collection, meta_columns)
    message = str(info.value)
    assert "img_emb_0001.npy" in message and "metadata_0001.parquet" in message
    assert "6" in message and "4" in message


def test_parquet_npy_missing_meta_column(tmp_path):
    """A requested metadata column that the parquet files lack: the metadata file and the column named."""
    collection = write_parquet_npy_collection(tmp_path, [3, 4])
    with pytest.raises(MissingColumnError, match=r"metadata_0000\.parquet.*'url'"):
        read_pairs(collection, ["url"])


def test_parquet_npy_empty_metadata_folder(tmp_path):
    """A metadata folder without parquet files is named."""
    collection = write_parquet_npy_collection(tmp_path, [3, 4])
    for path in collection.metadata_paths:
        os.remove(path)
    with pytest.raises(NoEmbeddingsFoundError, match=re.escape(collection.metadata_folder)):
        read_pairs(collection)
