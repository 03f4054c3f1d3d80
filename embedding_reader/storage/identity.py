"""File identity: what each file was when the reader opened it (size, and a version tag where the storage gives
one), checked against what every later read learns of it, so that a file rewritten under a reader fails the
read instead of returning other rows."""

import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Optional

from ..errors import FileChangedError
from .names import redact


@dataclass(frozen=True)
class FileIdentity:
    """A file's size and version tag (`etag:...`, `modified:...` or `mtime:...`), each None when unknown. Tags of
    different kinds are never compared: a server may send an ETag on one answer and only a date on another."""

    size: Optional[int] = None
    tag: Optional[str] = None

    def merged(self, other: "FileIdentity", path: str) -> "FileIdentity":
        """This identity completed by `other`; a FileChangedError when both know a field and disagree."""
        tags_comparable = self.tag is not None and other.tag is not None and _kind(self.tag) == _kind(other.tag)
        for name, mine, theirs in (("size", self.size, other.size), ("version", self.tag, other.tag)):
            known = mine is not None and theirs is not None and (name == "size" or tags_comparable)
            if known and mine != theirs:
                raise FileChangedError(f"{path}: changed since the reader opened it ({name} {mine} -> {theirs})")
        return FileIdentity(self.size if self.size is not None else other.size, self.tag or other.tag)


def _kind(tag: str) -> str:
    return tag.split(":", 1)[0]


def etag(value: Any) -> Optional[str]:
    """An ETag as a tag, weak or strong and quoted or not alike (stores differ between listings and answers)."""
    if not value:
        return None
    text = str(value).strip()
    text = text[2:] if text.startswith("W/") else text
    return "etag:" + text.strip('"')


def modified(value: Any) -> Optional[str]:
    """A Last-Modified date as a tag."""
    return None if not value else f"modified:{value}"


def listed_identity(entry: Mapping[str, Any]) -> FileIdentity:
    """The identity a remote directory listing gives: the size, and the ETag where the store lists it."""
    size = entry.get("size")
    return FileIdentity(int(size) if isinstance(size, int) else None, etag(entry.get("ETag") or entry.get("etag")))


def local_identity(status: os.stat_result) -> FileIdentity:
    """A local file's identity: its size and modification time in nanoseconds (a rewrite changes it)."""
    return FileIdentity(status.st_size, f"mtime:{status.st_mtime_ns}")


class FileIdentities:
    """Thread-safe identities by path: the first one learnt of a file, completed (and checked) by each later one."""

    def __init__(self, known: Optional[Dict[str, FileIdentity]] = None):
        self._known: Dict[str, FileIdentity] = dict(known or {})
        self._lock = threading.Lock()

    def __getstate__(self) -> Dict[str, Any]:
        with self._lock:
            return {"known": dict(self._known)}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(state["known"])  # type: ignore[misc]

    def observe(self, path: str, identity: FileIdentity, where: Optional[str] = None) -> None:
        """Learn `identity` of `path`; FileChangedError (naming `where`, by default the path redacted) if it
        contradicts what was known."""
        if identity.size is None and identity.tag is None:
            return
        with self._lock:
            known = self._known.get(path)
            if known != identity:  # the usual case, the same again, changes nothing
                self._known[path] = identity if known is None else known.merged(identity, where or redact(path))

    def only(self, paths: Iterable[str]) -> "FileIdentities":
        """A copy that knows only these files (what a task shipped to a worker needs)."""
        with self._lock:
            return FileIdentities({path: self._known[path] for path in paths if path in self._known})

    def size(self, path: str) -> Optional[int]:
        """The size of `path` if some answer or listing gave it."""
        with self._lock:
            known = self._known.get(path)
        return None if known is None else known.size

    def __len__(self) -> int:
        return len(self._known)
