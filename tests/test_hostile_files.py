"""Files whose headers or footers claim more than they hold: refused by name, within bounded time and memory.

Every hostile file is made by numpy or pyarrow and then patched by the test: npy headers rewritten as text,
parquet footers and page headers re-encoded by the small thrift compact codec below (independent of the
library's own page-header parser). Reads that a regression could blow up run in a child process under an
address-space limit, so a regression fails the test instead of exhausting the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedding_reader import CorruptFileError, EmbeddingReader, UnsupportedFileError
from embedding_reader.formats.npy import parse_npy_header

ADDRESS_SPACE_LIMIT = 3 * 2**30
CHILD_TIMEOUT = 50

# ---------------------------------------------------------------- thrift compact protocol, for patching

_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _STRUCT = (
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    12,
)


class Reader:
    """Decodes a thrift compact struct into [field id, type, value] lists that `encode_struct` writes back."""

    def __init__(self, data: bytes, position: int = 0):
        self.data, self.position = data, position

    def byte(self) -> int:
        value = self.data[self.position]
        self.position += 1
        return value

    def varint(self) -> int:
        result = shift = 0
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def value(self, kind: int) -> Any:  # noqa: PLR0911 (one return per thrift type)
        if kind in (_TRUE, _FALSE):
            return self.byte() == 1
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            self.position += 8
            return self.data[self.position - 8 : self.position]
        if kind == _BINARY:
            length = self.varint()
            self.position += length
            return self.data[self.position - length : self.position]
        if kind in (_LIST, _SET):
            header = self.byte()
            size, element = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            return [element, [self.value(element) for _ in range(size)]]
        if kind == _STRUCT:
            return self.struct()
        raise AssertionError(f"thrift type {kind}")

    def struct(self) -> list:
        fields, field_id = [], 0
        while True:
            byte = self.byte()
            if byte == _STOP:
                return fields
            kind, delta = byte & 0x0F, byte >> 4
            field_id = field_id + delta if delta else self.zigzag()
            value = (kind == _TRUE) if kind in (_TRUE, _FALSE) else self.value(kind)
            fields.append([field_id, kind, value])


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        if value < 0x80:
            return bytes(out + bytes([value]))
        out.append((value & 0x7F) | 0x80)
        value >>= 7


def _zigzag(value: int) -> bytes:
    return _varint((value << 1) ^ (value >> 63))


def _encode_value(kind: int, value: Any) -> bytes:  # noqa: PLR0911 (one return per thrift type)
    if kind in (_TRUE, _FALSE):
        return bytes([1 if value else 2])
    if kind == _BYTE:
        return bytes([value])
    if kind in (_I16, _I32, _I64):
        return _zigzag(value)
    if kind == _DOUBLE:
        return bytes(value)
    if kind == _BINARY:
        return _varint(len(value)) + bytes(value)
    if kind in (_LIST, _SET):
        element, items = value
        head = (
            bytes([(len(items) << 4) | element]) if len(items) < 15 else bytes([0xF0 | element]) + _varint(len(items))
        )
        return head + b"".join(_encode_value(element, item) for item in items)
    if kind == _STRUCT:
        return encode_struct(value)
    raise AssertionError(f"thrift type {kind}")


def encode_struct(fields: list) -> bytes:
    """A struct decoded by `Reader.struct`, encoded again (long field headers: ids need no ordering)."""
    out = bytearray()
    for field_id, kind, value in fields:
        out += bytes([kind]) + _zigzag(field_id)
        out += b"" if kind in (_TRUE, _FALSE) else _encode_value(kind, value)
    return bytes(out + b"\x00")


def field(struct: list, field_id: int) -> list:
    """The [id, type, value] entry of a field of a decoded struct."""
    return next(entry for entry in struct if entry[0] == field_id)


def set_field(struct: list, field_id: int, value: Any) -> None:
    field(struct, field_id)[2] = value


# ---------------------------------------------------------------- parquet files, then patched


def write_parquet(path, rows: int = 4, dimension: int = 8, fixed: bool = True, **options) -> np.ndarray:
    """A parquet file of one row group with an embedding column (fixed_size_list or list of float32)."""
    values = np.arange(rows * dimension, dtype=np.float32).reshape(rows, dimension)
    flat = pa.array(values.reshape(-1))
    column = (
        pa.FixedSizeListArray.from_arrays(flat, dimension)
        if fixed
        else pa.ListArray.from_arrays(pa.array(np.arange(0, rows * dimension + 1, dimension, dtype=np.int32)), flat)
    )
    pq.write_table(pa.table({"embedding": column}), path, **options)
    return values


def split_parquet(path) -> tuple[bytes, list]:
    """(bytes before the footer, decoded footer) of a parquet file."""
    data = open(path, "rb").read()
    length = int.from_bytes(data[-8:-4], "little")
    return data[: -length - 8], Reader(data[-length - 8 : -8]).struct()


def join_parquet(path, body: bytes, footer: list) -> None:
    """Write a parquet file from its body and a (patched) decoded footer."""
    encoded = encode_struct(footer)
    with open(path, "wb") as file:
        file.write(body + encoded + len(encoded).to_bytes(4, "little") + b"PAR1")


def chunk_meta(footer: list, group: int = 0, column: int = 0) -> list:
    """The ColumnMetaData of one column chunk of a decoded footer."""
    row_group = field(footer, 4)[2][1][group]
    return field(field(row_group, 1)[2][1][column], 3)[2]


def patch_rows(footer: list, rows: int, group: int = 0) -> None:
    """Claim `rows` rows in one row group (and the file), and rows x dimension values in its chunk."""
    row_group = field(footer, 4)[2][1][group]
    old_rows = field(row_group, 3)[2]
    set_field(row_group, 3, rows)
    set_field(footer, 3, field(footer, 3)[2] - old_rows + rows)
    meta = chunk_meta(footer, group)
    set_field(meta, 5, field(meta, 5)[2] // old_rows * rows)


def patch_data_page(path, **fields: int) -> None:
    """Rewrite the header of the only data page of a one-column, one-row-group file written without
    dictionary (field ids: 2 uncompressed size, 3 compressed size, or 'values' for the page's value count),
    then shift the footer's sizes so the file stays well-formed around the lie."""
    body, footer = split_parquet(path)
    meta = chunk_meta(footer)
    start = field(meta, 9)[2]
    reader = Reader(body, start)
    header = reader.struct()
    for name, value in fields.items():
        if name == "values":
            set_field(field(header, 5)[2], 1, value)
        else:
            set_field(header, {"uncompressed": 2, "compressed": 3}[name], value)
    encoded = encode_struct(header)
    delta = len(encoded) - (reader.position - start)
    body = body[:start] + encoded + body[reader.position :]
    for field_id in (6, 7):
        set_field(meta, field_id, field(meta, field_id)[2] + delta)
    row_group = field(footer, 4)[2][1][0]
    for entry in row_group:
        if entry[0] in (2, 6):  # total_byte_size, total_compressed_size
            entry[2] += delta
    join_parquet(path, body, footer)


# ---------------------------------------------------------------- a child process under an address-space limit


def run_limited(code: str, timeout: float = CHILD_TIMEOUT) -> str:
    """Run `code` in a child Python under RLIMIT_AS; return its last output line (the child prints one result)."""
    prelude = textwrap.dedent(f"""
        import resource, sys, time
        resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_LIMIT}, {ADDRESS_SPACE_LIMIT}))
        sys.path.insert(0, {os.getcwd()!r})
        import numpy as np
        from embedding_reader import EmbeddingReader
        """)
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
        cwd=os.getcwd(),
    )
    lines = result.stdout.strip().splitlines()
    assert lines, f"child printed nothing (exit {result.returncode}): {result.stderr[-2000:]}"
    return lines[-1]


