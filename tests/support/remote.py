"""Helpers for reading sample collections through the loopback http and S3 servers, and checking what came back."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedding_reader import EmbeddingReader, RetryPolicy
from tests.support.collections import META_COLUMNS, Collection, ReadResult, expected_batch_sizes, read_all

FAST_RETRIES = RetryPolicy(max_attempts=12, base_delay=0.001, max_delay=0.01)
THREAD_PREFIX = "embedding_reader"
# botocore's own retries off: the library's retries must do the work (s3fs's own loop is set per test, see test_faults).
NO_BOTOCORE_RETRIES = {"config_kwargs": {"retries": {"total_max_attempts": 1}}}


@dataclass(frozen=True)
class Remote:
    """Where a local folder tree is served: `base` (an http or s3 URL) stands for the local `root`."""

    root: str
    base: str
    storage_options: dict[str, Any] | None = None

    def url(self, local_path: str) -> str:
        """The remote URL of a local path under `root`."""
        relative = os.path.relpath(local_path, self.root).replace(os.sep, "/")
        return f"{self.base.rstrip('/')}/{relative}"


def meta_columns_of(collection: Collection) -> list[str] | None:
    """The meta columns read for a collection: `caption` and `n`, except for npy which has none."""
    return None if collection.file_format == "npy" else META_COLUMNS


def open_remote(collection: Collection, remote: Remote, **kwargs: Any) -> EmbeddingReader:
    """An EmbeddingReader of the collection through `remote`, with its meta columns and fast retries by default."""
    reader_kwargs = collection.reader_kwargs(meta_columns_of(collection))
    if collection.metadata_folder is not None:
        reader_kwargs["metadata_folder"] = remote.url(collection.metadata_folder)
    folders = collection.folder if isinstance(collection.folder, list) else [collection.folder]
    urls = [remote.url(folder) for folder in folders]
    kwargs.setdefault("retry_policy", FAST_RETRIES)
    if remote.storage_options is not None:
        kwargs.setdefault("storage_options", remote.storage_options)
    return EmbeddingReader(urls if len(urls) > 1 else urls[0], **reader_kwargs, **kwargs)


def read_pass(reader: EmbeddingReader, batch_size: int, **kwargs: Any) -> ReadResult:
    """One whole pass over reader(batch_size, **kwargs), without a progress bar."""
    return read_all(reader(batch_size, show_progress=False, **kwargs))


def assert_rows(result: ReadResult, collection: Collection, batch_size: int, start: int = 0, end: int | None = None):
    """The pass returned exactly rows [start, min(end, count)) as float32, in batches of batch_size, meta aligned."""
    end = collection.count if end is None else min(end, collection.count)
    assert result.batch_sizes == expected_batch_sizes(end - start, batch_size)
    np.testing.assert_array_equal(result.embeddings, collection.embeddings[start:end].astype(np.float32))
    columns = ["i", *(meta_columns_of(collection) or [])]
    assert sorted(result.meta.columns) == sorted(columns)
    expected = collection.meta.iloc[start:end]
    for column in columns:
        assert result.meta[column].tolist() == expected[column].tolist(), column


def files_under(*folders: str) -> list[str]:
    """Every file under the folders (recursively)."""
    return [os.path.join(top, name) for folder in folders for top, _, names in os.walk(folder) for name in names]


def bytes_of_collection(collection: Collection) -> int:
    """Bytes of every embedding and metadata file of the collection (what a full read must fetch, once)."""
    paths = [*collection.paths, *collection.metadata_paths]
    return sum(os.path.getsize(path) for path in paths)


def reader_threads() -> list[threading.Thread]:
    """Live threads started by embedding_reader's pipeline."""
    return [thread for thread in threading.enumerate() if thread.name.startswith(THREAD_PREFIX) and thread.is_alive()]
