"""What a parquet footer says, checked before anything is sized from it: the metadata itself, every column
chunk inside the file and within what its codec can expand to, and columns found by their whole name."""

from typing import Iterable, List, Optional, Tuple

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CorruptFileError, MissingColumnError
from ..storage import redact
from .parquet_pages import HEADER_SLACK, chunk_extent, max_ratio

_MAGIC = b"PAR1"


def parse_footer(path: str, tail: bytes, file_size: int) -> Tuple[int, Optional[pq.FileMetaData]]:
    """(footer_length, metadata) from the last bytes of a parquet file; metadata None if `tail` is too short."""
    if len(tail) < 12 or tail[-4:] != _MAGIC:
        raise CorruptFileError(f"{redact(path)}: not a parquet file (no PAR1 magic at the end of {file_size} bytes)")
    footer_length = int.from_bytes(tail[-8:-4], "little")
    if footer_length + 12 > file_size:
        raise CorruptFileError(f"{redact(path)}: footer length {footer_length} exceeds the file size {file_size}")
    if footer_length + 8 > len(tail):
        return footer_length, None
    try:
        return footer_length, pq.read_metadata(pa.BufferReader(tail[-(footer_length + 8) :]))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptFileError(f"{redact(path)}: unreadable parquet footer: {exc}") from exc


def check_footer(path: str, metadata: pq.FileMetaData, file_size: int, footer_length: int) -> None:
    """Refuse a footer whose row groups or column chunks claim more than the file holds, before anything (pyarrow
    included) sizes a buffer from it: chunks inside the file, sizes within their codec's reach, rows counted."""
    data_end = file_size - footer_length - 8
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        if row_group.num_rows < 0:
            raise CorruptFileError(f"{redact(path)}: row group {group} claims {row_group.num_rows} rows")
        for leaf in range(row_group.num_columns):
            problem = _chunk_problem(metadata, group, leaf, data_end)
            if problem:
                name = metadata.schema.column(leaf).path
                raise CorruptFileError(f"{redact(path)}: row group {group} column {name!r}: {problem}")


def _chunk_problem(metadata: pq.FileMetaData, group: int, leaf: int, data_end: int) -> str:
    """What is wrong with a column chunk's footer entry ('' if nothing)."""
    chunk, rows = metadata.row_group(group).column(leaf), metadata.row_group(group).num_rows
    extent = chunk_extent(metadata, group, leaf)
    if extent.size < 0 or not 4 <= extent.start <= data_end - extent.size:
        return f"bytes [{extent.start}, {extent.start + extent.size}) outside the file's data [4, {data_end})"
    if rows and not extent.start <= chunk.data_page_offset < extent.start + extent.size:
        return f"first data page at byte {chunk.data_page_offset}, outside the file's data [4, {data_end})"
    if (
        extent.uncompressed_size < 0
        or extent.uncompressed_size > extent.size * max_ratio(chunk.compression) + HEADER_SLACK
    ):
        return f"{extent.size} {chunk.compression} bytes cannot hold {extent.uncompressed_size} uncompressed bytes"
    if extent.num_values < 0 or (metadata.schema.column(leaf).max_repetition_level == 0 and extent.num_values > rows):
        return f"{extent.num_values} values for {rows} rows"
    return ""


def leaf_columns(metadata: pq.FileMetaData, columns: Iterable[str]) -> List[int]:
    """Indices of the parquet leaf columns that make up the given top-level columns, matched by their whole
    name (a column may be called "clip.embedding", and "embedding.norm" is not part of "embedding")."""
    wanted, first = set(columns), 0
    leaves: List[int] = []
    for field in metadata.schema.to_arrow_schema():
        count = _leaf_count(field.type)
        if field.name in wanted:
            leaves.extend(range(first, first + count))
        first += count
    return leaves


def _leaf_count(data_type: pa.DataType) -> int:
    """How many parquet leaf columns an arrow type is stored as (one per primitive inside nested types)."""
    if pa.types.is_map(data_type):
        return _leaf_count(data_type.key_type) + _leaf_count(data_type.item_type)
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type) or pa.types.is_fixed_size_list(data_type):
        return _leaf_count(data_type.value_type)
    if pa.types.is_struct(data_type):
        return sum(_leaf_count(data_type.field(k).type) for k in range(data_type.num_fields))
    return 1


def check_columns(path: str, metadata: pq.FileMetaData, columns: Iterable[str]) -> None:
    """Fail clearly when a requested column is not in the file."""
    names = set(metadata.schema.to_arrow_schema().names)
    for column in columns:
        if column not in names:
            raise MissingColumnError(f"{redact(path)}: no column {column!r} (columns: {sorted(names)})")
