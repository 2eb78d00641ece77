"""A champion that cannot be loaded: a registry that does not answer, a local copy that cannot
be read (issue 20). The API starts, and says why it is not ready.

The registry is a real sqlite one with a small real champion (``small_registry``); a registry
that cannot be reached is an http:// address on a loopback port nothing listens on
(tests/integration/test_registry_down.py has one that never answers).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from denial_risk.settings import Settings
from serving.app import create_app
from tests.utils.registry import SmallRegistry

KEY = "registry-faults-test-key-0123456789"
AUTH = {"X-API-Key": KEY}


def _settings(small: SmallRegistry, copies: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_uri": small.model_uri,
        "tracking_uri": small.tracking_uri,
        "api_keys": [KEY],
        "local_copy_dir": copies,
        "model_retry_seconds": 3600,  # only a reload recovers, unless a test says otherwise
        "model_retry_max_seconds": 3600,
    }
    values.update(overrides)
    return Settings(**values)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def test_an_unreadable_local_copy_with_the_registry_unreachable_is_not_ready_saying_both(
    small_registry: SmallRegistry, tmp_path: Path
) -> None:
    copies = tmp_path / "copies"
    with TestClient(create_app(_settings(small_registry, copies))) as healthy:
        assert healthy.get("/ready").status_code == 200
    copy = copies / "denial-risk@champion" / f"v{small_registry.version}"
    _truncate(copy / "artifacts" / small_registry.pipeline_file.name)
    port = _closed_port()
    down = _settings(small_registry, copies, tracking_uri=f"http://127.0.0.1:{port}")
    with TestClient(create_app(down)) as client:
        ready = client.get("/ready")
    assert ready.status_code == 503
    reason = ready.json()["reason"]
    assert "the model registry cannot be reached (connection refused)" in reason, reason
    assert f"its local copy (version {small_registry.version}) cannot be read" in reason
    assert reason.endswith("; retrying in the background")
    assert "127.0.0.1" not in reason and str(port) not in reason and "/tmp" not in reason
