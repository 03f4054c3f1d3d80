"""Parquet plumbing shared by the parquet and parquet_npy formats: footers, and row ranges of columns.

Only the footer and the column chunks of the row groups a piece needs are fetched, each with an
exact, retried range read; footers are cached per process so a file's footer crosses the wire once.
"""

import contextlib
import functools
import io
import logging
import threading
from collections import OrderedDict
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CorruptFileError, EmbeddingReaderError, MissingColumnError, ReadFailedError
from ..header import ParquetFooter
from ..pieces import units_covering
from ..storage import Storage, byte_range, redact
from .parquet_pages import (
    HEADER_SLACK,
    ChunkLayout,
    CorruptChunk,
    NotFastPath,
    check_page_headers,
    chunk_extent,
    chunk_layout,
    decode_rows,
    max_ratio,
)

logger = logging.getLogger("embedding_reader")
TAIL_PROBE_BYTES = 64 * 1024
FOOTER_CACHE_SIZE = 256
DECODED_CACHE_SIZE = 4  # shared chunks or decodes awaiting the rest of their pieces; bounded in case a read stops early
_MAGIC = b"PAR1"
Cancel = Optional[threading.Event]


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


class ParquetIO:
    """Reads parquet footers and row ranges of columns through Storage, caching footers per process."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self._cache: OrderedDict[str, pq.FileMetaData] = OrderedDict()
        self._lock = threading.Lock()
        self._decoded = SharedDecodes(DECODED_CACHE_SIZE)
        self._pyarrow_only: Set[str] = set()  # files the direct page decoder turned down

    def read_footers(self, files: Sequence[Tuple[str, Optional[int]]]) -> List[Tuple[ParquetFooter, pq.FileMetaData]]:
        """Footers of many files, fetched concurrently; usually one exact tail read per file."""
        sizes = self.storage.sizes(files)
        requests = [(path, max(0, size - TAIL_PROBE_BYTES), size) for (path, _), size in zip(files, sizes)]
        tails = self.storage.read_ranges(requests)
        return [self._footer(path, tail, size) for (path, _), tail, size in zip(files, tails, sizes)]

    def _footer(self, path: str, tail: bytes, size: int) -> Tuple[ParquetFooter, pq.FileMetaData]:
        footer_length, metadata = parse_footer(path, tail, size)
        if metadata is None:
            tail = self.storage.read_range(path, size - footer_length - 8, size)
            _, metadata = parse_footer(path, tail, size)
        assert metadata is not None
        check_footer(path, metadata, size, footer_length)
        row_groups = tuple(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
        if sum(row_groups) != metadata.num_rows:
            raise CorruptFileError(
                f"{redact(path)}: row groups hold {sum(row_groups)} rows, footer says {metadata.num_rows}"
            )
        self._remember(path, metadata)
        return ParquetFooter(path, size, footer_length, row_groups), metadata

    def metadata(self, footer: ParquetFooter, cancel: Optional[threading.Event] = None) -> pq.FileMetaData:
        """The file's parsed footer, from the cache or one exact range read."""
        with self._lock:
            cached = self._cache.get(footer.path)
        if cached is not None:
            return cached
        tail = self.storage.read_range(footer.path, *footer.footer_range, cancel)
        _, metadata = parse_footer(footer.path, tail, footer.file_size)
        assert metadata is not None
        self._remember(footer.path, metadata)
        return metadata

    def _remember(self, path: str, metadata: pq.FileMetaData) -> None:
        with self._lock:
            self._cache[path] = metadata
            self._cache.move_to_end(path)
            while len(self._cache) > FOOTER_CACHE_SIZE:
                self._cache.popitem(last=False)

    def drop_shared(self) -> None:
        """Forget the chunks and decodes pieces shared (a read ending inside a row group leaves one behind)."""
        self._decoded.clear()

    def read_embeddings(
        self,
        footer: ParquetFooter,
        first: int,
        column: str,
        stored_dtype: np.dtype,
        out: np.ndarray,
        cancel: Optional[threading.Event] = None,
    ) -> bool:
        """Rows [first, first + len(out)) of a list column straight into `out` by the direct page decoder.

        Returns False, having maybe written part of `out`, when the file is not one the decoder handles
        (see parquet_pages); the caller then decodes with pyarrow. Pieces cutting one row group share
        one fetch of its column chunk, each decoding only the pages that hold its rows.
        """
        if footer.path in self._pyarrow_only:
            return False
        metadata = self.metadata(footer, cancel)
        leaves = leaf_columns(metadata, [column])
        last = first + len(out)
        groups, group_start = units_covering(footer.row_groups, first, last)
        try:
            if len(leaves) != 1:
                raise NotFastPath(f"{len(leaves)} leaf columns")
            for group in groups:
                lo, hi = max(first, group_start), min(last, group_start + footer.row_groups[group])
                layout = chunk_layout(metadata, group, leaves[0], stored_dtype)
                with _naming(footer.path, group, column):
                    self._decode_chunk(footer, group, layout, lo - group_start, out[lo - first : hi - first], cancel)
                group_start += footer.row_groups[group]
        except NotFastPath as reason:
            logger.debug("%s: decoded by pyarrow (%s)", redact(footer.path), reason)
            self._pyarrow_only.add(footer.path)
            return False
        return True

    def _decode_chunk(
        self, footer: ParquetFooter, group: int, layout: ChunkLayout, first: int, out: np.ndarray, cancel: Cancel
    ) -> None:
        """Rows [first, first + len(out)) of one row group's embedding chunk, fetched once for all its pieces."""
        rows = footer.row_groups[group]
        key = (footer.path, group, layout.start)
        fetch = lambda: self._fetch(footer.path, layout.start, layout.size, cancel)  # noqa: E731
        chunk = self._decoded.get(key, fetch, len(out), rows)
        decode_rows(chunk, layout, rows, out.shape[1], first, out)

    def _fetch(self, path: str, start: int, size: int, cancel: Optional[threading.Event]) -> np.ndarray:
        """Bytes [start, start + size) of a file, read into a numpy buffer: numpy asks the kernel for huge
        pages, where a Python bytes object of 100+ MB costs a 4 KiB page fault each."""
        buffer = np.empty(size, dtype=np.uint8)
        self.storage.read_into(path, start, memoryview(buffer), cancel)  # type: ignore[arg-type]
        return buffer

    def read_rows(
        self,
        footer: ParquetFooter,
        first: int,
        last: int,
        columns: Sequence[str],
        cancel: Optional[threading.Event] = None,
        dimension: int = 0,
    ) -> pa.Table:
        """Rows [first, last) of the given columns, decoding only the row groups that hold them; `dimension`, if
        not 0, is that of the embeddings in the first column (for the checks of its page headers).

        A row group is the smallest unit parquet decodes; when pieces cut one into parts, they share
        one decode of it: the table stays cached until pieces have taken all its rows.
        """
        groups, group_start = units_covering(footer.row_groups, first, last)
        tables = []
        for group in groups:
            rows = footer.row_groups[group]
            lo, hi = max(first, group_start), min(last, group_start + rows)
            if hi > lo:
                key = (footer.path, group, tuple(columns))
                decode = functools.partial(self._decode, footer, group, columns, lo, hi, cancel, dimension)
                table = self._decoded.get(key, decode, hi - lo, rows)
                tables.append(table.slice(lo - group_start, hi - lo))
            group_start += rows
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def _decode(
        self,
        footer: ParquetFooter,
        group: int,
        columns: Sequence[str],
        first: int,
        last: int,
        cancel: Cancel,
        dimension: int,
    ) -> pa.Table:
        """Decode a whole row group of the given columns (from the local file or prefetched column chunks);
        first and last are the rows wanted of it, for error messages."""
        metadata = self.metadata(footer, cancel)
        try:
            with self._open(footer, metadata, [group], columns, cancel) as source:
                self._check_pages(footer, metadata, group, columns, dimension, source)
                parquet_file = pq.ParquetFile(source, metadata=metadata, pre_buffer=False)
                table = parquet_file.read_row_group(group, columns=list(columns), use_threads=len(columns) > 1)
        except EmbeddingReaderError:
            raise
        except CorruptChunk as exc:
            raise CorruptFileError(f"{redact(footer.path)} rows [{first}, {last}): cannot decode: {exc}") from exc
        except (FileNotFoundError, PermissionError) as exc:
            raise ReadFailedError(f"{redact(footer.path)} rows [{first}, {last}): {exc}") from exc
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise CorruptFileError(f"{redact(footer.path)} rows [{first}, {last}): cannot decode: {exc}") from exc
        if table.num_rows != footer.row_groups[group]:
            raise CorruptFileError(f"{redact(footer.path)} rows [{first}, {last}): decoded {table.num_rows} rows")
        return table

    @staticmethod
    def _check_pages(
        footer: ParquetFooter,
        metadata: pq.FileMetaData,
        group: int,
        columns: Sequence[str],
        dimension: int,
        source: Any,
    ) -> None:
        """Walk the page headers of the chunks pyarrow is about to decode, refusing one that claims more than its
        chunk (pyarrow sizes buffers from page headers before it decodes them). `dimension`, if not 0, is that of
        the embeddings in the first of the columns."""

        def read(start: int, end: int) -> bytes:
            source.seek(start)
            data: bytes = source.read(end - start)
            return data

        embedding_leaves = set(leaf_columns(metadata, columns[:1])) if dimension else set()
        for leaf in leaf_columns(metadata, columns):
            try:
                check_page_headers(read, chunk_extent(metadata, group, leaf), dimension * (leaf in embedding_leaves))
            except CorruptChunk as exc:
                raise CorruptChunk(f"row group {group} column {metadata.schema.column(leaf).path!r}: {exc}") from exc
        source.seek(0)

    def _open(
        self,
        footer: ParquetFooter,
        metadata: pq.FileMetaData,
        groups: Sequence[int],
        columns: Sequence[str],
        cancel: Cancel,
    ) -> Any:
        """A file object for pyarrow: the real file when local, else the prefetched column chunks."""
        if self.storage.is_local:
            self.storage.check_unchanged(footer.path)
            return pa.OSFile(footer.path, "rb")  # arrow reads it natively: no GIL, no Python bytes copy
        ranges = _merge(_column_chunk_ranges(metadata, groups, columns))
        parts = {start: self.storage.read_range(footer.path, start, end, cancel) for start, end in ranges}
        return KnownRangesFile(footer.path, footer.file_size, parts, self.storage, cancel)


