"""fbin, ibin, u8bin, i8bin (big-ann-benchmarks): two little-endian 32-bit integers (rows, dimension), then the rows.

Only the header differs from npy: the rows are read by exact byte ranges, straight into the batch or through a
cast. The header's rows x dimension must fit in the file; bytes after them are ignored (as np.load ignores them).
The counts are read unsigned, as big-ann-benchmarks writes them (uint32).

Locally the rows start 8 bytes past a cache line; that alone costs nothing (what slows the kernel's copy is a
destination a few bytes ahead of the source modulo the page, which `storage.local.read_into` avoids), so rows
kept in their dtype are read straight into the batch, and a cast reads blocks into a buffer placed on the file's
own position in the page.
"""

import threading
from typing import List, Optional, Sequence

import numpy as np

from ..casts import cast_into
from ..errors import CorruptFileError
from ..header import FileHeader
from ..pieces import Piece
from ..storage import FileEntry, redact
from ..storage.local import BOUNCE_BYTES, PAGE, page_congruent
from .checks import Checks, Survey
from .npy import CAST_BLOCK_BYTES, NpyFormat, check_shape

HEADER_BYTES = 8  # rows, dimension: uint32 each, little-endian


def parse_bin_header(path: str, header: bytes, file_size: Optional[int], dtype: np.dtype) -> FileHeader:
    """A FileHeader from a bin file's first 8 bytes, its claim checked against the file size when known."""
    if len(header) < HEADER_BYTES:
        raise CorruptFileError(
            f"{redact(path)}: {len(header)} bytes, shorter than the {HEADER_BYTES}-byte header (rows, dimension)"
        )
    count, dimension = (int.from_bytes(header[k : k + 4], "little") for k in (0, 4))
    check_shape(path, count, dimension, dtype, HEADER_BYTES, file_size)
    return FileHeader(
        path=path, count=count, dimension=dimension, dtype=dtype.str, file_size=file_size, data_offset=HEADER_BYTES
    )


class BinFormat(NpyFormat):
    """Rows of one dtype after an 8-byte header (rows, dimension); subclasses name the dtype."""

    stored_dtype = ""

    def survey(self, folders: Sequence[str], checks: Checks) -> Survey:
        return self.survey_files(folders, checks, self.read_bin_headers)

    def read_bin_headers(self, files: Sequence[FileEntry]) -> List[FileHeader]:
        """Headers of the files, read in parallel: one exact 8-byte read each (a shorter file is corrupt)."""
        requests = [(path, 0, HEADER_BYTES if size is None else min(HEADER_BYTES, size)) for path, size in files]
        answers = iter(self.storage.read_ranges([request for request in requests if request[2]], allow_short=True))
        dtype = np.dtype(self.stored_dtype)
        headers = []
        for (path, listed), (_, _, length) in zip(files, requests):
            answer = next(answers) if length else b""  # an empty file: nothing to ask for
            size = listed if listed is not None else self.storage.identities.size(path)  # over http: the answer's
            headers.append(parse_bin_header(path, answer, size, dtype))
        return headers

    def read_rows(
        self, header: FileHeader, first_row: int, out: np.ndarray, cancel: Optional[threading.Event] = None
    ) -> None:
        """Fill `out` with rows from `first_row`; locally straight into it when dtypes match, else block by block
        through a page-congruent buffer (remote reads as npy's)."""
        if not self.storage.is_local:
            super().read_rows(header, first_row, out, cancel)
            return
        offset = header.data_offset + first_row * header.row_bytes
        if out.dtype == header.numpy_dtype:
            self.storage.read_into(header.path, offset, out.data.cast("B"), cancel)
            return
        block_rows = _cast_block_rows(header)
        buffer = np.empty(min(block_rows, len(out)) * header.row_bytes + PAGE, dtype=np.uint8)
        for first in range(0, len(out), block_rows):
            rows = min(block_rows, len(out) - first)
            start = offset + first * header.row_bytes
            raw = page_congruent(buffer, start, rows * header.row_bytes)
            self.storage.read_into(header.path, start, raw.data, cancel)
            cast_into(out[first : first + rows], raw.view(header.numpy_dtype).reshape(rows, header.dimension))

    def transient_bytes(self, piece: Piece, header: FileHeader, out_dtype: np.dtype) -> int:
        """Local: the cast buffer, or the buffer of a read that would be aliased (the batch's address decides,
        unknown here); remote: as npy."""
        if not self.storage.is_local:
            return super().transient_bytes(piece, header, out_dtype)
        if out_dtype == header.numpy_dtype:
            side_buffer = min(BOUNCE_BYTES, piece.rows * header.row_bytes) + PAGE
        else:
            side_buffer = min(_cast_block_rows(header), piece.rows) * header.row_bytes + PAGE
        return side_buffer + super(NpyFormat, self).transient_bytes(piece, header, out_dtype)


def _cast_block_rows(header: FileHeader) -> int:
    """Rows cast at a time locally: a cache-sized block."""
    return max(1, CAST_BLOCK_BYTES // header.row_bytes)


class FbinFormat(BinFormat):
    """float32 rows (DEEP1B, Text2Image-1B, MSTuring)."""

    name = "fbin"
    extension = ".fbin"
    stored_dtype = "<f4"


class IbinFormat(BinFormat):
    """int32 rows (ground truth ids)."""

    name = "ibin"
    extension = ".ibin"
    stored_dtype = "<i4"


class U8binFormat(BinFormat):
    """uint8 rows (BIGANN)."""

    name = "u8bin"
    extension = ".u8bin"
    stored_dtype = "|u1"


class I8binFormat(BinFormat):
    """int8 rows (MSSPACEV-1B)."""

    name = "i8bin"
    extension = ".i8bin"
    stored_dtype = "|i1"
