"""How files and byte ranges are named in messages and logs: never with the credentials a URL may carry."""

import re
from typing import Optional, Tuple

FileEntry = Tuple[str, Optional[int]]  # (path, size in bytes if the listing gave it)

_USERINFO = re.compile(r"(?<=://)[^/@]+@")


def redact(url: str) -> str:
    """The url with any `user:password@` part removed, safe for messages and logs."""
    return _USERINFO.sub("***@", url)


def byte_range(path: str, start: int, end: int) -> str:
    """How messages name a byte range of a file."""
    return f"{redact(path)} bytes [{start}, {end})"
