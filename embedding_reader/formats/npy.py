"""npy: 2-D C-order numeric arrays saved by numpy; headers parsed by numpy's own format module."""

import io
import re
import threading
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from numpy.lib import format as npy_format

from ..batches import RowTarget, cast_block_rows
from ..casts import cast_into
from ..errors import CorruptFileError, UnsupportedFileError
from ..header import FileHeader, numpy_dtype
from ..pieces import Piece
from ..scratch import side_buffer
from ..storage import Storage, redact
from .base import Format
from .checks import Checks, Survey

PROBE_BYTES = 256  # np.save writes 128-byte headers; one read usually gets the whole header
# np.save writes under 200 bytes for a 2-D numeric array; other writers pad more (70,000 bytes are read, as
# before), but a length field beyond this is no header of embeddings: refused before any of it is fetched or parsed.
MAX_HEADER_BYTES = 2**17
MAX_DIMENSION = 2**24  # a 64 MB float32 row: far above any embedding model, far below a MemoryError
MAX_DATA_BYTES = 2**62  # rows x row bytes beyond what any filesystem stores, when the file size is unknown
QUOTE_CHARS = 80  # text quoted from a file in an error message is cut to this length
_MAGIC = b"\x93NUMPY"
_NUMERIC_KINDS = "fiu"
CAST_BLOCK_BYTES = 2 * 2**20  # a cast buffer that fits in L2/L3: read and cast without a trip to RAM
# Local reads start on a cache line: the kernel copies page-cache bytes from a file offset off one at a third of the
# speed or less (a bin file's rows start at byte 8), so such reads go through the cache-sized buffer, aligned.
ALIGNMENT = 64
# The header np.save writes for a 2-D numeric array, byte for byte: parsed without numpy's literal_eval, which
# costs more than the read of a small header (benchmarks/README.md). Anything else goes through numpy.
_SAVED_2D_HEADER = re.compile(
    rb"\x93NUMPY(?:\x01\x00..|[\x02\x03]\x00....)"
    rb"\{'descr': '([<>|=][fiu][1248])', 'fortran_order': (False|True), 'shape': \((\d{1,19}), (\d{1,19})\), \} *\n",
    re.DOTALL,
)


def npy_data_offset(path: str, prefix: bytes) -> int:
    """Byte offset of the array data, from the first 12 bytes of an npy file."""
    if len(prefix) < 10 or not prefix.startswith(_MAGIC):
        raise CorruptFileError(f"{redact(path)}: not an npy file (bad magic bytes {prefix[:8]!r})")
    major = prefix[6]
    if major == 1:
        return _checked_offset(path, 10, int.from_bytes(prefix[8:10], "little"))
    if major in (2, 3) and len(prefix) >= 12:
        return _checked_offset(path, 12, int.from_bytes(prefix[8:12], "little"))
    raise CorruptFileError(f"{redact(path)}: unknown npy format version {major}.{prefix[7]}")


def _checked_offset(path: str, prefix_length: int, header_length: int) -> int:
    """The data offset, refusing a header longer than np.load itself accepts before any of it is read."""
    if header_length > MAX_HEADER_BYTES:
        raise CorruptFileError(
            f"{redact(path)}: npy header of {header_length} bytes exceeds the {MAX_HEADER_BYTES} allowed"
        )
    return prefix_length + header_length


def parse_npy_header(path: str, header: bytes, file_size: Optional[int]) -> FileHeader:
    """A FileHeader from an npy file's complete header bytes; never unpickles anything."""
    shape, fortran_order, dtype = _numpy_header_fields(path, header)
    if dtype.hasobject or dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None:
        raise UnsupportedFileError(f"{redact(path)}: dtype {dtype} is not a plain numeric type (refused, not loaded)")
    if fortran_order:
        raise UnsupportedFileError(f"{redact(path)}: Fortran-order arrays are not supported, save it in C order")
    if len(shape) != 2:
        raise UnsupportedFileError(f"{redact(path)}: array of shape {_quote(shape)} is not 2-D (rows, dimension)")
    count, dimension = shape
    check_shape(path, count, dimension, dtype, len(header), file_size)
    return FileHeader(
        path=path, count=count, dimension=dimension, dtype=dtype.str, file_size=file_size, data_offset=len(header)
    )


def check_shape(path: str, count: int, dimension: int, dtype: np.dtype, offset: int, size: Optional[int]) -> None:
    """Refuse a shape the file cannot hold (checked before anything is sized from it) or that no read can use."""
    if count and not dimension:
        raise UnsupportedFileError(f"{redact(path)}: embeddings of dimension 0 ({_quote(count)} rows of nothing)")
    if count and dimension > MAX_DIMENSION:
        raise UnsupportedFileError(f"{redact(path)}: dimension {_quote(dimension)} exceeds {MAX_DIMENSION}")
    expected_size = offset + count * dimension * dtype.itemsize
    if size is not None and size < expected_size:  # bytes after the array are ignored, as np.load does
        shape = f"({_quote(count)}, {dimension}) {dtype}"
        raise CorruptFileError(
            f"{redact(path)}: file has {size} bytes but its header {shape} needs {_quote(expected_size)}"
        )
    if size is None and expected_size > MAX_DATA_BYTES:
        shape = f"({_quote(count)}, {dimension}) {dtype}"
        raise CorruptFileError(f"{redact(path)}: header shape {shape} is larger than any file")