def open_and_read_in_child(folder, file_format: str, start: int = 0, fallback: bool = False) -> str:
    """In a limited child: open the collection and read rows from `start` in batches of 2; the child prints
    'rows N' or 'ErrorType: message' (with `fallback`, embeddings are decoded by pyarrow alone)."""
    return run_limited(f"""
        if {fallback!r}:
            from embedding_reader.formats import parquet_io, parquet_pages
            def turned_down(*args):
                raise parquet_pages.NotFastPath("test: pyarrow only")
            parquet_io.chunk_layout = turned_down
        try:
            reader = EmbeddingReader({str(folder)!r}, file_format={file_format!r})
            rows = sum(len(batch) for batch, _ in reader(batch_size=2, start={start}, show_progress=False))
            print("rows", rows)
        except BaseException as exc:
            print(type(exc).__name__ + ":", str(exc).replace("\\n", " ")[:2000])
        """)


def assert_refused(outcome: str, error: type | tuple[type, ...], *names: str) -> str:
    """The child's outcome is `error` (or one of them) naming each of `names`, in a short message."""
    errors = error if isinstance(error, tuple) else (error,)
    assert any(outcome.startswith(kind.__name__ + ":") for kind in errors), outcome
    for name in names:
        assert name in outcome, f"{name!r} not in {outcome}"
    assert len(outcome) < 600, f"message of {len(outcome)} characters"
    return outcome


