"""`denial-risk serve` while the MLflow server is down, and when it comes back (issue 20).

Real processes and sockets: `denial-risk serve` in its own process on a loopback port, pointed
at a tracking server address on loopback where nothing listens (connection refused); then a
real MLflow tracking server (MLflow's own server app, on a thread of this process) starts on
that address over the small registry, stops, and starts again.
"""

from __future__ import annotations

import json
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
import pytest

from tests.utils.factories import make_claim
from tests.utils.registry import SmallRegistry

pytestmark = pytest.mark.integration

KEY = "registry-down-test-key-0123456789"
AUTH = {"X-API-Key": KEY}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _serve(
    tracking_uri: str, copies: Path, log: Path, **settings: str
) -> Iterator[tuple[str, float]]:
    """`denial-risk serve` as a user starts it, with ``settings`` as DENIAL_RISK_* variables;
    (its URL, seconds until /health answered)."""
    port = _free_port()
    env = {
        **os.environ,
        "DENIAL_RISK_API_KEYS": json.dumps([KEY]),
        "DENIAL_RISK_LOCAL_COPY_DIR": str(copies),
        "DENIAL_RISK_MODEL_RETRY_SECONDS": "0.5",
        "DENIAL_RISK_MODEL_RETRY_MAX_SECONDS": "1",
        **{f"DENIAL_RISK_{name.upper()}": value for name, value in settings.items()},
    }
    command = [
        str(Path(sys.executable).with_name("denial-risk")), "serve", "--port", str(port),
        "--tracking-uri", tracking_uri,
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with log.open("ab") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        while True:
            assert server.poll() is None, f"serve exited:\n{log.read_text()}"
            # Before the fix it listened only after MLflow's retries gave up: 497 s.
            assert time.monotonic() - started < 120, f"no /health in 120 s:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url, time.monotonic() - started
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:  # stuck in its start-up: not left behind
            server.kill()
            server.wait(30)


@contextmanager
def _mlflow_server(
    port: int, small: SmallRegistry, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """MLflow's tracking server app over the small registry, on 127.0.0.1:``port``."""
    from mlflow.server import BACKEND_STORE_URI_ENV_VAR, app
    from werkzeug.serving import make_server

    monkeypatch.setenv(BACKEND_STORE_URI_ENV_VAR, small.tracking_uri)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="mlflow-server", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _ready_within(url: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        answer = httpx.get(f"{url}/ready", timeout=5)
        if answer.status_code == 200 or time.monotonic() > deadline:
            return {"status": answer.status_code, **answer.json()}
        time.sleep(0.2)


def test_serve_starts_with_the_registry_down_and_serves_the_champion_once_it_is_back(
    small_registry: SmallRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry_port = _free_port()  # nothing listens there yet
    tracking_uri = f"http://127.0.0.1:{registry_port}"
    copies, log = tmp_path / "copies", tmp_path / "serve.log"
    version = small_registry.version

    # 1. No registry and no local copy: listening at once, not ready, saying why.
    with _serve(tracking_uri, copies, log) as (url, seconds):
        print(f"registry down, no copy: /health answered {seconds:.1f} s after `serve` started")
        ready = httpx.get(f"{url}/ready")
        assert ready.status_code == 503
        reason = ready.json()["reason"]
        assert "the model registry cannot be reached (connection refused)" in reason, reason
        assert "no local copy to serve meanwhile" in reason
        assert reason.endswith("retrying in the background")
        assert "127.0.0.1" not in reason and str(registry_port) not in reason

        # 2. The registry comes back: the champion loads without a restart.
        with _mlflow_server(registry_port, small_registry, monkeypatch):
            ready_body = _ready_within(url, 60)
            assert ready_body == {
                "status": 200,
                "ready": True,
                "model_version": version,
                "reason": None,
                "warning": None,
            }
            model = httpx.get(f"{url}/v1/model", headers=AUTH).json()
            assert model["local_copy_saved_at"] is None and model["warning"] is None
    record = json.loads((copies / "denial-risk@champion" / "last-good.json").read_text())
    assert record["model"]["version"] == version and record["folder"] == f"v{version}"

    # 3. Down again at the next start: the last good local copy is served, and said to be.
    with _serve(tracking_uri, copies, log) as (url, seconds):
        print(f"registry down, local copy: /health answered {seconds:.1f} s after start")
        ready_body = _ready_within(url, 10)
        assert ready_body["status"] == 200 and ready_body["model_version"] == version
        warning = ready_body["warning"]
        assert warning.startswith(f"serving the local copy of denial-risk version {version} saved")
        assert "the model registry cannot be reached (connection refused)" in warning
        assert warning.endswith("retrying in the background")
        assert "127.0.0.1" not in warning
        model = httpx.get(f"{url}/v1/model", headers=AUTH).json()
        assert model["version"] == version and model["warning"] == warning
        assert model["local_copy_saved_at"] == record["saved_at"]
        score = httpx.post(
            f"{url}/v1/claims/score", json={"claims": [make_claim()]}, headers=AUTH, timeout=30
        )
        assert score.status_code == 200 and score.json()["model_version"] == version

        # 4. Back again: the registry's champion replaces the copy, without a restart.
        with _mlflow_server(registry_port, small_registry, monkeypatch):
            deadline = time.monotonic() + 60
            while httpx.get(f"{url}/ready").json()["warning"] is not None:
                assert time.monotonic() < deadline, "still on the local copy after 60 s"
                time.sleep(0.2)
            model = httpx.get(f"{url}/v1/model", headers=AUTH).json()
            assert model["local_copy_saved_at"] is None and model["version"] == version
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert events.count("model_loaded") == 2 and events.count("serving_local_copy") == 1


def test_serve_starts_when_the_registry_takes_connections_and_never_answers(
    small_registry: SmallRegistry, tmp_path: Path
) -> None:
    # A firewalled or hung tracking server: MLflow's defaults (120 s a request, 7 retries with
    # backoff) held the start for many minutes; bounded, each load fails after 1 s.
    with socket.socket() as silent:  # the kernel takes the connections; nothing answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        tracking_uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        copies, log = tmp_path / "copies", tmp_path / "serve.log"
        with _serve(tracking_uri, copies, log, registry_timeout_seconds="1") as (url, seconds):
            print(f"registry silent: /health answered {seconds:.1f} s after `serve` started")
            ready = httpx.get(f"{url}/ready")
    assert ready.status_code == 503
    reason = ready.json()["reason"]
    assert "the model registry cannot be reached (no answer in time)" in reason, reason
