"""The file formats, by name: each a small module behind the Format interface."""

from typing import Dict, Type

from ..errors import InvalidArgumentError
from .base import Format
from .bin import FbinFormat, I8binFormat, IbinFormat, U8binFormat
from .hdf5 import Hdf5Format
from .npy import NpyFormat
from .parquet import ParquetFormat
from .parquet_npy import ParquetNpyFormat
from .vecs import BvecsFormat, FvecsFormat, IvecsFormat

ANN_FORMATS = (FvecsFormat, IvecsFormat, BvecsFormat, FbinFormat, IbinFormat, U8binFormat, I8binFormat, Hdf5Format)
FORMATS: Dict[str, Type[Format]] = {cls.name: cls for cls in (NpyFormat, ParquetFormat, ParquetNpyFormat, *ANN_FORMATS)}


def format_class(name: str) -> Type[Format]:
    """The Format class registered under `name`; a clear error listing the valid names otherwise."""
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise InvalidArgumentError(f"unknown file_format {name!r}: use one of {sorted(FORMATS)}") from None


__all__ = ["FORMATS", "Format", "format_class"]