@contextlib.contextmanager
def _naming(path: str, group: int, column: str) -> Iterator[None]:
    """Turn a CorruptChunk raised inside into a CorruptFileError naming the file, row group and column."""
    try:
        yield
    except CorruptChunk as exc:
        raise CorruptFileError(f"{redact(path)}: row group {group} column {column!r}: {exc}") from exc


def _column_chunk_ranges(
    metadata: pq.FileMetaData, groups: Sequence[int], columns: Sequence[str]
) -> List[Tuple[int, int]]:
    """Byte ranges of the column chunks of the wanted top-level columns in the wanted row groups."""
    leaves = leaf_columns(metadata, columns)
    ranges = []
    for group in groups:
        row_group = metadata.row_group(group)
        for leaf in leaves:
            chunk = row_group.column(leaf)
            offsets = [chunk.data_page_offset]
            if chunk.has_dictionary_page and chunk.dictionary_page_offset:
                offsets.append(chunk.dictionary_page_offset)
            start = min(offsets)
            ranges.append((start, start + chunk.total_compressed_size))
    return ranges


def _merge(ranges: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Sorted ranges with touching or overlapping ones joined, so adjacent chunks come in one request."""
    merged: List[Tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


class KnownRangesFile(io.RawIOBase):
    """A read-only file over prefetched byte ranges; a read outside them is fetched (exact, retried)."""

    def __init__(self, path: str, size: int, parts: Dict[int, bytes], storage: Storage, cancel: Cancel = None):
        super().__init__()
        self.path, self.size, self.storage, self.cancel = path, size, storage, cancel
        self.parts = sorted(parts.items())
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = base + offset
        return self.position

    def read(self, size: int = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.position + size)
        data = self._bytes(self.position, end) if end > self.position else b""
        self.position = max(self.position, end)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer).cast("B")))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def _bytes(self, start: int, end: int) -> bytes:
        for part_start, data in self.parts:
            if part_start <= start and end <= part_start + len(data):
                return memoryview(data)[start - part_start : end - part_start]  # type: ignore[return-value]
        return self.storage.read_range(self.path, start, end, self.cancel)

    def __repr__(self) -> str:
        return f"KnownRangesFile({byte_range(self.path, 0, self.size)})"


class SharedDecodes:
    """Decoded tables (or fetched chunks) shared by concurrent pieces: the first asker makes it, the others reuse.

    Each asker says how many of the entry's rows it takes; the entry leaves once its rows are all
    taken, in whatever order the pieces came (a piece delayed by a retry still finds it), or when more
    than `size` are held (a read that stopped early), so memory stays bounded.
    """

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[Hashable, _Decode] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, decode: Callable[[], Any], rows: int, total_rows: int) -> Any:
        """The value for `key`, made by `decode` unless another thread has or is making it; the asker
        takes `rows` of its `total_rows` rows."""
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = self._entries[key] = _Decode()
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
            entry.rows_taken += rows
            if entry.rows_taken >= total_rows:
                del self._entries[key]  # every row is spoken for: no later piece needs it
        if owner:
            return entry.run(decode, lambda: self._forget(key, entry))
        return entry.wait(decode)

    def clear(self) -> None:
        """Drop every entry (their current holders keep theirs)."""
        with self._lock:
            self._entries.clear()

    def _forget(self, key: Hashable, entry: "_Decode") -> None:
        """Drop a failed entry, so that later askers make the value afresh."""
        with self._lock:
            if self._entries.get(key) is entry:
                del self._entries[key]


class _Decode:
    """One decode, in progress or done; a thread that waited on a failed decode tries it itself."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.table: Any = None
        self.rows_taken = 0

    def run(self, decode: Callable[[], Any], on_error: Callable[[], None]) -> Any:
        """Decode as the owner; on failure forget the entry so later askers decode afresh."""
        try:
            self.table = decode()
            return self.table
        except BaseException:
            on_error()
            raise
        finally:
            self.done.set()

    def wait(self, decode: Callable[[], Any]) -> Any:
        """The owner's table once it is done, or a decode of our own if the owner failed."""
        self.done.wait()
        return self.table if self.table is not None else decode()
