"""What-if re-scoring, and explanations held to the simulator's truth (issue 18).

The first tests build claims with the factories and score their changed copies with a stand-in
scorer that records what it is given: each fix is made on the claim's own fields and nothing
else, and the copies are scored where they see the batch the claim was scored in. The last
tests score the session model's later period and hold the suggested fix and the top fixable
factor to the simulator's ground truth: the reason each denied claim was denied for and the
mechanism behind it (truth.parquet measures; the product never reads it).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.claim_tables import ClaimTables
from serving.explain import Factor
from serving.what_if import fixes_first, what_ifs
from tests.utils.factories import make_claim, tables_from

TODAY = dt.date(2025, 3, 10)


def _fix(field: str, contribution: float = 0.5, actionable: bool = True) -> Factor:
    return Factor(field, field, contribution, "raises risk", actionable, "a fix", None)


def _claim(claim_id: str, **overrides: Any) -> dict[str, Any]:
    """An E/M visit and a procedure the same day, the procedure's line without a diagnosis
    pointer, sent after ``TODAY``: every what-if change can be made on it."""
    fields: dict[str, Any] = {
        "claim_id": claim_id,
        "submission_date": "2025-03-20",
        "service_date_from": "2025-03-03",
        "service_date_to": "2025-03-03",
        "prior_auth_number": None,
        "referral_number": None,
        "referring_npi": None,
        **overrides,
    }
    lines = [
        {"procedure_code": "99214", "line_charge": 180.0, "units": 1, "diagnosis_pointers": "1"},
        {"procedure_code": "20610", "line_charge": 300.0, "units": 1, "diagnosis_pointers": None},
        {"procedure_code": "97140", "line_charge": 90.0, "units": 1, "diagnosis_pointers": "1"},
    ]
    return make_claim(lines=lines, **fields)


FIELDS = [
    "prior authorization",
    "referral",
    "referring provider NPI",
    "modifier 25 (E/M with procedure)",
    "modifier 59/X (distinct procedures)",
    "diagnosis pointer",
    "days from service to submission",
]


class Recorder:
    """Scores tables with a probability per change made (read from the tables themselves),
    and keeps each call's tables."""

    def __init__(self) -> None:
        self.calls: list[ClaimTables] = []

    def __call__(self, tables: ClaimTables) -> np.ndarray:
        self.calls.append(tables)
        claims, lines = tables.claims, tables.lines
        has_25 = lines[["modifier_1", "modifier_2"]].eq("25").any(axis=1)
        with_25 = has_25.groupby(lines["claim_id"]).any().reindex(claims["claim_id"])
        p = np.full(len(claims), 0.9)
        # Each change lowers the risk by its own amount, so the order says which was made.
        p -= 0.5 * claims["prior_auth_number"].notna().to_numpy()
        p -= 0.3 * with_25.to_numpy(dtype=bool)
        p -= 0.1 * claims["referral_number"].notna().to_numpy()
        return np.round(p, 4)


def _changed_columns(before: ClaimTables, after: ClaimTables) -> set[str]:
    """The table columns a copy changed (the claim ID aside)."""
    changed = set()
    for name in ("claims", "lines", "diagnoses"):
        old = getattr(before, name).drop(columns="claim_id").reset_index(drop=True)
        new = getattr(after, name).drop(columns="claim_id").reset_index(drop=True)
        assert old.shape == new.shape, name
        for column in old.columns:
            if not old[column].astype(str).equals(new[column].astype(str)):
                changed.add(column)
    return changed


EXPECTED_CHANGE = {
    "prior authorization": {"prior_auth_number"},
    "referral": {"referral_number"},
    "referring provider NPI": {"referring_npi"},
    "modifier 25 (E/M with procedure)": {"modifier_1"},
    "modifier 59/X (distinct procedures)": {"modifier_1"},
    "diagnosis pointer": {"diagnosis_pointers"},
    "days from service to submission": {"submission_date"},
}


