"""Parquet plumbing shared by the parquet and parquet_npy formats: footers, and row ranges of columns.

Only the footer and the column chunks of the row groups a piece needs are fetched, each with an
exact, retried range read; footers are cached per process so a file's footer crosses the wire once.
"""

import contextlib
import functools
import logging
import threading
from collections import OrderedDict
from typing import Any, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CorruptFileError, EmbeddingReaderError, ReadFailedError
from ..header import ParquetFooter
from ..pieces import units_covering
from ..storage import Storage, redact
from .parquet_footer import check_footer, leaf_columns, parse_footer
from .parquet_pages import (
    ChunkLayout,
    CorruptChunk,
    check_page_headers,
    chunk_extent,
    chunk_layout,
    decode_rows,
)
from .parquet_shared import KnownRangesFile, SharedDecodes
from .parquet_thrift import NotFastPath

logger = logging.getLogger("embedding_reader")
TAIL_PROBE_BYTES = 64 * 1024
FOOTER_CACHE_SIZE = 256
DECODED_CACHE_SIZE = 4  # shared chunks or decodes awaiting the rest of their pieces; bounded in case a read stops early
Cancel = Optional[threading.Event]


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
