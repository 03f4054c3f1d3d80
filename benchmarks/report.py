"""Turn measured cases into the markdown results table, with a verdict per target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from cases import MB, THROTTLE_BYTES_PER_S, Settings
from envs import PACKAGES, Implementation

RSS_SLACK = 300 * MB
CEILING_TITLES = {
    "readinto_1t": "readinto 1 thread",
    "readinto_all": "readinto all cores",
    "readinto_1t_fresh": "readinto 1 thread, fresh pages",
    "readinto_all_fresh": "readinto all cores, fresh pages",
    "pyarrow_all": "pyarrow decode all cores",
    "cast_all": "numpy f16->f32 cast all cores (no read)",
    "fetch": "fsspec fetch whole files",
    "fetch_heads": "aiohttp GET 128-byte heads, s",
    "open_read": "open()+read(128) loop 1 thread, s",
}
SECONDS_CEILINGS = {"fetch_heads", "open_read"}  # reported in seconds (open-only cases), not GB/s
CONTENDER_TITLES = {"npload": "np.load loop", "mmap": "mmap + copy", "pyarrow": "pyarrow iter_batches"}


@dataclass
class Context:
    """Run-wide facts printed above the tables."""

    date: str
    machine: dict[str, str]
    impls: list[Implementation]
    settings: Settings
    runs: int
    quick: bool
    command: str
    seconds: float


def _gbps(nbytes: float, seconds: float | None) -> float | None:
    """GB/s, or None without a time."""
    return nbytes / seconds / 1e9 if seconds else None


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    """Format a number, '-' for None."""
    return "-" if value is None else fmt.format(value)


def ceiling_values(result: Any) -> dict[str, float | None]:
    """GB/s of each ceiling of a case (median seconds); for `fetch_heads` and `open_read`, its median seconds."""
    values = {}
    for name, summary in result.ceilings.items():
        seconds = summary.median("read_s")
        values[name] = seconds if name in SECONDS_CEILINGS else _gbps(result.ceiling_bytes[name], seconds)
    return values


def fraction_of_ceiling(result: Any, m: dict[str, Any], ceiling: float | None) -> float | None:
    """GB/s over the ceiling's GB/s; for an open-only case, the ceiling's seconds over the open time."""
    if not ceiling:
        return None
    if result.case.open_only:
        return ceiling / m["open_s"] if m["open_s"] else None
    return m["gbps"] / ceiling if m["gbps"] else None


def impl_metrics(result: Any, name: str) -> dict[str, Any]:
    """The reported numbers of one implementation (or contender) in one case."""
    summary = result.impls[name] if name in result.impls else result.contenders[name]
    data = result.spec.data_bytes
    read_s = summary.median("read_s")
    wire = summary.median("wire_bytes")
    return {
        "gbps": _gbps(data, read_s),
        "rows_s": result.spec.rows / read_s if read_s else None,
        "open_s": summary.median("open_s"),
        "first_batch_s": summary.median("first_batch_s"),
        "job_s": summary.median("job_s"),
        "rss": summary.maximum("peak_rss_bytes"),
        "requests": summary.median("requests"),
        "wire": wire / data if wire is not None else None,
        "connections": summary.maximum("connections"),
        "spread": summary.spread(result.case.timed),
    }


def main_ceiling(result: Any, metrics: dict[str, Any]) -> tuple[str, float | None]:
    """(label, GB/s) of the ceiling a row is compared with."""
    name = result.case.main_ceiling
    if name is None:
        return "-", None
    if name == "connections":
        conns = metrics["connections"] or 0
        return f"{conns:.0f} conn x {THROTTLE_BYTES_PER_S / MB:.0f} MB/s =", conns * THROTTLE_BYTES_PER_S / 1e9 or None
    return CEILING_TITLES[name], ceiling_values(result).get(name)


def ratio_to_reference(result: Any, metrics: dict[str, dict[str, Any]], name: str) -> float | None:
    """Throughput over the reference's (for open-only cases: the reference's open time over ours)."""
    ref, own = metrics.get("reference"), metrics.get(name)
    if ref is None or own is None:
        return None
    return speedup(result, own, ref)


def speedup(result: Any, own: dict[str, Any], other: dict[str, Any]) -> float | None:
    """How many times faster `own` is than `other`: GB/s over GB/s, or the other's seconds over own (open, job)."""
    if result.case.timed != "read_s":
        key = result.case.timed
        return other[key] / own[key] if other[key] and own[key] else None
    return own["gbps"] / other["gbps"] if other["gbps"] and own["gbps"] else None


