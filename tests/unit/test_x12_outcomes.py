"""First-adjudication outcomes and derived follow-ups on hand-built remittances."""

from __future__ import annotations

from typing import Any

import pandas as pd

from features.schema import ClaimsDataset, empty_table, validate_table
from features.x12 import derive_followups, first_adjudication_outcomes


def make_remit(remit_id: str, claim_id: str, **overrides: Any) -> dict[str, Any]:
    """A paid remittance; a test states only what it changes."""
    row: dict[str, Any] = {
        "remit_id": remit_id,
        "claim_id": claim_id,
        "payer_claim_number": f"PCN-{remit_id}",
        "status_code": "1",
        "total_charge": 100.0,
        "paid_amount": 80.0,
        "patient_responsibility": 20.0,
        "remit_date": "2025-04-01",
        "payer_id": "60054",
        "payer_name": "PLAN",
    }
    row.update(overrides)
    return row


def make_adj(remit_id: str, claim_id: str, group: str, carc: str, amount: float,
             line_number: int | None = None) -> dict[str, Any]:  # fmt: skip
    return {"remit_id": remit_id, "claim_id": claim_id, "line_number": line_number,
            "group_code": group, "carc": carc, "amount": amount, "quantity": None}  # fmt: skip


def dataset(
    remits: list[dict[str, Any]],
    adjustments: list[dict[str, Any]] = (),  # type: ignore[assignment]
    claims: pd.DataFrame | None = None,
) -> ClaimsDataset:
    remit_frame, bad = validate_table("remittances", pd.DataFrame(remits))
    assert bad.empty
    adj = (
        validate_table("adjustments", pd.DataFrame(list(adjustments)))[0]
        if adjustments
        else empty_table("adjustments")
    )
    return ClaimsDataset(
        claims=claims if claims is not None else empty_table("claims"),
        lines=empty_table("lines"),
        diagnoses=empty_table("diagnoses"),
        remittances=remit_frame,
        adjustments=adj,
    )


def outcome(data: ClaimsDataset, claim_id: str) -> pd.Series:
    out = first_adjudication_outcomes(data).set_index("claim_id")
    return out.loc[claim_id]


def test_status_4_is_denied_with_its_denial_carc() -> None:
    data = dataset(
        [make_remit("R1", "C1", status_code="4", paid_amount=0.0, patient_responsibility=0.0)],
        [make_adj("R1", "C1", "CO", "197", 100.0)],
    )
    row = outcome(data, "C1")
    assert bool(row["denied"]) and row["primary_carc"] == "197"
    assert row["primary_group"] == "CO" and row["denial_category"] == "authorization"


def test_patient_share_and_contractual_only_is_not_denied() -> None:
    data = dataset(
        [make_remit("R1", "C1", paid_amount=0.0, patient_responsibility=60.0)],
        [make_adj("R1", "C1", "PR", "1", 60.0), make_adj("R1", "C1", "CO", "45", 40.0, 1)],
    )
    row = outcome(data, "C1")
    assert not row["denied"] and row["denial_category"] is None


def test_paid_zero_with_denial_carc_is_denied_even_when_status_1() -> None:
    data = dataset(
        [make_remit("R1", "C1", paid_amount=0.0)], [make_adj("R1", "C1", "CO", "16", 5.0, 1)]
    )
    assert bool(outcome(data, "C1")["denied"])


def test_partial_denial_counts_when_it_explains_most_of_the_charge() -> None:
    data = dataset(
        [make_remit("R1", "C1", paid_amount=30.0), make_remit("R2", "C2", paid_amount=70.0)],
        [make_adj("R1", "C1", "CO", "50", 70.0, 1), make_adj("R2", "C2", "CO", "50", 30.0, 1)],
    )
    assert bool(outcome(data, "C1")["denied"])
    assert not outcome(data, "C2")["denied"]


def test_forwarded_and_predetermination_statuses_are_not_denials() -> None:
    remits = [
        make_remit(f"R{s}", f"C{s}", status_code=s, paid_amount=0.0)
        for s in ("19", "20", "21", "23", "25")
    ]
    adjustments = [make_adj(f"R{s}", f"C{s}", "OA", "23", 100.0) for s in ("19", "23")]
    out = first_adjudication_outcomes(dataset(remits, adjustments))
    assert len(out) == 5 and not out["denied"].any()


def test_reversal_cancels_the_remittance_it_reverses() -> None:
    # Denied first, then the payer reverses that denial and re-adjudicates as paid.
    remits = [
        make_remit("R1", "C1", status_code="4", paid_amount=0.0, remit_date="2025-04-01",
                   payer_claim_number="PCN1"),
        make_remit("R2", "C1", status_code="22", paid_amount=0.0, remit_date="2025-04-15",
                   payer_claim_number="PCN1"),
        make_remit("R3", "C1", status_code="1", paid_amount=90.0, remit_date="2025-04-15"),
    ]  # fmt: skip
    data = dataset(remits, [make_adj("R1", "C1", "CO", "16", 100.0)])
    row = outcome(data, "C1")
    assert row["remit_id"] == "R3" and not row["denied"] and row["paid_amount"] == 90.0


def test_lone_reversal_is_not_an_adjudication() -> None:
    data = dataset([make_remit("R1", "C1", status_code="22", paid_amount=-80.0)])
    assert first_adjudication_outcomes(data).empty


def test_corrected_claim_that_pays_after_a_denial_is_a_recovered_followup() -> None:
    claims = validate_table(
        "claims",
        pd.DataFrame(
            [
                {"claim_id": cid, "submission_date": date, "claim_type": "professional",
                 "frequency_code": freq, "original_payer_claim_number": orig,
                 "payer_id": "60054", "payer_name": None, "claim_filing_indicator": "CI",
                 "payer_type": "commercial", "billing_npi": None, "rendering_npi": None,
                 "referring_npi": None, "provider_taxonomy": None, "place_of_service": "11",
                 "total_charge": 100.0, "service_date_from": "2025-03-01",
                 "service_date_to": "2025-03-01", "patient_id": "P", "patient_birth_date": None,
                 "patient_sex": None, "prior_auth_number": None, "referral_number": None,
                 "has_other_coverage": False}
                for cid, date, freq, orig in [
                    ("C1", "2025-03-05", "1", None),
                    ("C1R", "2025-04-10", "7", "PCN-R1"),
                ]
            ]
        ),
    )[0]  # fmt: skip
    remits = [
        make_remit("R1", "C1", status_code="4", paid_amount=0.0),
        make_remit("R2", "C1R", paid_amount=75.0, remit_date="2025-05-01"),
    ]
    data = dataset(remits, [make_adj("R1", "C1", "CO", "16", 100.0)], claims=claims)
    follow = derive_followups(data).set_index("claim_id")
    assert follow.loc["C1", "action"] == "corrected_claim"
    assert bool(follow.loc["C1", "recovered"]) and follow.loc["C1", "recovered_amount"] == 75.0
    assert validate_table("followups", derive_followups(data))[1].empty


def test_later_remittance_for_same_claim_is_an_appeal_followup() -> None:
    remits = [
        make_remit("R1", "C1", status_code="4", paid_amount=0.0),
        make_remit("R2", "C1", paid_amount=50.0, remit_date="2025-06-01"),
    ]
    follow = derive_followups(dataset(remits))
    assert follow.iloc[0]["action"] == "appeal" and bool(follow.iloc[0]["recovered"])


def test_placeholder_claim_ids_are_left_out() -> None:
    data = dataset([make_remit("R1", "PATIENT ACCOUNT NUMBER", status_code="4")])
    assert first_adjudication_outcomes(data).empty
