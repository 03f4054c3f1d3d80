"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.faults import FaultConfig
from tests.support.http_server import RangeHTTPServer
from tests.support.s3_server import FaultProxy, MotoS3Server


@pytest.fixture(scope="session")
def http_server_factory() -> Iterator[Callable[..., RangeHTTPServer]]:
    """Start ``RangeHTTPServer(root, **kwargs)`` servers on demand; all are stopped at session end."""
    servers: list[RangeHTTPServer] = []

    def start(root: str | os.PathLike[str], **kwargs: Any) -> RangeHTTPServer:
        """Start a server over ``root`` and remember it for teardown."""
        server = RangeHTTPServer(root, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3Server]:
    """One in-process moto S3 server for the session."""
    with MotoS3Server() as server:
        yield server


@pytest.fixture(scope="session")
def fault_proxy_factory() -> Iterator[Callable[..., FaultProxy]]:
    """Start ``FaultProxy(target_url, faults, **kwargs)`` proxies on demand; all are stopped at session end."""
    proxies: list[FaultProxy] = []

    def start(target_url: str, faults: FaultConfig | None = None, **kwargs: Any) -> FaultProxy:
        """Start a proxy to ``target_url`` and remember it for teardown."""
        proxy = FaultProxy(target_url, faults, **kwargs).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()
