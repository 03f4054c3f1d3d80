"""What is wrong with this folder? Every problem of a collection, file by file, without reading any embedding.

`inspect_collection` runs the same steps as `EmbeddingReader`'s open (listing, headers, parquet_npy pairing,
consistency: see formats/checks.py), but notes every problem instead of raising the first, and returns them in a
`CollectionReport`. `detect_format` names the format of a collection from the files it holds.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from .arguments import as_folder_list, check_dataset, check_pattern
from .errors import EmbeddingReaderError, InconsistentCollectionError, NoEmbeddingsFoundError
from .formats import FORMATS, format_class
from .formats.checks import HEADER, METADATA, PAIRING, Checks, Survey
from .header import FileHeader
from .retry import RetryPolicy
from .storage import Storage, redact

FILE_FORMATS: Tuple[str, ...] = tuple(sorted(FORMATS))
EXTENSIONS: Dict[str, str] = {cls.extension: name for name, cls in FORMATS.items() if name != "parquet_npy"}
UNPAIRED = "no parquet file pairs with it, by name or by the last number in its name"

Folders = Union[str, Sequence[str]]


@dataclass(frozen=True)
class FileReport:
    """One embedding file as inspected: its header or the problem reading it, and for parquet_npy its metadata file
    (None when none pairs with it) or the problem with it (its footer, its columns, its row count)."""

    path: str
    header: Optional[FileHeader] = None
    problem: Optional[str] = None
    metadata_file: Optional[str] = None
    metadata_problem: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Whether the file, and its metadata file if any, passed every check made on it alone."""
        return self.problem is None and self.metadata_problem is None

    @property
    def count(self) -> Optional[int]:
        """Rows of the file, when its header reads."""
        return None if self.header is None else self.header.count

    @property
    def dimension(self) -> Optional[int]:
        """Length of its embeddings, when its header reads."""
        return None if self.header is None else self.header.dimension

    @property
    def dtype(self) -> Optional[np.dtype]:
        """Stored element type, when its header reads."""
        return None if self.header is None else self.header.numpy_dtype


@dataclass(frozen=True)
class CollectionReport:
    """A collection as inspected: the format (given or detected), the files found, every problem in the order
    found (`problems`; those of no single file also in `collection_problems`), and when `ok` the headers an
    EmbeddingReader would read (empty files dropped). Files skipped for their names are logged, not listed."""

    paths: Tuple[str, ...]
    file_format: Optional[str]
    metadata_folder: Optional[str]
    files: Tuple[FileReport, ...]
    metadata_files: Tuple[str, ...]
    unpaired_metadata_files: Tuple[str, ...]
    collection_problems: Tuple[str, ...]
    problems: Tuple[str, ...]
    headers: Tuple[FileHeader, ...]

    @property
    def ok(self) -> bool:
        """Whether an EmbeddingReader opens the collection (every header; no row is read)."""
        return not self.problems

    @property
    def count(self) -> Optional[int]:
        """Number of embeddings, when ok."""
        return sum(header.count for header in self.headers) if self.ok else None

    @property
    def dimension(self) -> Optional[int]:
        """Length of one embedding, when ok."""
        return self.headers[0].dimension if self.ok else None

    @property
    def dtype(self) -> Optional[np.dtype]:
        """The stored element type when ok (the widest one when float widths mix, as EmbeddingReader.dtype)."""
        if not self.ok:
            return None
        dtypes = {header.numpy_dtype for header in self.headers}
        return dtypes.pop() if len(dtypes) == 1 else np.result_type(*dtypes)


def inspect_collection(
    embeddings_folder: Folders,
    file_format: Optional[str] = None,
    embedding_column: str = "embedding",
    meta_columns: Union[str, Sequence[str], None] = None,
    metadata_folder: Optional[str] = None,
    storage_options: Optional[Dict[str, Any]] = None,
    retry_policy: Optional[RetryPolicy] = None,
    file_pattern: Optional[str] = None,
    hdf5_dataset: str = "train",
) -> CollectionReport:
    """Check every file of a collection as EmbeddingReader's open does and report every problem, not the first.

    `file_format=None` detects it (see detect_format). Arguments are checked as EmbeddingReader checks them: a bad
    one raises InvalidArgumentError; problems of the files are in the report.
    """
    if file_format is not None:
        format_class(file_format)
    pattern, dataset = check_pattern(file_pattern), check_dataset(hdf5_dataset)
    storage, folders = _open_storage(embeddings_folder, storage_options, retry_policy)
    checks = Checks(collect=True)
    detected = file_format or _detect(storage, folders, metadata_folder, checks, pattern)
    if detected is None:
        return _report(embeddings_folder, None, metadata_folder, Survey([], []), checks)
    stripped_metadata = storage.strip(metadata_folder) if metadata_folder else None
    columns = [meta_columns] if isinstance(meta_columns, str) else list(meta_columns or [])
    file_class = format_class(detected)
    survey = file_class(storage, embedding_column, columns, stripped_metadata, pattern, dataset).survey(folders, checks)
    return _report(embeddings_folder, detected, metadata_folder, survey, checks)


