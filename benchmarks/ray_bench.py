"""Reader open/pickle cost over many small files, and Ray Data read throughput against a plain read (same run).

Run: python benchmarks/ray_bench.py [--files 10000] [--gigabytes 1] [--repeats 3] [--root /tmp/er_ray_bench]
Collections are written once under --root (npy, float16, dim 768, like LAION-5B) and reused; files are read
from the page cache, so the figures are the reader's and Ray's overheads, not the disk's.
"""

import argparse
import os
import pickle
import statistics
import time
from typing import Callable, List, Optional

import numpy as np
import ray

from embedding_reader import EmbeddingReader

DIM = 768
DTYPE = np.float16


def write_collection(folder: str, files: int, rows: int) -> str:
    """`files` npy files of `rows` random (rows, DIM) float16 embeddings each, written once."""
    if not os.path.isdir(folder):
        os.makedirs(folder)
        block = np.random.default_rng(0).standard_normal((rows, DIM)).astype(DTYPE)
        for k in range(files):
            np.save(os.path.join(folder, f"img_emb_{k:05d}.npy"), block)
    return folder


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls."""
    times: List[float] = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def open_and_pickle(folder: str, repeats: int) -> None:
    """Time to open a reader (list + read every header), to pickle it and to unpickle it; its pickled size."""
    reader = EmbeddingReader(folder)
    opened = median_seconds(lambda: EmbeddingReader(folder), repeats)
    pickled = pickle.dumps(reader)
    dumped = median_seconds(lambda: pickle.dumps(reader), repeats)
    loaded = median_seconds(lambda: pickle.loads(pickled), repeats)
    print(f"open {reader.nb_files} files: {opened:.2f} s; pickle {dumped * 1e3:.1f} ms, unpickle {loaded * 1e3:.1f} ms")
    print(f"pickled size {len(pickled)} bytes, {len(pickled) / reader.nb_files:.0f} bytes per file")


def throughput(folder: str, repeats: int) -> None:
    """GB/s of stored bytes: a plain read, then Ray reads into the object store or pulled to the driver."""
    reader = EmbeddingReader(folder)
    size = reader.total_size / 1e9
    cpus = int(ray.cluster_resources()["CPU"])

    def plain() -> None:
        for _ in reader(100_000, output_dtype=None, show_progress=False):
            pass

    def ray_read(blocks: Optional[int], to_driver: bool) -> Callable[[], None]:
        def run() -> None:
            dataset = reader.to_ray_dataset(output_dtype=None, override_num_blocks=blocks)
            if to_driver:
                for _ in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    pass
            else:
                dataset.materialize()

        return run

    ray_read(None, True)()  # warm up: workers started, modules imported, page cache filled
    print(f"collection: {reader.nb_files} files, {reader.count} rows, {size:.2f} GB; Ray with {cpus} CPUs")
    cases = {
        "plain read": plain,
        "ray, Ray's block count, materialize": ray_read(None, False),
        f"ray, {2 * cpus} blocks, materialize": ray_read(2 * cpus, False),
        f"ray, {2 * cpus} blocks, to driver": ray_read(2 * cpus, True),
    }
    for name, run in cases.items():
        seconds = median_seconds(run, repeats)
        print(f"{name:36s} {seconds:6.2f} s  {size / seconds:5.2f} GB/s  {reader.count / seconds / 1e6:5.2f} M rows/s")


def main() -> None:
    """Write the collections if needed, then print the measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", default="/tmp/er_ray_bench")
    args = parser.parse_args()
    open_and_pickle(write_collection(os.path.join(args.root, f"small_{args.files}"), args.files, 10), args.repeats)
    rows = int(args.gigabytes * 1e9 / (DIM * np.dtype(DTYPE).itemsize) / 8)
    big = write_collection(os.path.join(args.root, f"big_{args.gigabytes}"), 8, rows)
    ray.init(include_dashboard=False)
    throughput(big, args.repeats)
    ray.shutdown()


if __name__ == "__main__":
    main()
