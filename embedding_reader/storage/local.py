"""Local files: read straight into the caller's buffer with `readinto`, after checking the file is still what it
was when the reader listed it (size and modification time, by `fstat` of the open file)."""

import os
from typing import Any, Dict, List

from ..errors import CorruptFileError
from .identity import FileIdentities, local_identity
from .names import byte_range, redact

PIECE_BYTES = 50 * 2**20  # one readinto or row-group read per 50 MB, small enough to spread over threads


def read_into(path: str, start: int, out: memoryview, identities: FileIdentities) -> None:
    """Fill `out` with the file's bytes from `start`; CorruptFileError if the file ends first."""
    with open(path, "rb") as file:
        identities.observe(path, local_identity(os.fstat(file.fileno())), redact(path))
        file.seek(start)
        filled = 0
        while filled < out.nbytes:
            got = file.readinto(out[filled:])
            if not got:
                end = start + out.nbytes
                raise CorruptFileError(f"{byte_range(path, start, end)}: file ends early, after {filled} bytes")
            filled += got


def cat(path: str, start: int, end: int) -> bytes:
    """Bytes [start, end) of a file, or fewer if it ends first (a plain read: no fsspec file object)."""
    with open(path, "rb") as file:
        file.seek(start)
        return file.read(end - start)


def list_directory(directory: str) -> List[Dict[str, Any]]:
    """A folder's entries as the listing walks them (name, type as seen through symlinks, size and mtime_ns of
    files), from one scandir and one stat per file: fsspec's ls adds an lstat and an info per entry."""
    entries: List[Dict[str, Any]] = []
    with os.scandir(directory) as found:
        for entry in found:
            name = os.path.join(directory, entry.name)
            if entry.is_dir():
                entries.append({"name": name, "type": "directory"})
            elif entry.is_file():
                status = entry.stat()
                entries.append({"name": name, "type": "file", "size": status.st_size, "mtime_ns": status.st_mtime_ns})
            else:
                entries.append({"name": name, "type": "other"})
    return entries


def check_unchanged(path: str, identities: FileIdentities) -> None:
    """FileChangedError if the file is no longer what it was at open."""
    identities.observe(path, local_identity(os.stat(path)), redact(path))