def contender_ratios(result: Any, own: dict[str, Any]) -> dict[str, float | None]:
    """Project / contender for each contender of the case (None when the contender's rows were rejected)."""
    out: dict[str, float | None] = {}
    for name in result.contenders:
        ok = result.contender_check.get(name) == "ok"
        out[name] = speedup(result, own, impl_metrics(result, name)) if ok else None
    return out


def _contenders_cell(result: Any, ratios: dict[str, float | None]) -> str:
    """'1.52x np.load loop; 1.10x mmap + copy' (✗ rows when a contender's rows differ from the project's)."""
    items = [
        f"{_contender_mark(result, name, _f(value, '{:.2f}x'))} {CONTENDER_TITLES[name]}"
        for name, value in ratios.items()
    ]
    return "; ".join(items) or "-"


def _contender_mark(result: Any, name: str, text: str) -> str:
    """text when the contender's rows matched the project's; '✗ rows' when they did not; 'n/a' without a project."""
    check = result.contender_check.get(name, "")
    if check == "ok":
        return text
    return "n/a" if check.startswith("no checked project") else "✗ rows"


def check_text(result: Any, name: str) -> str:
    """'ok', or why the rows are wrong or the run failed."""
    summary = result.impls[name]
    if summary.errors:
        return "ERROR: " + "; ".join(e.replace("|", "/") for e in summary.errors)[:200]
    if not summary.check_ok:
        bad = summary.bad_counts()
        return f"FAILED (wrong rows: {bad['bad_rows']} rows, {bad['bad_ids']} ids, {bad['bad_meta']} meta)"
    return "ok (count)" if result.case.open_only else "ok"


def verdict(
    result: Any, metrics: dict[str, Any], ratio: float | None, ceiling: float | None, vs: dict[str, float | None]
) -> str:
    """Each target of the case (plus the RSS and first-batch budgets) as ✓ or ✗ with the measured value."""
    if not result.impls["project"].check_ok:
        return "✗ FAILED"
    items = [_target_item(t, metrics, ratio, ceiling, vs) for t in result.case.targets]
    if not result.case.open_only:
        items += [_rss_item(result, metrics), _ttfb_item(result, metrics)]
    return "; ".join(items)


def _mark(ok: bool | None) -> str:
    """✓, ✗, or ? when it could not be measured."""
    return "?" if ok is None else ("✓" if ok else "✗")


def _target_item(
    target: Any, m: dict[str, Any], ratio: float | None, ceiling: float | None, vs: dict[str, float | None]
) -> str:
    """One case-specific target."""
    if target.kind in {"ref_ratio", "open_ratio", "contender_ratio"}:
        value = vs.get(target.against) if target.kind == "contender_ratio" else ratio
        ok = None if value is None else value >= target.threshold
        return f"{_mark(ok)} {target.label} ({_f(value, '{:.2f}x')})"
    if target.kind == "open_below":
        ok = None if m["open_s"] is None else m["open_s"] < target.threshold
        return f"{_mark(ok)} {target.label} ({_f(m['open_s'], '{:.2f} s')})"
    if target.kind == "ceiling":
        frac = m["gbps"] / ceiling if m["gbps"] and ceiling else None
        ok = None if frac is None else frac >= target.threshold
        return f"{_mark(ok)} {target.label} ({_f(frac, '{:.0%}')})"
    if target.kind == "wire":
        ok = None if m["wire"] is None else m["wire"] <= target.threshold
        return f"{_mark(ok)} {target.label} ({_f(m['wire'], '{:.3f}x')})"
    if target.kind == "rss_below":
        ok = None if m["rss"] is None else m["rss"] < target.threshold
        return f"{_mark(ok)} {target.label} ({_f(m['rss'] and m['rss'] / MB, '{:.0f} MB')})"
    raise ValueError(target.kind)


def _rss_item(result: Any, m: dict[str, Any]) -> str:
    """Peak RSS <= max_ram + 2 output batches + 300 MB."""
    s, case, spec = result.settings, result.case, result.spec
    batch_bytes = case.batch_size(s) * spec.dim * np.dtype(case.project_dtype).itemsize
    budget = case.max_ram(s) + 2 * batch_bytes + RSS_SLACK
    ok = None if m["rss"] is None else m["rss"] <= budget
    return f"{_mark(ok)} RSS<={budget / MB:.0f}MB"