# ---------------------------------------------------------------- npy


def save_npy_with_header(path, rows: np.ndarray, header_text: str | None = None, version: int = 1) -> str:
    """np.save `rows`, then replace its header dictionary by `header_text` (re-padded, length field rewritten)."""
    np.save(path, rows)
    data = open(path, "rb").read()
    offset = 10 + int.from_bytes(data[8:10], "little")
    text = header_text if header_text is not None else data[10:offset].decode("latin1").strip()
    prefix_length = 10 if version == 1 else 12
    padding = -(prefix_length + len(text) + 1) % 64
    encoded = (text + " " * padding + "\n").encode("latin1")
    length = len(encoded).to_bytes(2 if version == 1 else 4, "little")
    with open(path, "wb") as file:
        file.write(b"\x93NUMPY" + bytes([version, 0]) + length + encoded + data[offset:])
    return str(path)


def npy_header_text(shape: str, descr: str = "<f4") -> str:
    return "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }"


def test_npy_header_rows_beyond_the_file(tmp_path):
    """A 2.7 KB file whose header claims 10^13 rows is refused when opened, naming the file, in bounded memory."""
    path = save_npy_with_header(
        tmp_path / "emb.npy", np.ones((80, 8), np.float32), npy_header_text("(10000000000000, 8)")
    )
    outcome = open_and_read_in_child(tmp_path, "npy")
    assert_refused(outcome, CorruptFileError, path, "10000000000000")


def test_planner_is_lazy_over_a_huge_file():
    """The plan of a file claiming 10^13 rows (size unknown, as over http without a listed size) yields its first
    pieces at once: no list of every piece boundary is built (1.8.1's planner grew to gigabytes)."""
    outcome = run_limited("""
        from itertools import islice
        from embedding_reader.header import FileHeader
        from embedding_reader.pieces import iter_pieces, split_first_batch
        header = FileHeader(path="x.npy", count=10**13, dimension=8, dtype="<f4", data_offset=128)
        start = time.time()
        pieces = list(islice(iter_pieces([header], 2, 0, None, 1000), 3))
        cut = list(islice(split_first_batch(iter_pieces([header], 10**9, 0, None, 10**6), [header], 1000), 3))
        print("pieces", [(p.piece_start, p.piece_end) for p in pieces + cut], time.time() - start < 5)
        """)
    assert outcome == "pieces [(0, 2), (2, 4), (4, 6), (0, 1000), (1000, 2000), (2000, 3000)] True", outcome


def test_npy_huge_dimension_refused(tmp_path):
    """A dimension no row of any file holds is refused by name, not a MemoryError, the file size known or not."""
    path = save_npy_with_header(tmp_path / "emb.npy", np.ones((4, 8), np.float32), npy_header_text("(1, 100000000000)"))
    header = open(path, "rb").read()[:128]
    with pytest.raises(UnsupportedFileError, match="dimension 100000000000"):
        parse_npy_header(path, header, None)
    assert_refused(open_and_read_in_child(tmp_path, "npy"), (UnsupportedFileError, CorruptFileError), path)


