"""A real uvicorn server on a loopback port: in a thread of the test process, or started as
`denial-risk serve` in a process of its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


CLI = "import sys; from denial_risk.cli import app; sys.exit(app())"
"""What the ``denial-risk`` console script runs, for ``python -c``: the code of the checkout
the tests import (the script's own interpreter may import another one)."""


@contextmanager
def serve_command(
    options: list[str], env: dict[str, str], cwd: Path, stdout: Path, stderr: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`denial-risk serve OPTIONS` in a process of its own on a free loopback port, its
    output in ``stdout`` and ``stderr``; yields it and its URL as soon as it has started (see
    :func:`wait_until_answered`). Stopped with SIGTERM when the block ends (killed only if it
    does not stop within 60 s)."""
    import denial_risk

    port = free_port()
    checkout = str(Path(denial_risk.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (checkout, env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-c", CLI, "serve", "--port", str(port), *options]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        server = subprocess.Popen(
            command, env={**env, "PYTHONPATH": path}, cwd=cwd, stdout=out, stderr=err
        )
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(60)


def wait_until_answered(
    server: subprocess.Popen[bytes], url: str, status: int = 200, seconds: float = 120
) -> None:
    """Until GET ``url`` answers ``status`` (``/ready``: the model is loaded); fails if the
    server exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        assert server.poll() is None, f"serve exited with {server.returncode}"
        assert time.monotonic() < deadline, f"{url} did not answer {status} in {seconds:.0f} s"
        try:
            if httpx.get(url, timeout=5).status_code == status:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
