"""Threaded HTTP/1.1 static file server over a local folder, with byte ranges, listings and injected faults."""

from __future__ import annotations

import html
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast
from urllib.parse import quote, unquote, urlsplit

from .base import CHUNK_BYTES, FaultHandler, LoopbackServer
from .faults import BODY_FAULTS, STATUS_OF_FAULT, FaultConfig, FaultKind, ResponsePlan

__all__ = ["FaultConfig", "RangeHTTPServer", "UnsatisfiableRange", "listing_html", "parse_range", "stat_under"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class UnsatisfiableRange(ValueError):
    """The Range header asks for bytes the file does not have (answered 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return the inclusive (first, last) byte positions asked by a single-range header, or None for the whole file.

    ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` are understood; headers that do not parse (other units, several
    ranges) are ignored as RFC 9110 allows. Raises UnsatisfiableRange for ranges past the end or inverted.
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise UnsatisfiableRange(header)
        return max(0, size - suffix), size - 1
    start = int(first)
    if start >= size or (last and int(last) < start):
        raise UnsatisfiableRange(header)
    return start, min(int(last), size - 1) if last else size - 1


def stat_under(root: str, url_path: str) -> tuple[str, os.stat_result] | None:
    """The path under ``root`` a URL path names and its stat; None if it escapes the root or does not exist.

    The path is worked out from its text (no symlink resolution: these servers serve test folders) and costs one
    stat, not the lstat per component of ``Path.resolve``, a third of a small request's CPU when it did.
    """
    candidate = os.path.normpath(os.path.join(root, url_path.lstrip("/")))
    if candidate != root and not candidate.startswith(root.rstrip(os.sep) + os.sep):
        return None
    try:
        return candidate, os.stat(candidate)
    except OSError:
        return None


def _file_chunks(path: Path, first: int, length: int) -> Iterator[bytes]:
    """Yield ``length`` bytes of the file from offset ``first``, in chunks of at most CHUNK_BYTES."""
    with path.open("rb") as file:
        file.seek(first)
        remaining = length
        while remaining > 0:
            chunk = file.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


def listing_html(url_path: str, folder: Path) -> bytes:
    """Render a folder as HTML links that fsspec's HTTPFileSystem parses (folders end with a slash)."""
    base = url_path.rstrip("/") + "/"
    items = []
    with os.scandir(folder) as entries:  # scandir knows folders from the listing itself: no stat per entry
        found = sorted(entries, key=lambda entry: entry.name)
    for entry in found:
        slash = "/" if entry.is_dir() else ""
        items.append(f'<li><a href="{quote(entry.name)}{slash}">{html.escape(entry.name)}{slash}</a></li>')
    title = html.escape(base)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><base href="{quote(base)}">'
        f"<title>Index of {title}</title></head>\n<body><ul>\n" + "\n".join(items) + "\n</ul></body></html>\n"
    ).encode()


