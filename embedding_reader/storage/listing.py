"""Listings the library can trust: every file of a collection found once, and nothing that is not one.

A folder is walked one directory listing at a time, each retried: fsspec's own `find` silently skips a sub-folder
whose listing fails. A listing whose body ends early over http fails in aiohttp (ClientPayloadError), so it is
retried too, never parsed as a shorter page. Below the root, names starting with `.` or `_` are skipped, as
pyarrow.dataset skips them (`.ipynb_checkpoints/`, Spark's `_temporary/` and `_SUCCESS`, macOS `._x.npy`), and so
is anything that is neither a folder nor a regular file (a named pipe would block its open forever), without
opening it. Symlinks are followed; each real folder is listed once, so a link loop ends.

Files are kept when their name matches a glob pattern (`*.npy` by default: the format's extension; case matters).
A root that is itself a file is the collection's only file, whatever its name: locally by `stat`; remotely by one
metadata request, made at once for a root whose name matches the pattern, else only when its listing is empty (an
http file has no links: its listing is a GET whose body is never read).
"""

import fnmatch
import glob
import logging
import os
import stat
from typing import Any, Dict, List, Optional, Set
from urllib.parse import unquote

from ..errors import NoEmbeddingsFoundError, ShortReadError
from ..retry import call_with_retries
from . import local
from .core import Storage
from .identity import FileIdentity, listed_identity, local_identity
from .names import FileEntry, redact

logger = logging.getLogger("embedding_reader")

SKIPPED_PREFIXES = (".", "_")  # what pyarrow.dataset ignores by default
DIRECTORY, FILE = "directory", "file"

Entry = Dict[str, Any]


def find_files(storage: Storage, folder: str, pattern: str) -> List[FileEntry]:
    """Files under `folder` (recursively) whose names match the glob `pattern`, or `folder` itself if it is a file;
    sorted, with their sizes when known."""
    return _Walk(storage, folder.rstrip("/") or folder, pattern).run()


def extension_pattern(extension: str) -> str:
    """The glob of the names ending with `extension`."""
    return "*" + glob.escape(extension)


def pattern_label(pattern: str) -> str:
    """How messages name the files of a pattern: '.npy' for the pattern of an extension, else the quoted pattern."""
    rest = pattern[1:]
    is_extension = pattern.startswith("*") and rest.startswith(".") and "." not in rest[1:]
    return rest if is_extension and glob.escape(rest) == rest else repr(pattern)


