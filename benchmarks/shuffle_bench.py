"""Shuffled against sequential reads (issue 16), in the same run: local npy float32, npy float16 read as float32,
parquet (one row group per file, as pyarrow writes 60k-row files; and 16k-row groups), and http; GB/s and peak RSS
of each read in a fresh process, alternating sequential and shuffled, median of the rounds (and the least and most
of each round's shuffled read against the sequential read before it: this machine's spread). Also the mixing
figure: distinct files in a 10,000-row batch of 100 labelled files against a perfect shuffle's.

    .venv/bin/python benchmarks/shuffle_bench.py [--rounds 3] [--size-gb 1.5] [--work-dir /tmp/embedding_reader_bench]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import datasets as bench_datasets  # noqa: E402
import remote  # noqa: E402

BATCH = 100_000
DIM = 768

CHILD = """
import json, resource, sys, time
import numpy as np
from embedding_reader import EmbeddingReader
url, fmt, shuffle = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
reader = EmbeddingReader(url, file_format=fmt)
started, nbytes = time.perf_counter(), 0
options = {"shuffle": True, "seed": 0} if shuffle else {}
for emb, meta in reader(BATCH, show_progress=False, output_dtype=np.float32, **options):
    nbytes += emb.nbytes
    del emb, meta
seconds = time.perf_counter() - started
print(json.dumps({"gbps": nbytes / seconds / 1e9, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""".replace("BATCH", str(BATCH))


def measure(url: str, fmt: str, shuffle: bool) -> dict[str, float]:
    """One read in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, fmt, "1" if shuffle else "0"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(name: str, url: str, fmt: str, rounds: int) -> dict[str, object]:
    """Sequential and shuffled, alternating, after an untimed warm-up read of each."""
    measure(url, fmt, False)
    measure(url, fmt, True)
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(rounds):
        for shuffle in (False, True):
            runs[shuffle].append(measure(url, fmt, shuffle))
    seq = statistics.median(run["gbps"] for run in runs[False])
    shuf = statistics.median(run["gbps"] for run in runs[True])
    rss = {key: max(run["rss_mb"] for run in runs[key]) for key in runs}
    pairs = [after["gbps"] / before["gbps"] for before, after in zip(runs[False], runs[True])]  # round by round
    spread = (min(pairs), max(pairs))
    return {"case": name, "sequential": seq, "shuffled": shuf, "ratio": shuf / seq, "rounds": spread, "rss": rss}


def mixing(rows_per_file: int, dim: int) -> tuple[float, float, float]:
    """Distinct files per 10,000-row batch over 100 files of `rows_per_file` float32 rows (file k labelled k), under
    the default budget: shuffled (least and mean) and a perfect shuffle's mean."""
    from embedding_reader import EmbeddingReader

    with tempfile.TemporaryDirectory() as folder:
        for k in range(100):
            np.save(f"{folder}/{k:03d}.npy", np.full((rows_per_file, dim), k, np.float32))
        reader = EmbeddingReader(folder)
        files = [len(np.unique(emb[:, 0])) for emb, _ in reader(10_000, shuffle=True, seed=0, show_progress=False)]
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(100), rows_per_file))
    perfect = [len(np.unique(labels[k : k + 10_000])) for k in range(0, len(labels), 10_000)]
    return min(files), statistics.mean(files), statistics.mean(perfect)


MIXING_CASES = {  # name: rows per file, dimension
    "small files (100 x 2,000 rows x 8, 64 KB each: blocks are whole files)": (2_000, 8),
    "large files (100 x 10,240 rows x 256, 10 MB each; a 256 MB window holds 128 blocks of 2 MB)": (10_240, 256),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-gb", type=float, default=1.5)
    parser.add_argument(
        "--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "embedding_reader_bench" / "data"
    )
    args = parser.parse_args()
    size = args.size_gb * 1e9
    specs = {
        "npy f32": bench_datasets.spec_for_bytes("npy", size, DIM),
        "npy f16 -> f32": bench_datasets.spec_for_bytes("npy", size, DIM, "float16"),
        "parquet (a row group per file)": bench_datasets.spec_for_bytes("parquet_fsl", size, DIM),
    }
    specs["parquet (one 800 MB file, 16,384-row groups)"] = bench_datasets.DatasetSpec(
        "parquet_single", rows=260416, dim=DIM, row_group_rows=16384
    )  # the main bench's parquet_single dataset
    found = {name: bench_datasets.ensure(spec, args.work_dir) for name, spec in specs.items()}
    results = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for name, dataset in found.items():
        fmt = "npy" if name.startswith("npy") else "parquet"
        results.append(compare(name, str(dataset.embeddings_dir), fmt, args.rounds))
        print(results[-1], flush=True)
    npy = found["npy f32"]
    with remote.http(npy.root, [f"embeddings/{name}" for name in npy.embedding_files]) as server:
        results.append(compare("http npy f32 (loopback)", server.folder_url, "npy", args.rounds))
        print(results[-1], flush=True)
    mixes = {name: mixing(*shape) for name, shape in MIXING_CASES.items()}
    print(f"\n## Shuffled against sequential reads ({started}, load {os.getloadavg()[0]:.1f}, {args.rounds} rounds)\n")
    print(
        "| case | sequential GB/s | shuffled GB/s | shuffled / sequential | round by round | peak RSS MB seq / shuf |"
    )
    print("|---|---|---|---|---|---|")
    for row in results:
        rss, (lowest, highest) = row["rss"], row["rounds"]
        assert isinstance(rss, dict)
        print(
            f"| {row['case']} | {row['sequential']:.2f} | {row['shuffled']:.2f} | {row['ratio']:.0%} "
            f"| {lowest:.0%} to {highest:.0%} | {rss[False]:.0f} / {rss[True]:.0f} |"
        )
    print("\nMixing: distinct files in a 10,000-row batch of 100 labelled files (a sequential read: 1 to 5)\n")
    print("| collection | shuffled, mean (least) | perfect shuffle |")
    print("|---|---|---|")
    for name, (least, mean, perfect) in mixes.items():
        print(f"| {name} | {mean:.1f} ({least}) | {perfect:.1f} |")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
