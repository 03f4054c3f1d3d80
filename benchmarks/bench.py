"""Benchmark this project's EmbeddingReader against the reference release (embedding-reader==1.8.1).

Generates deterministic datasets, measures the machine's ceilings on the same files, runs both
implementations back to back (alternating, each run in a fresh process), checks every row they
return, and writes a markdown table. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases as cases_mod
import ceilings
import datasets
import envs
import measure
import remote as remote_mod
import report
from cases import Case, Settings

DEFAULT_WORK_DIR = Path("/tmp/embedding_reader_bench")
QUICK = Settings(
    size_gb=0.03,
    remote_size_gb=0.012,
    batch_size=2000,
    remote_batch_size=1000,
    small_files=300,
    many_files=300,
    open_files=1000,
    rss_case_mb=100,
    rss_case_batch=10_000,
)


@dataclass
class CaseResult:
    """Everything measured in one case."""

    case: Case
    spec: datasets.DatasetSpec
    settings: Settings
    ceilings: dict[str, measure.Summary] = field(default_factory=dict)
    ceiling_bytes: dict[str, int] = field(default_factory=dict)
    impls: dict[str, measure.Summary] = field(default_factory=dict)
    contenders: dict[str, measure.Summary] = field(default_factory=dict)
    contender_check: dict[str, str] = field(default_factory=dict)  # name -> "ok" or why its rows differ
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    load: list[float] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-gb", type=float, default=Settings.size_gb, help="stored bytes per local case (GB)")
    p.add_argument("--remote-size-gb", type=float, default=Settings.remote_size_gb, help="per remote case (GB)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per implementation (medians are reported)")
    p.add_argument("--cases", help=f"comma-separated subset of: {', '.join(cases_mod.CASE_NAMES)}")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results.md", help="results file")
    p.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="where datasets and logs go")
    p.add_argument("--batch-size", type=int, default=Settings.batch_size, help="rows per batch, local cases")
    p.add_argument("--max-ram-mb", type=int, default=Settings.max_ram_mb, help="max_ram_usage_in_bytes, in MB")
    p.add_argument("--small-files", type=int, default=Settings.small_files, help="files in the open_10k case")
    p.add_argument("--many-files", type=int, default=Settings.many_files, help="files in the small_files_10k case")
    p.add_argument("--open-files", type=int, default=Settings.open_files, help="files in the open_100k_local case")
    p.add_argument("--quick", action="store_true", help="tiny smoke run of every case, 1 run each (< 2 min)")
    p.add_argument("--skip-reference", action="store_true", help="run only this project (no ratios)")
    p.add_argument("--skip-project", action="store_true", help="run only the reference (harness development)")
    p.add_argument(
        "--project-root",
        type=Path,
        default=envs.REPO_ROOT,
        help="folder holding the embedding_reader to measure (default: this checkout; a `git archive` copy of a "
        "commit is immune to edits in progress)",
    )
    p.add_argument("--ref-venv", type=Path, default=envs.DEFAULT_VENV, help="the reference's virtualenv")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings for this run (--quick overrides sizes)."""
    if args.quick:
        return QUICK
    return replace(
        Settings(),
        size_gb=args.size_gb,
        remote_size_gb=args.remote_size_gb,
        batch_size=args.batch_size,
        max_ram_mb=args.max_ram_mb,
        small_files=args.small_files,
        many_files=args.many_files,
        open_files=args.open_files,
    )


def log(text: str) -> None:
    """Progress line on stderr (stdout gets the table)."""
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def serve(case: Case, dataset: datasets.Dataset) -> Iterator[remote_mod.Remote | None]:
    """The loopback server a remote case reads from (None for local cases)."""
    if case.remote is None:
        yield None
    elif case.remote == "http":
        with remote_mod.http(dataset.root, dataset.embedding_files) as r:
            yield r
    elif case.remote == "http_slow":
        rate = cases_mod.THROTTLE_BYTES_PER_S
        with remote_mod.http(dataset.root, dataset.embedding_files, cases_mod.THROTTLE_LATENCY_S, rate) as r:
            yield r
    elif case.remote == "http_slow_open":  # many small requests: one server loop (two trade the GIL back and forth)
        with remote_mod.http(dataset.root, dataset.embedding_files, cases_mod.THROTTLE_LATENCY_S, loops=1) as r:
            yield r
    elif case.remote == "s3":
        with remote_mod.s3(dataset.root, dataset.embedding_files, dataset.spec.name) as r:
            yield r
    else:
        raise ValueError(case.remote)


