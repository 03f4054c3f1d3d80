"""Read embeddings and metadata columns from parquet files: python examples/parquet_example.py [FOLDER]."""

import sys

from sample_data import parquet_sample

from embedding_reader import EmbeddingReader

folder = sys.argv[1] if len(sys.argv) > 1 else parquet_sample()
reader = EmbeddingReader(folder, file_format="parquet", embedding_column="embedding", meta_columns=["caption", "url"])
print(f"{reader.count} embeddings of dimension {reader.dimension} in {reader.nb_files} files")

for emb, meta in reader(batch_size=15_000, start=5_000, end=35_000, show_progress=False):
    print(emb.shape, list(meta.columns), meta["caption"].iloc[0])
