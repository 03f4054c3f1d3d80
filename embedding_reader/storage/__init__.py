"""Where the bytes come from. One Storage per reader (core.py) wraps every read once in the retry policy; what
differs per protocol family lives in its own module: local.py, http.py, s3.py, gcs.py (protocols.py maps protocol
names to them; any other fsspec protocol is read through `cat_file`). Shared remote machinery is in remote.py and
answers.py, listing in listing.py, file identity in identity.py, the progress watchdog in watchdog.py.

To add a protocol family: a module with NAMES, client_options(options, timeout) and, optionally, tune(fs) and
streamer(fs), listed in protocols.FAMILIES.
"""

from .core import HEADER_READ_THREADS, Storage, StorageStats
from .names import FileEntry, byte_range, redact

__all__ = ["HEADER_READ_THREADS", "FileEntry", "Storage", "StorageStats", "byte_range", "redact"]
