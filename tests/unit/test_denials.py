"""Denial classification, routing and deadlines on tiny hand-built denials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.denials import (
    DENIAL_FRAME_COLUMNS,
    REJECTION_CATEGORY,
    UNKNOWN_CATEGORY,
    classify,
    denials_from_dataset,
    fill_instructions,
    load_denial_rules,
    load_payer_windows,
    normalise_denial_frame,
    prepare_denials,
)
from features.schema import ClaimsDataset, empty_table, validate_table

AS_OF = pd.Timestamp("2025-03-01")


def make_denial(**overrides: Any) -> dict[str, Any]:
    """A soft coding denial from a commercial payer; a test states only what it changes."""
    row: dict[str, Any] = {
        "claim_id": "C1",
        "kind": "denial",
        "payer_id": "87716",
        "payer_name": "Northstar",
        "payer_type": "commercial",
        "payer_claim_number": "PCN-1",
        "carc": "4",
        "group_code": "CO",
        "rarc": None,
        "denial_carcs": "4",
        "denial_date": "2025-02-01",
        "service_date": "2025-01-20",
        "denied_amount": 250.0,
        "procedure_code": "99214",
        "prior_attempts": 0,
        "worked_on": None,
        "rejection_reason": None,
    }
    row.update(overrides)
    return row


def frame(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def one(**overrides: Any) -> pd.Series:
    return prepare_denials(frame(make_denial(**overrides)), as_of=AS_OF).iloc[0]


@pytest.mark.parametrize(
    ("carc", "group", "category", "hard", "preventable", "clinical", "route"),
    [
        ("16", "CO", "missing_information", False, True, False, "corrected_claim"),
        ("4", "CO", "coding", False, True, False, "corrected_claim"),
        ("50", "CO", "medical_necessity", False, False, True, "peer_to_peer"),
        ("27", "PR", "eligibility", False, True, False, "eligibility_rebill"),
        ("197", "CO", "authorization", False, True, False, "appeal"),
        ("252", "CO", "documentation", False, True, False, "appeal"),
        ("96", "CO", "non_covered", True, False, False, "write_off"),
        ("29", "CO", "timely_filing", True, True, False, "write_off"),
        ("18", "OA", "duplicate", True, True, False, "write_off"),
    ],
)
def test_classification_by_carc(
    carc: str, group: str, category: str, hard: bool, preventable: bool, clinical: bool, route: str
) -> None:
    row = one(carc=carc, group_code=group)
    assert row["category"] == category
    assert (row["hard"], row["preventable"], row["clinical"]) == (hard, preventable, clinical)
    assert row["route"] == route
    assert row["reason"].startswith(f"{group}-{carc}: ")


def test_unknown_carc_is_kept_classified_unknown_with_a_note() -> None:
    rows = prepare_denials(frame(make_denial(carc="Z99"), make_denial(claim_id="C2")), as_of=AS_OF)
    assert len(rows) == 2
    unknown = rows.set_index("claim_id").loc["C1"]
    assert unknown["category"] == UNKNOWN_CATEGORY and not unknown["known_carc"]
    assert "Z99" in unknown["note"] and "not in" in unknown["note"]
    assert not unknown["hard"] and unknown["route"] == "appeal"


def test_co_29_is_hard_and_says_it_is_not_appealable() -> None:
    row = one(carc="29", group_code="CO")
    assert row["hard"] and row["route"] == "write_off"
    assert "not appealable" in row["note"]


def test_rules_file_can_change_a_route(tmp_path: Path) -> None:
    rules_csv = tmp_path / "rules.csv"
    rules_csv.write_text("carc,group_code,rarc,hard,route,note\n4,,,,appeal,payer wants appeals\n")
    rules = load_denial_rules(rules_path=rules_csv)
    row = classify(normalise_denial_frame(frame(make_denial())), rules).iloc[0]
    assert row["route"] == "appeal" and row["note"] == "payer wants appeals"


def test_rule_naming_an_undefined_route_is_refused(tmp_path: Path) -> None:
    rules_csv = tmp_path / "rules.csv"
    rules_csv.write_text("carc,group_code,rarc,hard,route,note\n4,,,,fax_it,\n")
    with pytest.raises(ValueError, match="fax_it"):
        load_denial_rules(rules_path=rules_csv)


def test_rarc_ma130_sends_a_corrected_claim_not_an_appeal() -> None:
    row = one(carc="16", rarc="MA130;N290")
    assert row["route"] == "corrected_claim" and "MA130" in row["note"]
    assert "remarks MA130, N290" in row["reason"]


@pytest.mark.parametrize("carc", [None, "50", "197"])
def test_rejection_is_routed_to_resubmission_never_appeal(carc: str | None) -> None:
    row = one(kind="rejection", carc=carc, group_code=None, rejection_reason="A7:164 member ID")
    assert row["category"] == REJECTION_CATEGORY
    assert row["route"] == "resubmission" and row["followup_action"] != "appeal"
    assert not row["hard"]


def test_appeal_deadline_from_the_payer_type_window() -> None:
    row = one(carc="197", payer_type="medicare", denial_date="2025-02-01")
    assert row["appeal_window_days"] == 120 and row["deadline_basis"] == "appeal window"
    assert row["deadline"] == pd.Timestamp("2025-02-01") + pd.Timedelta(days=120)
    assert row["days_left"] == (row["deadline"] - AS_OF).days
    assert not row["past_deadline"]


def test_medicare_advantage_window_is_60_days_and_can_pass() -> None:
    row = one(carc="197", payer_type="medicare_advantage", denial_date="2024-12-01")
    assert row["appeal_window_days"] == 60
    assert row["days_left"] == (pd.Timestamp("2025-01-30") - AS_OF).days < 0
    assert row["past_deadline"]


def test_corrected_claim_deadline_counts_the_filing_limit_from_service() -> None:
    row = one(carc="4", payer_type="commercial", service_date="2025-01-20")
    assert row["deadline_basis"] == "filing limit"
    assert row["deadline"] == pd.Timestamp("2025-01-20") + pd.Timedelta(days=90)


def test_corrected_claim_without_service_date_falls_back_to_the_appeal_window() -> None:
    row = one(carc="4", service_date=None)
    assert row["deadline_basis"] == "appeal window" and row["deadline"] == row["appeal_deadline"]


def test_payer_override_changes_the_window_and_the_deadline(tmp_path: Path) -> None:
    overrides = tmp_path / "payers.csv"
    overrides.write_text(
        "payer_id,appeal_window_days,timely_filing_days,payer_type\n"
        "87716,30,,\n"
        "X1,,,medicare_advantage\n"
    )
    windows = load_payer_windows(overrides)
    rows = prepare_denials(
        frame(
            make_denial(carc="197", denial_date="2025-01-15"),
            make_denial(claim_id="C2", carc="197", payer_id="X1", payer_type=None),
        ),
        windows,
        as_of=AS_OF,
    ).set_index("claim_id")
    assert rows.loc["C1", "appeal_window_days"] == 30
    assert rows.loc["C1", "window_source"] == "payer override"
    assert rows.loc["C1", "past_deadline"]  # 2025-01-15 + 30 days < 2025-03-01
    assert rows.loc["C1", "timely_filing_days"] == 90  # blank cell: payer-type default
    assert rows.loc["C2", "payer_type"] == "medicare_advantage"
    assert rows.loc["C2", "appeal_window_days"] == 60


def test_bad_payer_override_is_refused_with_the_payer_named(tmp_path: Path) -> None:
    overrides = tmp_path / "payers.csv"
    overrides.write_text("payer_id,appeal_window_days\nP9,soon\n")
    with pytest.raises(ValueError, match="P9"):
        load_payer_windows(overrides)


def test_instructions_quote_the_original_claim_reference() -> None:
    rows = prepare_denials(
        frame(make_denial(carc="4"), make_denial(claim_id="C2", carc="197")), as_of=AS_OF
    )
    text = fill_instructions(rows)
    assert "frequency code 7" in text[0] and "PCN-1" in text[0]
    assert "PCN-1" in text[1] and "CO-197" in text[1]


# -- from the contract tables --------------------------------------------------------------------
def _table(name: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    valid, bad = validate_table(name, pd.DataFrame(rows))
    assert bad.empty, bad
    return valid


def _remit(remit_id: str, claim_id: str, paid: float) -> dict[str, Any]:
    return {"remit_id": remit_id, "claim_id": claim_id, "payer_claim_number": f"P{remit_id}",
            "status_code": "1", "total_charge": 300.0, "paid_amount": paid,
            "patient_responsibility": 0.0, "remit_date": "2025-02-01", "payer_id": "87716",
            "payer_name": "Northstar"}  # fmt: skip


def _adj(remit_id: str, claim_id: str, group: str, carc: str) -> dict[str, Any]:
    return {"remit_id": remit_id, "claim_id": claim_id, "line_number": None, "group_code": group,
            "carc": carc, "amount": 300.0, "quantity": None}  # fmt: skip


def test_every_denial_and_open_rejection_of_a_data_set_appears_once() -> None:
    data = ClaimsDataset(
        claims=empty_table("claims"),
        lines=empty_table("lines"),
        diagnoses=empty_table("diagnoses"),
        remittances=_table(
            "remittances",
            [_remit("R1", "C1", 0.0), _remit("R2", "C2", 250.0), _remit("R3", "C3", 0.0)],
        ),
        adjustments=_table(
            "adjustments", [_adj("R1", "C1", "CO", "50"), _adj("R3", "C3", "CO", "ZZ7")]
        ),
        remarks=_table(
            "remarks", [{"remit_id": "R1", "claim_id": "C1", "line_number": None, "rarc": "N130"}]
        ),  # fmt: skip
        rejections=_table(
            "rejections",
            [
                {
                    "claim_id": "C4",
                    "rejection_date": "2025-02-03",
                    "source": "277CA",
                    "reason": "A7:164 member ID",
                },  # fmt: skip
                {
                    "claim_id": "C2",
                    "rejection_date": "2025-01-05",
                    "source": "999",
                    "reason": "IK5*R",
                },  # fmt: skip
            ],
        ),
    )
    denials = denials_from_dataset(data)
    assert list(denials.columns) == list(DENIAL_FRAME_COLUMNS)
    # C2 was paid later (its rejection is resolved), C1/C3 denied, C4 still rejected.
    assert sorted(denials["claim_id"]) == ["C1", "C3", "C4"]
    rows = prepare_denials(denials, as_of=AS_OF).set_index("claim_id")
    assert rows.loc["C1", "denied_amount"] == 300.0 and rows.loc["C1", "rarc"] == "N130"
    assert rows.loc["C1", "route"] == "peer_to_peer"
    assert rows.loc["C3", "category"] == UNKNOWN_CATEGORY
    assert rows.loc["C4", "route"] == "resubmission"
    assert rows.loc["C1", "payer_type"] == "other"  # 835 only: no claim filing indicator
