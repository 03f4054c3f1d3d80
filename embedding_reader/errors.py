"""One error hierarchy: every exception the library raises on purpose derives from EmbeddingReaderError.

EmbeddingReaderError is a ValueError, so callers that already catch ValueError keep working; the
subclasses that describe missing files or failed I/O are also the matching built-in exceptions.
"""

import numbers
from typing import Any


class EmbeddingReaderError(ValueError):
    """Root of every error raised by embedding_reader."""


class InvalidArgumentError(EmbeddingReaderError):
    """An argument passed by the caller is out of range or of the wrong type."""


class NoEmbeddingsFoundError(EmbeddingReaderError, FileNotFoundError):
    """A folder is missing, or holds no file of the requested format."""


class CorruptFileError(EmbeddingReaderError):
    """A file's header or body cannot be parsed, or disagrees with itself (truncated, wrong size)."""


class UnsupportedFileError(EmbeddingReaderError):
    """A well-formed file that this library refuses: object dtype, Fortran order, not 2-D, ..."""


class InconsistentCollectionError(EmbeddingReaderError):
    """Files disagree with each other: dimension, dtype, or embedding/metadata pairing."""


class MissingColumnError(EmbeddingReaderError, KeyError):
    """A requested column does not exist in a parquet file."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ReadFailedError(EmbeddingReaderError, OSError):
    """A read of a byte range failed permanently, or kept failing after every retry."""


class ShortReadError(EmbeddingReaderError, OSError):
    """Storage returned fewer (or more) bytes than asked, or other bytes than asked; transient for remote storage."""


class StalledReadError(ShortReadError, TimeoutError):
    """A request made no progress for `timeout` seconds (no answer, or a body stalled or trickling); transient."""


class FileChangedError(ReadFailedError):
    """A file is not what it was when the reader opened it (another size or version): its rows cannot be trusted."""


def check_int(name: str, value: Any, minimum: int) -> int:
    """The value as a Python int; non-integers (bools included) and values below `minimum` are refused by name."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
