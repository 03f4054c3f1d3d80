"""Spark by ranges (the autofaiss pattern), with a process pool standing in for Spark executors.

The driver builds one reader (headers read once, in parallel), cuts [0, count) into ranges with
`reader.split(n)`, and ships the pickled reader with each range; every executor reads its own range and
uses the global index `i` as ids. The pickled reader holds the headers only: executors never list the
folders or read a header again. Run: python examples/spark_by_ranges.py [EMBEDDINGS_FOLDER METADATA_FOLDER]

The same thing with PySpark (the reader is captured by the closure and pickled into every task):

    reader = EmbeddingReader(embeddings, file_format="parquet_npy", metadata_folder=metadata,
                             meta_columns=["caption"])
    ranges = reader.split(100)

    def read_range(bounds):
        start, end = bounds
        for emb, meta in reader(batch_size=100_000, start=start, end=end, show_progress=False):
            index.add_with_ids(emb, meta["i"].to_numpy())  # e.g. a faiss index, one per range
        return start, end

    spark.sparkContext.parallelize(ranges, len(ranges)).map(read_range).collect()
"""

import multiprocessing
import pickle
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Tuple

import numpy as np
from sample_data import parquet_npy_sample

from embedding_reader import EmbeddingReader

RANGES = 8
WORKERS = 2

RangeSummary = Tuple[int, int, int, float, str]


def read_range(reader: EmbeddingReader, start: int, end: int) -> RangeSummary:
    """Runs in an executor: read rows [start, end) and summarise them (the place for index.add_with_ids)."""
    rows, norm_sum, first_caption = 0, 0.0, ""
    for emb, meta in reader(batch_size=5_000, start=start, end=end, show_progress=False):
        assert meta["i"].iloc[0] == start + rows  # global ids: usable as they are
        first_caption = first_caption or meta["caption"].iloc[0]
        rows += len(emb)
        norm_sum += float(np.linalg.norm(emb, axis=1).sum())
    return start, end, rows, norm_sum, first_caption


def main() -> None:
    """Build the reader on the driver, then read its ranges in spawned processes and check every row came once."""
    embeddings, metadata = sys.argv[1:3] if len(sys.argv) > 2 else parquet_npy_sample()
    began = time.perf_counter()
    reader = EmbeddingReader(embeddings, file_format="parquet_npy", metadata_folder=metadata, meta_columns=["caption"])
    opened = time.perf_counter() - began
    print(f"driver: {reader.nb_files} files, {reader.count} rows, headers read in {opened:.2f} s")
    print(f"driver: pickled reader is {len(pickle.dumps(reader))} bytes")

    ranges = reader.split(RANGES)
    began = time.perf_counter()
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as executors:
        summaries = list(executors.map(read_range, [reader] * len(ranges), *zip(*ranges)))
    seconds = time.perf_counter() - began
    for start, end, rows, norm_sum, caption in summaries:
        print(f"range [{start}, {end}): {rows} rows, mean norm {norm_sum / rows:.3f}, first caption {caption!r}")
    assert sum(summary[2] for summary in summaries) == reader.count
    print(f"{reader.count} rows read once each by {WORKERS} processes in {seconds:.1f} s (process start included)")


if __name__ == "__main__":
    main()