class _StaticFileHandler(FaultHandler):
    """Answers GET/HEAD for files (with ranges) and folders (with listings) under the server root."""

    def do_GET(self) -> None:
        """Serve a GET."""
        self._serve()

    def do_HEAD(self) -> None:
        """Serve a HEAD: the headers a GET would get."""
        self._serve()

    def _serve(self) -> None:
        """Dispatch to a listing, a file, or a 404."""
        self.begin_request()
        url_path = unquote(urlsplit(self.path).path)
        target = self._resolve(url_path)
        if target is not None and target.is_dir():
            self._serve_listing(url_path, target)
        elif target is not None and target.is_file():
            self._serve_file(url_path, target)
        else:
            self._serve_plain(url_path, 404, b"not found\n", {})

    def _resolve(self, url_path: str) -> Path | None:
        """Map a URL path to a path under the root; None if it escapes the root or does not exist."""
        found = stat_under(str(cast(RangeHTTPServer, self.owner).root), url_path)
        return None if found is None else Path(found[0])

    def _serve_plain(self, url_path: str, status: int, body: bytes, headers: dict[str, str]) -> None:
        """Answer a small fault-exempt response (listing, 404, 416); only ``always_fail`` overrides it."""
        fault = self.decide_fault(ResponsePlan(url_path, len(body), is_head=self.command == "HEAD", exempt=True))
        if fault is not None:
            self.send_status_fault(fault)
            return
        self.write_head(status, {"Content-Type": "text/plain; charset=utf-8", **headers}, len(body))
        if self.command != "HEAD":
            self.write_body([body], len(body))

    def _serve_listing(self, url_path: str, folder: Path) -> None:
        """Answer an HTML listing of the folder, cut short if the server still has listings to cut."""
        owner = cast(RangeHTTPServer, self.owner)
        if self.command == "GET" and owner.take_listing_cut():
            body = listing_html(url_path, folder)
            self.owner.stats.count_fault(owner.cut_listing_fault)
            self.write_head(200, {"Content-Type": "text/html; charset=utf-8"}, len(body))
            self.write_body([body], len(body), owner.cut_listing_fault)
            return
        self._serve_plain(url_path, 200, listing_html(url_path, folder), {"Content-Type": "text/html; charset=utf-8"})

    def _serve_file(self, url_path: str, path: Path) -> None:
        """Answer the file or the asked byte range of it, possibly with an injected fault."""
        stat = path.stat()
        size = stat.st_size
        try:
            ranges = self.headers.get("Range") if not cast(RangeHTTPServer, self.owner).ignore_ranges else None
            byte_range = parse_range(ranges, size)
        except UnsatisfiableRange:
            self._serve_plain(url_path, 416, b"range not satisfiable\n", {"Content-Range": f"bytes */{size}"})
            return
        first, last = byte_range or (0, size - 1)
        length = last - first + 1
        is_head = self.command == "HEAD"
        fault = self.decide_fault(ResponsePlan(url_path, length, is_head, is_partial=byte_range is not None))
        if fault in STATUS_OF_FAULT:
            self.send_status_fault(fault)
            return
        if fault is FaultKind.SHORT_206:
            length //= 2
            last = first + length - 1
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "Last-Modified": self.date_time_string(int(stat.st_mtime)),
            "ETag": f'"{size:x}-{stat.st_mtime_ns:x}"',
        }
        if byte_range is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        self.write_head(206 if byte_range is not None else 200, headers, length)
        if not is_head:
            self.write_body(_file_chunks(path, first, length), length, fault)


class RangeHTTPServer(LoopbackServer):
    """Static file server over ``root`` on http://127.0.0.1:<free port>, for fsspec/aiohttp clients.

    ``latency_s`` is slept before answering each request; ``bytes_per_s_per_connection`` caps each response body's
    rate; ``faults`` injects errors (listings are spared); the first ``cut_listings`` folder listings are cut by
    ``cut_listing_fault`` (TRUNCATE or RESET: full Content-Length, half the page). Use as a context manager or with
    ``start()``/``stop()``; read ``url``/``stats``.
    """

    handler_class = _StaticFileHandler

    def __init__(
        self,
        root: str | os.PathLike[str],
        faults: FaultConfig | None = None,
        latency_s: float = 0.0,
        bytes_per_s_per_connection: float | None = None,
        ignore_ranges: bool = False,
        cut_listings: int = 0,
        cut_listing_fault: FaultKind = FaultKind.TRUNCATE,
    ) -> None:
        """Serve the files under ``root``; with ``ignore_ranges``, every GET gets the whole file (200), as
        some servers do."""
        super().__init__(faults, latency_s, bytes_per_s_per_connection)
        self.root = Path(root).resolve()
        self.ignore_ranges = ignore_ranges
        if cut_listing_fault not in BODY_FAULTS:
            raise ValueError(f"cut_listing_fault must be TRUNCATE or RESET, got {cut_listing_fault}")
        self.cut_listing_fault = cut_listing_fault
        self._cuts_left = cut_listings
        self._cuts_lock = threading.Lock()

    def take_listing_cut(self) -> bool:
        """Whether the next listing is to be cut (each of the first ``cut_listings`` is)."""
        with self._cuts_lock:
            if self._cuts_left <= 0:
                return False
            self._cuts_left -= 1
            return True
