"""The scoring API through FastAPI's TestClient, with the real model the session trained.

Most tests share one app (the model loads once per module). Reload and in-flight behaviour use
small stand-in services instead, so a test can hold a request inside ``score`` on purpose.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from denial_risk.settings import Settings
from features.claim_tables import validated
from features.schema import ClaimsDataset
from features.x12.reader import count_segments
from serving.api.deps import get_scoring_service
from serving.api.middleware import _request_id
from serving.api.problems import quarantine_problems
from serving.api.routes.ops import withheld_locations
from serving.api.scoring import claims_payload, claims_to_frames
from serving.app import ConfigurationError, create_app
from serving.schemas import ClaimIn
from tests.utils.factories import make_claim, make_whole_claim, tables_from
from tests.utils.services import FakeService

KEY = "unit-test-api-key-0123456789"
AUTH = {"X-API-Key": KEY}
MAX_BATCH = 40


def _settings(trained: Any, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_uri": trained.model_uri,
        "tracking_uri": trained.tracking_uri,
        "local_copy_dir": trained.local_copies,
        "api_keys": [KEY],
        "max_batch_claims": MAX_BATCH,
        "max_body_bytes": 300_000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def client(trained: Any) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(trained))) as test_client:
        yield test_client


def _score(client: TestClient, claims: list[dict[str, Any]], **options: Any) -> Any:
    return client.post("/v1/claims/score", json={"claims": claims, **options}, headers=AUTH)


def _auth_claim(**overrides: Any) -> dict[str, Any]:
    """A claim with an MRI and no authorization: a risk with a fix to explain."""
    overrides.setdefault("diagnoses", ["G43909", "R519"])
    return make_claim(
        lines=[
            {"procedure_code": "70553", "line_charge": 1450.0, "diagnosis_pointers": "1"},
            {"procedure_code": "99213", "line_charge": 180.0, "diagnosis_pointers": "1,2"},
        ],
        **overrides,
    )


# -- liveness, readiness, auth -------------------------------------------------------------
def test_health_and_ready_need_no_key(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "missing X-API-Key header"),
        ({"X-API-Key": "not-the-right-key-at-all"}, 403, "X-API-Key not accepted"),
    ],
)
def test_scoring_needs_a_valid_key(
    client: TestClient, headers: dict[str, str], status: int, message: str
) -> None:
    for method, url in [
        ("post", "/v1/claims/score"),
        ("get", "/v1/model"),
        ("get", "/metrics"),
        ("post", "/v1/admin/reload"),
    ]:
        kwargs: dict[str, Any] = {"headers": headers}
        if url == "/v1/claims/score":
            kwargs["json"] = {"claims": [make_claim()]}
        answer = getattr(client, method)(url, **kwargs)
        assert answer.status_code == status, url
        assert message in answer.json()["detail"]


def test_refuses_to_start_without_api_keys_unless_told() -> None:
    with pytest.raises(ConfigurationError, match="DENIAL_RISK_ALLOW_NO_AUTH"):
        create_app(Settings(api_keys=[]))
    app = create_app(Settings(api_keys=[], allow_no_auth=True), loader=lambda: FakeService("1"))
    with TestClient(app) as open_client:
        answer = open_client.post("/v1/claims/score", json={"claims": [make_claim()]})
    assert answer.status_code == 200


def test_short_api_keys_are_refused_by_settings() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        Settings(api_keys=["secret"])


# -- scoring ---------------------------------------------------------------------------------
def test_one_claim_is_scored_with_reasons_carcs_and_factors(
    client: TestClient, trained: Any
) -> None:
    # Billers write ICD-10 codes with the dot; the API accepts both.
    claim = _auth_claim(claim_id="ONE-1", diagnoses=["G43.909", "R51.9"])
    answer = _score(client, [claim], top_k=3)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["scored"] == 1 and body["rejected"] == 0 and body["errors"] == []
    result = body["results"][0]
    assert result["claim_id"] == "ONE-1" and result["index"] == 0
    assert 0.0 <= result["denial_probability"] <= 1.0
    assert result["risk_band"] in {"low", "medium", "high"}
    assert result["risk_band_threshold"].startswith(("<", ">="))
    assert len(result["likely_reasons"]) == 3
    assert {"category", "label", "probability"} <= set(result["likely_reasons"][0])
    assert len(result["likely_carcs"]) == 3
    assert result["likely_carcs"][0]["description"]
    assert 1 <= len(result["factors"]) <= 3
    factor = result["factors"][0]
    assert {"field", "description", "contribution", "direction", "actionable", "fix"} <= set(factor)
    assert factor["direction"] in {"raises risk", "lowers risk"}
    assert result["model_version"] == str(trained.outcome.version)


def test_api_score_equals_the_service_score(client: TestClient) -> None:
    claims = [
        _auth_claim(),
        make_claim(),
        make_claim(payer_type="medicare", place_of_service="22"),
        # Every optional contract column given, as JSON and as contract rows.
        make_whole_claim(),
        make_whole_claim(payer_type="medicaid", epsdt_indicator="Y", payer_responsibility="P"),
    ]
    body = _score(client, claims, top_k=5).json()
    service = client.app.state.holder.current.service  # type: ignore[attr-defined]
    expected = service.score(tables_from(claims), explain=True, top_k=5)
    assert [r["claim_id"] for r in body["results"]] == [s.claim_id for s in expected]
    for got, want in zip(body["results"], expected, strict=True):
        assert got["denial_probability"] == want.denial_probability
        assert [f["field"] for f in got["factors"]] == [f.field for f in want.factors]


def test_explain_false_returns_no_factors(client: TestClient) -> None:
    result = _score(client, [_auth_claim()], explain=False).json()["results"][0]
    assert result["factors"] == []
    assert result["likely_reasons"]


def test_one_bad_claim_does_not_fail_the_batch(client: TestClient) -> None:
    bad = make_claim(claim_id="BAD-2", lines=[{"procedure_code": "7055", "line_charge": 90.0}])
    claims = [make_claim(claim_id="GOOD-1"), bad, make_claim(claim_id="GOOD-3")]
    answer = _score(client, claims)
    assert answer.status_code == 200
    body = answer.json()
    assert [r["claim_id"] for r in body["results"]] == ["GOOD-1", "GOOD-3"]
    assert [r["index"] for r in body["results"]] == [0, 2]
    assert body["scored"] == 2 and body["rejected"] == 1
    error = body["errors"][0]
    assert error["index"] == 1 and error["claim_id"] == "BAD-2"
    assert error["problems"][0]["field"] == "claims[1].lines[0].procedure_code"
    assert "'7055'" in error["problems"][0]["message"]
    assert "5-character CPT/HCPCS code" in error["problems"][0]["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("patient_birth_date", "0001-01-01"),
        ("service_date_from", "2262-04-12"),
        ("submission_date", "1600-01-01"),
    ],
)
def test_a_date_outside_the_range_fails_only_its_claim(
    client: TestClient, field: str, value: str
) -> None:
    # Issue 20: such a date failed the whole batch's validation (500, every claim lost).
    odd = make_claim(claim_id="ODD-2")
    odd[field] = value
    if field == "service_date_from":  # the whole claim's service and its sending, lines too
        odd["service_date_to"] = odd["submission_date"] = value
        for line in odd["lines"]:
            line["service_date"] = value
    claims = [make_claim(claim_id="GOOD-1"), odd, make_claim(claim_id="GOOD-3")]
    answer = _score(client, claims)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["claim_id"] for r in body["results"]] == ["GOOD-1", "GOOD-3"]
    assert body["scored"] == 2 and body["rejected"] == 1
    error = body["errors"][0]
    assert error["index"] == 1 and error["claim_id"] == "ODD-2"
    messages = " ".join(p["message"] for p in error["problems"])
    if field != "submission_date":  # (sent before its service: refused for that first)
        assert f"{field} is outside the dates a claim can hold" in messages
    if field == "patient_birth_date":
        assert value not in answer.text  # a birth date is the patient's: not echoed


def test_repeated_claim_ids_are_both_refused(client: TestClient) -> None:
    claims = [make_claim(claim_id="SAME"), make_claim(claim_id="SAME"), make_claim()]
    body = _score(client, claims).json()
    assert body["scored"] == 1
    assert [e["index"] for e in body["errors"]] == [0, 1]
    assert "also used by claims[1]" in body["errors"][0]["problems"][0]["message"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"diagnoses": ["XYZ"]}, "claims[0].diagnoses[0]", "ICD-10-CM"),
        ({"payer_type": "blue_plan"}, "claims[0].payer_type", "is not one of"),
        ({"claim_type": "dental"}, "claims[0].claim_type", "is not one of"),
        ({"frequency_code": "5"}, "claims[0].frequency_code", "is not one of"),
        ({"submission_date": "10/03/2025"}, "claims[0].submission_date", "YYYY-MM-DD"),
        ({"total_charge": "a lot"}, "claims[0].total_charge", "should be a number"),
        ({"lines": []}, "claims[0].lines", "at least one service line"),
        ({"prior_auth": "A1"}, "claims[0].prior_auth", "not a field"),
        # Issue 20: blank and NUL-bearing IDs were accepted (one history for unrelated claims).
        ({"claim_id": "   "}, "claims[0].claim_id", "has the wrong format"),
        ({"payer_id": "P\u0000"}, "claims[0].payer_id", "has the wrong format"),
        ({"patient_id": " \t "}, "claims[0].patient_id", "(value not repeated) has the wrong"),
        (
            {"service_date_from": "2025-03-20", "service_date_to": "2025-03-20"},
            "claims[0]",
            "submission_date 2025-03-10 is before service_date_from 2025-03-20",
        ),
    ],
)
def test_a_bad_claim_alone_is_422_with_path_and_fix(
    client: TestClient, change: dict[str, Any], field: str, message: str
) -> None:
    claim = make_claim()
    claim.update(change)
    answer = _score(client, [claim])
    assert answer.status_code == 422
    body = answer.json()
    assert "no claim could be scored" in body["detail"]
    assert body["errors"][0]["field"] == field
    assert message in body["errors"][0]["message"]


def test_missing_required_field_is_named(client: TestClient) -> None:
    claim = make_claim()
    del claim["payer_type"]
    body = _score(client, [claim]).json()
    assert body["errors"][0]["field"] == "claims[0].payer_type"
    assert "required but missing" in body["errors"][0]["message"]
    assert "commercial" in body["errors"][0]["message"]


def test_wrong_type_in_a_line_is_named(client: TestClient) -> None:
    claim = make_claim(lines=[{"procedure_code": "99213", "line_charge": 80, "units": "one"}])
    body = _score(client, [claim]).json()
    assert body["errors"][0]["field"] == "claims[0].lines[0].units"
    assert "should be a number, got 'one'" in body["errors"][0]["message"]


def test_malformed_json_is_422_not_500(client: TestClient) -> None:
    answer = client.post(
        "/v1/claims/score",
        content=b'{"claims": [{"claim_id": "X",',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert answer.status_code == 422
    assert "not valid JSON" in answer.json()["detail"]


def test_envelope_errors_name_the_option(client: TestClient) -> None:
    answer = _score(client, [make_claim()], top_k=0)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "top_k"
    assert "from 1 to 20" in answer.json()["errors"][0]["message"]
    answer = client.post("/v1/claims/score", json={"claim": make_claim()}, headers=AUTH)
    assert answer.status_code == 422
    fields = {e["field"] for e in answer.json()["errors"]}
    assert fields == {"claims", "claim"}


def test_oversized_batch_is_413_with_the_limit(client: TestClient) -> None:
    claims = [make_claim(lines=[{"procedure_code": "99213", "line_charge": 1.0}])] * (MAX_BATCH + 1)
    answer = _score(client, claims)
    assert answer.status_code == 413
    assert f"at most {MAX_BATCH}" in answer.json()["detail"]
    assert "split the batch" in answer.json()["detail"]


def test_oversized_body_is_413_before_parsing(client: TestClient) -> None:
    answer = client.post(
        "/v1/claims/score",
        content=b" " * 300_001,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert "larger than 300,000 bytes" in answer.json()["detail"]


def test_unknown_route_is_a_readable_404(client: TestClient) -> None:
    answer = client.get("/v1/claims", headers=AUTH)
    assert answer.status_code in {404, 405}
    assert "/docs" in answer.json()["detail"]


# -- logs and metrics ------------------------------------------------------------------------
def test_logs_hold_no_member_id_or_birth_date(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    member, birth = "MEMBER-PHI-551177", "1931-02-17"
    good = _auth_claim(patient_id=member, patient_birth_date=birth)
    bad = make_claim(patient_id=member, patient_birth_date="1931-02-30")  # invalid date
    bad_code = _auth_claim(patient_id=member, patient_birth_date=birth, diagnoses=["??"])
    with caplog.at_level(logging.DEBUG):
        answer = _score(client, [good, bad, bad_code])
        assert answer.status_code == 200
        assert _score(client, [bad]).status_code == 422
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert member not in text and birth not in text and "1931-02-30" not in text
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "denial_risk.api"]
    scored = [line for line in lines if line.get("claims") == 3]
    assert scored and scored[0]["status"] == 200 and scored[0]["scored"] == 1
    assert {"method", "path", "status", "duration_ms", "request_id"} <= set(scored[0])


def test_request_id_is_echoed(client: TestClient) -> None:
    answer = client.get("/health", headers={"X-Request-ID": "trace-42"})
    assert answer.headers["x-request-id"] == "trace-42"


def test_generated_request_ids_are_unique_uuid4_and_not_shared_with_a_forked_child(
    client: TestClient,
) -> None:
    ids = {client.get("/health").headers["x-request-id"] for _ in range(50)}
    assert len(ids) == 50
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).hex == i for i in ids)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child writes the next id it would give and leaves at once
        os.write(write, _request_id({"headers": []}).encode())
        os._exit(0)
    os.waitpid(child, 0)
    from_child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert uuid.UUID(from_child).version == 4
    assert from_child != _request_id({"headers": []})


def test_metrics_expose_requests_latency_and_scores(client: TestClient) -> None:
    _score(client, [make_claim()])
    text = client.get("/metrics", headers=AUTH).text
    assert (
        'denial_risk_http_requests_total{method="POST",route="/v1/claims/score",status="200"}'
        in text
    )
    assert "denial_risk_http_request_duration_seconds_bucket" in text
    assert "denial_risk_denial_probability_bucket" in text
    assert 'denial_risk_claims_total{outcome="scored"}' in text
    assert "denial_risk_model_loaded 1.0" in text


# -- model, readiness and reload -----------------------------------------------------------
def test_model_endpoint_describes_the_champion(client: TestClient, trained: Any) -> None:
    body = client.get("/v1/model", headers=AUTH).json()
    assert body["name"] == "denial-risk"
    assert body["version"] == str(trained.outcome.version)
    assert body["alias"] == "champion"
    assert body["training_period"]
    assert "roc_auc" in body["metrics"]
    assert body["max_batch_claims"] == MAX_BATCH
    assert body["risk_bands"]["high"] == ">= 0.35"


def test_reload_resolves_the_champion_again(client: TestClient, trained: Any) -> None:
    answer = client.post("/v1/admin/reload", headers=AUTH)
    assert answer.status_code == 200
    version = str(trained.outcome.version)
    body = answer.json()
    history = body.pop("history")
    assert body == {"previous_version": version, "version": version, "changed": False}
    # With the history of the data set the model was trained on, through its last remittance.
    remits = pd.read_parquet(trained.sim_dir / "remittances.parquet", columns=["remit_date"])
    assert history["last_remittance"] == f"{remits['remit_date'].max():%Y-%m-%d}"
    assert _score(client, [make_claim()]).status_code == 200


def test_an_unknown_fields_name_is_not_echoed_whole(client: TestClient) -> None:
    # Issue 20: an unknown field's name (the client's text, any length) came back untruncated.
    claim = make_claim()
    claim["x" * 100_000] = 1
    answer = _score(client, [claim])
    assert answer.status_code == 422
    (problem,) = answer.json()["errors"]
    assert problem["field"] == "claims[0]." + "x" * 37 + "..."
    assert "x" * 41 not in answer.text and "is not a field of this object" in answer.text
    assert len(answer.content) < 2_000


def test_unauthenticated_ready_withholds_where_the_model_lives(trained: Any) -> None:
    # Issue 20: /ready (no key) repeated the loader's message, tracking server URL included.
    hidden = "file:///srv/registry-host/secret-models/denial"
    settings = _settings(trained, model_uri=hidden)
    with TestClient(create_app(settings)) as no_model:
        ready = no_model.get("/ready")
        assert ready.status_code == 503
        reason = ready.json()["reason"]
        assert "cannot load model" in reason and "location withheld" in reason
        assert "registry-host" not in reason and "secret-models" not in reason
    assert withheld_locations(
        "API request to http://user:pw@mlflow.internal:5000/api/2.0/x failed; "
        "see /var/lib/models/champion or models:/denial-risk@champion"
    ) == (
        "API request to (location withheld; see the server's log) failed; see (location "
        "withheld; see the server's log) or models:/denial-risk@champion"
    )


def test_no_model_means_not_ready_and_503(trained: Any) -> None:
    settings = _settings(trained, model_uri="models:/no-such-model@champion")
    with TestClient(create_app(settings)) as no_model:
        ready = no_model.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert "no-such-model" in ready.json()["reason"]
        answer = no_model.post("/v1/claims/score", json={"claims": [make_claim()]}, headers=AUTH)
        assert answer.status_code == 503
        assert "no model loaded" in answer.json()["detail"]
        assert "denial-risk train" in answer.json()["detail"]
        assert no_model.get("/v1/model", headers=AUTH).status_code == 503
        assert no_model.get("/health").status_code == 200


def test_reload_swaps_without_dropping_a_request_in_flight() -> None:
    gate = threading.Event()
    old, new = FakeService("1", gate), FakeService("2")
    services = iter([old, new])
    app = create_app(Settings(api_keys=[KEY]), loader=lambda: next(services))
    answers: dict[str, Any] = {}
    with TestClient(app) as test_client:

        def slow_request() -> None:
            answers["slow"] = _score(test_client, [make_claim()])

        worker = threading.Thread(target=slow_request)
        worker.start()
        assert old.entered.wait(10)
        reload = test_client.post("/v1/admin/reload", headers=AUTH)
        assert reload.json() == {
            "previous_version": "1",
            "version": "2",
            "changed": True,
            "history": None,  # the stand-ins have no history data set
        }
        gate.set()
        worker.join(10)
        assert answers["slow"].json()["model_version"] == "1"
        assert _score(test_client, [make_claim()]).json()["model_version"] == "2"


def test_failed_reload_keeps_the_old_model() -> None:
    def loaders() -> Iterator[FakeService]:
        yield FakeService("1")
        raise RuntimeError("cannot load model 'models:/denial-risk@champion': registry down")

    sequence = loaders()
    app = create_app(Settings(api_keys=[KEY]), loader=lambda: next(sequence))
    with TestClient(app) as test_client:
        answer = test_client.post("/v1/admin/reload", headers=AUTH)
        assert answer.status_code == 503
        assert "reload failed (still serving version 1)" in answer.json()["detail"]
        assert _score(test_client, [make_claim()]).json()["model_version"] == "1"


def test_what_the_app_loaded_is_kept_out_of_garbage_collections_until_it_stops() -> None:
    gc.unfreeze()
    services = iter([FakeService("1"), FakeService("2")])
    app = create_app(Settings(api_keys=[KEY]), loader=lambda: next(services))
    with TestClient(app) as test_client:
        assert gc.get_freeze_count() > 0
        gc.unfreeze()  # a reload must set the new model aside again
        assert test_client.post("/v1/admin/reload", headers=AUTH).status_code == 200
        assert gc.get_freeze_count() > 0
        assert _score(test_client, [make_claim()]).json()["model_version"] == "2"
    assert gc.get_freeze_count() == 0


def test_dependency_override_swaps_the_model() -> None:
    app = create_app(Settings(api_keys=[KEY]), loader=lambda: FakeService("1"))
    app.dependency_overrides[get_scoring_service] = lambda: FakeService("override")
    with TestClient(app) as test_client:
        assert _score(test_client, [make_claim()]).json()["model_version"] == "override"


# -- 837 bodies ------------------------------------------------------------------------------
def test_score_x12_scores_an_837_file(client: TestClient, tmp_path: Path) -> None:
    from features.x12.writer import write_837p

    tables = tables_from([_auth_claim(claim_id="X12-1"), make_claim(claim_id="X12-2")])
    dataset = ClaimsDataset(tables.claims, tables.lines, tables.diagnoses)
    (path,) = write_837p(dataset, tmp_path)
    answer = client.post(
        "/v1/claims/score-x12?top_k=2",
        content=path.read_text(),
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert sorted(r["claim_id"] for r in body["results"]) == ["X12-1", "X12-2"]
    assert all(len(r["factors"]) <= 2 for r in body["results"])
    via_json = _score(client, claims_payload(tables), top_k=2).json()["results"]
    by_id = {r["claim_id"]: r["denial_probability"] for r in via_json}
    assert {r["claim_id"]: r["denial_probability"] for r in body["results"]} == by_id


def _837_body(claims: list[dict[str, Any]], folder: Path) -> str:
    from features.x12.writer import write_837p

    tables = tables_from(claims)
    (path,) = write_837p(ClaimsDataset(tables.claims, tables.lines, tables.diagnoses), folder)
    return path.read_text()


def test_score_x12_reads_a_body_with_a_byte_order_mark(client: TestClient, tmp_path: Path) -> None:
    body = _837_body([make_claim(claim_id="BOM-1")], tmp_path)
    answer = client.post(
        "/v1/claims/score-x12",
        content=b"\xef\xbb\xbf" + body.encode("latin-1"),
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert answer.status_code == 200, answer.text  # issue 20: was 422
    assert [r["claim_id"] for r in answer.json()["results"]] == ["BOM-1"]


def test_score_x12_refuses_too_many_claims_before_parsing(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import features.x12.ingest as ingest

    body = _837_body([make_claim(claim_id=f"MANY-{n}") for n in range(MAX_BATCH + 1)], tmp_path)
    assert count_segments(body, "CLM") == MAX_BATCH + 1

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the body was parsed before its claims were counted")

    monkeypatch.setattr(ingest, "read_claims_837", never)
    answer = client.post(
        "/v1/claims/score-x12", content=body, headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert answer.status_code == 413, answer.text
    assert f"holds {MAX_BATCH + 1:,} claims" in answer.json()["detail"]


def test_score_x12_counts_a_quarantined_claim_once(client: TestClient, tmp_path: Path) -> None:
    two_lines = [
        {"procedure_code": "99213", "line_charge": 90.0},
        {"procedure_code": "99213", "line_charge": 90.0, "modifier_1": "25"},
    ]
    ok = make_claim(claim_id="OK-1", lines=[{"procedure_code": "99214", "line_charge": 90.0}])
    body = _837_body([ok, make_claim(claim_id="BAD-2", lines=two_lines)], tmp_path)
    assert body.count("HC:99213") == 2
    answer = client.post(
        "/v1/claims/score-x12",
        content=body.replace("HC:99213", "HC:9921"),  # both lines of BAD-2 unreadable
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["scored"] == 1 and data["rejected"] == 1  # issue 20: counted error rows
    (error,) = data["errors"]
    assert error["claim_id"] == "BAD-2" and len(error["problems"]) >= 2


def test_score_x12_scores_its_own_documented_example(client: TestClient) -> None:
    # Issue 20: the example body /docs offered was refused.
    operation = client.get("/openapi.json").json()["paths"]["/v1/claims/score-x12"]["post"]
    example = operation["requestBody"]["content"]["text/plain"]["example"]
    answer = client.post(
        "/v1/claims/score-x12", content=example, headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert answer.status_code == 200, answer.text
    assert [r["claim_id"] for r in answer.json()["results"]] == ["EXAMPLE-1"]


def test_score_x12_refuses_a_body_that_is_not_x12(client: TestClient) -> None:
    answer = client.post(
        "/v1/claims/score-x12",
        content="claim_id,payer\n1,2\n",
        headers={**AUTH, "Content-Type": "text/plain"},
    )
    assert answer.status_code == 422
    assert "starting with its ISA segment" in answer.json()["detail"]


# -- request <-> contract tables -------------------------------------------------------------
def test_request_frames_equal_the_validated_tables() -> None:
    claims = [_auth_claim(), make_claim(patient_birth_date=None, patient_sex=None)]
    frames = claims_to_frames([ClaimIn.model_validate(c) for c in claims])
    tables, rejects = validated(*frames)
    assert rejects.empty
    expected = tables_from(claims)
    for name in ("claims", "lines", "diagnoses"):
        got = getattr(tables, name)
        want = getattr(expected, name)[list(got.columns)]
        assert got.astype(str).equals(want.astype(str)), name


def test_payload_round_trips_through_the_request_schema() -> None:
    tables = tables_from([_auth_claim(), make_claim()])
    payload = claims_payload(tables)
    again, rejects = validated(*claims_to_frames([ClaimIn.model_validate(c) for c in payload]))
    assert rejects.empty
    assert again.claims.astype(str).equals(tables.claims.astype(str))


def test_contract_quarantine_reasons_become_field_problems() -> None:
    claim = ClaimIn.model_validate(make_claim(claim_id="Q-1"))
    claims, lines, diagnoses = claims_to_frames([claim])
    lines.loc[0, "procedure_code"] = "7055"  # as if the request schema had let it through
    _, rejects = validated(claims, lines, diagnoses)
    problems = quarantine_problems(rejects, {"Q-1": "claims[4]"}, {("Q-1", 1): 0})["Q-1"]
    assert [p.field for p in problems] == ["claims[4].lines[0].procedure_code"]
    assert "'7055' is not a 5-character CPT/HCPCS code" in problems[0].message


# -- concurrent requests (scored in shared calls) ------------------------------------------
def test_concurrent_requests_get_the_answers_they_get_alone(client: TestClient) -> None:
    bad = make_claim(claim_id="C-BAD", lines=[{"procedure_code": "7055", "line_charge": 9.0}])
    bodies = [
        [_auth_claim(claim_id="C-SAME")],
        [make_claim(claim_id="C-SAME", payer_type="medicare", place_of_service="22")],
        [bad, make_claim(claim_id="C-GOOD")],
        [make_claim(claim_id="C-LATER", submission_date="2025-03-12")],
        [make_claim(claim_id="C-DUP"), make_claim(claim_id="C-DUP"), make_claim(claim_id="C-3")],
        [bad],
    ]

    def answer(body: list[dict[str, Any]]) -> Any:
        reply = _score(client, body).json()
        reply.pop("request_id", None)  # a refusal names its own request
        return reply

    separate = [answer(body) for body in bodies]
    with ThreadPoolExecutor(max_workers=12) as pool:
        together = list(pool.map(answer, bodies * 3))
    assert together == separate * 3
    assert separate[-1]["detail"].startswith("no claim could be scored")


def test_the_scoring_thread_lives_with_the_app() -> None:
    app = create_app(Settings(api_keys=[KEY]), loader=lambda: FakeService("1"))
    coalescer = app.state.coalescer
    assert not coalescer.running  # nothing started by building the app
    with TestClient(app) as test_client:
        assert coalescer.running
        assert _score(test_client, [make_claim()]).status_code == 200
    assert not coalescer.running


def test_a_request_without_an_answer_in_time_is_503_and_the_service_goes_on() -> None:
    gate = threading.Event()
    settings = Settings(api_keys=[KEY], scoring_timeout_seconds=0.2)
    app = create_app(settings, loader=lambda: FakeService("1", gate))
    with TestClient(app) as test_client:
        answer = _score(test_client, [make_claim()])
        assert answer.status_code == 503
        assert "did not finish within 0.2 s" in answer.json()["detail"]
        assert answer.headers["retry-after"] == "10"
        gate.set()
        assert _score(test_client, [make_claim()]).status_code == 200
