"""Direct decode of an embedding column chunk: parquet pages of list<number> straight into the output array.

pyarrow rebuilds nested lists value by value, yet in the usual case, every
row exactly `dimension` present values, the values already lie contiguous in the pages. This module
decompresses each page, proves from its repetition and definition levels that it holds whole,
regular rows, and copies the values of the wanted rows. Anything else (nulls, ragged rows, encodings
or codecs it does not know, a header it cannot parse) raises NotFastPath, and the caller decodes
with pyarrow instead, which also reports what is wrong with a corrupt file.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .parquet_levels import bit_width, hybrid, is_constant, is_regular_rows
from .parquet_thrift import NotFastPath, parse_struct

# parquet.thrift enums
_DATA_PAGE, _INDEX_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 1, 2, 3
_PLAIN, _PLAIN_DICTIONARY, _RLE, _RLE_DICTIONARY, _BYTE_STREAM_SPLIT = 0, 2, 3, 8, 9
_CODECS = {"UNCOMPRESSED": None, "SNAPPY": "snappy", "GZIP": "gzip", "BROTLI": "brotli", "ZSTD": "zstd"}
_CODECS["LZ4_RAW"] = "lz4_raw"
_PHYSICAL_DTYPES = {"FLOAT": "<f4", "DOUBLE": "<f8", "INT32": "<i4", "INT64": "<i8"}
# Most bytes a page of each codec decompresses to per compressed byte: the codec's own limit for snappy (64-byte
# copies in 2-3 bytes), lz4 and deflate; zstd and brotli have no small limit, so pages of all-equal rows (which
# writers cut at 1 MB or 20,000 rows: a few hundred to one) get 2**15. A size beyond it is a lie, not a file.
MAX_RATIO = {"UNCOMPRESSED": 1, "SNAPPY": 32, "LZ4": 256, "LZ4_RAW": 256, "LZO": 256, "GZIP": 1032}
OTHER_CODEC_MAX_RATIO = 2**15
HEADER_PROBE = 256  # bytes read for a page header walked before pyarrow decodes (more if the header is longer)
HEADER_SLACK = 1024  # page headers and level prefixes counted in the uncompressed but not the compressed sizes


class CorruptChunk(Exception):
    """A page header claims more than its column chunk holds: the file is corrupt, and no decoder may size
    buffers from it (the caller names the file, row group and column)."""


def max_ratio(codec: str) -> int:
    """Most uncompressed bytes a compressed byte of this codec (footer name) can stand for."""
    return MAX_RATIO.get(codec, OTHER_CODEC_MAX_RATIO)


def max_rows(dimension: int, uncompressed_bytes: int) -> int:
    """Most rows of `dimension` values that many uncompressed bytes of a list column can hold: every row of two
    or more values costs at least 2 bits of repetition levels (0, then 1s: bit-packed, or two RLE runs of 2+
    bytes); rows of one value have no such bound, so 4096 a byte (writers put 20,000 such rows in 70 bytes)."""
    return (4 if dimension >= 2 else 4096) * uncompressed_bytes + HEADER_SLACK


@dataclass(frozen=True)
class ChunkLayout:
    """What the direct decoder needs to know of one embedding column chunk, from the footer."""

    start: int  # file offset of the chunk's first page (dictionary page or first data page)
    size: int  # total compressed bytes of the chunk
    uncompressed_size: int
    codec: Optional[str]  # pyarrow codec name, None when uncompressed
    dtype: np.dtype  # stored value dtype
    max_repetition: int
    max_definition: int
    num_values: int  # values (levels) of the whole chunk, per the footer
    max_ratio: int  # see MAX_RATIO


@dataclass(frozen=True)
class ChunkExtent:
    """Where any column chunk lies and what its footer entry claims, for checking its page headers."""

    start: int
    size: int
    uncompressed_size: int
    num_values: int
    max_ratio: int


def chunk_extent(metadata: pq.FileMetaData, group: int, leaf: int) -> ChunkExtent:
    """The extent of a column chunk: from its dictionary page (if any) or first data page, per the footer."""
    chunk = metadata.row_group(group).column(leaf)
    offsets = [chunk.data_page_offset]  # 0 in pyarrow's chunks of no rows, which hold only a dictionary page
    if chunk.has_dictionary_page and chunk.dictionary_page_offset:
        offsets = [offset for offset in (*offsets, chunk.dictionary_page_offset) if offset]
    start = min(offsets)
    return ChunkExtent(
        start,
        chunk.total_compressed_size,
        chunk.total_uncompressed_size,
        chunk.num_values,
        max_ratio(chunk.compression),
    )


def chunk_layout(metadata: pq.FileMetaData, group: int, leaf: int, stored_dtype: np.dtype) -> ChunkLayout:
    """The layout of a column chunk, or NotFastPath when its codec or physical type is not handled."""
    chunk = metadata.row_group(group).column(leaf)
    dtype = _PHYSICAL_DTYPES.get(chunk.physical_type)
    if dtype is None or np.dtype(dtype) != np.dtype(stored_dtype).newbyteorder("<"):
        raise NotFastPath(f"values stored as {chunk.physical_type}, read as {stored_dtype}")
    if chunk.compression not in _CODECS:
        raise NotFastPath(f"codec {chunk.compression}")
    extent = chunk_extent(metadata, group, leaf)
    column = metadata.schema.column(leaf)
    return ChunkLayout(
        start=extent.start,
        size=extent.size,
        uncompressed_size=extent.uncompressed_size,
        codec=_CODECS[chunk.compression],
        dtype=np.dtype(dtype),
        max_repetition=column.max_repetition_level,
        max_definition=column.max_definition_level,
        num_values=extent.num_values,
        max_ratio=extent.max_ratio,
    )


def decode_rows(chunk: Any, layout: ChunkLayout, rows: int, dimension: int, first: int, out: np.ndarray) -> None:
    """Write rows [first, first + len(out)) of a chunk holding `rows` rows into `out` (n, dimension).

    `chunk` holds the chunk's bytes (any buffer). Pages before `first` are decompressed only to count
    and check their rows; pages after the last wanted row are not touched.
    """
    if layout.max_repetition != 1 or dimension < 1:
        raise NotFastPath(f"repetition level {layout.max_repetition}, dimension {dimension}")
    data = memoryview(chunk).cast("B")
    if len(data) != layout.size:
        raise NotFastPath(f"chunk of {len(data)} bytes, footer says {layout.size}")
    last = first + len(out)
    flat = out.reshape(-1)
    position, row, dictionary, values_seen = 0, 0, None, 0
    while row < last:
        if position >= len(data):
            raise NotFastPath(f"chunk ends after {row} of {rows} rows")
        header, position = parse_struct(data, position)
        page = _Page(header, data, position, layout)
        position = page.end
        if page.kind == _DICTIONARY_PAGE:
            dictionary = page.dictionary()
        elif page.kind in (_DATA_PAGE, _DATA_PAGE_V2):
            values_seen += page.check_count(values_seen, dimension)
            page_rows = page.check_levels(dimension)
            if page.kind == _DATA_PAGE_V2 and page.fields.get(3, page_rows) != page_rows:
                raise NotFastPath(f"v2 page says {page.fields.get(3)} rows, its levels hold {page_rows}")
            lo, hi = max(first, row), min(last, row + page_rows)
            if lo < hi:
                values = page.values(dictionary)
                np.copyto(
                    flat[(lo - first) * dimension : (hi - first) * dimension],
                    values[(lo - row) * dimension : (hi - row) * dimension],
                    casting="unsafe",
                )
            row += page_rows
        elif page.kind != _INDEX_PAGE:
            raise NotFastPath(f"page type {page.kind}")
    if row > rows:
        raise NotFastPath(f"pages hold more than the {rows} rows of the row group")


class _Page:
    """One page of the chunk: its header fields, and its levels and values on demand."""

    def __init__(self, header: Dict[int, Any], data: memoryview, position: int, layout: ChunkLayout):
        self.kind: int = header.get(1, -1)
        self.layout = layout
        compressed, uncompressed = header.get(3), header.get(2)
        if not isinstance(compressed, int) or not isinstance(uncompressed, int):
            raise NotFastPath("page header without sizes")
        self.uncompressed_size: int = uncompressed
        check_page_sizes(compressed, uncompressed, position, len(data), layout.uncompressed_size, layout.max_ratio)
        self.payload, self.end = data[position : position + compressed], position + compressed
        self.fields: Dict[int, Any] = (
            header.get({_DATA_PAGE: 5, _DICTIONARY_PAGE: 7, _DATA_PAGE_V2: 8}.get(self.kind, 0)) or {}
        )
        self._values: Optional[memoryview] = None

    def check_count(self, values_seen: int, dimension: int) -> int:
        """This data page's value count, refused (CorruptChunk) beyond what the chunk or the page's bytes hold."""
        count = self.num_values
        check_page_count(count, values_seen, self.layout.num_values, dimension, self.uncompressed_size)
        return count

    @property
    def num_values(self) -> int:
        count = self.fields.get(1)
        if not isinstance(count, int) or count < 0:
            raise NotFastPath("page header without a value count")
        return count

    def dictionary(self) -> np.ndarray:
        """The values of a dictionary page."""
        if self.fields.get(2) not in (_PLAIN, _PLAIN_DICTIONARY):
            raise NotFastPath(f"dictionary encoding {self.fields.get(2)}")
        return _plain(self._decompress(self.payload, self.uncompressed_size), self.layout.dtype, self.num_values)

    def check_levels(self, dimension: int) -> int:
        """The number of rows in this data page, after proving they are whole rows of `dimension` values."""
        count = self.num_values
        if count % dimension:
            raise NotFastPath(f"page of {count} values for rows of {dimension}")
        repetition, definition, self._values = self._split_levels()
        rep_width, def_width = bit_width(self.layout.max_repetition), bit_width(self.layout.max_definition)
        if not is_regular_rows(repetition, rep_width, count, dimension):
            raise NotFastPath("rows of other lengths than the dimension")
        if not is_constant(definition, def_width, count, self.layout.max_definition):
            raise NotFastPath("null or empty embeddings")
        return count // dimension

    def values(self, dictionary: Optional[np.ndarray]) -> np.ndarray:
        """The page's values as a flat array of the stored dtype (after check_levels)."""
        assert self._values is not None
        encoding, count, dtype = self._encoding, self.num_values, self.layout.dtype
        if encoding == _PLAIN:
            return _plain(self._values, dtype, count)
        if encoding == _BYTE_STREAM_SPLIT:
            streams = _plain(self._values, np.dtype(np.uint8), count * dtype.itemsize).reshape(dtype.itemsize, count)
            return np.ascontiguousarray(streams.T).view(dtype).reshape(-1)
        if encoding in (_PLAIN_DICTIONARY, _RLE_DICTIONARY) and dictionary is not None and len(self._values):
            indices = hybrid(self._values, 1, len(self._values), self._values[0], count)
            if len(indices) and int(indices.max()) >= len(dictionary):
                raise NotFastPath("dictionary index out of range")
            looked_up: np.ndarray = dictionary[indices]
            return looked_up
        raise NotFastPath(f"value encoding {encoding}")

    @property
    def _encoding(self) -> Any:
        return self.fields.get(4 if self.kind == _DATA_PAGE_V2 else 2)

    def _split_levels(self) -> Tuple[memoryview, memoryview, memoryview]:
        """(repetition levels, definition levels, values) bytes of a data page, decompressed as needed."""
        if self.kind == _DATA_PAGE_V2:
            rep_length, def_length = self.fields.get(6), self.fields.get(5)
            if not isinstance(rep_length, int) or not isinstance(def_length, int) or rep_length < 0 or def_length < 0:
                raise NotFastPath("v2 page header without level lengths")
            levels_end = rep_length + def_length
            if levels_end > len(self.payload):
                raise NotFastPath("v2 page levels exceed the page")
            values = self.payload[levels_end:]
            if self.fields.get(7, True):
                values = self._decompress(values, self.uncompressed_size - levels_end)
            return self.payload[:rep_length], self.payload[rep_length:levels_end], values
        if self.fields.get(3) != _RLE or self.fields.get(4) != _RLE:
            raise NotFastPath(f"level encodings {self.fields.get(3)}, {self.fields.get(4)}")
        page = self._decompress(self.payload, self.uncompressed_size)
        repetition, position = _length_prefixed(page, 0)
        definition, position = _length_prefixed(page, position)
        return repetition, definition, page[position:]

    def _decompress(self, data: memoryview, size: int) -> memoryview:
        if self.layout.codec is None:
            return data
        if size < 0:
            raise NotFastPath("negative decompressed size")
        try:
            return memoryview(pa.Codec(self.layout.codec).decompress(data, decompressed_size=size)).cast("B")
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise NotFastPath(f"cannot decompress a page: {exc}") from exc


