"""Local read throughput of the ANN formats (u8bin, fvecs) against npy of the same data and a numpy.memmap script.

Generates once (cached under --dir, each file written to a temporary name then renamed) random BIGANN-like data:
uint8 rows of dimension 128 as u8bin and as npy, float32 rows of dimension 128 as fvecs and as npy. Then, in fresh
processes, several rounds in alternating order, after one untimed read of every file (page cache warm), it times:

- u8:  EmbeddingReader(u8bin, output_dtype=None), EmbeddingReader(npy uint8), numpy.memmap of the u8bin + copy;
- f32: EmbeddingReader(fvecs), EmbeddingReader(npy float32), numpy.memmap of the fvecs as (n, 129) + copy of 1:,
  and the one single copy of fvecs rows without a memory map (which a truncated file turns into SIGBUS): os-level
  preadv with two iovecs a row, the prefix to a small array and the values to the batch (ctypes, one thread).

GB/s are the stored embedding bytes (rows x 128 x itemsize, the same for every case of a group) over the wall time
of the child process's read (reader construction included, interpreter start and imports excluded). `--old PATH`
adds the reader cases run with PYTHONPATH=PATH (e.g. a `git worktree` of an older commit), alternating with the others.
CPU seconds per GB (all the child's threads, `time.process_time`) are shown too: they move less than wall time when
other work shares the machine.

    python benchmarks/ann_throughput.py                      # 1.5 GB per file, 5 rounds
    python benchmarks/ann_throughput.py --size-gb 0.25 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM = 128
REPO = Path(__file__).resolve().parent.parent
CHUNK_ROWS = 1 << 20

CHILD = r"""
import json, sys, time
import numpy as np
kind, path, rows_per_batch, file_format = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if kind == "reader":
    from embedding_reader import EmbeddingReader
sample = 0.0
start, cpu = time.perf_counter(), time.process_time()
if kind == "reader":
    output = None if file_format in ("u8bin", "npy_u8") else np.float32
    fmt = "npy" if file_format.startswith("npy") else file_format
    reader = EmbeddingReader(path, file_format=fmt)
    rows = 0
    for batch, _ in reader(rows_per_batch, show_progress=False, output_dtype=output):
        rows += len(batch)
        sample += float(batch[::997].sum(dtype=np.float64))
        del batch
elif kind == "rowiov":  # the one single-copy read of fvecs without mmap: each row's prefix and values as 2 iovecs
    import ctypes, os
    (name,) = [n for n in os.listdir(path) if not n.startswith(".")]
    file = os.path.join(path, name)
    dim = int(np.fromfile(file, dtype="<i4", count=1)[0])
    row_bytes, iov_rows = 4 + 4 * dim, 512  # IOV_MAX is 1024
    count = os.path.getsize(file) // row_bytes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.preadv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_long]
    libc.preadv.restype = ctypes.c_ssize_t
    descriptor = os.open(file, os.O_RDONLY)
    outs = [np.empty((rows_per_batch, dim), dtype=np.float32) for _ in range(2)]
    prefixes, iov = np.empty(iov_rows, dtype="<i4"), np.empty((iov_rows, 2, 2), dtype=np.uint64)
    iov[:, 0, 1], iov[:, 1, 1] = 4, 4 * dim
    rows = 0
    for k, first in enumerate(range(0, count, rows_per_batch)):
        n = min(rows_per_batch, count - first)
        batch = outs[k % 2][:n]
        for at in range(0, n, iov_rows):
            m = min(iov_rows, n - at)
            j = np.arange(m, dtype=np.uint64)
            iov[:m, 0, 0] = prefixes.ctypes.data + 4 * j
            iov[:m, 1, 0] = batch.ctypes.data + (at + j) * (4 * dim)
            got = libc.preadv(descriptor, iov.ctypes.data, 2 * m, (first + at) * row_bytes)
            assert got == m * row_bytes and (prefixes[:m] == dim).all()
        rows += n
        sample += float(batch[::997].sum(dtype=np.float64))
