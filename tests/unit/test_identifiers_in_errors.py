"""Errors, quarantine reasons, rejects files and request logs never repeat a patient identifier.

Each case was found by the PHI scan of the integration suite
(``tests/integration/test_phi_scan.py``): a value a client or a file put where an identifier
is, echoed back in an answer, a log line or a report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from denial_risk.settings import Settings
from features.claim_tables import ClaimTables
from features.schema import rejects_report
from serving.api.problems import pydantic_problems
from serving.app import create_app
from serving.worklist_routes import PrioritizeRequest
from tests.utils.factories import make_claim, tables_from
from tests.utils.services import FakeService

KEY = "identifier-test-key-0123456789"
AUTH = {"X-API-Key": KEY}
MEMBER = "QZMEMBER8675309"
GROUP = "QZGROUP4242"


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(Settings(api_keys=[KEY]), loader=lambda: FakeService("1"))
    with TestClient(app) as test_client:
        yield test_client


def test_a_birth_date_after_the_service_is_refused_without_repeating_it(
    client: TestClient,
) -> None:
    # It was accepted and scored (a birth date in 2031 for a service in 2025).
    claim = make_claim(patient_birth_date="2031-04-17")
    answer = client.post("/v1/claims/score", json={"claims": [claim]}, headers=AUTH)
    assert answer.status_code == 422
    (problem,) = answer.json()["errors"]
    assert problem["field"] == "claims[0]"
    assert "patient_birth_date is after service_date_from" in problem["message"]
    assert "2031" not in answer.text
    newborn = make_claim(patient_birth_date=claim["service_date_from"])  # born that day: fine
    assert client.post("/v1/claims/score", json={"claims": [newborn]}, headers=AUTH).is_success


def test_an_overlong_group_number_is_refused_without_repeating_it(client: TestClient) -> None:
    claim = make_claim(subscriber_group_number=GROUP + "9" * 50)
    answer = client.post("/v1/claims/score", json={"claims": [claim]}, headers=AUTH)
    assert answer.status_code == 422
    (problem,) = answer.json()["errors"]
    assert problem["field"] == "claims[0].subscriber_group_number"
    assert "at most 50 characters (got (value not repeated))" in problem["message"]
    assert GROUP not in answer.text  # it was quoted: 'QZGROUP4242999...'


def test_claims_sent_as_an_object_keyed_by_member_id_are_not_echoed(client: TestClient) -> None:
    answer = client.post("/v1/claims/score", json={"claims": {MEMBER: make_claim()}}, headers=AUTH)
    assert answer.status_code == 422
    assert "`claims` should be a list, got an object" in answer.json()["detail"]
    assert MEMBER not in answer.text  # it was "got {'QZMEMBER8675309': {'claim_id'..."


def test_a_rejection_reason_is_not_repeated_in_an_error() -> None:
    # A clearinghouse's reason quotes what it rejected: the member ID, the patient's name.
    reason = f"2010BA NM109 subscriber {MEMBER} not found " + "x" * 300
    body = {
        "denials": [
            {"claim_id": "C1", "kind": "rejection", "denial_date": "2025-03-01",
             "denied_amount": 10.0, "rejection_reason": reason}
        ]
    }  # fmt: skip
    with pytest.raises(ValidationError) as error:
        PrioritizeRequest.model_validate(body)
    (problem,) = pydantic_problems(error.value.errors())
    assert problem.field == "denials[0].rejection_reason"
    assert "(value not repeated)" in problem.message and MEMBER not in problem.message


def test_a_path_without_a_route_is_neither_answered_nor_logged_whole(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="denial_risk.api"):
        answer = client.get(f"/v1/claims/{MEMBER}", headers=AUTH)
        typo = client.get("/v1/claim/score", headers=AUTH)
    assert answer.status_code == 404
    assert answer.json()["detail"] == "no route GET /v1/claims/...; see /docs for the API"
    assert typo.json()["detail"] == "no route GET /v1/.../score; see /docs for the API"
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "denial_risk.api"]
    assert [line["path"] for line in lines] == ["/v1/claims/...", "/v1/.../score"]
    assert MEMBER not in caplog.text


def test_quarantine_reasons_and_rejects_files_hold_no_identifier() -> None:
    flat = tables_from(
        [make_claim(claim_id="K-1", subscriber_group_number=GROUP, claim_note="called"),
         make_claim(claim_id="K-2")]
    ).to_flat_lines()  # fmt: skip
    flat.loc[flat["claim_id"] == "K-1", "patient_id"] = f"{MEMBER}\t"
    tables, rejects = ClaimTables.from_flat_lines(flat)
    assert tables.claims["claim_id"].tolist() == ["K-2"]
    reason = rejects.loc[rejects["table"] == "claims", "reason"].item()
    assert reason.startswith("patient_id (value not repeated) is not a member ID")
    report = rejects_report(rejects)
    assert list(report.columns) == ["table", "claim_id", "reason", "line_number", "position"]
    assert MEMBER not in report.to_csv() and GROUP not in report.to_csv()
