"""Storage: every byte the library reads goes through here, as exact, length-checked, retried range reads.

Remote filesystems are asked for exactly the bytes needed (`cat_file` / `cat_ranges`): no read-ahead
block, no HEAD per read. Local files are read straight into the caller's buffer with `readinto`.
"""

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Tuple

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .errors import CorruptFileError, InvalidArgumentError, NoEmbeddingsFoundError, ShortReadError
from .retry import RetryPolicy, call_with_retries

HEADER_READ_THREADS = 32

_USERINFO = re.compile(r"(?<=://)[^/@]+@")


def redact(url: str) -> str:
    """The url with any `user:password@` part removed, safe for messages and logs."""
    return _USERINFO.sub("***@", url)


def byte_range(path: str, start: int, end: int) -> str:
    """How messages name a byte range of a file."""
    return f"{redact(path)} bytes [{start}, {end})"


class Storage:
    """One fsspec filesystem plus the retry policy; picklable (the filesystem is rebuilt on demand).

    `storage_options` may hold secrets: they are kept out of repr and of every message.
    """

    def __init__(self, url: str, storage_options: Optional[Dict[str, Any]], retry_policy: RetryPolicy):
        self._options = dict(storage_options or {})
        self.retry_policy = retry_policy
        self.protocol = _protocol(url)
        self._fs: Optional[fsspec.AbstractFileSystem] = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Storage(protocol={self.protocol!r}, options=<{len(self._options)} hidden>)"

    def __getstate__(self) -> Dict[str, Any]:
        return {"_options": self._options, "retry_policy": self.retry_policy, "protocol": self.protocol}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fs = None
        self._lock = threading.Lock()

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem, created on first use (and again after unpickling)."""
        with self._lock:
            if self._fs is None:
                self._fs = fsspec.filesystem(self.protocol, **self._options)
            return self._fs

    @property
    def is_local(self) -> bool:
        """True when reads can go straight from a local file into a numpy buffer."""
        return isinstance(self.fs, LocalFileSystem)

    def strip(self, url: str) -> str:
        """The path in the filesystem's own form (s3://b/k -> b/k; local paths made absolute)."""
        if _protocol(url) != self.protocol:
            raise InvalidArgumentError(
                f"all folders must be on one filesystem: {redact(url)} is not on {self.protocol!r}"
            )
        return self.fs._strip_protocol(url)  # pylint: disable=protected-access

    def find(self, folder: str, extension: str) -> List[Tuple[str, Optional[int]]]:
        """Files under `folder` (recursively) ending with `extension`, sorted, with their sizes when known."""
        path = self.strip(folder)
        entries = call_with_retries(
            lambda: self._find_entries(path), f"listing {redact(folder)}", self.retry_policy
        )
        files = [(name, info.get("size")) for name, info in entries.items() if info.get("type") != "directory"]
        return sorted((name, size) for name, size in files if name.endswith(extension))

    def _find_entries(self, path: str) -> Dict[str, Dict[str, Any]]:
        """Raw recursive listing; a missing folder is a clear error, not an empty list."""
        try:
            if not self.fs.isdir(path):
                raise NoEmbeddingsFoundError(f"folder not found: {redact(path)}")
            return self.fs.find(path, detail=True)
        except FileNotFoundError as exc:
            raise NoEmbeddingsFoundError(f"folder not found: {redact(path)}") from exc

    def read_range(self, path: str, start: int, end: int, cancel: Optional[threading.Event] = None) -> bytes:
        """Exactly bytes [start, end) of a file, retried on transient errors; a short answer is never used."""
        return call_with_retries(
            lambda: self._read_exact(path, start, end), byte_range(path, start, end), self.retry_policy, cancel
        )

    def _read_exact(self, path: str, start: int, end: int) -> bytes:
        data = self.fs.cat_file(path, start=start, end=end)
        if len(data) != end - start:
            if self.is_local:
                raise CorruptFileError(f"{byte_range(path, start, end)}: file ends early, got {len(data)} bytes")
            raise ShortReadError(f"{byte_range(path, start, end)}: got {len(data)} bytes")
        return data

    def read_ranges(self, requests: Sequence[Tuple[str, int, int]]) -> List[bytes]:
        """Many exact range reads at once (file headers): concurrent for remote filesystems."""
        if self.is_local or len(requests) <= 1:
            return [self.read_range(*request) for request in requests]
        with ThreadPoolExecutor(min(HEADER_READ_THREADS, len(requests))) as pool:
            return list(pool.map(lambda request: self.read_range(*request), requests))

    def read_into(self, path: str, start: int, out: memoryview, cancel: Optional[threading.Event] = None) -> None:
        """Fill `out` with the file's bytes from `start`: straight from disk locally, else one ranged read."""
        if not self.is_local:
            out[:] = self.read_range(path, start, start + out.nbytes, cancel)
            return
        with open(path, "rb") as file:
            file.seek(start)
            filled = 0
            while filled < out.nbytes:
                got = file.readinto(out[filled:])
                if not got:
                    end = start + out.nbytes
                    raise CorruptFileError(f"{byte_range(path, start, end)}: file ends early, after {filled} bytes")
                filled += got

    def size(self, path: str) -> int:
        """Size in bytes of a file (one metadata request for remote files)."""
        return int(call_with_retries(lambda: self.fs.size(path), f"size of {redact(path)}", self.retry_policy))


def _protocol(url: str) -> str:
    """The fsspec protocol of a url ('file' for plain paths)."""
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    return "file" if protocol == "local" else protocol