@pytest.mark.parametrize("field", FIELDS)
def test_each_fix_changes_only_the_field_it_names(field: str) -> None:
    tables = tables_from([_claim("C1")])
    recorder = Recorder()
    (changes,) = what_ifs(tables, [[_fix(field)]], np.array([0.9]), recorder, TODAY)
    (change,) = changes
    assert change.field == field
    (call,) = recorder.calls
    assert _changed_columns(tables, call) == EXPECTED_CHANGE[field]
    if field == "modifier 25 (E/M with procedure)":
        assert call.lines["modifier_1"].tolist()[0] == "25"  # on the E/M line only
        assert call.lines["modifier_1"].isna().sum() == 2
        assert "99214 (line 1)" in change.change
    if field == "modifier 59/X (distinct procedures)":
        assert call.lines["modifier_1"].tolist()[2] == "59"  # the last of the procedures
        assert "97140 (line 3)" in change.change
    if field == "days from service to submission":
        assert call.claims["submission_date"].iloc[0] == pd.Timestamp(TODAY)
    # The probability after is the scorer's for the copy; the risk removed is measured from it.
    assert change.risk_removed == pytest.approx(0.9 - change.probability)


def test_no_what_if_where_the_claim_already_has_what_the_fix_adds() -> None:
    done = _claim(
        "C1",
        prior_auth_number="A1",
        referral_number="R1",
        referring_npi="1234567893",
        submission_date=TODAY.isoformat(),  # sent today: nothing earlier to send it on
    )
    done["lines"][0]["modifier_1"] = "25"
    done["lines"][1]["modifier_1"] = "59"
    done["lines"][1]["diagnosis_pointers"] = "1"
    recorder = Recorder()
    factors = [[_fix(field) for field in FIELDS]]
    assert what_ifs(tables_from([done]), factors, np.array([0.9]), recorder, TODAY) == [[]]
    assert recorder.calls == []


def test_only_fixable_risks_are_rescored_at_most_three_most_risk_removed_first() -> None:
    tables = tables_from([_claim("C1"), _claim("C2")])
    factors = [
        [_fix("referral"), _fix("modifier 25 (E/M with procedure)"), _fix("prior authorization")]
        + [_fix("diagnosis pointer")],
        [_fix("prior authorization", -0.4), _fix("referral", actionable=False)],
    ]
    recorder = Recorder()
    first, second = what_ifs(tables, factors, np.array([0.9, 0.9]), recorder, TODAY)
    assert second == []
    # The first three fixes asked for, ordered by the risk the scorer says each removes.
    assert [c.field for c in first] == [
        "prior authorization",
        "modifier 25 (E/M with procedure)",
        "referral",
    ]
    removed = [c.risk_removed for c in first]
    assert removed == sorted(removed, reverse=True) and removed[-1] > 0
    # The claim's factors follow: its fixes by the risk removed, then the rest.
    ordered = fixes_first(factors[0], first, 0.9)
    assert [f.field for f in ordered][:3] == [c.field for c in first]


def test_copies_of_a_batch_sent_on_one_day_are_scored_in_one_call_under_their_own_ids() -> None:
    tables = tables_from([_claim("C1"), _claim("C2")])
    factors = [[_fix("prior authorization"), _fix("referral")]] * 2
    recorder = Recorder()
    what_ifs(tables, factors, np.array([0.9, 0.9]), recorder, TODAY)
    (call,) = recorder.calls
    assert len(call.claims) == 4
    assert call.claims["claim_id"].is_unique
    assert not set(call.claims["claim_id"]) & {"C1", "C2"}
    # A copy sent today (another day than the batch's) is scored in a call of its own.
    recorder = Recorder()
    dated = [[_fix("prior authorization"), _fix("days from service to submission")]] * 2
    what_ifs(tables, dated, np.array([0.9, 0.9]), recorder, TODAY)
    assert sorted(len(call) for call in recorder.calls) == [2, 2]
    for call in recorder.calls:
        assert call.claims["submission_date"].nunique() == 1


def test_copies_of_a_batch_sent_over_several_days_see_the_whole_batch() -> None:
    claims = [_claim("C1"), _claim("C2", submission_date="2025-03-21"), _claim("C3")]
    tables = tables_from(claims)
    factors = [[_fix("prior authorization"), _fix("referral")], [_fix("referral")], []]
    recorder = Recorder()
    first, second, third = what_ifs(tables, factors, np.array([0.9] * 3), recorder, TODAY)
    # One call per rank of fix, each the whole batch under the claims' own IDs, each claim
    # changed by its fix of that rank.
    assert len(recorder.calls) == 2
    for call in recorder.calls:
        assert sorted(call.claims["claim_id"]) == ["C1", "C2", "C3"]
        assert len(call.lines) == len(tables.lines)
    one, two = recorder.calls
    by_id = one.claims.set_index("claim_id")
    assert by_id.loc["C1", "prior_auth_number"] == "WHAT-IF"
    assert by_id.loc["C2", "referral_number"] == "WHAT-IF"
    assert pd.isna(by_id.loc["C3", "prior_auth_number"])
    assert two.claims.set_index("claim_id").loc["C1", "referral_number"] == "WHAT-IF"
    assert [len(first), len(second), len(third)] == [2, 1, 0]


