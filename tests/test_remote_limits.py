"""Limits of remote reads (issue 14, "never a hang, never a blow-up"): a stalled GCS endpoint fails in a time
bounded by the retry policy and the timeout, and calls that cannot be watched chunk by chunk have a deadline."""

from __future__ import annotations

import asyncio
import time

import fsspec
import pytest

from embedding_reader import EmbeddingReader, ReadFailedError, RetryPolicy
from embedding_reader.errors import StalledReadError
from embedding_reader.storage import Storage
from embedding_reader.storage.identity import FileIdentities
from embedding_reader.storage.remote import ReadContext, RemoteIO, deadline
from tests.test_hostile_servers import SilentServer

pytestmark = pytest.mark.timeout(90)

FEW = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


# ------------------------------------------------------------------ gcs


def gcs_options(endpoint: str) -> dict:
    return {"endpoint_url": endpoint, "token": "anon"}


def test_stalled_gcs_endpoint_fails_in_bounded_time():
    """gcsfs's own retries are off, its requests carry the socket timeouts and its bucket probe (gRPC) waits one
    timeout once: 3 attempts of timeout=1 end in about 1 + 3 x (1 + 1) s, where they took over 400 s."""
    pytest.importorskip("gcsfs")
    silent = SilentServer()
    try:
        started = time.monotonic()
        with pytest.raises(ReadFailedError, match="failed after 3 attempts"):
            EmbeddingReader("gs://bucket/emb", storage_options=gcs_options(silent.url), retry_policy=FEW, timeout=1)
        seconds = time.monotonic() - started
    finally:
        silent.close()
    assert seconds < 1 + 3 * (1 + 1) + 5, seconds


def test_gcsfs_is_tuned():
    """The gcsfs hooks the tuning relies on still exist: one attempt per request, per-request socket timeouts."""
    pytest.importorskip("gcsfs")
    fs = Storage("gs://bucket/x", gcs_options("http://127.0.0.1:9"), FEW, timeout=2).fs
    assert fs._request.__func__ is type(fs)._request.__wrapped__
    assert fs.requests_timeout.sock_read == 3 and fs.requests_timeout.total is None
    assert "bounded" in fs._get_bucket_type.__qualname__


# ------------------------------------------------------------------ deadlines on unwatched reads


class StuckFileSystem:
    """An async filesystem whose reads never end (a client retrying inside, or a probe that never returns)."""

    async_impl = True

    def __init__(self) -> None:
        self.loop = fsspec.asyn.get_loop()

    async def _cat_file(self, path: str, start: int, end: int) -> bytes:
        await asyncio.sleep(3600)
        return b""


def test_cat_file_reads_have_a_deadline():
    """A read through fsspec's cat_file is abandoned after `deadline(timeout, nbytes)`: a StalledReadError."""
    io = RemoteIO(StuckFileSystem(), None, ReadContext(FileIdentities(), 0.5), lambda n: None)
    started = time.monotonic()
    with pytest.raises(StalledReadError, match="not done in"):
        io.cat("bucket/file", 0, 256, None)
    assert deadline(0.5, 256) <= time.monotonic() - started < deadline(0.5, 256) + 1


def test_deadline_allows_the_slowest_progressing_read():
    """The deadline is as long as a watched read making the least progress allowed: 64 KiB per timeout."""
    assert deadline(60, 0) == 61 and deadline(60, 16 * 2**20) == 61 * 257
