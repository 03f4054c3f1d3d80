"""`embedding-reader info`: count, dimension, dtype and size of a collection, and optionally a table of its files."""

import argparse
from typing import Any

from .. import EmbeddingReader, FileHeader, redact
from .common import EXIT_OK, open_reader
from .render import Report, human_bytes, render_fields, render_table, to_json


def register(commands: Any, collection: argparse.ArgumentParser) -> None:
    """Add the `info` command to the command parsers."""
    info = commands.add_parser(
        "info",
        parents=[collection],
        help="count, dimension, dtype and size of a collection",
        description="Read the headers of every file and describe the collection (empty files are skipped).",
    )
    info.add_argument("--files", action="store_true", help="add a table of the files")
    info.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    """`info`: describe the collection."""
    reader = open_reader(args)
    report = info_report(args, reader)
    print(to_json(report) if args.json else render_info(report))
    return EXIT_OK


def info_report(args: argparse.Namespace, reader: EmbeddingReader) -> Report:
    """What `info` shows, as JSON-ready values."""
    largest = max(reader.headers, key=lambda header: header.stored_bytes)
    report: Report = {
        "paths": [redact(path) for path in args.paths],
        "format": reader.file_format,
        "metadata_folder": redact(args.metadata_folder) if args.metadata_folder else None,
        "count": reader.count,
        "dimension": reader.dimension,
        "dtype": str(reader.dtype),
        "bytes_per_item": reader.byte_per_item,
        "total_size": reader.total_size,
        "nb_files": reader.nb_files,
        "file_bytes": sum(header.stored_bytes for header in reader.headers),
        "largest_file": {"path": redact(largest.path), "bytes": largest.stored_bytes},
    }
    if args.files:
        report["files"] = [file_row(header, reader.file_format) for header in reader.headers]
    return report


def file_row(header: FileHeader, file_format: str) -> Report:
    """One line of the `info --files` table."""
    row: Report = {
        "path": redact(header.path),
        "rows": header.count,
        "dimension": header.dimension,
        "dtype": str(header.numpy_dtype),
        "bytes": header.stored_bytes,
    }
    if file_format == "parquet" and header.parquet is not None:
        row["row_groups"] = len(header.parquet.row_groups)
    if file_format == "parquet_npy" and header.parquet is not None:
        row["metadata_file"] = redact(header.parquet.path)
    return row


def render_info(report: Report) -> str:
    """`info` for people: aligned fields, then the file table if asked."""
    fields = [("path", "\n".join(report["paths"])), ("format", report["format"])]
    if report["metadata_folder"]:
        fields.append(("metadata folder", report["metadata_folder"]))
    fields += [
        ("count", f"{report['count']:,}"),
        ("dimension", f"{report['dimension']:,}"),
        ("dtype", report["dtype"]),
        ("bytes per item", f"{report['bytes_per_item']:,}"),
        ("total size", f"{human_bytes(report['total_size'])} ({report['total_size']:,} bytes)"),
        ("files", f"{report['nb_files']:,} ({human_bytes(report['file_bytes'])} on storage)"),
        ("largest file", f"{report['largest_file']['path']} ({human_bytes(report['largest_file']['bytes'])})"),
    ]
    text = render_fields(fields)
    return f"{text}\n\n{render_table(report['files'])}" if "files" in report else text