else:
    import os
    (name,) = [n for n in os.listdir(path) if not n.startswith(".")]
    file = os.path.join(path, name)
    if file_format == "u8bin":
        count, dim = (int(x) for x in np.fromfile(file, dtype="<u4", count=2))
        mm = np.memmap(file, dtype=np.uint8, mode="r", offset=8, shape=(count, dim))
        outs = [np.empty((rows_per_batch, dim), dtype=np.uint8) for _ in range(2)]
    else:
        dim = int(np.fromfile(file, dtype="<i4", count=1)[0])
        mm = np.memmap(file, dtype=np.float32, mode="r")
        mm = mm.reshape(-1, dim + 1)[:, 1:]
        count = len(mm)
        outs = [np.empty((rows_per_batch, dim), dtype=np.float32) for _ in range(2)]
    rows = 0
    for k, first in enumerate(range(0, count, rows_per_batch)):
        n = min(rows_per_batch, count - first)
        batch = outs[k % 2][:n]
        np.copyto(batch, mm[first : first + n])
        rows += n
        sample += float(batch[::997].sum(dtype=np.float64))
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"rows": rows, "seconds": elapsed, "cpu": cpu, "sample": sample}))
"""

# case -> (group, child kind, data folder, format name for the child)
CASES = {
    "u8bin reader": ("u8", "reader", "u8bin", "u8bin"),
    "npy u8 reader": ("u8", "reader", "npy_u8", "npy_u8"),
    "u8bin memmap": ("u8", "memmap", "u8bin", "u8bin"),
    "fvecs reader": ("f32", "reader", "fvecs", "fvecs"),
    "npy f32 reader": ("f32", "reader", "npy_f32", "npy_f32"),
    "fvecs memmap": ("f32", "memmap", "fvecs", "fvecs"),
    "fvecs preadv per row (1 thread)": ("f32", "rowiov", "fvecs", "fvecs"),
}
ITEMSIZE = {"u8": 1, "f32": 4}


def npy_header(rows: int, dtype: str) -> bytes:
    """np.save's header for a (rows, DIM) array."""
    from numpy.lib import format as npy_format

    header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (rows, DIM)}
    import io

    stream = io.BytesIO()
    npy_format.write_array_header_1_0(stream, header)
    return stream.getvalue()


def u8_chunk(k: int, rows: int) -> np.ndarray:
    return np.random.default_rng([17, k]).integers(0, 256, (rows, DIM), dtype=np.uint8)


def f32_chunk(k: int, rows: int) -> np.ndarray:
    return np.random.default_rng([29, k]).standard_normal((rows, DIM), dtype=np.float32)


