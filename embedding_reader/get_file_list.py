"""1.8.1's `get_file_list`, over this library's own listing (same rules as opening a reader)."""

from typing import List, Sequence, Tuple, Union

import fsspec

from .arguments import as_folder_list
from .formats import format_class
from .legacy import user_path
from .retry import RetryPolicy
from .storage import Storage


def get_file_list(
    path: Union[str, Sequence[str]], file_format: str, sort_result: bool = True
) -> Tuple[fsspec.AbstractFileSystem, List[str]]:
    """(filesystem, paths of every `file_format` file found recursively under one folder or several).

    Paths are sorted together across folders (`sort_result` is accepted for 1.8.1's signature; the order is
    always sorted); remote paths keep their protocol, as 1.8.1 returned them.
    """
    folders = as_folder_list(path)
    storage = Storage(folders[0], None, RetryPolicy())
    file_class = format_class(file_format)
    files = file_class(storage).list_files([storage.strip(folder) for folder in folders])
    return storage.fs, [user_path(storage, file_path) for file_path, _size in files]
