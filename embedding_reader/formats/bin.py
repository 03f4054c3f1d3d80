"""fbin, ibin, u8bin, i8bin (big-ann-benchmarks): two little-endian 32-bit integers (rows, dimension), then the rows.

Only the header differs from npy: the rows are read as npy's are (exact byte ranges, straight into the batch or
through a cast). The header's rows x dimension must fit in the file; bytes after them are ignored (as np.load
ignores them). The counts are read unsigned, as big-ann-benchmarks writes them (uint32).
"""

from typing import List, Optional, Sequence

import numpy as np

from ..errors import CorruptFileError
from ..header import FileHeader
from ..storage import FileEntry, redact
from .checks import Checks, Survey
from .npy import NpyFormat, check_shape

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
