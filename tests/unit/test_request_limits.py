"""Requests that could stall a server process (issue 20), over real HTTP: uvicorn on a loopback
port with the options `denial-risk serve` uses, a stand-in scoring service.

Any valid key could stall a worker: a 300 KB body of 100,001 empty claims was validated claim by
claim on the event loop before the batch limit applied, and six such requests left ``/health``
unanswered for 23 s. And anyone could send a header of 50 MB: the server read it whole, for
seconds, and answered it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi import FastAPI

from denial_risk.settings import Settings
from serving.app import create_app
from serving.worklist import WorklistService
from tests.utils.factories import make_claim
from tests.utils.servers import served
from tests.utils.services import FakeService

KEY = "request-limits-test-key-0123456789"
AUTH = {"X-API-Key": KEY, "Content-Type": "application/json"}
MAX_BATCH = 5_000


def _app(settings: Settings) -> FastAPI:
    app = create_app(settings, loader=lambda: FakeService("1"))
    app.state.worklist_service = WorklistService()  # the table rates: no registry to read
    return app


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    settings = Settings(api_keys=[KEY], max_batch_claims=MAX_BATCH)
    with served(_app(settings), settings) as base:
        yield base


def _empty_objects(key: str, count: int) -> bytes:
    """A body of ``count`` empty objects under ``key``: 3 bytes an item, every field missing."""
    return b'{"' + key.encode() + b'": [' + b",".join([b"{}"] * count) + b"]}"


@pytest.mark.parametrize(
    ("path", "key", "count", "message"),
    [
        # The body: 300 KB, one over the schema's ceiling.
        ("/v1/claims/score", "claims", 100_001, "holds 100,001 claims but at most 5,000"),
        # At the ceiling: every denial was validated before the route counted them.
        ("/v1/denials/prioritize", "denials", 100_000, "100,000 denials in one request"),
    ],
)
def test_a_batch_over_the_limit_is_refused_before_an_item_is_validated(
    url: str, path: str, key: str, count: int, message: str
) -> None:
    started = time.monotonic()
    answer = httpx.post(url + path, content=_empty_objects(key, count), headers=AUTH, timeout=60)
    took = time.monotonic() - started
    assert answer.status_code == 413, answer.text[:300]
    assert message in answer.json()["detail"]
    assert "at most 5,000" in answer.json()["detail"]
    assert took < 1.5, f"{took:.1f} s: the items were validated before they were counted"


def test_health_answers_while_large_batches_are_validated(url: str) -> None:
    # Within the limit, and every item fails every required field: the most validation work (and
    # the longest answer) 3 bytes can ask for. Validated on the event loop, these kept /health
    # waiting from the first request to the last answer.
    batches = [("/v1/claims/score", "claims"), ("/v1/denials/prioritize", "denials")] * 2
    started = time.monotonic()
    with ThreadPoolExecutor(len(batches)) as pool:
        posts = [
            pool.submit(httpx.post, url + path, content=_empty_objects(key, MAX_BATCH),
                        headers=AUTH, timeout=120)
            for path, key in batches
        ]  # fmt: skip
        waits = []
        while not all(post.done() for post in posts):
            asked = time.monotonic()
            assert httpx.get(f"{url}/health", timeout=60).status_code == 200
            waits.append(time.monotonic() - asked)
            time.sleep(0.02)
    busy = time.monotonic() - started
    answers = [post.result() for post in posts]
    assert [answer.status_code for answer in answers] == [422] * len(batches)
    # Each claim and denial still gets its own errors (4999 is the last one).
    assert "claims[4999].claim_id" in {e["field"] for e in answers[0].json()["errors"]}
    assert "denials[4999].claim_id" in {e["field"] for e in answers[1].json()["errors"]}
    assert len(waits) >= 3, f"/health answered {len(waits)} time(s) in {busy:.1f} s"
    # A second, or a quarter of the time the batches took on a machine busy with other work.
    assert max(waits) < max(1.0, busy / 4), f"/health waited {max(waits):.1f} s of {busy:.1f} s"


def test_a_batch_within_the_limit_scores_its_valid_claims_and_names_the_bad_one(url: str) -> None:
    claims = [make_claim(claim_id=f"OK-{n}") for n in range(3)]
    claims[1]["lines"][0]["procedure_code"] = "7055"
    answer = httpx.post(
        f"{url}/v1/claims/score", content=json.dumps({"claims": claims}), headers=AUTH, timeout=30
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [result["claim_id"] for result in body["results"]] == ["OK-0", "OK-2"]
    (error,) = body["errors"]
    assert error["index"] == 1
    assert error["problems"][0]["field"] == "claims[1].lines[0].procedure_code"


def test_the_batch_routes_still_document_their_request_models() -> None:
    paths = _app(Settings(api_keys=[KEY])).openapi()["paths"]
    for path, model in [
        ("/v1/claims/score", "ScoreRequest"),
        ("/v1/denials/prioritize", "PrioritizeRequest"),
    ]:
        body = paths[path]["post"]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{model}"
        }


# -- the request head ----------------------------------------------------------------------------
def _send_raw(url: str, head: bytes, filler: int = 0) -> tuple[bytes, float]:
    """``head`` then ``filler`` bytes of one header's value (and the head's end) on a new
    connection; what came back until the server closed it, and how long that took."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        started = time.monotonic()
        # The server may close while we still send: the rest is then refused, not an error.
        with contextlib.suppress(ConnectionError):
            connection.sendall(head)
            for start in range(0, filler, 65_536):
                connection.sendall(b"a" * min(65_536, filler - start))
            connection.sendall(b"\r\n\r\n")
        received = b""
        with contextlib.suppress(ConnectionError):
            while data := connection.recv(65_536):  # b"": the server closed the connection
                received += data
        return received, time.monotonic() - started


def test_a_request_head_over_the_limit_is_refused_as_it_arrives(url: str) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: test\r\nX-Filler: "
    received, took = _send_raw(url, head, filler=50_000_000)
    # 400 (uvicorn's answer to h11's 431 hint) and closed; or closed before the answer was read.
    assert received == b"" or received.split(b"\r\n")[0] in {
        b"HTTP/1.1 400 Bad Request",
        b"HTTP/1.1 431 Request Header Fields Too Large",
    }, received[:200]
    assert took < 2.0, f"{took:.1f} s to refuse a 50 MB header"
    # A head within the limit (a 12 KB cookie) is answered, and so is the next request.
    head = b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\nCookie: session="
    ok, _ = _send_raw(url, head, filler=12_000)
    assert ok.startswith(b"HTTP/1.1 200 OK"), ok[:200]
    assert httpx.get(f"{url}/health", timeout=10).json() == {"status": "ok"}
