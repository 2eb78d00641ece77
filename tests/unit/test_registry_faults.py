"""A champion that cannot be loaded: damaged files, a registry that does not answer, a local
copy that cannot be read (issue 20). The API starts, says why it is not ready, and recovers.

The registry is a real sqlite one with a small real champion (``small_registry``); a registry
that cannot be reached is an http:// address on a loopback port nothing listens on
(tests/integration/test_registry_down.py has one that never answers).
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from denial_risk.settings import Settings
from serving.app import create_app
from tests.utils.factories import make_claim
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


def _garble(path: Path) -> None:
    path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(256)) * 8)  # a zstd magic, then noise


def _damage(small: SmallRegistry, damage: str) -> Path:
    """Damage the champion's files in the artifact store; the folder that keeps them whole."""
    kept = small.files.with_name("kept-by-test")
    shutil.copytree(small.files, kept)
    if damage == "missing":
        shutil.rmtree(small.files)
    else:
        {"truncated": _truncate, "garbled": _garble}[damage](small.pipeline_file)
    return kept


def _restore(small: SmallRegistry, kept: Path) -> None:
    shutil.rmtree(small.files, ignore_errors=True)
    kept.rename(small.files)


@pytest.mark.parametrize("damage", ["truncated", "garbled", "missing"])
def test_a_damaged_champion_is_not_ready_with_the_reason_and_reload_recovers(
    small_registry: SmallRegistry, tmp_path: Path, damage: str
) -> None:
    settings = _settings(small_registry, tmp_path / "copies")
    with TestClient(create_app(settings)) as healthy:  # keeps a good local copy
        assert healthy.get("/ready").status_code == 200
    kept: Path | None = _damage(small_registry, damage)
    try:
        with TestClient(create_app(settings)) as client:
            ready = client.get("/ready")
            assert ready.status_code == 503
            reason = ready.json()["reason"]
            assert f"the files of version {small_registry.version} cannot be" in reason, reason
            assert "promote another version" in reason and "/v1/admin/reload" in reason
            assert "/tmp" not in reason  # noqa: S108 (where the artifact store is is withheld)
            # The registry answered: the local copy does not stand in for its champion.
            assert ready.json()["warning"] is None
            score = client.post("/v1/claims/score", json={"claims": [make_claim()]}, headers=AUTH)
            assert score.status_code == 503
            assert f"version {small_registry.version} cannot be" in score.json()["detail"]

            assert kept is not None
            _restore(small_registry, kept)
            kept = None
            reload = client.post("/v1/admin/reload", headers=AUTH)
            assert reload.status_code == 200, reload.text
            assert client.get("/ready").json() == {
                "ready": True,
                "model_version": small_registry.version,
                "reason": None,
                "warning": None,
            }
    finally:
        if kept is not None:
            _restore(small_registry, kept)


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
    assert "127.0.0.1" not in reason and str(port) not in reason
    assert "/tmp" not in reason  # noqa: S108 (no path of the store)