def reader_spec(case: Case, dataset: datasets.Dataset, settings: Settings, remote: remote_mod.Remote | None) -> dict:
    """The runner spec shared by both implementations (each adds its own extras)."""
    spec = dataset.spec
    folder = remote.folder_url if remote else str(dataset.embeddings_dir)
    return {
        "folder": folder,
        "file_format": case.file_format,
        "meta_columns": list(case.meta_columns) or None,
        "metadata_folder": str(dataset.metadata_dir) if case.file_format == "parquet_npy" else None,
        "batch_size": case.batch_size(settings),
        "start": 0,
        "end": None,
        "max_ram": case.max_ram(settings),
        "dim": spec.dim,
        "stored_dtype": spec.dtype,
        "expect_rows": spec.rows,
        "check_meta": list(case.meta_columns),
        "open_only": case.open_only,
        "show_progress": case.show_progress,
    }


def impl_spec(base: dict, case: Case, impl: envs.Implementation, remote: remote_mod.Remote | None) -> dict:
    """Add what differs per implementation: expected dtype and project-only arguments."""
    if impl.name == "reference":
        return {**base, "expect_dtype": "float32"}
    ctor = dict(remote.project_ctor_kwargs) if remote else {}
    return {**base, "expect_dtype": case.project_dtype, "call_kwargs": case.project_call_kwargs, "ctor_kwargs": ctor}


def impl_for_case(impl: envs.Implementation, remote: remote_mod.Remote | None) -> envs.Implementation:
    """The reference gets remote settings through environment variables (it has no storage_options)."""
    if impl.name == "reference" and remote is not None and remote.reference_env:
        return replace(impl, env={**impl.env, **remote.reference_env})
    return impl


def ceiling_specs(case: Case, dataset: datasets.Dataset, remote: remote_mod.Remote | None) -> dict[str, tuple]:
    """name -> (runner spec, bytes it moves) for each ceiling of the case."""
    paths = [str(dataset.root / rel) for rel in dataset.embedding_files]
    reads = remote is None and any(name.startswith(("readinto", "cast")) for name in case.ceilings)
    raw = sum(length for _, _, length in ceilings.byte_ranges(paths)) if reads else 0
    threads = measure.cpu_count()
    out: dict[str, tuple] = {}
    for name in case.ceilings:
        if name == "readinto_1t":
            out[name] = ({"impl": "ceiling_readinto", "paths": paths, "threads": 1}, raw)
        elif name == "readinto_all":
            out[name] = ({"impl": "ceiling_readinto", "paths": paths, "threads": threads}, raw)
        elif name == "readinto_1t_fresh":
            out[name] = ({"impl": "ceiling_readinto", "paths": paths, "threads": 1, "pretouch": False}, raw)
        elif name == "readinto_all_fresh":
            out[name] = ({"impl": "ceiling_readinto", "paths": paths, "threads": threads, "pretouch": False}, raw)
        elif name == "cast_all":
            out[name] = ({"impl": "ceiling_cast", "paths": paths, "threads": threads}, raw)
        elif name == "open_read":
            out[name] = ({"impl": "ceiling_open_read", "paths": paths}, 0)
        elif name == "pyarrow_all":
            out[name] = ({"impl": "ceiling_pyarrow", "paths": paths}, dataset.spec.data_bytes)
        elif name == "fetch_heads" and remote is not None:
            out[name] = ({"impl": "ceiling_fetch_heads", "paths": remote.file_urls}, 128 * len(remote.file_urls))
        elif name == "fetch" and remote is not None:
            spec = {"impl": "ceiling_fetch", "paths": remote.file_urls, "storage_options": remote.storage_options}
            out[name] = (spec, sum((dataset.root / rel).stat().st_size for rel in dataset.embedding_files))
    return out


