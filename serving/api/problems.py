"""Readable problems: pydantic errors and contract quarantine reasons -> "path: what to fix".

Both the request schema (:mod:`serving.schemas`) and the data contract (:mod:`features.schema`)
say *that* a value is wrong; this module adds *what to do*, keyed by the field name, so the same
hint is given whichever layer caught the problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from features.codes import PAYER_TYPES
from features.schema import CLAIMS, DIAGNOSES, IDENTIFYING_COLUMNS, LINES
from serving.schemas import FieldProblem

_DATE_HINT = "use a calendar date as YYYY-MM-DD, e.g. 2025-03-10"
_MONEY_HINT = "use an amount in dollars from 0 to 10,000,000, e.g. 180.00"
_NPI_HINT = "use the 10-digit NPI (at most 15 characters are accepted)"
_STATE_HINT = "use the 2-letter US state code, e.g. OH, CA or PR"
_TAXONOMY_HINT = "use the 10-character NUCC taxonomy code (PRV03), e.g. 207Q00000X"
_RESPONSIBILITY_HINT = "use P (primary), S (secondary), T (tertiary), A-H (payer 4 to 11) or U"
_REPORT_TYPE_HINT = (
    "use PWK01 report type codes separated by commas, e.g. '09' (progress report) or '09,OB'"
)
_TRANSMISSION_HINT = (
    "use one PWK02 code per report type, separated by commas: AA (available on request), BM "
    "(mail), EL (electronically), EM (e-mail), FT (file transfer) or FX (fax)"
)
_NOTE_HINT = "use notes of at most 80 characters each, separated by ' | '"
_CLIA_HINT = "use the 10-character CLIA number, e.g. 05D0123456"

HINTS: dict[str, str] = {
    "claim_id": "use the patient control number (CLM01), 1 to 38 characters",
    "submission_date": _DATE_HINT,
    "service_date_from": _DATE_HINT,
    "service_date_to": _DATE_HINT,
    "service_date": _DATE_HINT,
    "patient_birth_date": _DATE_HINT,
    "claim_type": "use professional (837P) or institutional (837I)",
    "frequency_code": "use 1 (original), 7 (replacement) or 8 (void)",
    "payer_type": f"use one of {', '.join(PAYER_TYPES)}",
    "payer_id": "use the payer ID from the 837 (NM1*PR09), 1 to 80 characters",
    "patient_sex": "use M, F or U",
    "patient_id": "use the member ID (1 to 80 characters)",
    "procedure_code": "use a 5-character CPT/HCPCS code, e.g. 99213, 70553 or J1100",
    "modifier_1": "use a 2-character modifier, e.g. 25, 59 or LT, or leave it out",
    "modifier_2": "use a 2-character modifier, e.g. 25, 59 or LT, or leave it out",
    "modifier_3": "use a 2-character modifier, e.g. 25, 59 or LT, or leave it out",
    "modifier_4": "use a 2-character modifier, e.g. 25, 59 or LT, or leave it out",
    "diagnoses": "use ICD-10-CM codes such as I10 or E11.9 (a letter, a digit, up to 5 more)",
    "code": "use an ICD-10-CM code such as I10 or E11.9 (a letter, a digit, up to 5 more)",
    "place_of_service": "use the 2-digit CMS place of service code, e.g. 11 (office)",
    "claim_filing_indicator": "use the SBR09 claim filing indicator, e.g. CI, MB or MC",
    "units": "use a number of units above 0 (at most 10,000)",
    "line_charge": _MONEY_HINT,
    "total_charge": _MONEY_HINT,
    "revenue_code": "use a 3- or 4-digit revenue code, e.g. 0450",
    "diagnosis_pointers": "use 1 to 4 positions in `diagnoses`, e.g. '1' or '1,2'",
    "billing_npi": _NPI_HINT,
    "rendering_npi": _NPI_HINT,
    "referring_npi": _NPI_HINT,
    "line_number": "number service lines 1, 2, 3, ... (each once)",
    # The rest of the claim (the contract's optional columns): leave any of them out if unknown.
    "payer_responsibility": _RESPONSIBILITY_HINT,
    "other_payer_responsibility": _RESPONSIBILITY_HINT,
    "subscriber_group_number": "use the group or policy number (SBR03), at most 50 characters",
    "patient_relationship": "use an SBR02/PAT01 code: 18 self, 01 spouse, 19 child, 20 employee, "
    "21 unknown, 39 organ donor, 40 cadaver donor, 53 life partner, G8 other",
    "patient_key": "use your patient account number or another key of the patient that stays "
    "the same across member IDs, 1 to 80 characters",
    "patient_state": _STATE_HINT,
    "subscriber_state": _STATE_HINT,
    "billing_state": _STATE_HINT,
    "service_facility_state": _STATE_HINT,
    "auto_accident_state": _STATE_HINT,
    "billing_taxonomy": _TAXONOMY_HINT,
    "rendering_taxonomy": _TAXONOMY_HINT,
    "service_facility_npi": _NPI_HINT,
    "line_rendering_npi": _NPI_HINT,
    "line_referring_npi": _NPI_HINT,
    "delay_reason_code": "use a CLM20 delay reason code: 1 to 11 or 15 (e.g. 7 third-party "
    "processing delay), or leave it out when the claim is on time",
    "related_causes": "use AA (auto accident), EM (employment) or OA (other accident), up to "
    "three separated by commas, e.g. 'AA' or 'EM,OA'",
    "epsdt_indicator": "use Y or N (CRC*ZZ: was an EPSDT referral given)",
    "accident_date": _DATE_HINT,
    "onset_date": _DATE_HINT,
    "initial_treatment_date": _DATE_HINT,
    "other_payer_adjudication_date": _DATE_HINT,
    "attachment_types": _REPORT_TYPE_HINT,
    "line_attachment_types": _REPORT_TYPE_HINT,
    "attachment_transmission": _TRANSMISSION_HINT,
    "line_attachment_transmission": _TRANSMISSION_HINT,
    "claim_note": _NOTE_HINT,
    "line_note": _NOTE_HINT,
    "clia_number": _CLIA_HINT,
    "line_clia_number": _CLIA_HINT,
    "other_payer_id": "use the other payer's ID (2330B NM109), 1 to 80 characters",
    "other_payer_filing_indicator": "use the other payer's SBR09 claim filing indicator, e.g. "
    "CI, MB or MC",
    "other_payer_paid_amount": _MONEY_HINT,
    "line_prior_auth_number": "use the line's authorization number (REF*G1), at most 50 characters",
    "line_referral_number": "use the line's referral number (REF*9F), at most 50 characters",
    "ndc_code": "use the 11-digit NDC (5-4-2), e.g. 00409488802, or the NDC with its dashes, "
    "e.g. 0409-4888-02 (10 digits without dashes are ambiguous)",
    "ndc_quantity": "use the drug quantity (CTP04), a number above 0, e.g. 2 or 0.5",
    "ndc_unit": "use F2 (international unit), GR (gram), ME (milligram), ML (millilitre) or UN "
    "(unit)",
    "line_place_of_service": "use the 2-digit CMS place of service code, e.g. 11 (office), or "
    "leave it out when it is the claim's",
    "unit_basis": "use UN (units) or MJ (minutes); institutional lines: UN or DA (days)",
    "lines": "send at least one service line, each an object with procedure_code and line_charge",
    "claims": 'send a JSON object like {"claims": [ {claim}, ... ]}',
    "top_k": "use a whole number from 1 to 20",
    "explain": "use true or false",
}

_KIND_BY_TYPE = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "date_type": "a date",
    "date_parsing": "a date",
    "date_from_datetime_parsing": "a date",
    "date_from_datetime_inexact": "a date without a time",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def path(loc: Iterable[Any], prefix: str = "") -> str:
    """``("lines", 0, "procedure_code")`` -> ``lines[0].procedure_code`` (after ``prefix``)."""
    text = prefix
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{_clipped(str(part))}" if text else _clipped(str(part))
    return text or "body"


_LONGEST_NAME = 40
"""A field name is repeated in an error up to this length: an unknown field's name is the
client's text, and a body of megabyte-long names was echoed back whole."""


