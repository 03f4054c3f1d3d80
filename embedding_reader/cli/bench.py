"""`embedding-reader bench`: how fast a collection reads from where it is, and with --sweep which settings read it
fastest."""

import argparse
import sys
import time
from typing import Any, List, Optional, Sequence

from tqdm import tqdm

from .. import EmbeddingReader, InvalidArgumentError
from .common import EXIT_OK, default_batch_size, is_terminal, open_reader, read_options
from .render import Field, Report, human_bytes, render_fields, render_table, to_json

SWEEP_BYTES = 512 * 2**20  # stored bytes read by each --sweep trial
SWEEP_PIECE_BYTES = (4 * 2**20, 16 * 2**20, 64 * 2**20)
SWEEP_PARALLEL = {"local": (1, 2, 4, 8), "remote": (4, 8, 16, 32)}
SWEPT = ("parallel_pieces", "max_piece_size")


def register(commands: Any, collection: argparse.ArgumentParser) -> None:
    """Add the `bench` command to the command parsers."""
    bench = commands.add_parser(
        "bench",
        parents=[collection, read_options()],
        help="measure how fast a collection reads from where it is",
        description="Read the collection (or rows [--start, --end)) and report throughput, latency and memory.",
    )
    bench.add_argument(
        "--sweep",
        action="store_true",
        help="try several --parallel-pieces x --max-piece-size on a prefix of the rows and recommend the fastest",
    )
    bench.add_argument(
        "--shuffle",
        action="store_true",
        help="also read the range shuffled (seed 0) and report it beside the sequential read",
    )
    bench.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """`bench`: read the collection (or a range of it) and report speed and memory."""
    began = time.perf_counter()
    reader = open_reader(args)
    report: Report = {"open_s": time.perf_counter() - began, "remote": not reader.storage.is_local}
    read_args = read_arguments(args, reader)
    if args.sweep and args.shuffle:
        raise InvalidArgumentError("--sweep and --shuffle: choose one")
    if args.sweep:
        report.update(sweep(reader, read_args))
    else:
        report["rss_before"] = peak_rss()
        report["read"] = measure(reader, read_args, show_progress=is_terminal(sys.stderr))
        if args.shuffle:
            report["shuffled"] = measure(reader, {**read_args, "shuffle": True, "seed": 0})
    report.update(peak_rss=peak_rss(), settings=settings_report(read_args))
    print(to_json(report) if args.json else render_bench(report))
    return EXIT_OK


def read_arguments(args: argparse.Namespace, reader: EmbeddingReader) -> Report:
    """Keyword arguments of the reader's call, from the read options."""
    return {
        "batch_size": default_batch_size(reader) if args.batch_size is None else args.batch_size,
        "start": args.start,
        "end": reader.count if args.end is None else min(args.end, reader.count),
        "max_piece_size": args.max_piece_size,
        "parallel_pieces": args.parallel_pieces,
        "max_ram_usage_in_bytes": args.max_ram,
        "output_dtype": args.output_dtype,
    }


def measure(reader: EmbeddingReader, read_args: Report, show_progress: bool = False) -> Report:
    """Read rows [start, end) once; rows, stored bytes, timings and the range requests it took."""
    stats = reader.storage.stats
    requests, fetched = stats.requests, stats.bytes_read
    began = time.perf_counter()
    first_batch, rows = None, 0
    for embeddings, _ in reader(**read_args, show_progress=show_progress):
        first_batch = time.perf_counter() - began if first_batch is None else first_batch
        rows += len(embeddings)
    seconds = max(time.perf_counter() - began, 1e-9)
    return {
        "rows": rows,
        "bytes": rows * reader.byte_per_item,
        "seconds": seconds,
        "first_batch_s": first_batch,
        "gb_per_s": rows * reader.byte_per_item / seconds / 1e9,
        "rows_per_s": rows / seconds,
        "requests": stats.requests - requests,
        "bytes_fetched": stats.bytes_read - fetched,
    }