def contender_specs(case: Case, base: dict, remote: remote_mod.Remote | None) -> dict[str, dict]:
    """name -> runner spec for each contender of the case (what users would pick instead; local cases only)."""
    if remote is not None:
        return {}
    return {name: {**base, "impl": f"contender_{name}", "expect_dtype": case.project_dtype} for name in case.contenders}


def run_case(
    case: Case, settings: Settings, impls: list[envs.Implementation], runs: int, work_dir: Path, quick: bool = False
) -> CaseResult:
    """Generate (or reuse) the dataset, then measure ceilings and implementations, alternating, `runs` times.

    Before the timed runs, one untimed run per implementation checks every row (timed runs check about 1%);
    a quick run skips it and checks every row in its single timed run instead.
    """
    started = time.perf_counter()
    dataset = datasets.ensure(case.dataset(settings), work_dir / "data", log=log)
    datasets.warm_page_cache(dataset)
    result = CaseResult(case, dataset.spec, settings)
    active = [i for i in impls if case.run_reference or i.name != "reference"]
    for impl in impls:
        if impl not in active:
            result.skipped[impl.name] = "not applicable"
    with serve(case, dataset) as remote:
        base = reader_spec(case, dataset, settings, remote)
        specs = {i.name: (impl_for_case(i, remote), impl_spec(base, case, i, remote)) for i in active}
        result.impls = {name: measure.Summary() for name in specs}
        contenders = contender_specs(case, base, remote)
        result.contenders = {name: measure.Summary() for name in contenders}
        # contenders run with this python (like the ceilings), checked like the implementations
        specs.update({name: (_contender_impl(name), spec) for name, spec in contenders.items()})
        if not case.open_only and not quick:
            _verify(case, specs, result, work_dir, remote)
        ceiling_runs = ceiling_specs(case, dataset, remote)
        result.ceiling_bytes = {name: nbytes for name, (_, nbytes) in ceiling_runs.items()}
        result.ceilings = {name: measure.Summary() for name in ceiling_runs}
        check = "full" if quick else "sample"
        for k in range(runs):
            result.load.append(os.getloadavg()[0])
            _measure_round(case, k, specs, ceiling_runs, result, work_dir, remote, check)
    result.load.append(os.getloadavg()[0])
    result.contender_check = {name: check_contender(result, name) for name in result.contenders}
    for name, verdict in result.contender_check.items():
        if verdict != "ok":
            log(f"  {case.name}: contender {name} REJECTED: {verdict}")
    result.seconds = time.perf_counter() - started
    return result


def _contender_impl(name: str) -> envs.Implementation:
    """A contender runs with this python and no PYTHONPATH (it imports numpy / pyarrow, never the project)."""
    return envs.Implementation(f"contender_{name}", sys.executable)


def _summary(result: CaseResult, name: str) -> measure.Summary:
    """The Summary of an implementation or a contender."""
    return result.impls[name] if name in result.impls else result.contenders[name]


def check_contender(result: CaseResult, name: str) -> str:
    """'ok' when the contender returned the project's rows: same row count in every run, same full checksum.

    The checksum (run_one.checksum, position-weighted) comes from the runs that checked every row: the verify
    run (a quick run's single run). A contender that reads fewer rows, or other rows, is rejected: its figures
    are not compared.
    """
    own, project = result.contenders[name], result.impls.get("project")
    if own.errors or not own.check_ok:
        return "its rows failed the check"
    if project is None or not project.check_ok:
        return "no checked project run to compare with"
    runs = own.runs + ([own.verify] if own.verify else [])
    project_runs = project.runs + ([project.verify] if project.verify else [])
    rows = {r.get("rows") for r in runs}
    project_rows = {r.get("rows") for r in project_runs}
    if rows != project_rows or len(rows) != 1:
        return f"rows {sorted(map(str, rows))} against the project's {sorted(map(str, project_rows))}"
    sums = {r.get("checksum") for r in runs if r.get("checksum")}
    project_sums = {r.get("checksum") for r in project_runs if r.get("checksum")}
    if not sums or not project_sums:
        return "no checksum (no run checked every row)"
    if sums != project_sums or len(sums) != 1:
        return f"checksum {sorted(sums)} against the project's {sorted(project_sums)}"
    return "ok"


