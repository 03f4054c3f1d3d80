"""Read a folder of npy embeddings in batches: python examples/npy_example.py [FOLDER]."""

import sys

import numpy as np
from sample_data import npy_sample

from embedding_reader import EmbeddingReader

folder = sys.argv[1] if len(sys.argv) > 1 else npy_sample()
reader = EmbeddingReader(folder, file_format="npy")
print(f"{reader.count} embeddings of dimension {reader.dimension} ({reader.dtype}), {reader.total_size / 1e6:.0f} MB")

norms = []
for emb, meta in reader(batch_size=10_000, start=0, end=reader.count, show_progress=False):
    norms.append(np.linalg.norm(emb, axis=1))  # emb is float32 (n, dimension); meta["i"] is each row's global index
    print(f"batch of {emb.shape} rows {meta['i'].iloc[0]} to {meta['i'].iloc[-1]}")
print(f"mean norm {np.concatenate(norms).mean():.3f}")

# Keep the stored dtype (float16 stays float16: half the memory, no cast).
emb, meta = next(reader(batch_size=1000, output_dtype=None, show_progress=False))
print(f"first batch kept as {emb.dtype}: {emb.shape}")