def detect_format(
    embeddings_folder: Folders,
    metadata_folder: Optional[str] = None,
    storage_options: Optional[Dict[str, Any]] = None,
    file_pattern: Optional[str] = None,
) -> str:
    """The format of a collection from the extension of the files found (among those matching `file_pattern`, if
    given): npy files make npy (parquet_npy with a metadata folder), parquet files parquet, .fvecs files fvecs, and
    so on; several kinds, or none, raise an error naming what was found."""
    storage, folders = _open_storage(embeddings_folder, storage_options, None)
    detected = _detect(storage, folders, metadata_folder, Checks(), check_pattern(file_pattern))
    assert detected is not None  # a strict Checks raises instead
    return detected


def _open_storage(
    embeddings_folder: Folders, storage_options: Optional[Dict[str, Any]], retry_policy: Optional[RetryPolicy]
) -> Tuple[Storage, List[str]]:
    """The storage of the folders, and the folders in its own form, as EmbeddingReader makes them."""
    folders = as_folder_list(embeddings_folder)
    storage = Storage(folders[0], storage_options, retry_policy or RetryPolicy())
    return storage, [storage.strip(folder) for folder in folders]


def _detect(
    storage: Storage, folders: Sequence[str], metadata_folder: Optional[str], checks: Checks, pattern: Optional[str]
) -> Optional[str]:
    """The format the files found make, or None with the reason noted (raised when strict)."""
    listing = Checks(collect=checks.collect)  # a folder's own problem is the survey's to report, once
    counts: Counter[str] = Counter()
    for folder in folders:
        counts.update(listing.attempt(_count_files, storage, folder, pattern) or Counter())
    kinds = [extension for extension in EXTENSIONS if counts[extension]]
    if len(kinds) == 1:
        name = EXTENSIONS[kinds[0]]
        return "parquet_npy" if name == "npy" and metadata_folder else name
    if not kinds and listing.problems:  # nothing found: the folders' own problems say why
        for error in listing.problems:
            checks.report(error)
    else:
        checks.report(_undetected(counts, kinds, folders))
    return None


def _count_files(storage: Storage, folder: str, pattern: Optional[str]) -> Counter[str]:
    """Files under a folder (or the folder itself, a file) by extension; only those matching `pattern` if given."""
    if pattern is None:  # one listing per extension: a file given as the folder is found by each
        found = {path for extension in EXTENSIONS for path, _ in storage.find(folder, extension)}
    else:
        found = {path for path, _ in storage.find(folder, pattern=pattern)}
    return Counter(extension for path in found for extension in EXTENSIONS if path.endswith(extension))


def _undetected(counts: Counter[str], kinds: Sequence[str], folders: Sequence[str]) -> EmbeddingReaderError:
    """Why no format can be told from what was found."""
    where = redact(", ".join(folders))
    if kinds:
        found = [f"{extension} ({counts[extension]})" for extension in kinds]
        listed = f"both {found[0]} and {found[1]}" if len(found) == 2 else ", ".join(found[:-1]) + f" and {found[-1]}"
        return InconsistentCollectionError(
            f"{listed} files found in {where}: give the format (file_format / --format: one of "
            f"{', '.join(FILE_FORMATS)})"
        )
    others = [extension for extension in EXTENSIONS if extension not in (".npy", ".parquet")]
    return NoEmbeddingsFoundError(
        f"no .npy or .parquet file found in {where}, nor any {', '.join(others[:-1])} or {others[-1]} file"
    )


def _report(
    folders: Folders, file_format: Optional[str], metadata_folder: Optional[str], survey: Survey, checks: Checks
) -> CollectionReport:
    """The report of a survey and of the problems its checks noted."""
    attached = {id(error) for error in checks.by_file.values()}
    pairs_files = file_format == "parquet_npy"
    paired = set(survey.metadata_of.values())
    return CollectionReport(
        paths=tuple(redact(folder) for folder in as_folder_list(folders)),
        file_format=file_format,
        metadata_folder=redact(metadata_folder) if metadata_folder else None,
        files=tuple(
            _file_report(path, header, survey, checks, pairs_files)
            for (path, _), header in zip(survey.files, survey.headers)
        ),
        metadata_files=tuple(redact(path) for path, _ in survey.metadata_files),
        unpaired_metadata_files=_unpaired(survey, paired),
        collection_problems=tuple(str(error) for error in checks.problems if id(error) not in attached),
        problems=tuple(str(error) for error in checks.problems),
        headers=tuple(survey.consistent) if not checks.problems else (),
    )


def _file_report(
    path: str, header: Optional[FileHeader], survey: Survey, checks: Checks, pairs_files: bool
) -> FileReport:
    """One file's part of the report."""
    metadata = survey.metadata_of.get(path)
    problem = checks.problem(HEADER, path)
    if not pairs_files:
        return FileReport(redact(path), header, problem)
    if metadata is None:
        return FileReport(redact(path), header, problem, None, UNPAIRED)
    metadata_problem = checks.problem(METADATA, metadata) or checks.problem(PAIRING, path)
    return FileReport(redact(path), header, problem, redact(metadata), metadata_problem)


def _unpaired(survey: Survey, paired: Set[str]) -> Tuple[str, ...]:
    """The metadata files no npy file pairs with."""
    return tuple(redact(path) for path, _ in survey.metadata_files if path not in paired)
