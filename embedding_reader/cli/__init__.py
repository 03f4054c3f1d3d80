"""The `embedding-reader` command line: what a collection holds (info), whether it reads (validate), how fast (bench).

One module per command, over the library's public API only; shared options in common.py, output in render.py.
Exit status: 0 when all went well, 1 when `validate` found problems, 2 on a usage or library error (printed as
one `error: ...` line on stderr, without traceback).
"""

import argparse
import os
import sys
from typing import Optional, Sequence

from .. import __version__
from . import bench, info, validate
from .common import EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_INTERRUPTED, collection_options
from .render import one_line

COMMANDS = (info, validate, bench)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]) and return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (ValueError, ImportError) as exc:  # EmbeddingReaderError, fsspec's unknown protocol, missing s3fs/gcsfs
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="embedding-reader",
        description="Inspect, validate and benchmark a collection of embeddings (npy, parquet, parquet_npy) "
        "on any fsspec filesystem: local paths, s3://, gs://, https://, ...",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    collection = collection_options()
    for command in COMMANDS:
        command.register(commands, collection)
    return parser


__all__ = ["build_parser", "main"]
