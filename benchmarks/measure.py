"""Running measured children (one fresh process per run) and folding their results into medians."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs import BENCH_DIR, Implementation, child_env
from remote import Remote

RUN_ONE = BENCH_DIR / "run_one.py"
RESULT_PREFIX = "RESULT_JSON: "


@dataclass
class Summary:
    """Medians (and worst cases) over the timed runs of one implementation in one case."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    verify: dict[str, Any] | None = None

    def median(self, key: str) -> float | None:
        """Median of a numeric field over the successful runs (None if no run has it)."""
        values = [r[key] for r in self.runs if r.get(key) is not None and not r.get("error")]
        return statistics.median(values) if values else None

    def spread(self, key: str) -> float | None:
        """(max - min) / median of a field over the successful runs: how noisy the median is."""
        values = [r[key] for r in self.runs if r.get(key) is not None and not r.get("error")]
        if len(values) < 2 or not statistics.median(values):
            return None
        return (max(values) - min(values)) / statistics.median(values)

    def maximum(self, key: str) -> float | None:
        """Largest value of a numeric field over all runs."""
        values = [r[key] for r in self.runs if r.get(key) is not None]
        return max(values) if values else None

    @property
    def errors(self) -> list[str]:
        """Distinct errors of the verify and timed runs."""
        runs = self.runs + ([self.verify] if self.verify else [])
        return sorted({r["error"] for r in runs if r.get("error")})

    @property
    def check_ok(self) -> bool:
        """True when every run (verify included) returned the right rows."""
        runs = self.runs + ([self.verify] if self.verify else [])
        return bool(runs) and all(r.get("check_ok") for r in runs)

    def bad_counts(self) -> dict[str, int]:
        """Total bad rows / ids / metadata values over all runs."""
        runs = self.runs + ([self.verify] if self.verify else [])
        return {key: sum(r.get(key) or 0 for r in runs) for key in ("bad_rows", "bad_ids", "bad_meta")}


def run_child(
    python: str,
    spec: dict[str, Any],
    env: dict[str, str],
    work_dir: Path,
    tag: str,
    remote: Remote | None = None,
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """Run run_one.py with `python` in a fresh process on `spec`; return its result plus server counters."""
    spec_path = work_dir / "specs" / f"{tag}.json"
    log_path = work_dir / "logs" / f"{tag}.log"
    spec_path.parent.mkdir(exist_ok=True)
    log_path.parent.mkdir(exist_ok=True)
    spec_path.write_text(json.dumps(spec))
    if remote is not None:
        remote.server.reset_stats()
    with open(log_path, "w") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [python, str(RUN_ONE), str(spec_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            env=child_env(env),
            cwd=str(work_dir),
            text=True,
        )
        stdout = _read_all(proc, timeout_s)
    result = _parse(stdout, proc.returncode, log_path)
    result["wall_s"] = time.perf_counter() - started
    if remote is not None:
        result.update(requests=remote.server.stats.requests, wire_bytes=remote.server.stats.bytes_sent)
        result["connections"] = remote.server.peak_connections  # counted by the server: nothing polls the child
    return result


def _read_all(proc: subprocess.Popen, timeout_s: float) -> str:
    """The child's whole stdout once it ends, killing it after timeout_s."""
    try:
        return proc.communicate(timeout=timeout_s)[0] or ""
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0] or ""


def _parse(stdout: str, returncode: int, log_path: Path) -> dict[str, Any]:
    """The child's RESULT_JSON, or an error result naming its log."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
    reason = "timeout (killed)" if returncode == -9 else f"exit code {returncode}"
    return {"error": f"{reason}: {' '.join(tail)[:300]} (log {log_path})", "check_ok": False}


def run_impl(impl: Implementation, spec: dict[str, Any], work_dir: Path, tag: str, remote: Remote | None) -> dict:
    """Run one implementation's read (its python, its environment)."""
    return run_child(impl.python, {**spec, "impl": impl.name}, impl.env, work_dir, tag, remote)


def run_ceiling(spec: dict[str, Any], work_dir: Path, tag: str) -> dict[str, Any]:
    """Run one ceiling measurement with this python (system numpy/pyarrow/fsspec)."""
    return run_child(sys.executable, spec, {}, work_dir, tag)


def cpu_count() -> int:
    """Cores available to this process."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
