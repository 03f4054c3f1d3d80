"""How an open reports what it finds: the reader raises the first problem, an inspection notes each one and goes on.

Every rule of what makes a collection valid is written once, in the formats, against a `Checks`: a strict one
(`EmbeddingReader`'s open) lets the first error through unchanged; a collecting one (`inspect_collection`) keeps
every error, tied to its step and file, so that one open reports all the problems of a collection.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

from ..errors import EmbeddingReaderError
from ..header import FileHeader
from ..storage import FileEntry

R = TypeVar("R")
INSPECTION_THREADS = 32  # files inspected at once, each on its own: header reads are latency-bound
HEADER, METADATA, PAIRING = "header", "metadata", "pairing"  # the steps a file's problem is noted under


class Checks:
    """Where an open's checks send their errors: raised at once (strict) or noted, by step and file (collecting)."""

    def __init__(self, collect: bool = False) -> None:
        self.collect = collect
        self.problems: List[EmbeddingReaderError] = []  # every problem noted, in the order found
        self.by_file: Dict[Tuple[str, str], EmbeddingReaderError] = {}  # (step, path) -> its problem

    def report(self, error: EmbeddingReaderError, step: str = "", path: Optional[str] = None) -> None:
        """Raise the error (strict), or note it, against the file if one is named."""
        if not self.collect:
            raise error
        self.problems.append(error)
        if path is not None:
            self.by_file[(step, path)] = error

    def attempt(
        self, function: Callable[..., R], *args: Any, step: str = "", path: Optional[str] = None
    ) -> Optional[R]:
        """function(*args); when collecting, None instead of the library error it raised, which is noted."""
        if not self.collect:
            return function(*args)
        try:
            return function(*args)
        except EmbeddingReaderError as error:
            self.report(error, step, path)
            return None

    def each(
        self, read: Callable[[Sequence[FileEntry]], List[R]], files: Sequence[FileEntry], step: str
    ) -> List[Optional[R]]:
        """read(files): all at once when strict (batched reads, the first problem raised); else each file on its
        own, concurrently, so that one bad file does not hide the others (None for those with a problem)."""
        if not self.collect:
            return list(read(files))
        with ThreadPoolExecutor(max(1, min(INSPECTION_THREADS, len(files)))) as pool:
            outcomes = list(pool.map(lambda file: _outcome(read, file), files))
        for (path, _), outcome in zip(files, outcomes):
            if isinstance(outcome, EmbeddingReaderError):
                self.report(outcome, step, path)
        return [None if isinstance(outcome, EmbeddingReaderError) else outcome for outcome in outcomes]

    def problem(self, step: str, path: str) -> Optional[str]:
        """The message of the problem noted against a file at a step, if any."""
        error = self.by_file.get((step, path))
        return None if error is None else str(error)


def _outcome(read: Callable[[Sequence[FileEntry]], List[R]], file: FileEntry) -> Union[R, EmbeddingReaderError]:
    """read([file])'s one result, or the library error it raised."""
    try:
        return read([file])[0]
    except EmbeddingReaderError as error:
        return error


@dataclass
class Survey:
    """What an open found: the files, each one's header (None where it has a problem), for parquet_npy the metadata
    files and which one each npy file pairs with, and the checked headers the reader keeps (empty files dropped)."""

    files: List[FileEntry]
    headers: List[Optional[FileHeader]]
    consistent: List[FileHeader] = field(default_factory=list)
    metadata_files: List[FileEntry] = field(default_factory=list)
    metadata_of: Dict[str, str] = field(default_factory=dict)
