"""Loopback servers for the remote cases (the project's test servers), each counting requests, bytes and connections."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BUCKET = "bench"


@dataclass
class Remote:
    """A running server over one dataset: the folder URL to read, its counters, and client settings."""

    folder_url: str
    server: Any  # exposes .stats (requests, bytes_sent), peak_connections and reset_stats()
    project_ctor_kwargs: dict[str, Any] = field(default_factory=dict)
    reference_env: dict[str, str] = field(default_factory=dict)
    storage_options: dict[str, Any] | None = None
    file_urls: list[str] = field(default_factory=list)


def _support() -> Any:
    """Import tests.support from the repo (the servers are shared with the test suite)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests import support

    return support


@contextlib.contextmanager
def http(
    root: Path, files: list[str], latency_s: float = 0.0, rate: float | None = None, loops: int = 2
) -> Iterator[Remote]:
    """Serve `root` over HTTP with Range support; yield the Remote for its `embeddings/` folder.

    The asyncio test server, not the threaded one: that spends about 1.2 ms of CPU per request and 2 s per GB on the
    cores the client runs on, which made it the bottleneck of every http case (see tests/support/async_http_server.py).
    `loops` event loops serve the port: two copy large bodies on both cores (bench http case: 0.67 against 0.62 GB/s);
    one answers many small requests cheapest (10,000 header reads by hand, measured with the first version of the
    server and aiohttp header reads: 3.7 to 4.0 s against 4.4 to 4.6 with two).
    """
    _support()
    from tests.support.async_http_server import AsyncRangeHTTPServer

    with AsyncRangeHTTPServer(root, latency_s=latency_s, bytes_per_s_per_connection=rate, loops=loops) as server:
        urls = [f"{server.url}/{rel}" for rel in files]
        yield Remote(folder_url=f"{server.url}/embeddings/", server=server, file_urls=urls)


@contextlib.contextmanager
def s3(root: Path, files: list[str], prefix: str) -> Iterator[Remote]:
    """Serve the dataset from moto's S3 server behind a counting proxy; yield the Remote for s3://bench/prefix.

    The project gets `storage_options=`; the reference (which has no such argument) gets the very same
    options through fsspec's configuration environment variable FSSPEC_S3 (a JSON dict of s3fs kwargs).
    """
    _support()
    from tests.support.s3_server import FaultProxy, MotoS3Server

    with MotoS3Server() as moto:
        moto.upload_folder(root / "embeddings", BUCKET, prefix)
        with FaultProxy(moto.endpoint_url) as proxy:
            options = moto.storage_options(proxy.url)
            urls = [f"s3://{BUCKET}/{prefix}/{rel.split('/', 1)[1]}" for rel in files]
            yield Remote(
                folder_url=f"s3://{BUCKET}/{prefix}",
                server=proxy,
                project_ctor_kwargs={"storage_options": options},
                reference_env={"FSSPEC_S3": json.dumps(options)},
                storage_options=options,
                file_urls=urls,
            )