def sweep(reader: EmbeddingReader, read_args: Report) -> Report:
    """Read a prefix of the range once per parallel_pieces x max_piece_size setting (after a warm-up read)."""
    end = min(read_args["end"], read_args["start"] + max(1, SWEEP_BYTES // reader.byte_per_item))
    prefix = {**read_args, "end": end}
    measure(reader, prefix)  # warm-up: page cache, connections, footers
    kind = "remote" if not reader.storage.is_local else "local"
    pieces = sorted({min(end - prefix["start"], max(1, size // reader.byte_per_item)) for size in SWEEP_PIECE_BYTES})
    trials = []
    settings = [(parallel, piece) for parallel in SWEEP_PARALLEL[kind] for piece in pieces]
    for parallel, piece in tqdm(settings, desc="sweep", file=sys.stderr, disable=None):
        trial = measure(reader, {**prefix, "parallel_pieces": parallel, "max_piece_size": piece})
        trials.append({"parallel_pieces": parallel, "max_piece_size": piece, **trial})
    best = max(trials, key=lambda trial: trial["gb_per_s"])
    return {"sweep_rows": [prefix["start"], end], "sweep": trials, "recommended": best}


def settings_report(read_args: Report) -> Report:
    """The read settings as JSON values (None: the reader's automatic choice)."""
    dtype = read_args["output_dtype"]
    return {**read_args, "output_dtype": "stored" if dtype is None else str(dtype)}


def peak_rss() -> Optional[int]:
    """Peak resident memory of this process in bytes (ru_maxrss, or psutil on Windows), None if unknown."""
    if sys.platform != "win32":
        import resource  # pylint: disable=import-outside-toplevel

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
    try:
        import psutil  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    peak_wset = getattr(psutil.Process().memory_info(), "peak_wset", None)
    return None if peak_wset is None else int(peak_wset)


def render_bench(report: Report) -> str:
    """`bench` for people: the measured read, or the sweep table and its recommendation."""
    swept = "sweep" in report
    fields: List[Field] = [("open", f"{report['open_s']:.3f} s")]
    if swept:
        first, end = report["sweep_rows"]
        fields.append(("sweep", f"rows [{first:,}, {end:,}) read once per setting, after a warm-up read"))
    else:
        fields += read_fields(report["read"], report["settings"], report["remote"])
    if "shuffled" in report:
        shuffled, share = report["shuffled"], report["shuffled"]["gb_per_s"] / max(report["read"]["gb_per_s"], 1e-12)
        first = "-" if shuffled["first_batch_s"] is None else f"{shuffled['first_batch_s']:.3f} s"
        fields.append(("shuffled", f"{shuffled['gb_per_s']:.3f} GB/s ({share:.0%} of sequential), first batch {first}"))
    before = f" ({human_bytes(report['rss_before'])} before reading)" if "rss_before" in report else ""
    fields.append(("peak RSS", human_bytes(report["peak_rss"]) + before))
    fields.append(("settings", settings_line(report["settings"], hidden=SWEPT if swept else ())))
    return f"{render_fields(fields)}\n\n{render_sweep(report)}" if swept else render_fields(fields)


def render_sweep(report: Report) -> str:
    """The sweep table and the fastest setting."""
    best = report["recommended"]
    advice = f"--parallel-pieces {best['parallel_pieces']} --max-piece-size {best['max_piece_size']}"
    table = render_table([sweep_row(trial, report["remote"]) for trial in report["sweep"]])
    return f"{table}\n\nrecommended for this storage: {advice} ({best['gb_per_s']:.3f} GB/s)"


def read_fields(read: Report, settings: Report, remote: bool) -> List[Field]:
    """The fields describing one measured read."""
    rows = f"{read['rows']:,} rows [{settings['start']:,}, {settings['end']:,}), {human_bytes(read['bytes'])}"
    first = "-" if read["first_batch_s"] is None else f"{read['first_batch_s']:.3f} s"
    fields = [
        ("read", f"{rows} in {read['seconds']:.3f} s"),
        ("throughput", f"{read['gb_per_s']:.3f} GB/s, {read['rows_per_s']:,.0f} rows/s"),
        ("first batch", first),
    ]
    if remote:
        fields.append(("requests", f"{read['requests']:,} range reads, {human_bytes(read['bytes_fetched'])} fetched"))
    return fields


def settings_line(settings: Report, hidden: Sequence[str]) -> str:
    """The read settings as `name=value` words ('auto': the reader's choice), but rows and `hidden` ones."""
    shown = {key: value for key, value in settings.items() if key not in ("start", "end", *hidden)}
    shown["max_ram_usage_in_bytes"] = human_bytes(shown["max_ram_usage_in_bytes"])
    return " ".join(f"{key}={'auto' if value is None else value}" for key, value in shown.items())


def sweep_row(trial: Report, remote: bool) -> Report:
    """One line of the sweep table."""
    row = {
        "parallel_pieces": trial["parallel_pieces"],
        "max_piece_size": trial["max_piece_size"],
        "GB/s": trial["gb_per_s"],
        "rows/s": round(trial["rows_per_s"]),
        "first batch s": trial["first_batch_s"] or 0.0,
    }
    return {**row, "requests": trial["requests"]} if remote else row