# -- the session model's later period, held to the simulator's truth --------------------------

MECHANISM_FIELDS = {
    # The mechanisms a claim field carries, and the fields a biller would fix for each.
    "authorization_absent": {"prior authorization"},
    "referral_absent": {"referral"},
    "ordering_provider_missing": {"referring provider NPI"},
    "modifier_25_missing": {
        "modifier 25 (E/M with procedure)",
        "procedure combination and modifiers",
    },
    "diagnosis_pointer_missing": {"diagnosis pointer"},
    "rendering_npi_missing": {"rendering provider NPI"},
    "rendering_npi_invalid": {"rendering provider NPI"},
    "filed_after_limit": {"days from service to submission"},
    "duplicate_submission": {"possible duplicate"},
    "benefit_maximum": {"benefit limit (visits this year)"},
}


@pytest.fixture(scope="module")
def later_period(trained: Any) -> tuple[Any, ClaimTables, list[Any], pd.DataFrame]:
    """The session model's scores of its later period (explained, with what-ifs) and the
    simulator's truth for those claims."""
    from features.schema import ClaimsDataset
    from serving.loading import load_service
    from training.dataset import default_split

    service = load_service(trained.model_uri, trained.tracking_uri)
    dataset, _ = ClaimsDataset.read(trained.sim_dir)
    split = default_split(dataset.claims)
    tables = ClaimTables.from_dataset(dataset)
    later = tables.claims.loc[tables.claims["submission_date"] >= split.test_from, "claim_id"]
    tables = tables.subset(later)
    scores = service.score(tables, explain=True, top_k=5)
    truth = pd.read_parquet(trained.sim_dir / "truth.parquet").set_index("claim_id")
    return service, tables, scores, truth.loc[[s.claim_id for s in scores]]


def test_the_suggested_fix_addresses_the_true_cause_of_high_risk_denials(
    later_period: tuple[Any, ClaimTables, list[Any], pd.DataFrame],
) -> None:
    _, _, scores, truth = later_period
    denied = [
        (s, cause)
        for s, cause, was_denied in zip(scores, truth["true_cause"], truth["denied"], strict=True)
        if s.risk_band == "high" and was_denied == 1
    ]
    assert len(denied) >= 50, len(denied)
    fix_right = np.mean([s.suggested_fix_reason == cause for s, cause in denied])
    reason_right = np.mean([s.likely_reasons[0]["category"] == cause for s, cause in denied])
    assert fix_right >= 0.80, (fix_right, len(denied))
    assert fix_right >= reason_right - 0.03, (fix_right, reason_right)
    assert all(s.suggested_fix for s, _ in denied)


def test_the_top_fix_points_at_the_mechanism_the_claim_was_denied_for(
    later_period: tuple[Any, ClaimTables, list[Any], pd.DataFrame],
) -> None:
    _, _, scores, truth = later_period
    cases = [
        (s, MECHANISM_FIELDS[mechanism])
        for s, mechanism, was_denied in zip(
            scores, truth["true_reason"], truth["denied"], strict=True
        )
        if s.risk_band == "high" and was_denied == 1 and mechanism in MECHANISM_FIELDS
    ]
    assert len(cases) >= 30, len(cases)
    top = [
        next((f for f in s.factors if f.actionable and f.contribution > 0), None) for s, _ in cases
    ]
    top_right = np.mean(
        [f is not None and f.field in fields for f, (_, fields) in zip(top, cases, strict=True)]
    )
    suggested_right = np.mean(
        [s.suggested_fix in {f.fix for f in s.factors if f.field in fields} for s, fields in cases]
    )
    assert top_right >= 0.85, (top_right, len(cases))
    assert suggested_right >= 0.85, (suggested_right, len(cases))


