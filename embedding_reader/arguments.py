"""Checks of the constructor's and the call's arguments: each refused by name, as InvalidArgumentError."""

import logging
import os
from typing import Any, List, Optional, Sequence, Union

import numpy as np

from .errors import InvalidArgumentError
from .formats import format_class
from .retry import RetryPolicy

OUTPUT_KINDS = "fiu"  # output dtypes: floats, signed and unsigned integers (no bool, complex, text, dates)
logger = logging.getLogger("embedding_reader")


def check_output_dtype(output_dtype: Any, stored: np.dtype) -> np.dtype:
    """`output_dtype` as a numpy dtype: a real number type the stored values cast into without wrapping
    (ints into wider ints or any float, floats into floats of any width), else InvalidArgumentError naming it."""
    try:
        dtype: np.dtype = np.dtype(output_dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"output_dtype={short_repr(output_dtype)} is not a numpy dtype") from exc
    if dtype.kind not in OUTPUT_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise InvalidArgumentError(
            f"output_dtype={short_repr(output_dtype)} ({dtype}) is not a real number type: use float16/32/64 or an int"
        )
    if stored.kind == "f" and dtype.kind != "f":
        raise InvalidArgumentError(
            f"output_dtype={short_repr(output_dtype)} would cast the stored {stored} embeddings into {dtype} "
            "(fractions lost, out-of-range values wrapped): use a float dtype"
        )
    if stored.kind in "iu" and dtype.kind in "iu" and not np.can_cast(stored, dtype, "safe"):
        raise InvalidArgumentError(
            f"output_dtype={short_repr(output_dtype)} cannot hold every stored {stored} value: use a wider type"
        )
    return dtype


def check_retry_policy(retry_policy: Any) -> None:
    """Refuse anything but a RetryPolicy (or None) now, instead of an AttributeError at the first retry."""
    if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
        raise InvalidArgumentError(
            f"retry_policy must be an embedding_reader.RetryPolicy or None, got {short_repr(retry_policy)}"
        )


def short_repr(value: Any) -> str:
    """repr of an argument, cut short for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def check_timeout(timeout: Any) -> float:
    """Seconds a request may go without progress: a finite number > 0, refused by name otherwise."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise InvalidArgumentError(f"timeout must be a number of seconds > 0, got {short_repr(timeout)}")
    return float(timeout)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_pattern(file_pattern: Any) -> Optional[str]:
    """A non-empty glob, or None (the format's extension)."""
    if file_pattern is not None and not (isinstance(file_pattern, str) and file_pattern):
        raise InvalidArgumentError(f"file_pattern must be a glob of file names, got {short_repr(file_pattern)}")
    return None if file_pattern is None else str(file_pattern)


def check_dataset(hdf5_dataset: Any) -> str:
    """A dataset name (a path inside the file, like "train" or "group/train")."""
    if not (isinstance(hdf5_dataset, str) and hdf5_dataset):
        raise InvalidArgumentError(f"hdf5_dataset must be a dataset name, got {short_repr(hdf5_dataset)}")
    return hdf5_dataset


def as_folder_list(embeddings_folder: Union[str, Sequence[str]]) -> List[str]:
    """One folder or file, or a list of them, as a non-empty list of strings."""
    single = isinstance(embeddings_folder, (str, os.PathLike))
    folders: List[Any] = [embeddings_folder] if single else list(embeddings_folder)
    if not folders or not all(isinstance(folder, (str, os.PathLike)) and os.fspath(folder) for folder in folders):
        raise InvalidArgumentError(
            f"embeddings_folder must be a folder, a file or a non-empty list of them, got {folders!r}"
        )
    return [os.fspath(folder) for folder in folders]


def meta_column_list(meta_columns: Union[str, Sequence[str], None], file_format: str) -> List[str]:
    """The meta columns as a list: one name is one column; npy files (and other formats without metadata) hold none,
    so they are ignored (as 1.8.1 does for npy)."""
    columns = [meta_columns] if isinstance(meta_columns, str) else list(meta_columns or [])
    if not all(isinstance(column, str) and column for column in columns):
        raise InvalidArgumentError(f"meta_columns must be column names, got {meta_columns!r}")
    if columns and not format_class(file_format).holds_metadata:
        logger.warning("meta_columns %s ignored: %s files hold no metadata (meta has only 'i')", columns, file_format)
        return []
    return columns
