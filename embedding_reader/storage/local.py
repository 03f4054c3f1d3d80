"""Local files: read straight into the caller's buffer with `readinto`, after checking the file is still what it
was when the reader listed it (size and modification time, by `fstat` of the open file).

The kernel copies page-cache bytes with `rep movsb`, which runs at a third of its speed or less on some CPUs (AMD
Zen among them) when the destination is a few bytes ahead of the source modulo 4096 (4K aliasing of the loads
with the stores just made). Source and destination keep the same distance over one read, so when a read would
be such a copy it goes through a small buffer placed half a page away from both (`read_into`); a buffer a format
reads into first is best placed on the file's own position modulo the page (`page_congruent`).
"""

import ctypes
import io
import operator
import os
from typing import Any, Dict, List, NoReturn

import numpy as np

from ..errors import CorruptFileError
from .identity import FileIdentities, local_identity
from .names import byte_range

PIECE_BYTES = 50 * 2**20  # one readinto or row-group read per 50 MB, small enough to spread over threads
PAGE = 4096
ALIASED = 64  # a destination 1 to 63 bytes ahead of its source, modulo PAGE, is a slow copy
BOUNCE_BYTES = 2**20  # the buffer of an aliased read: small enough to stay in the CPU cache between its two copies
BOUNCE_MIN_BYTES = 4096  # below this the copy is too short to matter


def address(buffer: memoryview) -> int:
    """The address of a writable buffer's first byte."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


def is_aliased(start: int, destination: int) -> bool:
    """True when copying file bytes from `start` to `destination` would be a slow `rep movsb` (see the module)."""
    return 0 < (destination - start) % PAGE < ALIASED


def page_congruent(buffer: np.ndarray, start: int, nbytes: int) -> np.ndarray:
    """`nbytes` of a uint8 `buffer` (of at least nbytes + PAGE) whose first byte sits where file byte `start`
    sits in its page: the fastest destination of a read from `start`."""
    skip = (start - buffer.ctypes.data) % PAGE
    return buffer[skip : skip + nbytes]


def read_into(path: str, start: int, out: memoryview, identities: FileIdentities) -> None:
    """Fill `out` with the file's bytes from `start`; CorruptFileError if the file ends first. Straight into `out`,
    or through a small buffer when that copy would be aliased (see the module)."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        identities.observe(path, local_identity(os.fstat(descriptor)))
        if out.nbytes >= BOUNCE_MIN_BYTES and is_aliased(start, address(out)):
            _read_bounced(descriptor, path, start, out)
            return
        _fill(descriptor, path, start, out, 0)
    finally:
        os.close(descriptor)


def _fill(descriptor: int, path: str, start: int, out: memoryview, filled: int) -> None:
    """The rest of `out`, whose first `filled` bytes hold the file's bytes from `start`; CorruptFileError if the file
    ends first."""
    while filled < out.nbytes:
        got = _read_at(descriptor, out[filled:], start + filled)
        if not got:
            _ends_early(path, start, out.nbytes, filled)
        filled += got


def _read_at(descriptor: int, out: memoryview, position: int) -> int:
    """Bytes of the file from `position` read into `out`: how many (0 at its end)."""
    if CAN_SCATTER:
        return os.preadv(descriptor, [out], position)
    os.lseek(descriptor, position, os.SEEK_SET)  # Windows: no positioned reads
    with io.FileIO(descriptor, closefd=False) as file:
        return file.readinto(out) or 0


def _read_bounced(descriptor: int, path: str, start: int, out: memoryview) -> None:
    """read_into through a cache-sized buffer half a page away from both the file's bytes and `out` (modulo the
    page), so neither copy is aliased; numpy's copy into `out` runs without the GIL."""
    destination = np.frombuffer(out, dtype=np.uint8)
    raw = np.empty(min(BOUNCE_BYTES, out.nbytes) + PAGE, dtype=np.uint8)
    filled = 0
    while filled < out.nbytes:
        bounce = page_congruent(raw, start + filled + PAGE // 2, min(len(raw) - PAGE, out.nbytes - filled))
        got = _read_at(descriptor, bounce.data, start + filled)
        if not got:
            _ends_early(path, start, out.nbytes, filled)
        np.copyto(destination[filled : filled + got], bounce[:got])
        filled += got


def _ends_early(path: str, start: int, nbytes: int, filled: int) -> NoReturn:
    """CorruptFileError: the file ended after `filled` of the `nbytes` asked from `start`."""
    raise CorruptFileError(f"{byte_range(path, start, start + nbytes)}: file ends early, after {filled} bytes")


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
    identities.observe(path, local_identity(os.stat(path)))


CAN_SCATTER = hasattr(os, "preadv")  # not on Windows
_NBYTES = operator.attrgetter("nbytes")
IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def read_scattered(path: str, start: int, views: List[memoryview], identities: FileIdentities) -> None:
    """Fill `views` one after the other with the file's bytes from `start`, by `os.preadv` (one system call per
    IOV_MAX buffers, the kernel copying straight into each); CorruptFileError if the file ends first."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        identities.observe(path, local_identity(os.fstat(descriptor)))
        position = start
        for first in range(0, len(views), IOV_MAX):
            chunk = views[first : first + IOV_MAX]
            wanted = sum(map(_NBYTES, chunk))
            got = os.preadv(descriptor, chunk, position)
            if got < wanted:
                _finish_scattered(descriptor, path, chunk, position, got)
            position += wanted
    finally:
        os.close(descriptor)


def _finish_scattered(descriptor: int, path: str, views: List[memoryview], position: int, got: int) -> None:
    """After a short preadv of `got` bytes from `position`: the rest of the views, one read at a time."""
    for view in views:
        if got < view.nbytes:
            _fill(descriptor, path, position, view, got)
        got = max(0, got - view.nbytes)
        position += view.nbytes
