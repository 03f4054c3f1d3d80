"""Writes small sample collections for the examples, so each runs as written with no data of your own."""

import os
import shutil
import tempfile
from typing import Callable, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SAMPLE_ROOT = os.path.join(tempfile.gettempdir(), "embedding_reader_samples")


def _written_once(folder: str, write: Callable[[str], None]) -> str:
    """`folder`, written by `write` into a fresh sibling folder then renamed into place: a run interrupted halfway,
    or two runs at once, never leave a half-written sample where the next run would take it as complete."""
    if os.path.isdir(folder):
        return folder
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".partial-", dir=os.path.dirname(folder))
    try:
        write(staging)
        os.rename(staging, folder)
    except OSError:
        if not os.path.isdir(folder):  # not another run that finished first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _embeddings(rows: int, dimension: int, seed: int, dtype: str = "float32") -> np.ndarray:
    """Unit-norm random embeddings, like CLIP's."""
    values = np.random.default_rng(seed).standard_normal((rows, dimension), dtype=np.float32)
    return (values / np.linalg.norm(values, axis=1, keepdims=True)).astype(dtype)


def _captions(first: int, rows: int) -> pd.DataFrame:
    """Metadata aligned with embedding rows: a caption and a url per row."""
    ids = np.arange(first, first + rows)
    return pd.DataFrame(
        {"caption": [f"a photo of item {i}" for i in ids], "url": [f"https://example.com/{i}.jpg" for i in ids]}
    )


def npy_sample(files: int = 4, rows: int = 10_000, dimension: int = 512, dtype: str = "float16") -> str:
    """A folder of npy files (img_emb_0000.npy, ...), written once."""

    def write(folder: str) -> None:
        for k in range(files):
            np.save(os.path.join(folder, f"img_emb_{k:04d}.npy"), _embeddings(rows, dimension, k, dtype))

    return _written_once(os.path.join(SAMPLE_ROOT, f"npy_{files}x{rows}x{dimension}_{dtype}", "img_emb"), write)


def parquet_sample(files: int = 4, rows: int = 10_000, dimension: int = 512) -> str:
    """A folder of parquet files with an `embedding` list column and `caption`, `url` columns."""

    def write(folder: str) -> None:
        for k in range(files):
            frame = _captions(k * rows, rows)
            frame["embedding"] = list(_embeddings(rows, dimension, k))
            table = pa.Table.from_pandas(frame, preserve_index=False)
            pq.write_table(table, os.path.join(folder, f"part_{k:04d}.parquet"))

    return _written_once(os.path.join(SAMPLE_ROOT, f"parquet_{files}x{rows}x{dimension}"), write)


def parquet_npy_sample(files: int = 4, rows: int = 10_000, dimension: int = 512) -> Tuple[str, str]:
    """LAION-style: img_emb/img_emb_NNNN.npy beside metadata/metadata_NNNN.parquet (different names)."""
    embeddings = npy_sample(files, rows, dimension)

    def write(folder: str) -> None:
        for k in range(files):
            table = pa.Table.from_pandas(_captions(k * rows, rows))
            pq.write_table(table, os.path.join(folder, f"metadata_{k:04d}.parquet"))

    return embeddings, _written_once(os.path.join(os.path.dirname(embeddings), "metadata"), write)
