"""Writes small sample collections for the examples, so each runs as written with no data of your own."""

import os
import tempfile
from typing import Tuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SAMPLE_ROOT = os.path.join(tempfile.gettempdir(), "embedding_reader_samples")


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
    folder = os.path.join(SAMPLE_ROOT, f"npy_{files}x{rows}x{dimension}_{dtype}", "img_emb")
    if not os.path.isdir(folder):
        os.makedirs(folder)
        for k in range(files):
            np.save(os.path.join(folder, f"img_emb_{k:04d}.npy"), _embeddings(rows, dimension, k, dtype))
    return folder


def parquet_sample(files: int = 4, rows: int = 10_000, dimension: int = 512) -> str:
    """A folder of parquet files with an `embedding` list column and `caption`, `url` columns."""
    folder = os.path.join(SAMPLE_ROOT, f"parquet_{files}x{rows}x{dimension}")
    if not os.path.isdir(folder):
        os.makedirs(folder)
        for k in range(files):
            frame = _captions(k * rows, rows)
            frame["embedding"] = list(_embeddings(rows, dimension, k))
            pq.write_table(
                pa.Table.from_pandas(frame, preserve_index=False), os.path.join(folder, f"part_{k:04d}.parquet")
            )
    return folder


def parquet_npy_sample(files: int = 4, rows: int = 10_000, dimension: int = 512) -> Tuple[str, str]:
    """LAION-style: img_emb/img_emb_NNNN.npy beside metadata/metadata_NNNN.parquet (different names)."""
    embeddings = npy_sample(files, rows, dimension)
    metadata = os.path.join(os.path.dirname(embeddings), "metadata")
    if not os.path.isdir(metadata):
        os.makedirs(metadata)
        for k in range(files):
            pq.write_table(
                pa.Table.from_pandas(_captions(k * rows, rows)), os.path.join(metadata, f"metadata_{k:04d}.parquet")
            )
    return embeddings, metadata