def check_page_sizes(
    compressed: int, uncompressed: int, position: int, chunk_size: int, chunk_uncompressed: int, ratio: int
) -> None:
    """Refuse (CorruptChunk) a page whose sizes exceed its chunk or its codec: before any buffer is sized from them."""
    if compressed < 0 or position + compressed > chunk_size:
        raise CorruptChunk(f"page of {compressed} bytes at chunk byte {position} exceeds the {chunk_size}-byte chunk")
    if not 0 <= uncompressed <= chunk_uncompressed or uncompressed > ratio * compressed + HEADER_SLACK:
        raise CorruptChunk(
            f"page of {compressed} bytes at chunk byte {position} claims {uncompressed} uncompressed bytes "
            f"(chunk: {chunk_uncompressed})"
        )


def check_page_count(count: int, values_seen: int, chunk_values: int, dimension: int, uncompressed: int) -> None:
    """Refuse (CorruptChunk) a page value count beyond the chunk's remaining values or its page's bytes."""
    if count > chunk_values - values_seen:
        raise CorruptChunk(f"page of {count} values after {values_seen}, the chunk holds {chunk_values}")
    if dimension and count > dimension * max_rows(dimension, uncompressed):
        raise CorruptChunk(f"page of {uncompressed} bytes claims {count} values")


