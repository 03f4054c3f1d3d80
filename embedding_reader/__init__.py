"""embedding_reader: read large collections of embeddings (npy, parquet) from any fsspec filesystem."""

from ._version import __version__ as __version__
from .errors import (
    CorruptFileError,
    EmbeddingReaderError,
    FileChangedError,
    InconsistentCollectionError,
    InvalidArgumentError,
    MissingColumnError,
    NoEmbeddingsFoundError,
    ReadFailedError,
    ShortReadError,
    StalledReadError,
    UnsupportedFileError,
)
from .header import FileHeader, ParquetFooter
from .inspection import FILE_FORMATS, CollectionReport, FileReport, detect_format, inspect_collection
from .pieces import Piece, build_pieces
from .reader import EmbeddingReader
from .retry import RetryPolicy
from .storage import redact

__all__ = [
    "FILE_FORMATS",
    "CollectionReport",
    "CorruptFileError",
    "EmbeddingReader",
    "EmbeddingReaderError",
    "FileChangedError",
    "FileHeader",
    "FileReport",
    "InconsistentCollectionError",
    "InvalidArgumentError",
    "MissingColumnError",
    "NoEmbeddingsFoundError",
    "ParquetFooter",
    "Piece",
    "ReadFailedError",
    "RetryPolicy",
    "ShortReadError",
    "StalledReadError",
    "UnsupportedFileError",
    "build_pieces",
    "detect_format",
    "inspect_collection",
    "redact",
]
