"""Run ONE measured read in this (fresh) process and print its result as JSON.

Usage: python run_one.py SPEC.json. Runs under the implementation's own python (the reference's
virtualenv, or the project's environment), so it imports only numpy, pandas, fsspec, the
implementation's `embedding_reader`, and synth.py / ceilings.py beside it. Prints one line
`RESULT_JSON: {...}` with timings, rows, check results and the process's peak RSS.

A contender (`impl` "contender_..."; what a user would write instead of the library: an np.load loop,
mmap + copy, pyarrow's iter_batches) runs with the project's python and goes through the same checks.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

_NUMPY_IMPORT_STARTED = time.perf_counter()
import numpy as np  # noqa: E402 - timed: importing numpy is part of a whole job (job_s)

NUMPY_IMPORT_S = time.perf_counter() - _NUMPY_IMPORT_STARTED
import synth  # noqa: E402

RESULT_PREFIX = "RESULT_JSON: "
SAMPLE_STRIDE = 101  # timed runs check every 101st row (plus each batch's first and last): about 1% of rows


class Checker:
    """Checks batches against the generator: row contents, the `i` column and metadata, by global position."""

    def __init__(self, spec: dict[str, Any]) -> None:
        """Start expecting global row spec['start']."""
        self.spec = spec
        self.full = spec["check"] == "full"
        self.next_row = spec["start"]
        self.batches = 0
        self.checked_rows = 0
        self.bad_rows = 0
        self.bad_ids = 0
        self.bad_meta = 0
        self.problems: list[str] = []
        self.full_checksum = 0
        synth.embedding_rows(np.arange(1), spec["dim"], spec["stored_dtype"])  # builds the value table before timing

    def check(self, emb: np.ndarray, meta: Any) -> None:
        """Check one batch; rows are expected in order, contiguous from the previous batch."""
        n = len(emb)
        first = self.next_row
        self.next_row += n
        self.batches += 1
        if emb.dtype != np.dtype(self.spec["expect_dtype"]) or emb.ndim != 2 or emb.shape[1] != self.spec["dim"]:
            self._problem(f"batch {self.batches}: got {emb.dtype} {emb.shape}, expected {self.spec['expect_dtype']}")
            self.bad_rows += n
            return
        positions = np.arange(n) if self.full else self._sample_positions(n)
        self.checked_rows += len(positions)
        self.bad_rows += synth.count_bad_rows(emb[positions], first + positions, self.spec["stored_dtype"])
        if self.full:
            self.full_checksum = (self.full_checksum + checksum(emb, first)) % 2**64
        if self.spec.get("has_meta", True):
            self._check_meta(meta, first, n, positions)

    def _sample_positions(self, n: int) -> np.ndarray:
        """Every SAMPLE_STRIDE-th row from a batch-dependent offset, plus the first and last rows."""
        offset = (self.batches * 37) % SAMPLE_STRIDE
        return np.unique(np.concatenate([[0, n - 1], np.arange(offset, n, SAMPLE_STRIDE)])) if n else np.arange(0)

    def _check_meta(self, meta: Any, first: int, n: int, positions: np.ndarray) -> None:
        """Check the `i` column (all of it: it is cheap) and the sampled metadata strings."""
        if meta is None or "i" not in meta or len(meta) != n:
            self._problem(f"batch {self.batches}: meta lacks an `i` column of {n} rows")
            self.bad_ids += n
            return
        ids = np.asarray(meta["i"])
        self.bad_ids += int(np.count_nonzero(ids != np.arange(first, first + n)))
        for column, make in (("caption", synth.caption), ("url", synth.url)):
            if column in self.spec.get("check_meta", []):
                values = meta[column].take(positions).tolist()  # only the sampled rows: the check must stay cheap
                self.bad_meta += sum(value != make(first + int(p)) for value, p in zip(values, positions))

    def _problem(self, text: str) -> None:
        """Remember a problem (the first few)."""
        if len(self.problems) < 5:
            self.problems.append(text)

    def result(self) -> dict[str, Any]:
        """Summary of the checks."""
        expected_rows = self.spec["expect_rows"]
        if self.next_row - self.spec["start"] != expected_rows:
            self._problem(f"got {self.next_row - self.spec['start']} rows, expected {expected_rows}")
        return {
            "rows": self.next_row - self.spec["start"],
            "batches": self.batches,
            "checked_rows": self.checked_rows,
            "bad_rows": self.bad_rows,
            "bad_ids": self.bad_ids,
            "bad_meta": self.bad_meta,
            "problems": self.problems,
            "checksum": f"{self.full_checksum:016x}" if self.full else None,
            "check_ok": not (self.bad_rows or self.bad_ids or self.bad_meta or self.problems),
        }


def checksum(emb: np.ndarray, first: int) -> int:
    """A position-weighted checksum of rows (global index first + k): sum of (index + 1) x (sum of the row's words).

    Batch boundaries do not change it; a missing, shifted, duplicated or altered row does. Computed only when
    every row is checked (the untimed verify run), so it costs timed runs nothing.
    """
    words = np.ascontiguousarray(emb).view(np.uint16 if emb.dtype.itemsize == 2 else np.uint32)
    weights = np.arange(first + 1, first + 1 + len(emb), dtype=np.uint64)
    total = 0
    for lo in range(0, len(emb), 4096):
        sums = words[lo : lo + 4096].sum(axis=1, dtype=np.uint64)
        total += int(np.sum(sums * weights[lo : lo + 4096], dtype=np.uint64))  # arrays wrap modulo 2**64
    return total % 2**64


def run_reader(spec: dict[str, Any]) -> dict[str, Any]:
    """Open the collection, iterate it once with checks; return timings and check results.

    job_s is the whole job as a fresh process pays it: numpy's import, the implementation's import, open and
    every batch (the checker's table is built before the clock starts; its per-batch checks are timed, as in read_s).
    """
    checker = Checker(spec)  # builds the expected values' table: before the clock starts
    job_started = time.perf_counter()
    import embedding_reader
    from embedding_reader import EmbeddingReader

    ctor = {
        "file_format": spec["file_format"],
        "embedding_column": spec.get("embedding_column", "embedding"),
        "meta_columns": spec.get("meta_columns"),
        "metadata_folder": spec.get("metadata_folder"),
        **spec.get("ctor_kwargs", {}),
    }
    started = time.perf_counter()
    reader = EmbeddingReader(spec["folder"], **ctor)
    open_s = time.perf_counter() - started
    out: dict[str, Any] = {"open_s": open_s, "count": int(reader.count), "module": embedding_reader.__file__}
    if spec.get("open_only"):
        out["check_ok"] = int(reader.count) == spec["expect_rows"]
        out["rows"] = int(reader.count)
        out["job_s"] = NUMPY_IMPORT_S + time.perf_counter() - job_started
        return out
    batches = reader(
        batch_size=spec["batch_size"],
        start=spec["start"],
        end=spec.get("end"),
        show_progress=spec.get("show_progress", False),
        max_ram_usage_in_bytes=spec["max_ram"],
        **spec.get("call_kwargs", {}),
    )
    first_batch_s = None
    for emb, meta in batches:
        if first_batch_s is None:
            first_batch_s = time.perf_counter() - started
        checker.check(emb, meta)
        del emb, meta
    total_s = time.perf_counter() - started
    job_s = NUMPY_IMPORT_S + time.perf_counter() - job_started
    out.update(first_batch_s=first_batch_s, read_s=total_s - open_s, total_s=total_s, job_s=job_s, **checker.result())
    return out


def _listing(folder: str, suffix: str) -> list[str]:
    """The folder's files with this suffix, sorted by name (as both readers order them)."""
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder)) if name.endswith(suffix)]