def _verify(case: Case, specs: dict, result: CaseResult, work_dir: Path, remote: Any) -> None:
    """One untimed run per implementation checking every row (also warms the page cache)."""
    for name, (impl, spec) in specs.items():
        log(f"  {case.name}: verify {name} (all rows checked)")
        run = measure.run_impl(impl, {**spec, "check": "full"}, work_dir, f"{case.name}-{name}-verify", remote)
        _summary(result, name).verify = run
        if run.get("error"):
            log(f"    ERROR {run['error']}")


def _measure_round(
    case: Case, k: int, specs: dict, ceiling_runs: dict, result: CaseResult, work_dir: Path, remote: Any, check: str
) -> None:
    """Round k: every ceiling, then each implementation once (order alternates between rounds)."""
    for name, (spec, _) in ceiling_runs.items():
        result.ceilings[name].runs.append(measure.run_ceiling(spec, work_dir, f"{case.name}-ceiling-{name}-{k}"))
    order = list(specs) if k % 2 == 0 else list(reversed(specs))
    for name in order:
        impl, spec = specs[name]
        run = measure.run_impl(impl, {**spec, "check": check}, work_dir, f"{case.name}-{name}-{k}", remote)
        _summary(result, name).runs.append(run)
        log(f"  {case.name}: run {k + 1} {name}: {_fmt_s(run.get(case.timed))} {run.get('error') or ''}")


def _fmt_s(seconds: float | None) -> str:
    """Seconds for progress lines."""
    return "-" if seconds is None else f"{seconds:.2f}s"


def implementations(args: argparse.Namespace) -> list[envs.Implementation]:
    """The implementations to run, probed (an implementation that fails to import is reported, not run)."""
    impls = []
    if not args.skip_reference:
        impls.append(envs.reference(args.ref_venv, log=log))
    if not args.skip_project:
        impls.append(envs.project(args.project_root))
    for impl in impls:
        if not impl.usable:
            log(f"WARNING: {impl.name} does not import: {impl.versions.get('import_error')}")
    return impls


def save_raw(results: list[CaseResult], path: Path) -> None:
    """Every run's raw result (for inspection), as JSON."""
    raw = [
        {
            "case": r.case.name,
            "spec": dataclasses.asdict(r.spec),
            "ceilings": {name: s.runs for name, s in r.ceilings.items()},
            "impls": {name: {"verify": s.verify, "runs": s.runs} for name, s in r.impls.items()},
            "contenders": {name: {"verify": s.verify, "runs": s.runs} for name, s in r.contenders.items()},
            "contender_check": r.contender_check,
            "load": r.load,
        }
        for r in results
    ]
    path.write_text(json.dumps(raw, indent=1))


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases and write/print the table."""
    args = parse_args(argv)
    settings = settings_from(args)
    runs = 1 if args.quick else args.runs
    selected = cases_mod.select(args.cases)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    impls = implementations(args)
    usable = [i for i in impls if i.usable]
    started = time.perf_counter()
    results = []
    for case in selected:
        log(f"case {case.name}: {case.title}")
        results.append(run_case(case, settings, usable, runs, args.work_dir, args.quick))
    context = report.Context(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=envs.machine(),
        impls=impls,
        settings=settings,
        runs=runs,
        quick=args.quick,
        command=" ".join(["python", "benchmarks/bench.py", *(argv if argv is not None else sys.argv[1:])]),
        seconds=time.perf_counter() - started,
    )
    save_raw(results, args.work_dir / "last_results.json")
    text = report.render(results, context)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
