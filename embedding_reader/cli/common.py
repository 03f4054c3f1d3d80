"""What every command shares: the options naming a collection and a read, their parsers, opening the reader."""

import argparse
import inspect
import json
import re
from typing import Any, List, Optional, Tuple

import numpy as np

from .. import FILE_FORMATS, EmbeddingReader, detect_format

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 1  # as Python itself exits when stdout is closed early
DEFAULT_BATCH_BYTES = 64 * 2**20  # stored bytes per batch when --batch-size is not given
DEFAULT_RAM_BUDGET: int = inspect.signature(EmbeddingReader.__call__).parameters["max_ram_usage_in_bytes"].default
_SIZE = re.compile(r"(\d+(?:\.\d+)?(?:e\d+)?)\s*(?:([kmgt])(i?))?b?", re.IGNORECASE)
_SIZE_PREFIXES = "kmgt"


def collection_options() -> argparse.ArgumentParser:
    """Options naming a collection, shared by every command."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "paths", nargs="+", metavar="PATH", help="folder(s) or file(s) of embeddings, local or fsspec urls"
    )
    options.add_argument(
        "--format", "-f", choices=FILE_FORMATS, help="file format (default: detected from the files found)"
    )
    options.add_argument(
        "--file-pattern", metavar="GLOB", help="names of the files to read, e.g. 'base.1B.u8bin*' (default: *.FORMAT)"
    )
    options.add_argument("--hdf5-dataset", default="train", metavar="D", help="hdf5: the dataset read (default: train)")
    options.add_argument("--metadata-folder", metavar="M", help="folder of the parquet metadata files (parquet_npy)")
    options.add_argument("--embedding-column", default="embedding", metavar="C", help="default: embedding")
    options.add_argument(
        "--meta-columns", type=comma_list, default=[], metavar="a,b", help="metadata columns to check / read"
    )
    options.add_argument(
        "--storage-option",
        type=storage_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec filesystem option, repeatable; VALUE is parsed as JSON when it can be (anon=true), else a string",
    )
    options.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return options


def read_options() -> argparse.ArgumentParser:
    """Options of a read, as EmbeddingReader.__call__ takes them."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--batch-size", type=int, metavar="B", help="rows per batch (default: about 64 MB of rows)")
    options.add_argument("--max-piece-size", type=int, metavar="P", help="rows per piece (default: about 50 MB)")
    options.add_argument("--parallel-pieces", type=int, metavar="N", help="pieces read at once (default: automatic)")
    options.add_argument(
        "--max-ram",
        type=byte_size,
        default=DEFAULT_RAM_BUDGET,
        metavar="BYTES",
        help="RAM budget of the read: 4000000000, 4GB, 4GiB (default 4GiB)",
    )
    options.add_argument("--start", type=int, default=0, help="first row (default 0)")
    options.add_argument("--end", type=int, help="row after the last (default: the count)")
    options.add_argument(
        "--output-dtype",
        type=output_dtype,
        default=np.dtype("float32"),
        metavar="D",
        help="dtype of the batches: float32 (default), float16, ..., or 'stored' to keep the stored dtype",
    )
    return options


def comma_list(text: str) -> List[str]:
    """'a,b' -> ['a', 'b'], empty items dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def storage_option(text: str) -> Tuple[str, Any]:
    """'KEY=VALUE' -> (KEY, VALUE parsed as JSON, or the string itself); the value is never echoed back."""
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError("expected KEY=VALUE (the argument is not shown: it may hold a secret)")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def byte_size(text: str) -> int:
    """'4000000000', '4GB' (decimal), '4GiB' (binary), '1.5e9' -> bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (e.g. 4000000000, 4GB, 4GiB)")
    number, prefix, binary = match.groups()
    power = _SIZE_PREFIXES.index(prefix.lower()) + 1 if prefix else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


def output_dtype(text: str) -> Optional[np.dtype]:
    """A numpy dtype, or None for 'stored' (keep the stored dtype)."""
    if text == "stored":
        return None
    try:
        return np.dtype(text)
    except TypeError:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r} (e.g. float32, float16, stored)") from None


def file_format(args: argparse.Namespace) -> str:
    """The format given, else the one the files found make."""
    if args.format:
        return str(args.format)
    return detect_format(args.paths, args.metadata_folder, dict(args.storage_option), args.file_pattern)


def open_reader(args: argparse.Namespace) -> EmbeddingReader:
    """The EmbeddingReader the collection options describe (every header read and checked)."""
    return EmbeddingReader(
        args.paths,
        file_format=file_format(args),
        embedding_column=args.embedding_column,
        meta_columns=args.meta_columns,
        metadata_folder=args.metadata_folder,
        storage_options=dict(args.storage_option),
        file_pattern=args.file_pattern,
        hdf5_dataset=args.hdf5_dataset,
    )


def default_batch_size(reader: EmbeddingReader) -> int:
    """Rows of about DEFAULT_BATCH_BYTES stored bytes."""
    return max(1, DEFAULT_BATCH_BYTES // reader.byte_per_item)


def is_terminal(stream: Any) -> bool:
    """Whether a stream is an open terminal (stderr may be None, closed or a plain file): progress bars only there."""
    try:
        return bool(stream is not None and stream.isatty())
    except (ValueError, AttributeError):
        return False