def check_page_headers(read: Callable[[int, int], bytes], layout: ChunkExtent, dimension: int) -> None:
    """Walk the page headers of a column chunk (their payloads unread) and refuse, by CorruptChunk, a page that
    exceeds the chunk: run before pyarrow, which sizes its buffers from these headers before decoding."""
    position, values_seen = 0, 0
    while position < layout.size:
        header, header_end = _read_header(read, layout.start, position, layout.size)
        compressed, uncompressed = header.get(3), header.get(2)
        if not isinstance(compressed, int) or not isinstance(uncompressed, int):
            raise CorruptChunk(f"page header at chunk byte {position} without sizes")
        check_page_sizes(compressed, uncompressed, header_end, layout.size, layout.uncompressed_size, layout.max_ratio)
        kind = header.get(1)
        if kind in (_DATA_PAGE, _DATA_PAGE_V2):
            fields = header.get(5 if kind == _DATA_PAGE else 8) or {}
            count = fields.get(1) if isinstance(fields, dict) else None
            if not isinstance(count, int) or count < 0:
                raise CorruptChunk(f"data page at chunk byte {position} without a value count")
            check_page_count(count, values_seen, layout.num_values, dimension, uncompressed)
            values_seen += count
        position = header_end + compressed


def _read_header(read: Callable[[int, int], bytes], start: int, position: int, size: int) -> Tuple[Dict[Any, Any], int]:
    """(page header fields, chunk position after the header), reading a few hundred bytes, more if it is long."""
    window = HEADER_PROBE
    while True:
        end = min(size, position + window)
        data = memoryview(read(start + position, start + end)).cast("B")
        try:
            header, length = parse_struct(data, 0)
            return header, position + length
        except NotFastPath as exc:
            if end == size:
                raise CorruptChunk(f"unreadable page header at chunk byte {position}: {exc}") from exc
            window *= 16


def _length_prefixed(data: memoryview, position: int) -> Tuple[memoryview, int]:
    """A v1 level block: a 4-byte little-endian length, then that many bytes."""
    if position + 4 > len(data):
        raise NotFastPath("truncated level block")
    length = int.from_bytes(data[position : position + 4], "little")
    end = position + 4 + length
    if end > len(data):
        raise NotFastPath("level block exceeds the page")
    return data[position + 4 : end], end


def _plain(data: memoryview, dtype: np.dtype, count: int) -> np.ndarray:
    """`count` PLAIN-encoded fixed-width values."""
    if len(data) < count * dtype.itemsize:
        raise NotFastPath(f"{len(data)} bytes for {count} values of {dtype}")
    return np.frombuffer(data, dtype=dtype, count=count)