def _ttfb_item(result: Any, m: dict[str, Any]) -> str:
    """First batch within open time + 2 x (one batch's stored bytes / steady throughput)."""
    s, case, spec = result.settings, result.case, result.spec
    batch_bytes = min(case.batch_size(s), spec.rows) * spec.dim * np.dtype(spec.dtype).itemsize
    if not m["gbps"] or m["first_batch_s"] is None:
        return "? 1st batch"
    budget = (m["open_s"] or 0) + 2 * batch_bytes / (m["gbps"] * 1e9)
    return f"{_mark(m['first_batch_s'] <= budget)} 1st batch<={budget:.2f}s"


def case_rows(result: Any) -> list[str]:
    """Markdown rows of one case (one per implementation)."""
    metrics = {name: impl_metrics(result, name) for name in result.impls}
    rows = []
    for name, m in metrics.items():
        ratio = ratio_to_reference(result, metrics, name) if name != "reference" else None
        vs = contender_ratios(result, m) if name == "project" else {}
        label, ceiling = main_ceiling(result, m)
        frac = fraction_of_ceiling(result, m, ceiling)
        frac_text = _f(frac, "{:.0%}")
        if result.case.main_ceiling == "connections" and frac is not None:
            frac_text += f" of {label.rstrip(' =')}"  # the throttle's ceiling differs per implementation
        cells = [
            result.case.name,
            name,
            "-" if result.case.open_only else _f(m["gbps"]),
            _f(m["spread"], "{:.0%}"),
            "-" if result.case.open_only else _f(m["rows_s"] and m["rows_s"] / 1e3, "{:.0f}k"),
            _f(ratio, "{:.2f}x"),
            _contenders_cell(result, vs) if name == "project" else "",
            f"{label} {_f(ceiling)}" if ceiling else label,
            frac_text,
            _f(m["open_s"], "{:.3f}"),
            _f(m["first_batch_s"]),
            _f(m["job_s"]),
            _f(m["rss"] and m["rss"] / MB, "{:.0f}"),
            _f(m["requests"], "{:.0f}"),
            _f(m["wire"], "{:.3f}"),
            _f(m["connections"], "{:.0f}"),
            check_text(result, name),
            verdict(result, m, ratio, ceiling, vs) if name == "project" else "",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    for name, why in result.skipped.items():
        rows.append(f"| {result.case.name} | {name} | " + " | ".join(["-"] * (MAIN_COLUMNS - 4)) + f" | {why} | |")
    return rows


MAIN_HEADER = (
    "| case | impl | GB/s | spread | rows/s | vs ref | vs users' pick | ceiling GB/s | of ceiling | open s "
    "| 1st batch s | job s | peak RSS MB | requests | wire/data | conns | rows check | verdict (project) |"
)
MAIN_COLUMNS = MAIN_HEADER.count("|") - 1


def contenders_table(results: list[Any]) -> list[str]:
    """One row per case with contenders: the project's figure, each contender's, and project / contender."""
    names = list(CONTENDER_TITLES)
    head = "| case | compared | project | "
    head += " | ".join(f"{CONTENDER_TITLES[n]} | project / {CONTENDER_TITLES[n]}" for n in names)
    lines = [head + " | rows + checksum |", "|---" * (3 + 2 * len(names) + 1) + "|"]
    for r in results:
        if not r.contenders:
            continue
        unit = "job s" if r.case.whole_job else "GB/s"
        key = "job_s" if r.case.whole_job else "gbps"
        own = impl_metrics(r, "project") if "project" in r.impls else None
        vs = contender_ratios(r, own) if own else {}
        cells = [r.case.name, unit, _f(own and own[key])]
        for n in names:
            if n not in r.contenders:
                cells += ["", ""]
                continue
            theirs = impl_metrics(r, n)[key]
            mark = "" if r.contender_check.get(n) == "ok" else " (" + _contender_mark(r, n, "") + ")"
            cells += [_f(theirs) + mark, _f(vs.get(n), "{:.2f}x")]
        checks = "; ".join(f"{CONTENDER_TITLES[n]}: {v}" for n, v in r.contender_check.items())
        lines.append("| " + " | ".join([*cells, checks]) + " |")
    return lines


def ceilings_table(results: list[Any]) -> list[str]:
    """One row per case: its data and every ceiling measured on its files."""
    names = list(CEILING_TITLES)
    lines = [
        "| case | data GB | rows | files | batch | "
        + " | ".join(CEILING_TITLES[n] for n in names)
        + " | conn x rate (project) | case s | max load avg |",
        "|---" * (len(names) + 8) + "|",
    ]
    for r in results:
        values = ceiling_values(r)
        cells = [_f(values.get(n)) for n in names]
        conns = r.impls["project"].maximum("connections") if "project" in r.impls else None
        rate = THROTTLE_BYTES_PER_S
        throttled = r.case.main_ceiling == "connections" and conns
        cells.append(f"{conns:.0f} x {rate / MB:.0f} MB/s = {conns * rate / 1e9:.2f}" if throttled else "-")
        batch = r.case.batch_size(r.settings)
        head = f"| {r.case.name} | {r.spec.data_bytes / 1e9:.3f} | {r.spec.rows} | {r.spec.files} | {batch} | "
        load = _f(max(r.load) if r.load else None, "{:.1f}")
        lines.append(head + " | ".join(cells) + f" | {r.seconds:.0f} | {load} |")
    return lines


def load_warning(results: list[Any], cores: int) -> list[str]:
    """A warning when other work loaded the machine during the run (the bench itself keeps about 1 core busy)."""
    loads = [load for r in results for load in r.load]
    if not loads or max(loads) <= cores:
        return []
    return [
        f"- WARNING: the 1-minute load average reached {max(loads):.1f} on {cores} cores during this run: other "
        "processes competed for the CPU, so absolute numbers and ratios are noisy; rerun on an idle machine."
    ]


def environment_lines(ctx: Context) -> list[str]:
    """Date, machine and versions of both environments."""
    m = ctx.machine
    lines = [
        f"- date: {ctx.date}; total time {ctx.seconds / 60:.1f} min; command: `{ctx.command}`",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, {m['os']}",
        f"- runs: {ctx.runs} timed per implementation (medians; peak RSS is the max), alternating, each in a fresh "
        + (
            "process; QUICK smoke run: tiny sizes, every row checked in the single run, numbers are not meaningful"
            if ctx.quick
            else "process, after one untimed run per implementation checking every row (timed runs check ~1%)"
        ),
    ]
    for impl in ctx.impls:
        v = impl.versions
        pkgs = ", ".join(f"{p} {v.get(p)}" for p in PACKAGES if v.get(p))
        lines.append(f"- {impl.name}: `{impl.python}`, Python {v.get('python')}: {pkgs}; module `{v.get('module')}`")
        if v.get("import_error"):
            lines.append(f"  - does not import: {v['import_error']}")
    return lines


def problems(results: list[Any]) -> list[str]:
    """Errors and wrong rows seen, per case and implementation."""
    lines = []
    for r in results:
        for name, why in r.contender_check.items():
            if why != "ok":
                lines.append(f"- {r.case.name} / {CONTENDER_TITLES[name]}: rejected, {why}")
        for name, summary in [*r.impls.items(), *r.contenders.items()]:
            for error in summary.errors:
                lines.append(f"- {r.case.name} / {name}: {error}")
            if not summary.errors and not summary.check_ok:
                lines.append(f"- {r.case.name} / {name}: wrong rows {summary.bad_counts()}")
            runs = summary.runs + ([summary.verify] if summary.verify else [])
            for run in runs:
                for text in run.get("problems") or []:
                    lines.append(f"- {r.case.name} / {name}: {text}")
    return lines or ["- none"]


def render(results: list[Any], ctx: Context) -> str:
    """The whole results file."""
    s = ctx.settings
    cores = int(ctx.machine.get("cores") or 1)
    out = ["# embedding_reader benchmark", "", *environment_lines(ctx), *load_warning(results, cores), ""]
    out += [
        f"Settings: local cases {s.size_gb} GB, remote {s.remote_size_gb} GB, dim 768, batch {s.batch_size} "
        f"(remote {s.remote_batch_size}), max_ram_usage_in_bytes {s.max_ram_mb} MB. GB/s counts stored embedding "
        "bytes over the iteration time (open excluded); see benchmarks/README.md for every column.",
        "S3: the project gets `storage_options=`; the reference gets the same s3fs options through fsspec's "
        "`FSSPEC_S3` environment variable (JSON). Wire bytes are response body bytes counted by the server/proxy.",
        "",
        "## Results",
        "",
        MAIN_HEADER,
        "|---" * MAIN_COLUMNS + "|",
    ]
    for r in results:
        out += case_rows(r)
    if any(r.contenders for r in results):
        out += ["", "## What users would pick instead (same rounds as the project, median)", ""]
        out += contenders_table(results)
    out += ["", "## Ceilings (GB/s, median)", "", *ceilings_table(results), "", "## Problems seen", ""]
    out += problems(results)
    return "\n".join(out) + "\n"
