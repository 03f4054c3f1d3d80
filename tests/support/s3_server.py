"""In-process moto S3 server and a fault-injecting reverse proxy in front of it, both on 127.0.0.1."""

from __future__ import annotations

import http.client
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from .base import CHUNK_BYTES, FaultHandler, LoopbackServer
from .faults import STATUS_OF_FAULT, FaultConfig, FaultKind, ResponsePlan

__all__ = ["FaultConfig", "FaultProxy", "MotoS3Server"]

DUMMY_KEY = "testing-key"
DUMMY_SECRET = "testing-secret"
REGION = "us-east-1"

# Headers that describe one hop, not the message: never relayed. Content-Length and Date are set by the proxy.
_NOT_RELAYED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
        "date",
    }
)
_S3_ERROR_CODES = {500: "InternalError", 503: "SlowDown", 429: "TooManyRequestsException"}


class MotoS3Server:
    """moto's S3 server mode in a background thread on 127.0.0.1:<free port>, with dummy credentials.

    Credentials are handed to clients explicitly (``storage_options()``, ``upload_folder()``); no environment
    variable is read or set.
    """

    def __init__(self) -> None:
        """Configure the server; nothing listens before ``start()``."""
        self._server: Any = None
        self.endpoint_url = ""

    def start(self) -> MotoS3Server:
        """Start moto (werkzeug's request log is turned down to warnings); return self."""
        from moto.server import ThreadedMotoServer

        if self._server is None:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._server.start()
            _disable_nagle(self._server)
            host, port = self._server.get_host_and_port()
            self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        """Stop moto."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoS3Server:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    def storage_options(self, endpoint_url: str | None = None) -> dict[str, Any]:
        """Return s3fs options reaching this server (or ``endpoint_url``, e.g. a FaultProxy) with dummy keys."""
        return {
            "key": DUMMY_KEY,
            "secret": DUMMY_SECRET,
            "client_kwargs": {"endpoint_url": endpoint_url or self.endpoint_url, "region_name": REGION},
        }

    def upload_folder(self, local_dir: str | os.PathLike[str], bucket: str, prefix: str = "") -> list[str]:
        """Create ``bucket`` if needed and upload every file under ``local_dir`` to ``prefix/<relative path>``.

        Returns the uploaded keys, sorted.
        """
        client = self._boto3_client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
        root = Path(local_dir)
        keys = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = "/".join(part for part in (prefix.strip("/"), path.relative_to(root).as_posix()) if part)
            client.upload_file(str(path), bucket, key)
            keys.append(key)
        return keys

    def _boto3_client(self) -> Any:
        """Return a boto3 S3 client for this server with the dummy credentials passed explicitly."""
        import boto3

        session = boto3.session.Session(
            aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_SECRET, region_name=REGION
        )
        return session.client("s3", endpoint_url=self.endpoint_url)


def _disable_nagle(moto_server: Any) -> None:
    """Answer moto's requests with TCP_NODELAY: werkzeug writes headers and body separately, and Nagle's algorithm
    with the client's delayed ACK would then add about 40 ms to every request. Best effort (moto internals)."""
    wsgi_server = getattr(moto_server, "_server", None)
    handler = getattr(wsgi_server, "RequestHandlerClass", None)
    if handler is not None:
        wsgi_server.RequestHandlerClass = type("NoDelayHandler", (handler,), {"disable_nagle_algorithm": True})