def _clipped(name: str) -> str:
    return name if len(name) <= _LONGEST_NAME else name[: _LONGEST_NAME - 3] + "..."


def _field_name(loc: Sequence[Any]) -> str | None:
    """The last named field in a location (``("diagnoses", 1)`` -> ``diagnoses``)."""
    for part in reversed(loc):
        if isinstance(part, str):
            return part
    return None


NEVER_QUOTED = IDENTIFYING_COLUMNS | {"rejection_reason"}
"""Fields whose values an error never repeats: patient identifiers and free text (notes, a
clearinghouse's rejection reason, which may hold anything: "subscriber W123456789 not found").
The field path and the hint say what is wrong."""

_CONTAINERS: dict[type, str] = {dict: "an object", list: "a list"}


def _shown(value: Any, name: str | None = None) -> str:
    if name in NEVER_QUOTED:
        return "(value not repeated)"
    if type(value) in _CONTAINERS:
        # An object or list where something else belongs holds the client's data, perhaps
        # keyed by member ID ({"W123456789": {claim}}): its type says enough.
        return _CONTAINERS[type(value)]
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_LONGEST_CODE_LIST = 80
"""An enum's or literal's allowed values are listed in a message up to this length; a longer
list (the US states) is left to the field's hint."""


def _what(error: dict[str, Any], name: str | None) -> str:
    kind = error.get("type", "")
    label = f"`{_clipped(name)}`" if name else "value"
    value = _shown(error.get("input"), name)
    if kind == "missing":
        return f"{label} is required but missing"
    if kind == "extra_forbidden":
        return f"{label} is not a field of this object; check its spelling against /docs"
    if kind == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "cannot be parsed")
        return f"the request body is not valid JSON ({detail})"
    if kind == "value_error":
        # Our own cross-field messages already say what to do.
        return str(error.get("msg", "")).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        return f"{label} {value} has the wrong format"
    if kind in {"enum", "literal_error"}:
        expected = (error.get("ctx") or {}).get("expected", "")
        if len(expected) > _LONGEST_CODE_LIST and name in HINTS:
            return f"{label} {value} is not an accepted code"
        return f"{label} {value} is not one of {expected}".rstrip()
    if kind in _KIND_BY_TYPE:
        return f"{label} should be {_KIND_BY_TYPE[kind]}, got {value}"
    return f"{label}: {error.get('msg', 'invalid value')} (got {value})"


