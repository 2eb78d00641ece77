"""A real uvicorn server on a loopback port, in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from denial_risk.settings import Settings
from serving.server import uvicorn_options


@contextmanager
def served(app: Any, settings: Settings) -> Iterator[str]:
    """``app`` served on a free loopback port until the block ends, with the uvicorn options
    `denial-risk serve` gives it for ``settings``; yields its base URL.

    Stopped as SIGTERM stops it (requests in flight are finished), never killed.
    """
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    config = uvicorn.Config(app, **{**uvicorn_options(settings), "log_level": "warning"})
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listening]}, name="uvicorn-test", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start within 60 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        listening.close()
        assert not thread.is_alive(), "uvicorn did not stop"