def test_a_what_if_is_the_changed_claim_scored_alone(
    later_period: tuple[Any, ClaimTables, list[Any], pd.DataFrame],
) -> None:
    service, tables, scores, truth = later_period
    # Claims denied for want of an authorization: adding its number lowers their risk.
    absent = [
        next(w for w in s.what_if if w.field == "prior authorization")
        for s, mechanism in zip(scores, truth["true_reason"], strict=True)
        if mechanism == "authorization_absent"
        and any(w.field == "prior authorization" for w in s.what_if)
    ]
    assert len(absent) >= 10, len(absent)
    assert np.mean([w.risk_removed > 0 for w in absent]) >= 0.9
    # A what-if is the claim scored alone with the change made (a batch sent on one day).
    asked = [s for s in scores if any(w.field == "prior authorization" for w in s.what_if)]
    for score in asked[:3]:
        claim = tables.subset([score.claim_id])
        claim.claims["prior_auth_number"] = "A123"
        (alone,) = service.score(claim, explain=False)
        change = next(w for w in score.what_if if w.field == "prior authorization")
        assert change.probability == alone.denial_probability
        assert change.risk_removed == pytest.approx(
            score.denial_probability - alone.denial_probability, abs=1e-9
        )


def test_the_batch_table_has_the_groups_reasons_and_what_ifs_of_the_scores(
    later_period: tuple[Any, ClaimTables, list[Any], pd.DataFrame],
) -> None:
    service, tables, scores, _ = later_period
    some = [s.claim_id for s in scores if s.what_if][:40] + [s.claim_id for s in scores][:40]
    subset = tables.subset(some)
    frame = service.score_frame(subset, explain=True)
    by_id = {s.claim_id: s for s in service.score(subset, explain=True)}
    rows = [by_id[c] for c in frame["claim_id"]]
    assert [None if pd.isna(v) else v for v in frame["suggested_fix_reason"]] == [
        s.suggested_fix_reason for s in rows
    ]
    for group, column in (
        ("fix_on_claim", "fix_on_claim_contribution"),
        ("context", "context_contribution"),
    ):
        assert frame[column].tolist() == [
            next(g["contribution"] for g in s.factor_groups if g["group"] == group) for s in rows
        ]
    for k in range(3):
        assert [None if pd.isna(v) else v for v in frame[f"what_if_{k + 1}"]] == [
            s.what_if[k].change if len(s.what_if) > k else None for s in rows
        ]
        assert [None if pd.isna(v) else v for v in frame[f"what_if_{k + 1}_probability"]] == [
            s.what_if[k].probability if len(s.what_if) > k else None for s in rows
        ]
    assert frame["factor_1_group"].dropna().isin(["fix_on_claim", "context"]).all()
    assert any(s.what_if for s in rows)


def test_the_api_answers_groups_what_ifs_and_the_reason_of_the_fix(trained: Any) -> None:
    from fastapi.testclient import TestClient

    from denial_risk.settings import Settings
    from serving.app import create_app

    key = "what-if-test-api-key-0123456789"
    settings = Settings(
        model_uri=trained.model_uri,
        tracking_uri=trained.tracking_uri,
        local_copy_dir=trained.local_copies,
        api_keys=[key],
    )
    # An MRI without an authorization number, sent after today: fixes to make and measure.
    claim = make_claim(
        submission_date=(dt.date.today() + dt.timedelta(days=30)).isoformat(),
        diagnoses=["G43909"],
        lines=[{"procedure_code": "70553", "line_charge": 1450.0, "diagnosis_pointers": "1"}],
    )
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/v1/claims/score", json={"claims": [claim]}, headers={"X-API-Key": key}
        )
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["results"]
    service = client.app.state.holder.current.service  # type: ignore[attr-defined]
    (want,) = service.score(tables_from([claim]), explain=True)
    assert [g["group"] for g in result["factor_groups"]] == ["fix_on_claim", "context"]
    assert [g["contribution"] for g in result["factor_groups"]] == [
        g["contribution"] for g in want.factor_groups
    ]
    assert [f["group"] for f in result["factors"]] == [f.group for f in want.factors]
    assert result["what_if"] == [vars(change) for change in want.what_if]
    assert result["what_if"], "an MRI without an authorization number has a fix to measure"
    assert result["suggested_fix_reason"] == want.suggested_fix_reason
    for name in ("WhatIfOut", "FactorGroupOut"):
        assert name in schemas
    documented = schemas["ClaimScoreOut"]["properties"]
    assert {"what_if", "factor_groups", "suggested_fix_reason"} <= set(documented)