def test_npy_header_length_capped(tmp_path):
    """A 10 MB header is refused from its length field, quickly, in a short message (1.8.1: 15 s, 3.3 GB and a
    9.9-million-character message); so is a length field claiming 4 GB in a tiny file."""
    rows = np.ones((4, 8), np.float32)
    padded = npy_header_text("(4, 8)") + " " * 10_000_000
    os.makedirs(tmp_path / "a")
    path = save_npy_with_header(tmp_path / "a" / "emb.npy", rows, padded, version=2)
    started = time.monotonic()
    assert_refused(open_and_read_in_child(tmp_path / "a", "npy"), CorruptFileError, path, "10000")
    assert time.monotonic() - started < 10
    os.makedirs(tmp_path / "b")
    tiny = tmp_path / "b" / "emb.npy"
    tiny.write_bytes(b"\x93NUMPY\x02\x00" + (2**32 - 1).to_bytes(4, "little") + b"{'descr'")
    assert_refused(open_and_read_in_child(tmp_path / "b", "npy"), CorruptFileError, str(tiny), str(2**32 - 1))


@pytest.mark.parametrize("digits", [5000, 4000, 25])
def test_npy_row_count_of_many_digits(tmp_path, digits):
    """A row count of thousands of digits (beyond Python's int conversion limit, or just absurd) is a
    CorruptFileError naming the file, not a bare ValueError, and the message does not quote all the digits."""
    shape = "(" + "9" * digits + ", 8)"
    save_npy_with_header(tmp_path / "emb.npy", np.ones((4, 8), np.float32), npy_header_text(shape))
    with pytest.raises(CorruptFileError, match=r"emb\.npy") as info:
        EmbeddingReader(str(tmp_path))
    assert len(str(info.value)) < 400


def test_npy_dimension_zero_refused(tmp_path):
    """np.save of shape (100, 0) is legal, but rows of nothing are refused by name (1.8.1: ZeroDivisionError)."""
    np.save(tmp_path / "emb.npy", np.zeros((100, 0), np.float32))
    with pytest.raises(UnsupportedFileError, match=r"emb\.npy.*dimension 0"):
        EmbeddingReader(str(tmp_path))


def test_npy_empty_file_of_dimension_zero_is_ignored(tmp_path):
    """A file of shape (0, 0) holds no rows: skipped like any empty file, the others read exactly."""
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", rows)
    np.save(tmp_path / "b.npy", np.zeros((0, 0), np.float32))
    batches = [batch for batch, _ in EmbeddingReader(str(tmp_path))(batch_size=2, show_progress=False)]
    np.testing.assert_array_equal(np.concatenate(batches), rows)


# ---------------------------------------------------------------- parquet footers


@pytest.mark.parametrize("fixed", [True, False], ids=["fixed_size_list", "list"])
@pytest.mark.parametrize("fallback", [False, True], ids=["direct", "pyarrow"])
def test_parquet_footer_claims_more_rows(tmp_path, fixed, fallback):
    """A 1 KB file whose footer claims 10^12 rows (values counted to match) is refused when opened, naming the
    file, row group and column (1.8.1 opened it, and pyarrow then allocated what the footer claims)."""
    path = str(tmp_path / "emb.parquet")
    write_parquet(path, fixed=fixed)
    body, footer = split_parquet(path)
    patch_rows(footer, 10**12)
    join_parquet(path, body, footer)
    outcome = open_and_read_in_child(tmp_path, "parquet", start=10, fallback=fallback)
    assert_refused(outcome, CorruptFileError, path, "row group 0", "'embedding'", "1000000000000 rows")


def test_parquet_fixed_size_list_values_counted(tmp_path):
    """A fixed_size_list file whose row group claims 4 more rows than its chunk has values is refused by name."""
    path = str(tmp_path / "emb.parquet")
    write_parquet(path, rows=4, dimension=8)
    body, footer = split_parquet(path)
    set_field(field(footer, 4)[2][1][0], 3, 8)
    set_field(footer, 3, 8)
    join_parquet(path, body, footer)
    with pytest.raises(CorruptFileError, match="row group 0 column 'embedding': 32 values for 8 rows of dimension 8"):
        EmbeddingReader(str(tmp_path), file_format="parquet")


