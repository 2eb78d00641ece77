"""The API over real HTTP: uvicorn on a loopback port, the registered champion, httpx.

Scores simulated claims with explanations and checks every number equals what
:meth:`ScoringService.score` gives for the same claims in-process (no train/serve skew between
the HTTP path and batch scoring).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from denial_risk.settings import Settings
from features.claim_tables import ClaimTables
from features.schema import ClaimsDataset
from serving.api.scoring import claims_payload, score_request
from serving.app import create_app
from serving.loading import load_service
from serving.schemas import ScoreRequest
from tests.utils.servers import served

pytestmark = pytest.mark.integration

KEY = "integration-test-key-0123456789"
N_CLAIMS = 60


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(trained: Any) -> Iterator[str]:
    """A uvicorn server in a background thread, stopped (not killed) after the module."""
    settings = Settings(
        model_uri=trained.model_uri,
        tracking_uri=trained.tracking_uri,
        local_copy_dir=trained.local_copies,
        api_keys=[KEY],
    )
    with served(create_app(settings), settings) as url:
        yield url


@pytest.fixture(scope="module")
def recent_claims(trained: Any) -> ClaimTables:
    dataset, _ = ClaimsDataset.read(trained.sim_dir)
    tables = ClaimTables.from_dataset(dataset)
    latest = tables.claims.sort_values("submission_date").tail(N_CLAIMS)["claim_id"]
    return tables.subset(latest)


def test_ready_over_http(base_url: str) -> None:
    answer = httpx.get(f"{base_url}/ready", timeout=10)
    assert answer.status_code == 200
    assert answer.json()["ready"] is True


def test_http_scores_equal_the_service_scores(
    base_url: str, trained: Any, recent_claims: ClaimTables
) -> None:
    payload = {"claims": claims_payload(recent_claims), "explain": True, "top_k": 5}
    answer = httpx.post(
        f"{base_url}/v1/claims/score", json=payload, headers={"X-API-Key": KEY}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # Every simulated claim the contract accepts must be accepted by the API too.
    assert body["errors"] == []
    assert body["scored"] == len(recent_claims)

    service = load_service(trained.model_uri, trained.tracking_uri)
    expected = {s.claim_id: s for s in service.score(recent_claims, explain=True, top_k=5)}
    for result in body["results"]:
        want = expected[result["claim_id"]]
        assert result["denial_probability"] == want.denial_probability
        assert result["risk_band"] == want.risk_band
        assert [r["category"] for r in result["likely_reasons"]] == [
            r["category"] for r in want.likely_reasons
        ]
        assert [c["code"] for c in result["likely_carcs"]] == [c["code"] for c in want.likely_carcs]
        assert [(f["field"], f["contribution"], f["fix"]) for f in result["factors"]] == [
            (f.field, f.contribution, f.fix) for f in want.factors
        ]
        assert result["suggested_fix"] == want.suggested_fix
    assert any(result["factors"] for result in body["results"])


def test_http_refuses_without_key_and_serves_metrics(base_url: str) -> None:
    refused = httpx.post(f"{base_url}/v1/claims/score", json={"claims": []}, timeout=10)
    assert refused.status_code == 401
    assert "X-API-Key" in refused.json()["detail"]
    metrics = httpx.get(f"{base_url}/metrics", headers={"X-API-Key": KEY}, timeout=10)
    assert metrics.status_code == 200
    assert "denial_risk_http_request_duration_seconds_bucket" in metrics.text


def test_concurrent_requests_over_http_get_the_answers_they_get_alone(
    base_url: str, trained: Any, recent_claims: ClaimTables
) -> None:
    """20 clients at once, one claim each: the server scores them in shared calls, and every
    answer equals that claim's request scored on its own in-process."""
    claims = claims_payload(recent_claims)[:20]

    def post(claim: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{base_url}/v1/claims/score",
            json={"claims": [claim], "explain": True, "top_k": 5},
            headers={"X-API-Key": KEY},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=len(claims)) as pool:
        answers = list(pool.map(post, claims))
    service = load_service(trained.model_uri, trained.tracking_uri)
    for claim, answer in zip(claims, answers, strict=True):
        assert answer.status_code == 200, answer.text
        alone = score_request(service, ScoreRequest.model_validate({"claims": [claim]}), 5_000)
        assert answer.json() == alone.response.model_dump(mode="json")


