"""Worklist ranking, sections, output files and the API route, on hand-built denials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from denial_risk.settings import Settings
from serving import worklist_routes
from serving.worklist import (
    EXPIRED,
    IN_PROGRESS,
    TRACKING,
    WORK_QUEUE,
    WorklistConfig,
    WorklistService,
    write_worklist,
)
from tests.unit.test_denials import make_denial

AS_OF = pd.Timestamp("2025-03-01")
KEY = "k" * 32


def ranked(*rows: dict[str, Any], config: WorklistConfig | None = None) -> pd.DataFrame:
    service = WorklistService(config=config)
    return service.prioritize(pd.DataFrame(list(rows)), AS_OF).rows


def far(**overrides: Any) -> dict[str, Any]:
    """A soft denial whose deadline is far away (no urgency boost)."""
    base = {"denial_date": "2025-02-20", "service_date": "2025-02-10", "payer_type": "medicare"}
    return make_denial(**{**base, **overrides})


def test_higher_expected_recovery_ranks_first() -> None:
    rows = ranked(
        far(claim_id="SMALL", denied_amount=100.0), far(claim_id="BIG", denied_amount=900.0)
    )
    assert list(rows["claim_id"]) == ["BIG", "SMALL"]
    assert list(rows["rank"]) == [1, 2]
    big = rows.iloc[0]
    assert big["expected_recovery"] == pytest.approx(big["recovery_probability"] * 900.0, abs=0.01)


def test_nearer_deadline_ranks_first_when_expected_recovery_is_equal() -> None:
    rows = ranked(
        far(claim_id="LATER", carc="197"),
        # Medicare Advantage: 60-day window, denied 55 days ago -> 5 days left.
        far(
            claim_id="URGENT", carc="197", payer_type="medicare_advantage", denial_date="2025-01-05"
        ),  # fmt: skip
    )
    assert list(rows["claim_id"]) == ["URGENT", "LATER"]
    assert rows.iloc[0]["urgency"] > rows.iloc[1]["urgency"] == 1.0


def test_effort_cost_decides_between_equal_expected_recoveries() -> None:
    # coding (corrected claim) and missing information (corrected claim) recover at 90%;
    # documentation (appeal) at 85%: amounts chosen so expected recovery is 900 for both.
    coding = far(claim_id="CORRECT", carc="4", denied_amount=1000.0)
    appeal = far(claim_id="APPEAL", carc="252", denied_amount=1058.82)
    assert list(ranked(coding, appeal)["claim_id"]) == ["CORRECT", "APPEAL"]
    costly = WorklistConfig(effort_costs={"corrected_claim": 500.0})
    assert list(ranked(coding, appeal, config=costly)["claim_id"]) == ["APPEAL", "CORRECT"]


def test_past_deadline_is_marked_and_listed_apart_from_workable_denials() -> None:
    rows = ranked(
        far(claim_id="LIVE", carc="197", denied_amount=500.0),
        far(
            claim_id="LATE",
            carc="197",
            denied_amount=900.0,
            payer_type="medicare_advantage",
            denial_date="2024-11-01",
        ),  # fmt: skip
    ).set_index("claim_id")
    assert rows.loc["LATE", "past_deadline"] and rows.loc["LATE", "days_left"] < 0
    assert "PAST DEADLINE" in rows.loc["LATE", "note"]
    assert rows.loc["LATE", "section"] == EXPIRED and pd.isna(rows.loc["LATE", "rank"])
    assert rows.loc["LIVE", "section"] == WORK_QUEUE and rows.loc["LIVE", "rank"] == 1


def test_hard_denials_are_tracked_not_queued() -> None:
    rows = ranked(
        far(claim_id="SOFT", denied_amount=10.0),
        far(claim_id="TIMELY", carc="29", denied_amount=5000.0),
        far(claim_id="NONCOV", carc="96", denied_amount=8000.0),
    ).set_index("claim_id")
    assert rows.loc["SOFT", "section"] == WORK_QUEUE and rows.loc["SOFT", "rank"] == 1
    for claim in ("TIMELY", "NONCOV"):
        assert rows.loc[claim, "section"] == TRACKING
        assert pd.isna(rows.loc[claim, "rank"])
        assert rows.loc[claim, "route"] == "write_off"
        assert rows.loc[claim, "expected_recovery"] == 0.0


def test_every_denial_appears_exactly_once_and_counts_add_up() -> None:
    inputs = [
        far(claim_id="A"),
        far(claim_id="B", carc="29"),
        far(claim_id="C", carc="Q77"),
        far(claim_id="D", kind="rejection", carc=None, rejection_reason="IK5*R"),
        far(claim_id="E", worked_on="2025-02-25"),
        far(claim_id="F", carc="50", denied_amount=3000.0),
    ]
    worklist = WorklistService().prioritize(pd.DataFrame(inputs), AS_OF)
    rows = worklist.rows
    assert sorted(rows["claim_id"]) == sorted(r["claim_id"] for r in inputs)
    assert rows["claim_id"].is_unique
    summary = worklist.summary()
    assert summary["rows"] == len(inputs)
    assert sum(summary[f"{s}_rows"] for s in (WORK_QUEUE, TRACKING, IN_PROGRESS)) == len(inputs)
    by_id = rows.set_index("claim_id")
    assert by_id.loc["E", "section"] == IN_PROGRESS
    assert by_id.loc["C", "category"] == "unknown" and by_id.loc["C", "section"] == WORK_QUEUE
    assert by_id.loc["D", "route"] == "resubmission"
    # queue rows come first, ranked 1..n without gaps
    queue = rows[rows["section"] == WORK_QUEUE]
    assert list(queue.index) == list(range(len(queue)))
    assert list(queue["rank"]) == list(range(1, len(queue) + 1))


def test_denials_after_the_as_of_date_are_left_out_and_counted() -> None:
    worklist = WorklistService().prioritize(
        pd.DataFrame([far(claim_id="A"), far(claim_id="FUTURE", denial_date="2025-04-01")]), AS_OF
    )
    assert list(worklist.rows["claim_id"]) == ["A"]
    assert worklist.summary()["dropped_after_as_of"] == 1


def test_rejections_can_be_left_out_of_the_queue() -> None:
    rows = ranked(
        far(claim_id="A"),
        far(claim_id="R", kind="rejection", carc=None),
        config=WorklistConfig(include_rejections=False),
    )
    assert list(rows["claim_id"]) == ["A"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_written_worklist_is_in_rank_order_with_an_escaped_html_view(
    tmp_path: Path, suffix: str
) -> None:
    worklist = WorklistService().prioritize(
        pd.DataFrame(
            [
                far(claim_id="<script>x</script>", denied_amount=50.0),
                far(claim_id="TOP", denied_amount=5000.0),
                far(claim_id="HARD", carc="29"),
            ]
        ),
        AS_OF,
    )
    written = write_worklist(worklist, tmp_path / f"worklist{suffix}")
    table = pd.read_csv(written["table"]) if suffix == ".csv" else pd.read_parquet(written["table"])
    for column in ("claim_id", "rank", "denied_amount", "recovery_probability",
                   "expected_recovery"):  # fmt: skip
        assert column in table.columns
    assert list(table["claim_id"]) == ["TOP", "<script>x</script>", "HARD"]
    page = written["html"].read_text()
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "Hard denials" in page and "addEventListener" in page


def test_patient_identifiers_never_reach_the_worklist() -> None:
    rows = ranked(far(claim_id="A"))
    assert not {"patient_id", "patient_birth_date", "patient_sex"} & set(rows.columns)


# -- the API route -------------------------------------------------------------------------------
def client(service: WorklistService | None) -> TestClient:
    app = FastAPI()
    app.state.settings = Settings(api_keys=[KEY], max_batch_claims=10)
    app.include_router(worklist_routes.router)
    if service is not None:
        app.dependency_overrides[worklist_routes.get_worklist_service] = lambda: service
    return TestClient(app)


def _denial_json(**overrides: Any) -> dict[str, Any]:
    body = {"claim_id": "C1", "payer_id": "04412", "payer_type": "medicare", "carc": "4",
            "group_code": "CO", "denial_date": "2025-02-20", "service_date": "2025-02-10",
            "denied_amount": 100.0, "payer_claim_number": "PCN-1"}  # fmt: skip
    body.update(overrides)
    return body


def test_api_ranks_and_separates_hard_denials() -> None:
    body = {
        "as_of": "2025-03-01",
        "denials": [
            _denial_json(),
            _denial_json(claim_id="C2", denied_amount=800.0, rarcs=["n130"]),
            _denial_json(claim_id="C3", carc="29"),
            _denial_json(claim_id="C4", kind="rejection", carc=None, group_code=None),
        ],
    }
    answer = client(WorklistService()).post(
        "/v1/denials/prioritize", json=body, headers={"X-API-Key": KEY}
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    queue_ids = [row["claim_id"] for row in data["queue"]]
    assert queue_ids[0] == "C2" and set(queue_ids) == {"C1", "C2", "C4"}
    assert [row["claim_id"] for row in data["tracking"]] == ["C3"]
    assert data["counts"]["rows"] == 4
    assert data["queue"][0]["rank"] == 1 and data["queue"][0]["deadline"]
    rejection = next(row for row in data["queue"] if row["claim_id"] == "C4")
    assert rejection["route"] == "resubmission"


def test_api_limit_returns_the_top_of_the_queue() -> None:
    body = {"limit": 1, "denials": [_denial_json(), _denial_json(claim_id="C2", denied_amount=9.0)]}
    answer = client(WorklistService()).post(
        "/v1/denials/prioritize", json=body, headers={"X-API-Key": KEY}
    )
    assert [row["claim_id"] for row in answer.json()["queue"]] == ["C1"]


def test_api_refuses_a_denial_without_carc_and_says_what_to_send() -> None:
    body = {"denials": [_denial_json(carc=None)]}
    answer = client(WorklistService()).post(
        "/v1/denials/prioritize", json=body, headers={"X-API-Key": KEY}
    )
    assert answer.status_code == 422
    assert "kind='rejection'" in answer.text


def test_api_refuses_too_many_denials() -> None:
    body = {"denials": [_denial_json(claim_id=f"C{i}") for i in range(11)]}
    answer = client(WorklistService()).post(
        "/v1/denials/prioritize", json=body, headers={"X-API-Key": KEY}
    )
    assert answer.status_code == 413 and "at most 10" in answer.json()["detail"]


def test_api_needs_a_key_and_a_configured_service() -> None:
    body = {"denials": [_denial_json()]}
    assert client(WorklistService()).post("/v1/denials/prioritize", json=body).status_code == 401
    answer = client(None).post("/v1/denials/prioritize", json=body, headers={"X-API-Key": KEY})
    assert answer.status_code == 503 and "worklist_service" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("denial", "as_of", "field"),
    [
        ({"denial_date": "1600-01-01"}, None, "denials[0].denial_date"),
        ({"service_date": "0001-01-01"}, None, "denials[0].service_date"),
        ({}, "9999-01-01", "as_of"),
    ],
)
def test_api_refuses_dates_no_remittance_carries_by_name(
    denial: dict[str, str], as_of: str | None, field: str
) -> None:
    # Issue 20: such dates were a 500 (found by schemathesis), not a 422 naming the field.
    body: dict[str, object] = {"denials": [_denial_json(**denial)]}
    if as_of:
        body["as_of"] = as_of
    answer = client(WorklistService()).post(
        "/v1/denials/prioritize", json=body, headers={"X-API-Key": KEY}
    )
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]  # (FastAPI's own format in this bare app)
    assert ".".join(str(part) for part in error["loc"][1:]).replace(".0.", "[0].") == field
    assert "1900-01-01" in error["msg"] or "2200-12-31" in error["msg"]
