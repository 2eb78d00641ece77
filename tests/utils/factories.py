"""Factories that build valid claims: a test states only what it changes."""

from __future__ import annotations

from itertools import count
from typing import Any

import pandas as pd

from features.claim_tables import ClaimTables, validated
from features.schema import OPTIONAL_COLUMNS

_ids = count(1)

VALID_NPI = "1234567893"  # passes the NPI Luhn check (CMS example)
OTHER_VALID_NPI = "1245319599"


def claim_row(**overrides: Any) -> dict[str, Any]:
    """One valid professional claim row of the ``claims`` table (every column; the optional
    ones empty)."""
    row: dict[str, Any] = {
        "claim_id": f"T{next(_ids):07d}",
        "submission_date": "2025-03-10",
        "claim_type": "professional",
        "frequency_code": "1",
        "original_payer_claim_number": None,
        "payer_id": "60054",
        "payer_name": "Example Health Plan",
        "claim_filing_indicator": "CI",
        "payer_type": "commercial",
        "billing_npi": VALID_NPI,
        "rendering_npi": OTHER_VALID_NPI,
        "referring_npi": None,
        "provider_taxonomy": "207Q00000X",
        "place_of_service": "11",
        "total_charge": None,
        "service_date_from": "2025-03-03",
        "service_date_to": "2025-03-03",
        "patient_id": "MBR0001",
        "patient_birth_date": "1970-06-01",
        "patient_sex": "F",
        "prior_auth_number": None,
        "referral_number": None,
        "has_other_coverage": False,
        **dict.fromkeys(OPTIONAL_COLUMNS["claims"]),
    }
    row.update(overrides)
    return row


def line_row(claim_id: str, line_number: int, **overrides: Any) -> dict[str, Any]:
    """One valid service line row of the ``lines`` table (every column; the optional ones
    empty)."""
    row: dict[str, Any] = {
        "claim_id": claim_id,
        "line_number": line_number,
        "procedure_code": "99213",
        "modifier_1": None,
        "modifier_2": None,
        "modifier_3": None,
        "modifier_4": None,
        "units": 1.0,
        "line_charge": 140.0,
        "service_date": "2025-03-03",
        "diagnosis_pointers": "1",
        "revenue_code": None,
        **dict.fromkeys(OPTIONAL_COLUMNS["lines"]),
    }
    row.update(overrides)
    return row


def make_claim(
    lines: list[dict[str, Any]] | None = None,
    diagnoses: list[str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """One claim as a dict with ``lines`` and ``diagnoses`` lists (API-like shape)."""
    claim = claim_row(**overrides)
    claim["lines"] = lines or [
        {"procedure_code": "99213", "line_charge": 180.0, "units": 1, "diagnosis_pointers": "1"}
    ]
    claim["diagnoses"] = diagnoses or ["I10"]
    return claim


def tables_from(claims: list[dict[str, Any]]) -> ClaimTables:
    """Validated ClaimTables from factory claims (fails the test on any quarantined row)."""
    claim_rows, line_rows, dx_rows = [], [], []
    for claim in claims:
        claim = dict(claim)
        lines = claim.pop("lines")
        diagnoses = claim.pop("diagnoses")
        if claim.get("total_charge") is None:
            claim["total_charge"] = float(sum(line["line_charge"] for line in lines))
        claim_rows.append(claim)
        for number, line in enumerate(lines, start=1):
            line_rows.append(
                line_row(claim["claim_id"], number, service_date=claim["service_date_from"], **line)
            )
        for position, code in enumerate(diagnoses, start=1):
            dx_rows.append({"claim_id": claim["claim_id"], "position": position, "code": code})
    tables, rejects = validated(
        pd.DataFrame(claim_rows), pd.DataFrame(line_rows), pd.DataFrame(dx_rows)
    )
    assert rejects.empty, rejects.to_string()
    return tables


def whole_claim_fields() -> dict[str, Any]:
    """A value for every optional ``claims`` column (see ``OPTIONAL_COLUMNS``), as the contract
    holds it and the API accepts it: a secondary claim after an auto accident, with attachments,
    a note, a lab's CLIA number and the primary payer's payment."""
    return {
        "payer_responsibility": "S",
        "subscriber_group_number": "GRP-0042",
        "patient_relationship": "19",
        "patient_key": "ACCT-000917",
        "patient_state": "OH",
        "subscriber_state": "KY",
        "billing_state": "OH",
        "billing_taxonomy": "207Q00000X",
        "rendering_taxonomy": "207R00000X",
        "service_facility_npi": OTHER_VALID_NPI,
        "service_facility_state": "OH",
        "delay_reason_code": "7",
        "related_causes": "AA,OA",
        "auto_accident_state": "KY",
        "epsdt_indicator": "N",
        "accident_date": "2025-02-20",
        "onset_date": "2025-02-21",
        "initial_treatment_date": "2025-02-22",
        "attachment_types": "09,OB",
        "attachment_transmission": "FX,AA",
        "claim_note": "seen after a fall at home | records faxed on request",
        "clia_number": "05D0123456",
        "other_payer_id": "87726",
        "other_payer_responsibility": "P",
        "other_payer_filing_indicator": "MB",
        "other_payer_paid_amount": 42.5,
        "other_payer_adjudication_date": "2025-03-07",
        "has_other_coverage": True,  # not optional, but what the other payer's fields mean
    }


def whole_line_fields() -> dict[str, Any]:
    """A value for every optional ``lines`` column, as the contract holds it and the API
    accepts it: a drug line with its NDC, its own authorization, provider and attachment."""
    return {
        "line_prior_auth_number": "AUTH-5510",
        "line_referral_number": "REF-2231",
        "ndc_code": "00409488802",
        "ndc_quantity": 2.0,
        "ndc_unit": "ML",
        "line_note": "given in clinic",
        "line_attachment_types": "CT",
        "line_attachment_transmission": "AD",
        "line_rendering_npi": VALID_NPI,
        "line_referring_npi": OTHER_VALID_NPI,
        "line_place_of_service": "22",
        "line_clia_number": "05D0654321",
        "unit_basis": "UN",
    }


def make_whole_claim(**overrides: Any) -> dict[str, Any]:
    """A claim (API-like shape) with every optional column filled, on a drug line and a visit."""
    overrides.setdefault(
        "lines",
        [
            {
                "procedure_code": "J1100",
                "line_charge": 35.0,
                "diagnosis_pointers": "1",
                **whole_line_fields(),
            },
            {"procedure_code": "99213", "line_charge": 180.0, "diagnosis_pointers": "1,2"},
        ],
    )
    overrides.setdefault("diagnoses", ["S8001XA", "W1830XA"])
    return make_claim(**{**whole_claim_fields(), **overrides})