def _start_serve_command(
    trained: Any, out: Path, *options: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`denial-risk serve` as a user starts it, in a real process, once it answers /ready."""
    port = _free_port()
    env = {
        **os.environ,
        "DENIAL_RISK_API_KEYS": json.dumps([KEY]),
        "DENIAL_RISK_LOCAL_COPY_DIR": str(trained.local_copies),
        "DENIAL_RISK_LOG_LEVEL": "info",
    }
    command = [
        str(Path(sys.executable).with_name("denial-risk")), "serve", "--port", str(port),
        "--model", trained.model_uri, "--tracking-uri", trained.tracking_uri, *options,
    ]  # fmt: skip
    with out.open("wb") as log:
        # Deliberate: the venv's own denial-risk with the test's arguments
        server = subprocess.Popen(  # noqa: S603
            command, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise AssertionError(f"the server did not get ready within 90 s:\n{out.read_text()}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.3)


def test_serve_command_answers_and_logs_one_line_per_request_without_identifiers(
    trained: Any, recent_claims: ClaimTables, tmp_path: Path
) -> None:
    """`denial-risk serve` as a user starts it: a real process, stopped with SIGTERM.

    Every request must have its JSON log line on stdout by the time the process has exited
    (uvicorn ends a SIGTERM-ed server by re-raising the signal, hence -15), and no line may
    carry the claims' patient identifiers.
    """
    out = tmp_path / "serve.log"
    server, url = _start_serve_command(trained, out)
    try:
        payload = claims_payload(recent_claims.subset(recent_claims.claims["claim_id"][:3]))
        for claim in payload:
            answer = httpx.post(
                f"{url}/v1/claims/score",
                json={"claims": [claim]},
                headers={"X-API-Key": KEY},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    text = out.read_text()
    assert server.returncode in (0, -signal.SIGTERM), f"exit code {server.returncode}: {text}"
    # The serve command limits LightGBM's OpenMP threads before LightGBM is first imported.
    assert "openmp_threads_not_set" not in text
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    scored = [r for r in records if r.get("path") == "/v1/claims/score"]
    assert len(scored) == len(payload)
    assert all(r["status"] == 200 and r["scored"] == 1 and r["request_id"] for r in scored)
    for claim in payload:
        assert claim["patient_id"] not in text
        if claim.get("patient_birth_date"):
            assert claim["patient_birth_date"] not in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balances on Linux")
def test_serve_with_two_workers_spreads_keep_alive_clients_over_both(
    trained: Any, recent_claims: ClaimTables, tmp_path: Path
) -> None:
    """Clients that connect as soon as the server answers /ready keep their connections: when
    one worker answered while the other was still loading the model, all 20 went to the first
    for good. Workers now start accepting together, each on its own SO_REUSEPORT socket."""
    out = tmp_path / "serve-2w.log"
    server, url = _start_serve_command(trained, out, "--workers", "2")
    port = int(url.rsplit(":", 1)[1])
    workers = psutil.Process(server.pid).children()
    clients = [httpx.Client(base_url=url, headers={"X-API-Key": KEY}) for _ in range(20)]
    try:
        # Each client opens its own keep-alive connection, all at once as a load of them would.
        with ThreadPoolExecutor(len(clients)) as pool:
            ready = list(pool.map(lambda client: client.get("/ready").status_code, clients))
        assert ready == [200] * len(clients)
        holding = {
            w.pid: sum(
                c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
                for c in w.net_connections("tcp")
            )
            for w in workers
        }
        assert sum(holding.values()) == 20, holding
        # All 20 on one of 2 sockets by chance: p = 2 * 0.5**20, about 2 in a million.
        assert sorted(holding.values())[-2] >= 1, holding
        claim = claims_payload(recent_claims.subset(recent_claims.claims["claim_id"][:1]))[0]
        answers = [c.post("/v1/claims/score", json={"claims": [claim]}) for c in clients]
        assert {a.status_code for a in answers} == {200}
        assert len({a.json()["results"][0]["denial_probability"] for a in answers}) == 1
    finally:
        for client in clients:
            client.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    text = out.read_text()
    assert server.returncode == 0, text
    # Nothing left behind: the workers, and multiprocessing's helper process, exit with it.
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, alive
    assert "openmp_threads_not_set" not in text
    assert text.count("Application startup complete") == 2, text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balances on Linux")
def test_a_worker_that_dies_is_replaced_and_the_server_keeps_answering(
    trained: Any, tmp_path: Path
) -> None:
    out = tmp_path / "serve-replace.log"
    server, url = _start_serve_command(trained, out, "--workers", "2")
    port = int(url.rsplit(":", 1)[1])
    try:
        first = [w for w in psutil.Process(server.pid).children() if _listens_on(w, port)]
        assert len(first) == 2
        first[0].kill()  # as the OOM killer would
        deadline = time.monotonic() + 90
        while True:
            workers = [w for w in psutil.Process(server.pid).children() if _listens_on(w, port)]
            if len(workers) == 2 and first[0].pid not in {w.pid for w in workers}:
                break
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.3)
        with httpx.Client(base_url=url) as client:
            assert all(client.get("/ready").status_code == 200 for _ in range(10))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    text = out.read_text()
    assert server.returncode == 0, text
    assert '"event": "worker_replaced"' in text and f'"exit_code": -{signal.SIGKILL}' in text


def _listens_on(process: psutil.Process, port: int) -> bool:
    try:
        connections = process.net_connections("tcp")
    except psutil.NoSuchProcess:
        return False
    return any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in connections)
