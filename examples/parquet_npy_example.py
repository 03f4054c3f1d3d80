"""LAION-style: npy embeddings with aligned parquet metadata in another folder.

python examples/parquet_npy_example.py [EMBEDDINGS_FOLDER METADATA_FOLDER]
"""

import sys

from sample_data import parquet_npy_sample

from embedding_reader import EmbeddingReader

embeddings, metadata = sys.argv[1:3] if len(sys.argv) > 2 else parquet_npy_sample()
reader = EmbeddingReader(
    embeddings, file_format="parquet_npy", metadata_folder=metadata, meta_columns=["caption", "url"]
)
print(f"{reader.count} embeddings, dimension {reader.dimension}, stored as {reader.dtype}")

for emb, meta in reader(batch_size=8_000, show_progress=False):
    print(emb.shape, meta[["i", "caption"]].iloc[0].to_dict())
