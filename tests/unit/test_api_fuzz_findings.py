"""What the property-based API tests found (issue 20), each pinned by a direct request.

``tests/integration/test_api_properties.py`` found them among thousands of generated requests:
a worklist whose `as_of` precedes every denial answered 500; the keyed operations routes
answered 401 and 403 without documenting them; a JSON body that is not UTF-8 (or nested past
Python's recursion limit) got FastAPI's undocumented bare 400.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from denial_risk.settings import Settings
from serving.app import create_app
from serving.worklist import WorklistService
from tests.utils.services import FakeService

KEY = "fuzz-findings-test-key-0123456789"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(Settings(api_keys=[KEY]), loader=lambda: FakeService("1"))
    app.state.worklist_service = WorklistService()  # the table rates: no registry to read
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _denial(claim_id: str, denial_date: str) -> dict[str, object]:
    return {"claim_id": claim_id, "carc": "197", "denial_date": denial_date, "denied_amount": 90}


def test_a_worklist_as_of_before_every_denial_is_empty_not_an_error(client: TestClient) -> None:
    body = {
        "as_of": "2020-01-01",
        "denials": [_denial("A1", "2025-03-01"), _denial("A2", "2025-04-02")],
    }
    answer = client.post("/v1/denials/prioritize", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.text
    worklist = answer.json()
    assert worklist["queue"] == [] and worklist["tracking"] == []
    assert worklist["counts"]["rows"] == 0
    assert worklist["counts"]["dropped_after_as_of"] == 2


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"claims": [\xff]}', "not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=["not-utf-8", "nested-too-deeply"],
)
@pytest.mark.parametrize("route", ["/v1/claims/score", "/v1/denials/prioritize"])
def test_a_body_that_cannot_be_read_as_json_is_a_documented_422(
    client: TestClient, route: str, body: bytes, said: str
) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    answer = client.post(route, content=body, headers=headers)
    assert answer.status_code == 422, answer.text
    problem = answer.json()["errors"][0]
    assert problem["field"] == "body"
    assert said in problem["message"] and "send UTF-8 encoded JSON" in problem["message"]
    documented = client.get("/openapi.json").json()["paths"][route]["post"]["responses"]
    assert "422" in documented


def test_every_keyed_route_documents_its_key_refusals(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    checked = 0
    for path, operations in paths.items():
        for method, operation in operations.items():
            if path in {"/health", "/ready"}:
                assert "401" not in operation["responses"], (method, path)
                continue
            answer = client.request(method.upper(), path)  # no key
            assert answer.status_code == 401, (method, path, answer.status_code)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            checked += 1
    assert checked >= 6
