"""Read embeddings with Ray Data and run a linear probe on every batch: python examples/ray_example.py [FOLDER].

FOLDER holds npy files; without it a sample collection (200,000 x 512 float16, about 200 MB) is written to a
temporary folder. Set RAY_ADDRESS to run on a cluster: the same code spreads the read tasks over its nodes.
"""

import sys
import time
from typing import Dict

import numpy as np
import ray
from sample_data import npy_sample

from embedding_reader import EmbeddingReader

CLASSES = 10


def linear_probe(dimension: int):
    """A stand-in for a trained classifier: a fixed random projection to CLASSES scores, then argmax."""
    weights = np.random.default_rng(0).standard_normal((dimension, CLASSES)).astype(np.float32)

    def probe(batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Label every row of a batch; batch["embedding"] is an (n, dimension) float32 array."""
        return {"i": batch["i"], "label": np.argmax(batch["embedding"] @ weights, axis=1)}

    return probe


def main() -> None:
    """Open the collection, read it as a Ray dataset through the probe, and print the labels and throughput."""
    folder = sys.argv[1] if len(sys.argv) > 1 else npy_sample(files=8, rows=25_000, dimension=512)
    ray.init()
    reader = EmbeddingReader(folder, file_format="npy")
    megabytes = reader.total_size / 1e6
    print(f"{reader.count} embeddings of dimension {reader.dimension} ({reader.dtype}), {megabytes:.0f} MB")
    reader.to_ray_dataset(0, 1).take_batch(1)  # warm-up: Ray starts its workers and they import the library

    # Ray's default is at least 200 blocks: on a collection much smaller than 200 x 128 MB that splits every
    # read task's output into small blocks, so about two blocks per CPU reads faster. Drop it for big ones.
    blocks = 2 * int(ray.cluster_resources()["CPU"])
    began = time.perf_counter()
    dataset = reader.to_ray_dataset(override_num_blocks=blocks).map_batches(
        linear_probe(reader.dimension), batch_format="numpy", batch_size=None
    )
    counts = np.zeros(CLASSES, dtype=np.int64)
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        counts += np.bincount(batch["label"], minlength=CLASSES)
    seconds = time.perf_counter() - began

    rows = int(counts.sum())
    print(f"{rows} rows labelled in {seconds:.1f} s: {rows / seconds:,.0f} rows/s, {megabytes / seconds:.0f} MB/s")
    print(f"rows per label: {counts.tolist()}")
    ray.shutdown()


if __name__ == "__main__":
    main()