def write_atomically(path: Path, head: bytes, rows: int, make, layout) -> None:
    """Write head then the rows chunk by chunk (in `layout`) to a temporary file, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as file:
        file.write(head)
        for k, first in enumerate(range(0, rows, CHUNK_ROWS)):
            layout(make(k, min(CHUNK_ROWS, rows - first))).tofile(file)
    os.replace(temporary, path)


def with_prefixes(values: np.ndarray) -> np.ndarray:
    """TEXMEX rows: int32 dimension, then the float32 values."""
    rows = np.empty((len(values), DIM + 1), dtype="<f4")
    rows.view("<i4")[:, 0] = DIM
    rows[:, 1:] = values
    return rows


def generate(root: Path, size_gb: float) -> dict:
    """The four files (cached while the manifest matches); the rows of each group."""
    u8_rows = int(size_gb * 1e9) // DIM
    f32_rows = int(size_gb * 1e9) // (DIM * 4 + 4)
    manifest = {"size_gb": size_gb, "u8_rows": u8_rows, "f32_rows": f32_rows, "version": 1}
    manifest_path = root / "manifest.json"
    if manifest_path.exists() and json.loads(manifest_path.read_text()) == manifest:
        return manifest
    started = time.perf_counter()
    manifest_path.unlink(missing_ok=True)
    same = lambda rows: rows  # noqa: E731
    bin_head = np.array([u8_rows, DIM], dtype="<u4").tobytes()
    write_atomically(root / "u8bin" / "base.u8bin", bin_head, u8_rows, u8_chunk, same)
    write_atomically(root / "npy_u8" / "base.npy", npy_header(u8_rows, "|u1"), u8_rows, u8_chunk, same)
    write_atomically(root / "fvecs" / "base.fvecs", b"", f32_rows, f32_chunk, with_prefixes)
    write_atomically(root / "npy_f32" / "base.npy", npy_header(f32_rows, "<f4"), f32_rows, f32_chunk, same)
    manifest_path.write_text(json.dumps(manifest))
    print(f"generated {root} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return manifest


def run_child(root: Path, case: str, batch_bytes: int, pythonpath: str) -> dict:
    group, kind, folder, file_format = CASES[case]
    rows_per_batch = max(1, batch_bytes // (DIM * ITEMSIZE[group]))
    env = dict(os.environ, PYTHONPATH=pythonpath)
    args = [sys.executable, "-c", CHILD, kind, str(root / folder), str(rows_per_batch), file_format]
    # cwd outside this checkout, so that PYTHONPATH decides which code the child imports
    done = subprocess.run(args, check=False, env=env, capture_output=True, text=True, cwd=root)
    if done.returncode:
        raise SystemExit(f"{case} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="/tmp/ann_bench", help="where the data is generated and cached")
    parser.add_argument("--size-gb", type=float, default=1.5, help="bytes per file (default 1.5)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--batch-mb", type=int, default=128, help="batch size in MB of stored bytes (default 128)")
    parser.add_argument("--groups", default="u8,f32", help="u8, f32 or both")
    parser.add_argument("--code", default=str(REPO), help="PYTHONPATH of the reader cases (default: this checkout)")
    parser.add_argument("--old", default=None, help="also run the reader cases with PYTHONPATH=this")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    root = Path(args.dir)
    manifest = generate(root, args.size_gb)
    groups = args.groups.split(",")
    variants = [("", args.code)] + ([(" (old)", args.old)] if args.old else [])
    runs = [
        (case + label, case, path)
        for case, (group, kind, _, _) in CASES.items()
        if group in groups
        for label, path in variants
        if kind == "reader" or not label
    ]
    load_before = os.getloadavg()
    for _, case, path in runs:  # untimed: page cache warm, every answer the same
        run_child(root, case, args.batch_mb * 2**20, path)
    times: dict = {name: [] for name, _, _ in runs}
    cpus: dict = {name: [] for name, _, _ in runs}
    samples: dict = {}
    for round_ in range(args.rounds):
        order = runs if round_ % 2 == 0 else runs[::-1]
        for name, case, path in order:
            answer = run_child(root, case, args.batch_mb * 2**20, path)
            group = CASES[case][0]
            assert answer["rows"] == manifest[f"{group}_rows"], (name, answer)
            samples.setdefault(group, answer["sample"])
            assert abs(answer["sample"] - samples[group]) <= 1e-6 * abs(samples[group]) + 1e-3, (name, answer)
            times[name].append(answer["seconds"])
            cpus[name].append(answer["cpu"])
    load_after = os.getloadavg()
    print(
        f"\n{args.size_gb} GB per file, {args.rounds} rounds, batches of {args.batch_mb} MB, medians; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after\n"
    )
    print("| case | GB/s (median) | all rounds | vs npy reader | vs memmap | CPU s/GB (median) | CPU vs npy |")
    print("|---|---|---|---|---|---|---|")
    for name, case, _ in runs:
        group = CASES[case][0]
        nbytes = manifest[f"{group}_rows"] * DIM * ITEMSIZE[group]
        speeds = [nbytes / seconds / 1e9 for seconds in times[name]]
        median = statistics.median(speeds)
        reference = {"u8": ("npy u8 reader", "u8bin memmap"), "f32": ("npy f32 reader", "fvecs memmap")}[group]
        ratios = [median / statistics.median(nbytes / s / 1e9 for s in times[ref]) for ref in reference]
        cells = " ".join(f"{s:.2f}" for s in speeds)
        cpu = statistics.median(cpus[name]) / (nbytes / 1e9)
        cpu_ratio = cpu / (statistics.median(cpus[reference[0]]) / (nbytes / 1e9))
        print(f"| {name} | {median:.2f} | {cells} | {ratios[0]:.2f} | {ratios[1]:.2f} | {cpu:.3f} | {cpu_ratio:.2f} |")


if __name__ == "__main__":
    main()