@pytest.mark.parametrize(
    ("field_id", "value", "named"),
    [(9, 10**9, "outside the file"), (7, 10**9, "outside the file"), (6, 10**12, "uncompressed bytes")],
    ids=["data_page_offset", "total_compressed_size", "total_uncompressed_size"],
)
def test_parquet_chunk_beyond_the_file(tmp_path, field_id, value, named):
    """A column chunk placed or sized beyond the file, or claiming more uncompressed bytes than its codec can
    make of its compressed bytes, is refused when opened, naming the file, row group and column."""
    path = str(tmp_path / "emb.parquet")
    write_parquet(path)
    body, footer = split_parquet(path)
    set_field(chunk_meta(footer), field_id, value)
    join_parquet(path, body, footer)
    outcome = open_and_read_in_child(tmp_path, "parquet")
    assert_refused(outcome, CorruptFileError, path, "row group 0", "embedding", named)


def test_parquet_dimension_zero_refused(tmp_path):
    """A list column whose footer counts no values for its rows (dimension 0) is refused by name when opened."""
    path = str(tmp_path / "emb.parquet")
    write_parquet(path, fixed=False)
    body, footer = split_parquet(path)
    set_field(chunk_meta(footer), 5, 0)
    join_parquet(path, body, footer)
    with pytest.raises(UnsupportedFileError, match=r"emb\.parquet.*dimension 0"):
        EmbeddingReader(str(tmp_path), file_format="parquet")


def test_parquet_empty_lists_refused(tmp_path):
    """Embeddings that are all empty lists (pyarrow counts one value each) are refused by name, never read."""
    column = pa.ListArray.from_arrays(pa.array(np.zeros(6, np.int32)), pa.array(np.zeros(0, np.float32)))
    pq.write_table(pa.table({"embedding": column}), tmp_path / "emb.parquet")
    with pytest.raises(CorruptFileError, match=r"emb\.parquet.*lengths 0 to 0"):
        reader = EmbeddingReader(str(tmp_path), file_format="parquet")
        list(reader(batch_size=2, show_progress=False))


# ---------------------------------------------------------------- parquet page headers


@pytest.mark.parametrize("fallback", [False, True], ids=["direct", "pyarrow"])
@pytest.mark.parametrize(
    ("patch", "named"),
    [({"values": 2**28}, "values"), ({"uncompressed": 2**31 - 1}, "uncompressed bytes")],
    ids=["value_count", "uncompressed_size"],
)
def test_parquet_page_header_claims_more(tmp_path, fallback, patch, named):
    """A page header claiming 2^28 values, or 2 GB uncompressed, in a file of a few hundred bytes is refused
    before any decoder (the direct one or pyarrow) sizes a buffer from it, naming the file, row group, column."""
    path = str(tmp_path / "emb.parquet")
    write_parquet(path, use_dictionary=False)
    patch_data_page(path, **patch)
    outcome = open_and_read_in_child(tmp_path, "parquet", fallback=fallback)
    assert_refused(outcome, CorruptFileError, path, "row group 0", "embedding", named)


def test_patched_files_are_well_formed_otherwise(tmp_path):
    """The test's thrift codec round-trips: a re-encoded footer and page header read back exactly."""
    path = str(tmp_path / "emb.parquet")
    rows = write_parquet(path, use_dictionary=False)
    patch_data_page(path)
    body, footer = split_parquet(path)
    join_parquet(path, body, footer)
    np.testing.assert_array_equal(np.stack(pq.read_table(path).column(0).to_pylist()), rows)
    reader = EmbeddingReader(str(tmp_path), file_format="parquet")
    np.testing.assert_array_equal(np.concatenate([b for b, _ in reader(batch_size=3, show_progress=False)]), rows)


def test_a_shuffled_read_of_a_huge_claim_is_refused_before_its_order_is_built():
    """A shuffled epoch's order holds a few integers per 2 MB block: for 10^13 claimed rows (size unknown) that would
    be terabytes, so it is refused by name before anything is allocated."""
    outcome = run_limited("""
        from embedding_reader.errors import InvalidArgumentError
        from embedding_reader.header import FileHeader
        from embedding_reader.shuffle_order import EpochOrder
        header = FileHeader(path="x.npy", count=10**13, dimension=8, dtype="<f4", data_offset=128)
        try:
            EpochOrder([header], 0, 10**13, seed=0, window_rows=1000)
        except InvalidArgumentError as exc:
            print("refused", "blocks" in str(exc), time.time() < 10**12)
        """)
    assert outcome == "refused True True", outcome
