"""Connection pools: opening many files keeps MAX_CONNECTIONS requests in flight over http and s3 (aiohttp alone
allows 100, botocore 10), and a pool the user configured is kept. Counted at a loopback server whose latency holds
every request long enough for the client to open all the connections it may. Rows read over these servers are
checked in test_remote.py."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from embedding_reader import EmbeddingReader
from embedding_reader.storage.http import MAX_CONNECTIONS
from tests.support.collections import write_npy_collection

pytestmark = pytest.mark.timeout(120)

FILES = MAX_CONNECTIONS + 40
LATENCY_S = 0.5  # all MAX_CONNECTIONS first requests are sent long before the first answer comes back
S3_LATENCY_S = 2.0  # botocore signs each request: more CPU per request, so more margin
USER_LIMIT = 7


@pytest.fixture(scope="module")
def many_files(tmp_path_factory):
    """FILES one-row npy files."""
    folder = tmp_path_factory.mktemp("many") / "embeddings"
    return write_npy_collection(folder, [1] * FILES, dim=4)


@pytest.fixture(scope="module")
def many_files_on_s3(moto_s3, many_files) -> str:
    """The FILES files uploaded to moto; their folder url."""
    moto_s3.upload_folder(many_files.folder, "connections", "many")
    return "s3://connections/many"


async def small_pool_client(**client_kwargs) -> aiohttp.ClientSession:
    """A user's own aiohttp session factory, with a pool of USER_LIMIT connections."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=USER_LIMIT), **client_kwargs)


def open_collection(url: str, collection, **storage_options) -> None:
    """Open the collection at `url` (every file's header read) and check what the headers say."""
    reader = EmbeddingReader(url, file_format="npy", storage_options=storage_options or None)
    assert [header.count for header in reader.headers] == collection.rows_per_file
    assert (reader.count, reader.dimension) == collection.embeddings.shape


@pytest.mark.parametrize("options", [{}, {"headers": {"X-Test": "1"}}])
def test_http_opens_max_connections(http_server_factory, many_files, options):
    """With or without storage options, header reads fill the pool of MAX_CONNECTIONS (aiohttp alone: 100)."""
    server = http_server_factory(Path(many_files.folder).parent, latency_s=LATENCY_S)
    open_collection(f"{server.url}/embeddings/", many_files, **options)
    assert server.peak_connections == MAX_CONNECTIONS


def test_http_keeps_the_users_client(http_server_factory, many_files):
    server = http_server_factory(Path(many_files.folder).parent, latency_s=LATENCY_S / 5)
    open_collection(f"{server.url}/embeddings/", many_files, get_client=small_pool_client)
    assert server.peak_connections == USER_LIMIT


@pytest.mark.parametrize("pool", [None, USER_LIMIT])
def test_s3_opens_max_connections_unless_told(moto_s3, fault_proxy_factory, many_files, many_files_on_s3, pool):
    proxy = fault_proxy_factory(moto_s3.endpoint_url, latency_s=S3_LATENCY_S if pool is None else LATENCY_S / 5)
    options = moto_s3.storage_options(proxy.url)
    if pool is not None:
        options["config_kwargs"] = {"max_pool_connections": pool}
    open_collection(many_files_on_s3, many_files, **options)
    assert proxy.peak_connections == (pool or MAX_CONNECTIONS)