def _npload_batches(paths: list[str], batch_size: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    """np.load each file whole; yield batches of batch_size rows (slices of one file, or concatenated parts)."""
    parts: list[np.ndarray] = []
    have = 0
    for path in paths:
        array = np.load(path)
        parts.append(array)
        have += len(array)
        while have >= batch_size:
            batch, parts = _take(parts, batch_size, dtype)
            have -= batch_size
            yield batch
    if have:
        yield _take(parts, have, dtype)[0]


def _take(parts: list[np.ndarray], n: int, dtype: np.dtype) -> tuple[np.ndarray, list[np.ndarray]]:
    """The first n rows of parts as one array of dtype (a view when one part holds them), and what is left."""
    if len(parts[0]) >= n:
        head, rest = parts[0][:n], parts[0][n:]
        return head.astype(dtype, copy=False), ([rest] if len(rest) else []) + parts[1:]
    taken, k, got = [], 0, 0
    while got < n:
        need = n - got
        part = parts[k]
        taken.append(part[:need])
        got += min(need, len(part))
        k += 1
    left = parts[k - 1][len(taken[-1]) :]
    rest = ([left] if len(left) else []) + parts[k:]
    return np.concatenate(taken, dtype=dtype), rest


def _mmap_batches(arrays: list[np.ndarray], batch_size: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    """Copy each batch's slices of the memory-mapped files into a fresh array of dtype."""
    bounds = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).tolist()
    total, k = bounds[-1], 0
    for lo in range(0, total, batch_size):
        hi = min(total, lo + batch_size)
        out = np.empty((hi - lo, arrays[0].shape[1]), dtype=dtype)
        pos = lo
        while pos < hi:
            while bounds[k + 1] <= pos:
                k += 1
            end = min(hi, bounds[k + 1])
            np.copyto(out[pos - lo : end - lo], arrays[k][pos - bounds[k] : end - bounds[k]], casting="same_kind")
            pos = end
        yield out


def _pyarrow_batches(files: list[Any], batch_size: int, column: str, dtype: np.dtype) -> Iterator[np.ndarray]:
    """pq.ParquetFile.iter_batches per file, the list column flattened to a (rows, dim) numpy array."""
    import pyarrow.compute as pc

    for parquet_file in files:
        for record_batch in parquet_file.iter_batches(batch_size=batch_size, columns=[column]):
            lists = record_batch.column(0)
            values = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
            yield values.reshape(len(lists), -1).astype(dtype, copy=False)


def run_contender(spec: dict[str, Any]) -> dict[str, Any]:
    """What a user would write instead of the library, timed and checked like a reader (open = listing + headers)."""
    checker = Checker({**spec, "has_meta": False})  # contenders return no metadata (no `i` column)
    dtype = np.dtype(spec["expect_dtype"])
    kind, folder, batch_size = spec["impl"], spec["folder"], spec["batch_size"]
    job_started = time.perf_counter()
    batches: Iterator[np.ndarray]
    if kind == "contender_npload":
        started = time.perf_counter()
        paths = _listing(folder, ".npy")
        open_s = time.perf_counter() - started
        batches = _npload_batches(paths, batch_size, dtype)
    elif kind == "contender_mmap":
        started = time.perf_counter()
        arrays = [np.load(path, mmap_mode="r") for path in _listing(folder, ".npy")]
        open_s = time.perf_counter() - started
        batches = _mmap_batches(arrays, batch_size, dtype)
    elif kind == "contender_pyarrow":
        import pyarrow.parquet as pq

        started = time.perf_counter()
        files = [pq.ParquetFile(path) for path in _listing(folder, ".parquet")]
        open_s = time.perf_counter() - started
        batches = _pyarrow_batches(files, batch_size, spec.get("embedding_column", "embedding"), dtype)
    else:
        raise ValueError(f"unknown contender {kind}")
    first_batch_s = None
    for emb in batches:
        if first_batch_s is None:
            first_batch_s = time.perf_counter() - started
        checker.check(emb, None)
        del emb
    total_s = time.perf_counter() - started
    job_s = NUMPY_IMPORT_S + time.perf_counter() - job_started
    return {
        "open_s": open_s,
        "first_batch_s": first_batch_s,
        "read_s": total_s - open_s,
        "total_s": total_s,
        "job_s": job_s,
        **checker.result(),
    }


def run_ceiling(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one ceiling over the spec's files."""
    import ceilings

    kind = spec["impl"]
    if kind == "ceiling_readinto":
        seconds = ceilings.readinto(spec["paths"], spec["threads"], pretouch=spec.get("pretouch", True))
    elif kind == "ceiling_cast":
        seconds = ceilings.cast_float32(spec["paths"], spec["threads"])
    elif kind == "ceiling_pyarrow":
        seconds = ceilings.pyarrow_decode(spec["paths"], spec.get("embedding_column", "embedding"))
    elif kind == "ceiling_fetch":
        seconds = ceilings.fsspec_fetch(spec["paths"], spec.get("storage_options"))
    elif kind == "ceiling_fetch_heads":
        seconds = ceilings.http_fetch_heads(spec["paths"])
    elif kind == "ceiling_open_read":
        seconds = ceilings.open_read(spec["paths"])
    else:
        raise ValueError(f"unknown ceiling {kind}")
    return {"read_s": seconds, "check_ok": True}


def peak_rss_bytes() -> int:
    """This process's peak RSS: VmHWM of its own address space.

    Not ru_maxrss: Linux carries the parent's high-water mark into a forked child across exec, so a large
    parent (servers, generated data) would show up as every child's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv: list[str]) -> int:
    """Run the spec in argv[1]; always print a RESULT_JSON line (with `error` on failure)."""
    with open(argv[1]) as f:
        spec = json.load(f)
    try:
        if spec["impl"].startswith("ceiling"):
            result = run_ceiling(spec)
        elif spec["impl"].startswith("contender"):
            result = run_contender(spec)
        else:
            result = run_reader(spec)
        result["error"] = None
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"[:500], "check_ok": False}
    result["peak_rss_bytes"] = peak_rss_bytes()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
