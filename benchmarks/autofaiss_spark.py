"""autofaiss.build_index(distributed="pyspark") on a local Spark, reading through this package; timed.

Not part of CI (pyspark 4 adds about 900 MB to a virtualenv and a JVM start). Needs Java 17 and a virtualenv
with the pinned autofaiss set plus pyspark 4:

    python3 -m venv /tmp/venv-spark
    /tmp/venv-spark/bin/pip install -c tests/autofaiss/constraints.txt . autofaiss faiss-cpu "pyspark>=4,<5"
    /tmp/venv-spark/bin/python benchmarks/autofaiss_spark.py [--files 4] [--rows 5000] [--dim 32]

It writes a seeded npy collection, builds "IVF16,Flat" on Spark local[2] (the executors unpickle the
EmbeddingReader and each reads its own share of the rows), then checks that the index holds every row,
that each label is the row's global index (1.8.1's order: sorted paths), and that recall@10 with all 16 lists
probed is 1.0 against numpy. It prints the wall time of build_index and of the whole run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    """Write the collection, build on Spark, check and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rows", type=int, default=5000, help="rows per file")
    parser.add_argument("--dim", type=int, default=32)
    args = parser.parse_args()
    started = time.perf_counter()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers unpickle the reader: this venv's python

    import faiss
    from autofaiss import build_index
    from pyspark.sql import SparkSession

    with tempfile.TemporaryDirectory() as workdir:
        root = Path(workdir)
        rng = np.random.default_rng(0)
        parts = [rng.standard_normal((args.rows, args.dim)).astype(np.float32) for _ in range(args.files)]
        (root / "emb").mkdir()
        for number, part in enumerate(parts):
            np.save(root / "emb" / f"part_{number:03d}.npy", part)
        rows = np.concatenate(parts)
        queries = rng.standard_normal((100, args.dim)).astype(np.float32)

        spark = (
            SparkSession.builder.master("local[2]")
            .config("spark.driver.memory", "2G")
            .config("spark.ui.enabled", "false")
            .appName("autofaiss_spark")
            .getOrCreate()
        )
        try:
            build_started = time.perf_counter()
            index, _ = build_index(
                str(root / "emb"),
                index_path=str(root / "knn.index"),
                index_infos_path=str(root / "infos.json"),
                index_key="IVF16,Flat",
                index_param="nprobe=16",
                metric_type="l2",
                max_index_memory_usage="1G",
                current_memory_available="2G",
                distributed="pyspark",
                temporary_indices_folder=str(root / "spark-tmp"),
                verbose=logging.WARNING,
            )
            build_seconds = time.perf_counter() - build_started
        finally:
            spark.stop()

        index = faiss.read_index(str(root / "knn.index"))
        assert index.ntotal == len(rows), (index.ntotal, len(rows))
        faiss.extract_index_ivf(index).nprobe = 16
        _, labels = index.search(rows[:: max(1, len(rows) // 200)], 1)
        expected = np.arange(0, len(rows), max(1, len(rows) // 200))
        assert (labels[:, 0] == expected).all(), "a label is not its row's global index"
        _, found = index.search(queries, 10)
        distances = ((queries[:, None, :].astype(np.float64) - rows[None].astype(np.float64)) ** 2).sum(-1)
        exact = np.argsort(distances, axis=1)[:, :10]
        recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
        assert recall == 1.0, recall
    print(
        f"{len(rows)} rows x {args.dim} in {args.files} files: build_index on Spark local[2] "
        f"{build_seconds:.1f} s, whole run {time.perf_counter() - started:.1f} s, recall@10 {recall:.3f}"
    )


if __name__ == "__main__":
    main()
