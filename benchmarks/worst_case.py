"""How long a read takes to fail against an endpoint that accepts connections and never answers, with the
library's default settings (timeout 60 s, RetryPolicy(8 attempts)). Usage: python benchmarks/worst_case.py http|s3"""

import socket
import sys
import threading
import time

from embedding_reader import EmbeddingReader


def silent_endpoint() -> str:
    """A loopback port that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in iter(int, 1)], daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}"


def main(protocol: str) -> None:
    endpoint = silent_endpoint()
    if protocol == "http":
        url, options = f"{endpoint}/emb/", None
    else:
        client = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        url, options = "s3://bucket/emb", {"key": "k", "secret": "s", "client_kwargs": client}
    started = time.monotonic()
    try:
        EmbeddingReader(url, storage_options=options)
        outcome = "opened (unexpected)"
    except Exception as exc:  # pylint: disable=broad-except  # the point is to see what it ends in
        outcome = f"{type(exc).__name__}: {str(exc)[:160]}"
    print(f"{protocol}: failed after {time.monotonic() - started:.1f} s with defaults: {outcome}")


if __name__ == "__main__":
    main(sys.argv[1])