def _numpy_header_fields(path: str, header: bytes) -> Tuple[Tuple[Any, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype): np.save's own 2-D header by a pattern, any other through numpy.lib.format."""
    saved = _SAVED_2D_HEADER.fullmatch(header)
    if saved is not None:
        descr, fortran_order, count, dimension = saved.groups()
        return (int(count), int(dimension)), fortran_order == b"True", numpy_dtype(descr.decode())
    return _numpy_parsed_fields(path, header)


def _numpy_parsed_fields(path: str, header: bytes) -> Tuple[Tuple[Any, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) through numpy.lib.format, any header version and length."""
    stream = io.BytesIO(header)
    try:
        major, _minor = npy_format.read_magic(stream)
        if major == 3:  # utf-8 header; a numeric array's header is ASCII, which the 2.0 reader parses
            header[12:].decode("ascii")
            major = 2
        read = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
        shape, fortran_order, dtype = read(stream, max_header_size=MAX_HEADER_BYTES + 1)
    except Exception as exc:  # numpy parses untrusted text: ValueError, SyntaxError, tokenize.TokenError, ...
        raise CorruptFileError(f"{redact(path)}: unreadable npy header: {_quote(exc)}") from exc
    if not isinstance(shape, tuple) or not all(isinstance(size, int) and size >= 0 for size in shape):
        raise CorruptFileError(f"{redact(path)}: bad shape {_quote(shape)} in npy header")
    return shape, bool(fortran_order), np.dtype(dtype)


def _quote(value: object) -> str:
    """Text from (or about) a file for an error message, cut short: a header may hold megabytes."""
    try:
        text = str(value) if isinstance(value, Exception) else repr(value)
    except ValueError:  # repr of an int of more digits than Python converts
        return f"<{type(value).__name__} too long to show>"
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "..."


class NpyFormat(Format):
    """Embeddings stored as .npy files: fixed-size rows after a small header, read by exact byte range."""

    name = "npy"
    extension = ".npy"

    def survey(self, folders: Sequence[str], checks: Checks) -> Survey:
        return self.survey_files(folders, checks, self.read_npy_headers)

    def read_npy_headers(self, files: Sequence[Tuple[str, Optional[int]]]) -> List[FileHeader]:
        """Headers of the npy files, read in parallel: one exact range read each (two for long headers)."""
        # A short probe is fine as long as it holds the header: the rest of the header is read exactly,
        # and the rows are checked against the file size here (when listed) and by every later read.
        probes = self.storage.read_ranges([(path, 0, _probe_length(size)) for path, size in files], allow_short=True)
        offsets = [npy_data_offset(path, probe) for (path, _size), probe in zip(files, probes)]
        missing = [(path, len(probe), offset) for (path, _), probe, offset in zip(files, probes, offsets)]
        rests = iter(self.storage.read_ranges([request for request in missing if request[1] < request[2]]))
        headers = []
        for (path, listed), probe, offset in zip(files, probes, offsets):
            size = listed if listed is not None else self.storage.identities.size(path)  # over http: the answer's
            complete = probe[:offset] if len(probe) >= offset else probe + next(rests)
            headers.append(parse_npy_header(path, complete, size))
        return headers

    def read_piece(
        self, piece: Piece, header: FileHeader, out: np.ndarray, cancel: Optional[threading.Event] = None
    ) -> Optional[pd.DataFrame]:
        self.read_rows(header, piece.piece_start, out, cancel)
        return self.read_piece_meta(piece, header, cancel)

    def read_rows(
        self, header: FileHeader, first_row: int, out: np.ndarray, cancel: Optional[threading.Event] = None
    ) -> None:
        """Fill `out` with rows from `first_row`: straight into it when dtypes match, else through a cast."""
        offset = header.data_offset + first_row * header.row_bytes
        stored = header.numpy_dtype
        local = self.storage.is_local
        if out.dtype == stored and not (local and offset % ALIGNMENT):
            self.storage.read_into(header.path, offset, out.data.cast("B"), cancel)
        elif local:
            self._read_cast_in_blocks(header, offset, out, cancel)
        else:
            with side_buffer(len(out) * header.row_bytes, cancel) as raw:  # reused within the read (scratch.py)
                self.storage.read_into(header.path, offset, raw.data, cancel)
                cast_into(out, raw.view(stored).reshape(out.shape))

    def read_piece_into_rows(
        self, piece: Piece, header: FileHeader, target: RowTarget, cancel: Optional[threading.Event] = None
    ) -> Optional[pd.DataFrame]:
        """Local rows of the stored dtype go straight to their places (one preadv per piece); other rows are read
        as stored into a side buffer, then cast a block at a time to their places (RowTarget.place)."""
        offset = header.data_offset + piece.piece_start * header.row_bytes
        if self._reads_into_places(piece, header, target.array.dtype):
            self.storage.read_scattered(header.path, offset, target.byte_views())
            return self.read_piece_meta(piece, header, cancel)
        stored_bytes, out_bytes = self._side_buffers(piece, header, target.array.dtype)
        with side_buffer(stored_bytes, cancel) as raw, side_buffer(out_bytes, cancel) as spare:
            stored = raw.view(header.numpy_dtype).reshape(piece.rows, header.dimension)
            self.read_rows(header, piece.piece_start, stored, cancel)
            target.place(stored, spare)
        return self.read_piece_meta(piece, header, cancel)

    def _reads_into_places(self, piece: Piece, header: FileHeader, out_dtype: np.dtype) -> bool:
        """Whether the piece's rows go straight to their places (local, stored dtype, from a cache line)."""
        offset = header.data_offset + piece.piece_start * header.row_bytes
        return self.storage.scatters and out_dtype == header.numpy_dtype and not offset % ALIGNMENT

    def placement_bytes(self, piece: Piece, header: FileHeader, out_dtype: np.dtype) -> int:
        """None straight to the places; else the side buffer of the stored rows, and one of the cast rows."""
        return (
            0
            if self._reads_into_places(piece, header, out_dtype)
            else sum(self._side_buffers(piece, header, out_dtype))
        )

    @staticmethod
    def _side_buffers(piece: Piece, header: FileHeader, out_dtype: np.dtype) -> Tuple[int, int]:
        """Bytes of the side buffers of a piece not read straight to its places: its stored rows, and a block of its
        cast rows (none when it is not cast)."""
        cast = out_dtype != header.numpy_dtype
        cast_rows = min(piece.rows, cast_block_rows(header.dimension, out_dtype)) if cast else 0
        return piece.rows * header.row_bytes, cast_rows * header.dimension * out_dtype.itemsize

    def read_piece_meta(
        self, piece: Piece, header: FileHeader, cancel: Optional[threading.Event] = None
    ) -> Optional[pd.DataFrame]:
        """The piece's meta columns: none in npy files (parquet_npy reads them from its parquet files)."""
        return None

    def _read_cast_in_blocks(
        self, header: FileHeader, offset: int, out: np.ndarray, cancel: Optional[threading.Event]
    ) -> None:
        """Local read (with a dtype cast, or from an offset off a cache line) through a small reused buffer that stays
        in the CPU cache, each block read from a cache line."""
        block_rows = max(1, CAST_BLOCK_BYTES // header.row_bytes)
        buffer = np.empty(ALIGNMENT + min(block_rows, len(out)) * header.row_bytes, dtype=np.uint8)
        for first in range(0, len(out), block_rows):
            rows = min(block_rows, len(out) - first)
            start = offset + first * header.row_bytes
            raw = read_aligned(self.storage, header.path, start, rows * header.row_bytes, buffer, cancel)
            cast_into(out[first : first + rows], raw.view(header.numpy_dtype).reshape(rows, header.dimension))

    def transient_bytes(self, piece: Piece, header: FileHeader, out_dtype: np.dtype) -> int:
        """Local: the small cast buffer, if any; remote: the downloaded bytes when they cannot stream straight
        into the batch (a cast, or a filesystem read through cat_file)."""
        if self.storage.is_local:
            offset = header.data_offset + piece.piece_start * header.row_bytes
            direct = out_dtype == header.numpy_dtype and not offset % ALIGNMENT
            side_buffer = 0 if direct else ALIGNMENT + CAST_BLOCK_BYTES
        elif out_dtype == header.numpy_dtype and self.storage.streams_into_arrays:
            side_buffer = 0
        else:
            side_buffer = piece.rows * header.row_bytes
        return side_buffer + super().transient_bytes(piece, header, out_dtype)


def read_aligned(
    storage: Storage, path: str, start: int, nbytes: int, buffer: np.ndarray, cancel: Optional[threading.Event]
) -> np.ndarray:
    """Bytes [start, start + nbytes) of a local file, read from the cache line before `start` into `buffer` (a uint8
    array of at least ALIGNMENT + nbytes); the bytes' view in it."""
    skip = start % ALIGNMENT
    storage.read_into(path, start - skip, buffer[: skip + nbytes].data, cancel)
    return buffer[skip : skip + nbytes]


def _probe_length(size: Optional[int]) -> int:
    """How many leading bytes to fetch first: the probe, or the whole file if smaller."""
    return PROBE_BYTES if size is None else min(PROBE_BYTES, size)
