"""Remote files as read-only file objects, for libraries that read files themselves (pyarrow, h5py): every read is
the storage's own (checked answers, the retry policy, the progress watchdog). fsspec's file objects wait on socket
timeouts only, so a server trickling a byte a second held an h5py read for hours; here it fails the read once
`timeout` passes without progress."""

import io
import threading
from typing import Any, Optional

from fsspec.caching import ReadAheadCache

from .core import Storage
from .names import redact

READ_AHEAD_BYTES = 4 * 2**20  # a RangeFile's small read (h5py's metadata) fetches this much beyond itself


class StorageFile(io.RawIOBase):
    """Bytes [0, size) of `path`, `size` as listed (reads never ask past it); subclasses say how (`_bytes`)."""

    def __init__(self, path: str, size: int, storage: Storage, cancel: Optional[threading.Event] = None):
        super().__init__()
        self.path, self.size, self.storage, self.cancel = path, size, storage, cancel
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"{redact(self.path)}: seek to {base + offset}, before the file's start")
        self.position = base + offset
        return self.position

    def read(self, size: Optional[int] = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.position + size)
        data = self._bytes(self.position, end) if end > self.position else b""
        self.position = max(self.position, end)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer).cast("B")))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def _bytes(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file (within its size)."""
        raise NotImplementedError


class RangeFile(StorageFile):
    """A remote file read through fsspec's read-ahead cache, each fetch one `read_into` of the storage."""

    def __init__(self, path: str, size: int, storage: Storage, cancel: Optional[threading.Event] = None):
        super().__init__(path, size, storage, cancel)
        self._cache = ReadAheadCache(READ_AHEAD_BYTES, self._fetch, size)

    def _bytes(self, start: int, end: int) -> bytes:
        data: bytes = self._cache._fetch(start, end)  # fsspec's cache protocol (its own files call it so)
        return data

    def _fetch(self, start: int, end: int) -> bytearray:
        data = bytearray(end - start)  # the cache slices it as it would bytes: no copy into bytes first
        self.storage.read_into(self.path, start, memoryview(data), self.cancel)
        return data
