"""Property tests: random, truncated and mutated bytes as npy headers, parquet footers and whole files.

Whatever the bytes, only embedding_reader's own errors (EmbeddingReaderError subclasses) come out: no other
exception type, no hang (pytest-timeout), no crash. Valid files are mutated too (bytes flipped in headers and
footers, files cut at random points), since random noise alone rarely gets past the magic bytes.
"""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format

from embedding_reader import EmbeddingReader, EmbeddingReaderError
from embedding_reader.formats import npy
from embedding_reader.formats.npy import npy_data_offset, parse_npy_header
from embedding_reader.formats.parquet_footer import parse_footer
from tests.support.collections import META_COLUMNS, read_all, sample_embeddings, sample_meta, write_parquet_file

pytestmark = pytest.mark.timeout(120)

PATH = "fuzz/file.npy"
SCALE = int(os.environ.get("EMBEDDING_READER_FUZZ_SCALE", "1"))  # more examples, drawn at random, for a long hunt
COMMON = {"deadline": None, "derandomize": SCALE == 1, "database": None, "suppress_health_check": list(HealthCheck)}
FUZZ = settings(max_examples=150 * SCALE, **COMMON)
FILE_FUZZ = settings(max_examples=60 * SCALE, **COMMON)


def npy_bytes(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    """The bytes of an npy file holding `array`, in the given header version (numpy's choice by default)."""
    buffer = io.BytesIO()
    npy_format.write_array(buffer, array, version=version, allow_pickle=False)
    return buffer.getvalue()


def long_header_npy(array: np.ndarray) -> bytes:
    """An npy file whose header is padded far beyond the usual 128 bytes (legal, written by some tools)."""
    header = npy_format.header_data_from_array_1_0(array)
    text = repr(header).encode("latin1") + b" " * 700
    text += b" " * ((-(10 + len(text) + 1)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + array.tobytes()


VALID_NPY = [
    npy_bytes(sample_embeddings(5, 4, "float32")),
    npy_bytes(sample_embeddings(0, 8, "float16")),
    npy_bytes(sample_embeddings(3, 2, "int8"), version=(2, 0)),
    npy_bytes(sample_embeddings(2, 3, "float64"), version=(3, 0)),
    npy_bytes(np.arange(6, dtype=np.uint8)),  # 1-D: valid npy, refused by the library
    long_header_npy(sample_embeddings(4, 4, "float32")),
]


def parquet_bytes(rows: int, list_type: str = "fixed_size_list", row_group_size: int | None = None) -> bytes:
    """The bytes of a parquet file with an embedding column and the meta columns caption and n."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "part.parquet")
        write_parquet_file(path, sample_embeddings(rows, 4), sample_meta(0, rows), list_type, row_group_size)
        with open(path, "rb") as file:
            return file.read()


def meta_only_parquet_bytes() -> bytes:
    """A parquet file with only the meta columns (what parquet_npy pairs with an npy file)."""
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(sample_meta(0, 5)[META_COLUMNS], preserve_index=False), buffer)
    return buffer.getvalue()


VALID_PARQUET = [parquet_bytes(5), parquet_bytes(7, "pandas_list"), parquet_bytes(9, row_group_size=3)]


@st.composite
def mutated(draw, originals: list[bytes], region: str = "any") -> bytes:
    """One of `originals`, with a few bytes flipped (in its header, its footer or anywhere) and maybe truncated."""
    data = bytearray(draw(st.sampled_from(originals)))
    footer_start = max(0, len(data) - 8 - int.from_bytes(data[-8:-4], "little")) if region == "footer" else 0
    low, high = {"header": (0, min(len(data), 140)), "footer": (footer_start, len(data)), "any": (0, len(data))}[region]
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(low, max(low, high - 1)))
        if position < len(data):
            data[position] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


def only_library_errors(action, *args, **kwargs) -> None:
    """Run action(*args, **kwargs); an exception other than an EmbeddingReaderError fails the test."""
    try:
        action(*args, **kwargs)
    except EmbeddingReaderError:
        pass


def parse_npy(data: bytes, file_size: int | None) -> None:
    """What the npy format does with the first bytes of a file: find the data offset, parse the header."""
    offset = npy_data_offset(PATH, data[:12])
    parse_npy_header(PATH, data[:offset], file_size)


# ---------------------------------------------------------------- npy headers


@FUZZ
@given(st.binary(max_size=300))
def test_npy_data_offset_random_bytes(data):
    """Random bytes, with or without the npy magic in front, as the first bytes of a file."""
    only_library_errors(npy_data_offset, PATH, data)
    only_library_errors(npy_data_offset, PATH, b"\x93NUMPY" + data)


@FUZZ
@given(st.binary(max_size=300), st.one_of(st.none(), st.integers(0, 10**6)))
def test_npy_header_random_bytes(data, file_size):
    """Random bytes as a whole header, bare or behind a plausible magic and version."""
    only_library_errors(parse_npy_header, PATH, data, file_size)
    for prefix in (b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00", b"\x93NUMPY\x03\x00"):
        only_library_errors(parse_npy_header, PATH, prefix + data, file_size)
        only_library_errors(parse_npy, prefix + len(data).to_bytes(4, "little") + data, file_size)


@FUZZ
@given(mutated(VALID_NPY, "header"), st.one_of(st.none(), st.integers(0, 10**4)))
def test_npy_header_mutated(data, file_size):
    """Valid headers of every version with bytes flipped and cut at random points."""
    only_library_errors(parse_npy, data, file_size)
    only_library_errors(parse_npy, data, len(data))


@FUZZ
@given(st.text(max_size=200))
def test_npy_header_dictionary_text(text):
    """Arbitrary text where numpy expects the header dictionary (literal_eval of untrusted input)."""
    body = text.encode("latin1", "replace") + b"\n"
    only_library_errors(parse_npy_header, PATH, b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body, None)


def header_bytes(data: bytes) -> bytes:
    """The complete header of an npy file's bytes (magic, version, length, dictionary)."""
    return data[: npy_data_offset(PATH, data[:12])]


def saved_header(dtype: str, shape: tuple[int, int], major: int) -> bytes:
    """The header numpy writes for an array of this dtype and shape, in format version major.0."""
    fields = {**npy_format.header_data_from_array_1_0(np.empty((0, 0), dtype=dtype)), "shape": shape}
    buffer = io.BytesIO()
    write = npy_format.write_array_header_1_0 if major == 1 else npy_format.write_array_header_2_0
    write(buffer, fields)
    data = buffer.getvalue()
    return data[:6] + bytes([major]) + data[7:]  # version 3.0 is 2.0's layout with a utf-8 dictionary


@pytest.mark.parametrize("major", [1, 2, 3])
@pytest.mark.parametrize("dtype", ["<f2", "<f4", ">f4", "<f8", "|i1", "|u1", "<i2", ">u4", "<i8", "<u8"])
@pytest.mark.parametrize("shape", [(0, 1), (3, 768), (123456789, 4096)])
def test_saved_headers_parse_without_numpy(monkeypatch, major, dtype, shape):
    """The header np.save writes for a 2-D numeric array is read by the pattern, with numpy's own answer."""
    header = saved_header(dtype, shape, major)
    expected = npy._numpy_parsed_fields(PATH, header)  # pylint: disable=protected-access
    monkeypatch.setattr(npy, "_numpy_parsed_fields", lambda *args: pytest.fail("numpy parsed a saved header"))
    assert npy._numpy_header_fields(PATH, header) == expected == (shape, False, np.dtype(dtype))


@FUZZ
@given(mutated(VALID_NPY, "header"))
def test_header_pattern_agrees_with_numpy(data):
    """Whatever header the pattern accepts, numpy reads the same shape, order and dtype from it."""
    try:
        header = header_bytes(data)
    except EmbeddingReaderError:
        return
    if npy._SAVED_2D_HEADER.fullmatch(header) is not None:  # pylint: disable=protected-access
        assert npy._numpy_header_fields(PATH, header) == npy._numpy_parsed_fields(PATH, header)


def test_unusual_headers_go_through_numpy():
    """Headers np.save would not write (keys reordered, spaces, 1-D) are parsed by numpy, not refused."""
    body = b"{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}"
    body += b" " * (-(10 + len(body) + 1) % 64) + b"\n"
    data = b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body
    assert npy._SAVED_2D_HEADER.fullmatch(data) is None  # pylint: disable=protected-access
    assert parse_npy_header(PATH, data, len(data) + 24).count == 2


# ---------------------------------------------------------------- parquet footers


@FUZZ
@given(st.binary(max_size=400), st.integers(0, 10**6))
def test_parquet_footer_random_bytes(tail, file_size):
    """Random tails, bare and ending like a parquet file (length + PAR1)."""
    only_library_errors(parse_footer, PATH, tail, file_size)
    ending = tail + len(tail).to_bytes(4, "little") + b"PAR1"
    only_library_errors(parse_footer, PATH, ending, max(file_size, len(ending) + 4))


@FUZZ
@given(mutated(VALID_PARQUET, "footer"))
def test_parquet_footer_mutated(data):
    """Valid footers with bytes flipped and cut."""
    only_library_errors(parse_footer, PATH, data, len(data))


# ---------------------------------------------------------------- whole files through EmbeddingReader


def read_folder(files: dict[str, bytes], file_format: str, **kwargs) -> None:
    """Write the files (names under emb/ and meta/) in a fresh folder, open emb/ with EmbeddingReader (meta/ as
    the metadata folder for parquet_npy) and read every row."""
    with tempfile.TemporaryDirectory() as root:
        for name, data in files.items():
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as file:
                file.write(data)
        if file_format == "parquet_npy":
            kwargs["metadata_folder"] = os.path.join(root, "meta")
        reader = EmbeddingReader(os.path.join(root, "emb"), file_format, **kwargs)
        read_all(reader(batch_size=3, max_piece_size=2, show_progress=False))


@FILE_FUZZ
@given(st.lists(st.one_of(mutated(VALID_NPY), st.binary(max_size=200)), min_size=1, max_size=3))
def test_npy_files_mutated(contents):
    """Folders of mutated and random npy files: read to the end or refused with the library's error."""
    files = {f"emb/{k}.npy": data for k, data in enumerate(contents)}
    only_library_errors(read_folder, files, "npy")


@FILE_FUZZ
@given(st.lists(st.one_of(mutated(VALID_PARQUET), mutated(VALID_PARQUET, "footer")), min_size=1, max_size=2))
def test_parquet_files_mutated(contents):
    """Folders of mutated parquet files, read with their meta columns."""
    files = {f"emb/{k}.parquet": data for k, data in enumerate(contents)}
    only_library_errors(read_folder, files, "parquet", meta_columns=META_COLUMNS)


@FILE_FUZZ
@given(mutated([npy_bytes(sample_embeddings(5, 4))]), mutated([meta_only_parquet_bytes()]))
def test_parquet_npy_pair_mutated(npy_data, parquet_data):
    """An npy file and its metadata file, both mutated."""
    files = {"emb/0.npy": npy_data, "meta/0.parquet": parquet_data}
    only_library_errors(read_folder, files, "parquet_npy", meta_columns=META_COLUMNS)
