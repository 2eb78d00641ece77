"""A reload reaches every worker of `denial-risk serve --workers 2` (serving/server.py).

POST /v1/admin/reload arrives at the one worker its connection landed on; the other kept the
model replaced, and its clients were scored by the old version for as long as it ran.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from training import registry

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="SO_REUSEPORT balances on Linux"
    ),
]

KEY = "integration-test-key-0123456789"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _versions_served(url: str, connections: int) -> list[str]:
    """The model version each of ``connections`` new connections is served by (the kernel
    spreads new connections over the workers' sockets)."""
    versions = []
    for _ in range(connections):
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as client:
            versions.append(client.get("/v1/model").json()["version"])
    return versions


def test_a_reload_answered_by_one_worker_has_reloaded_them_all(
    trained: Any, tmp_path: Path
) -> None:
    # A registry of our own (the session's champion must not move): a copy of the trained one,
    # with the same model registered again as version 2.
    source = Path(trained.tracking_uri.removeprefix("sqlite:///"))
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    shutil.copy(source, tmp_path / "mlflow.db")
    client = registry.configure(tracking_uri)
    first = client.get_model_version_by_alias("denial-risk", "champion")
    second = client.create_model_version("denial-risk", first.source, run_id=first.run_id)
    assert str(second.version) != str(first.version)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    command = [
        str(Path(sys.executable).with_name("denial-risk")), "serve", "--port", str(port),
        "--model", "models:/denial-risk@champion", "--tracking-uri", tracking_uri,
        "--workers", "2",
    ]  # fmt: skip
    env = {**os.environ, "DENIAL_RISK_API_KEYS": json.dumps([KEY])}
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert set(_versions_served(url, 20)) == {str(first.version)}

        registry.promote(client, "denial-risk", str(second.version))
        answer = httpx.post(f"{url}/v1/admin/reload", headers={"X-API-Key": KEY}, timeout=300)
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == str(second.version)
        # 20 connections all on one of 2 sockets by chance: p = 2 * 0.5**20.
        served = _versions_served(url, 20)
        assert set(served) == {str(second.version)}, f"versions served after the reload: {served}"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert server.returncode == 0, log.read_text()