def pydantic_problems(errors: Iterable[dict[str, Any]], prefix: str = "") -> list[FieldProblem]:
    """Pydantic/FastAPI error dicts as field problems with a hint on what to do."""
    problems = []
    for error in errors:
        loc = [p for p in error.get("loc", ()) if p != "body"]
        if error.get("type") == "json_invalid":
            loc = []  # the location is a character offset, not a field
        name = _field_name(loc)
        message = _what(error, name)
        hint = HINTS.get(name or "") if error.get("type") != "value_error" else None
        if error.get("type") == "extra_forbidden" or (
            error.get("type") in {"enum", "literal_error"} and " is not one of " in message
        ):
            hint = None  # the message lists what is accepted
        if error.get("type") in {"model_attributes_type", "dict_type"} and not loc:
            hint = "send Content-Type: application/json and " + HINTS["claims"]
        problems.append(
            FieldProblem(field=path(loc, prefix), message=f"{message}; {hint}" if hint else message)
        )
    return problems


_CONSEQUENCES = {
    "a service line or diagnosis of this claim failed validation",
    "claim has no valid service line",
}
"""Claim-level reasons that only follow from a child row's own problem (reported instead)."""


def quarantine_problems(
    rejects: pd.DataFrame, prefix_for: dict[str, str], line_index: dict[tuple[str, int], int]
) -> dict[str, list[FieldProblem]]:
    """Contract quarantine rows (see :func:`features.claim_tables.validated`) per claim_id.

    ``prefix_for`` maps a claim_id to its path in the request (``claims[3]``); ``line_index``
    maps ``(claim_id, line_number)`` to the line's position in the request's ``lines`` list.
    A claim quarantined only because a child row failed gets just the child's problems.
    """
    by_claim: dict[str, list[FieldProblem]] = {}
    for row in rejects.to_dict("records"):
        claim_id = row.get("claim_id")
        if not isinstance(claim_id, str):
            continue
        base = prefix_for.get(claim_id, "claims[?]")
        table = row.get("table")
        if table == "lines" and pd.notna(row.get("line_number")):
            number = int(row["line_number"])
            base += f".lines[{line_index.get((claim_id, number), number - 1)}]"
        elif table == "diagnoses" and pd.notna(row.get("position")):
            base += f".diagnoses[{int(row['position']) - 1}]"
        by_claim.setdefault(claim_id, []).extend(_reason_problems(str(row["reason"]), base))
    for claim_id, problems in by_claim.items():
        specific = [p for p in problems if p.message not in _CONSEQUENCES]
        unique = {(p.field, p.message): p for p in specific or problems}
        by_claim[claim_id] = list(unique.values())
    return by_claim


def _reason_problems(reason: str, base: str) -> list[FieldProblem]:
    """Split a contract reason (``"procedure_code '7055' is not ...; units ..."``, see
    :func:`features.schema.validate_table`) into problems on the request's field paths.

    The contract's own words already name the expected format, so they are kept as they are.
    """
    parts: list[str] = []
    for part in reason.split("; "):
        # A "; " inside one column's explanation does not start a new problem.
        if parts and _column_of(part) is None:
            parts[-1] += "; " + part
        else:
            parts.append(part)
    problems = []
    for part in parts:
        column = _column_of(part)
        if column is None:
            problems.append(FieldProblem(field=base, message=part))
            continue
        message = part
        if "more than once" in part or "unique" in part:
            message = (
                f"`{column}` repeats within this request; give each claim its own claim_id "
                "and each service line its own line_number"
            )
        field = base if column in {"code", "claim_id"} else f"{base}.{column}"
        problems.append(FieldProblem(field=field, message=message))
    return problems


def _column_of(part: str) -> str | None:
    column = part.split(" ", 1)[0].rstrip(":")
    return column if column in _CONTRACT_COLUMNS else None


_CONTRACT_COLUMNS = frozenset({*CLAIMS.columns, *LINES.columns, *DIAGNOSES.columns})