class _ProxyHandler(FaultHandler):
    """Relays each request to the target over one keep-alive upstream connection per client connection."""

    def setup(self) -> None:
        """Prepare the (lazily connected) upstream connection."""
        super().setup()
        owner = cast(FaultProxy, self.owner)
        self.upstream = http.client.HTTPConnection(owner.target_host, owner.target_port, timeout=60)

    def finish(self) -> None:
        """Close the upstream connection with the client's."""
        self.upstream.close()
        super().finish()

    def do_GET(self) -> None:
        """Relay a GET."""
        self._relay()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def error_body(self, status: int) -> tuple[bytes, str]:
        """Return an S3-style XML error so that botocore parses an error code."""
        code = _S3_ERROR_CODES[status]
        xml = f"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>{code}</Code><Message>injected {status}</Message>"
        return (xml + "<RequestId>injected</RequestId></Error>").encode(), "application/xml"

    def _relay(self) -> None:
        """Forward the request, then relay the answer with a fault drawn for it."""
        self.begin_request()
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse(501)  # request bodies are relayed by Content-Length only
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        try:
            response = self._forward(body)
        except (OSError, http.client.HTTPException):
            self._refuse(502)
            return
        try:
            self._answer(response)
        finally:
            if not response.isclosed():  # body left unread: the upstream connection cannot be reused
                self.upstream.close()

    def _refuse(self, status: int) -> None:
        """Answer an empty error and close the client connection."""
        self.write_head(status, {"Content-Type": "text/plain", "Connection": "close"}, 0)

    def _forward(self, body: bytes | None) -> http.client.HTTPResponse:
        """Send the request upstream, reconnecting once if the kept-alive upstream connection went stale."""
        try:
            return self._send_upstream(body)
        except (ConnectionError, http.client.HTTPException):
            self.upstream.close()
            return self._send_upstream(body)

    def _send_upstream(self, body: bytes | None) -> http.client.HTTPResponse:
        """Send the request with the client's own headers (Host included, so SigV4 signatures still hold)."""
        self.upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in _NOT_RELAYED:
                self.upstream.putheader(name, value)
        if body is not None:
            self.upstream.putheader("Content-Length", str(len(body)))
        self.upstream.endheaders(body)
        return self.upstream.getresponse()

    def _answer(self, response: http.client.HTTPResponse) -> None:
        """Relay status, headers and body, or play the drawn fault instead."""
        is_head = self.command == "HEAD"
        header_length = response.getheader("Content-Length")
        chunks: Iterator[bytes] | list[bytes]
        if header_length is None and not is_head:
            chunks = [response.read()]
            length = len(chunks[0])
        else:
            chunks = iter(lambda: response.read(CHUNK_BYTES), b"")
            length = int(header_length or 0)
        headers = {name: value for name, value in response.getheaders() if name.lower() not in _NOT_RELAYED}
        object_path = "/" in urlsplit(self.path).path.strip("/")
        plan = ResponsePlan(
            self.path,
            length,
            is_head,
            is_partial=response.status == 206,
            exempt=response.status >= 300 or not object_path,
        )
        fault = self.decide_fault(plan)
        if fault in STATUS_OF_FAULT:
            self.send_status_fault(fault)
            return
        if fault is FaultKind.SHORT_206:
            length //= 2
            headers["Content-Range"] = _shortened_content_range(response.getheader("Content-Range", ""), length)
        self.write_head(response.status, headers, length)
        if not is_head:
            self.write_body(chunks, length, fault)


def _shortened_content_range(content_range: str, length: int) -> str:
    """Rewrite ``bytes a-b/size`` to cover only ``length`` bytes from ``a``."""
    span, _, size = content_range.removeprefix("bytes ").partition("/")
    first = int(span.partition("-")[0])
    return f"bytes {first}-{first + length - 1}/{size}"


class FaultProxy(LoopbackServer):
    """Reverse proxy on http://127.0.0.1:<free port> in front of ``target_url`` (moto), injecting faults.

    Only object requests (``/bucket/key``) answered 2xx upstream are faulted; bucket-level requests (listings,
    bucket creation) and upstream errors pass through unless ``always_fail``. ``stats.bytes_sent`` counts the
    body bytes relayed to clients.
    """

    handler_class = _ProxyHandler

    def __init__(
        self,
        target_url: str,
        faults: FaultConfig | None = None,
        latency_s: float = 0.0,
        bytes_per_s_per_connection: float | None = None,
    ) -> None:
        """Relay to ``target_url`` (scheme http, e.g. ``MotoS3Server.endpoint_url``)."""
        super().__init__(faults, latency_s, bytes_per_s_per_connection)
        target = urlsplit(target_url)
        self.target_url = target_url
        self.target_host = target.hostname or "127.0.0.1"
        self.target_port = target.port or 80