class _Walk:
    """One walk of a folder tree: the directories still to list, the real folders already listed, the files."""

    def __init__(self, storage: Storage, root: str, pattern: str):
        self.storage, self.root, self.pattern = storage, root, pattern
        self.files: List[FileEntry] = []
        self.pending = [root]
        self.listed: Set[str] = set()
        self.hidden = 0  # matching files skipped for their names

    def run(self) -> List[FileEntry]:
        """Walk every folder under the root, each real folder once (first under its first path in sorted order)."""
        if self._root_is_file(self.storage.is_local or self._matches(self.root)):
            return self.files
        if self.storage.is_local and not self.storage.fs.isdir(self.root):
            raise NoEmbeddingsFoundError(f"folder not found: {redact(self.root)}")
        while self.pending:
            directory = self.pending.pop()
            if self._first_visit(directory):
                entries = list_directory(self.storage, directory, directory == self.root)
                if directory == self.root and _only_itself(entries, directory) and self._root_is_file(True):
                    return self.files
                mark = len(self.pending)
                for entry in sorted(entries, key=_name):
                    self._visit(directory, entry)
                self.pending[mark:] = reversed(self.pending[mark:])  # sub-folders listed in sorted order
        if self.hidden:
            logger.warning(
                "%s: skipped %d %s files whose names start with '.' or '_'",
                redact(self.root),
                self.hidden,
                pattern_label(self.pattern),
            )
        return sorted(set(self.files))

    def _matches(self, name: str) -> bool:
        """Whether a path's base name matches the pattern."""
        return fnmatch.fnmatchcase(unquote(name.rsplit("/", 1)[-1]), self.pattern)

    def _root_is_file(self, ask: bool) -> bool:
        """Whether the root is a file (then kept as the only file), asked of the storage only if `ask`."""
        if not ask:
            return False
        if self.storage.is_local:
            if not os.path.isfile(self.root):
                return False
            entry: Entry = {"name": self.root, "type": FILE}
        else:
            found = file_info(self.storage, self.root)
            if found is None:
                return False
            entry = found
        self.files.append((self.root, self._remember(self.root, entry)))
        return True

    def _first_visit(self, directory: str) -> bool:
        """True the first time a real folder comes up (a symlink loop, or two links to one folder, come back)."""
        real = os.path.realpath(directory) if self.storage.is_local else directory.rstrip("/")
        if real in self.listed:
            logger.debug("skipped %s: folder already listed as %s", redact(directory), redact(real))
            return False
        self.listed.add(real)
        return True

    def _visit(self, directory: str, entry: Entry) -> None:
        """Queue a sub-folder, keep a file matching the pattern, skip the rest."""
        name = _name(entry)
        if name == directory.rstrip("/"):  # an http page linking to itself
            return
        base = unquote(name.rsplit("/", 1)[-1])
        matches = fnmatch.fnmatchcase(base, self.pattern)
        if base.startswith(SKIPPED_PREFIXES):
            if matches:
                self.hidden += 1
            logger.debug("skipped %s: names starting with '.' or '_' are not part of a collection", redact(name))
            return
        kind = self._kind(entry)
        if kind == DIRECTORY:
            self.pending.append(name)
        elif kind == FILE:
            if matches:
                self.files.append((name, self._remember(name, entry)))
        elif matches:
            logger.warning("skipped %s: not a regular file (%s)", redact(name), kind)
        else:
            logger.debug("skipped %s: not a regular file (%s)", redact(name), kind)

    def _remember(self, name: str, entry: Entry) -> Optional[int]:
        """Record what the file is now (see identity.py); its size if known."""
        if "mtime_ns" in entry:  # a local listing's own stat
            identity = FileIdentity(entry["size"], f"mtime:{entry['mtime_ns']}")
        else:
            identity = local_identity(os.stat(name)) if self.storage.is_local else listed_identity(entry)
        self.storage.identities.observe(name, identity, redact(name))
        return identity.size

    def _kind(self, entry: Entry) -> str:
        """'directory', 'file', or what else the entry is; a local symlink (fsspec: 'other') by its target."""
        kind = str(entry.get("type"))
        if not self.storage.is_local or kind in (DIRECTORY, FILE):
            return kind
        return _local_kind(_name(entry))


def list_directory(storage: Storage, directory: str, is_root: bool) -> List[Entry]:
    """One retried directory listing; a missing root folder is a clear error, not an empty collection."""

    def listing() -> List[Entry]:
        try:
            if storage.is_local:
                return local.list_directory(directory)
            entries: List[Entry] = storage.fs.ls(directory, detail=True, refresh=True)
            return entries
        except FileNotFoundError as exc:
            if is_root:
                raise NoEmbeddingsFoundError(f"folder not found: {redact(directory)}") from exc
            raise ShortReadError(f"listing {redact(directory)} failed: {exc}") from exc  # listed a moment ago

    return call_with_retries(listing, f"listing {redact(directory)}", storage.retry_policy)


def file_info(storage: Storage, path: str) -> Optional[Entry]:
    """A remote path's metadata if it is a file (not a folder, not an http page of links), else None; retried."""

    def info() -> Optional[Entry]:
        try:
            found: Entry = storage.fs.info(path)
        except FileNotFoundError:
            return None
        return found

    found = call_with_retries(info, f"info of {redact(path)}", storage.retry_policy)
    if found is None or found.get("type") != FILE or found.get("mimetype") == "text/html":
        return None
    return found


def _only_itself(entries: List[Entry], directory: str) -> bool:
    """Whether a listing holds nothing but the listed path (an empty http page, or an object store's file)."""
    return all(_name(entry) == directory.rstrip("/") for entry in entries)


def _local_kind(path: str) -> str:
    """What a local path is once symlinks are followed: 'directory', 'file', or another kind (never opened)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "broken symlink"
    if stat.S_ISDIR(mode):
        return DIRECTORY
    if stat.S_ISREG(mode):
        return FILE
    return "named pipe" if stat.S_ISFIFO(mode) else "special file"


def _name(entry: Entry) -> str:
    """The entry's path, without the trailing slash http listings give folders."""
    return str(entry["name"]).rstrip("/")
