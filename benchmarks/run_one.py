"""Run ONE measured read in this (fresh) process and print its result as JSON.

Usage: python run_one.py SPEC.json. Runs under the implementation's own python (the reference's
virtualenv, or the project's environment), so it imports only numpy, pandas, fsspec, the
implementation's `embedding_reader`, and synth.py / ceilings.py beside it. Prints one line
`RESULT_JSON: {...}` with timings, rows, check results and the process's peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import traceback
from typing import Any

import numpy as np
import synth

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
            "check_ok": not (self.bad_rows or self.bad_ids or self.bad_meta or self.problems),
        }


def run_reader(spec: dict[str, Any]) -> dict[str, Any]:
    """Open the collection, iterate it once with checks; return timings and check results."""
    import embedding_reader
    from embedding_reader import EmbeddingReader

    ctor = {
        "file_format": spec["file_format"],
        "embedding_column": spec.get("embedding_column", "embedding"),
        "meta_columns": spec.get("meta_columns"),
        "metadata_folder": spec.get("metadata_folder"),
        **spec.get("ctor_kwargs", {}),
    }
    checker = Checker(spec)  # builds the expected values' table: before the clock starts
    started = time.perf_counter()
    reader = EmbeddingReader(spec["folder"], **ctor)
    open_s = time.perf_counter() - started
    out: dict[str, Any] = {"open_s": open_s, "count": int(reader.count), "module": embedding_reader.__file__}
    if spec.get("open_only"):
        out["check_ok"] = int(reader.count) == spec["expect_rows"]
        out["rows"] = int(reader.count)
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
    out.update(first_batch_s=first_batch_s, read_s=total_s - open_s, total_s=total_s, **checker.result())
    return out


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
        result = run_ceiling(spec) if spec["impl"].startswith("ceiling") else run_reader(spec)
        result["error"] = None
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"[:500], "check_ok": False}
    result["peak_rss_bytes"] = peak_rss_bytes()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
