"""Checks every ranged answer passes before its body is used, shared by the http and object-store reads: the range
it says it holds, its encoding, and a body no longer than it may be."""

import re
from typing import Optional, Tuple

from ..errors import ReadFailedError, ShortReadError

_CONTENT_RANGE = re.compile(r"bytes (\d{1,20})-(\d{1,20})/(\d{1,20}|\*)")


def checked_range(where: str, content_range: Optional[str], start: int, length: int) -> Tuple[int, Optional[int]]:
    """(bytes the answer holds, the file's total size) from a 206 answer's Content-Range, after checking that it
    is the range asked, or its part before the end of the file; any other range is a transient ShortReadError."""
    match = _CONTENT_RANGE.fullmatch((content_range or "").strip())
    if match is None:
        raise ShortReadError(f"{where}: a 206 answer without a valid Content-Range ({str(content_range)[:80]!r})")
    first, last = int(match[1]), int(match[2])
    total = None if match[3] == "*" else int(match[3])
    asked_last = start + length - 1
    at_end = total is not None and last == total - 1
    beyond_total = total is not None and last >= total
    if first != start or last < first or last > asked_last or beyond_total or (last < asked_last and not at_end):
        raise ShortReadError(f"{where}: the answer holds bytes {first}-{last}/{match[3]}, not the range asked")
    return last - first + 1, total


def check_encoding(where: str, encoding: Optional[str]) -> None:
    """A compressed answer to a range request: its bytes are not the file's bytes (permanent)."""
    if encoding not in (None, "", "identity"):
        raise ReadFailedError(f"{where}: the server compressed a range answer ({encoding[:40]}): refused")


def check_length(where: str, content_length: Optional[int], expected: int) -> None:
    """An announced body length other than the range's: transient (a proxy's or server's mistake)."""
    if content_length is not None and content_length != expected:
        raise ShortReadError(f"{where}: Content-Length {content_length} for a range of {expected} bytes")


def check_complete(where: str, filled: int, expected: int) -> int:
    """The body's length, once it is all the answer said it holds: a body cut short is transient, never taken as
    a short file (a connection closed early looks the same to the client when no length was sent)."""
    if filled != expected:
        raise ShortReadError(f"{where}: the answer ended after {filled} of its {expected} bytes")
    return filled


def append(out: memoryview, filled: int, chunk: bytes, where: str) -> int:
    """Copy a chunk of the body after the `filled` bytes already in `out`; refuse a body longer than expected."""
    end = filled + len(chunk)
    if end > len(out):
        raise ShortReadError(f"{where}: the answer is longer than the {len(out)} bytes expected")
    out[filled:end] = chunk
    return end
