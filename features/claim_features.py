"""Features a billing expert reads straight off one claim (no history).

Everything here is a pure function of the claim, its lines and diagnoses, and the published
code tables, so the same claim always gets the same features. Lines are put in a canonical order
(charge, then code) so that the order a billing system happens to write them in changes nothing;
the original ``line_number`` is kept beside each slot for line-level explanations.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from features.claim_arrays import (
    MODIFIERS,
    NO_DAY,
    ClaimArrays,
    factor_codes,
    group_starts,
    is_none,
    map_text,
    map_texts,
    text_column,
)
from features.claim_tables import ClaimTables
from features.codes import code_tables
from features.conventions import convention_flags, conventions

CONVENTION_FLAGS: tuple[str, ...] = tuple(conventions())
"""Public billing conventions (``features/data/billing_conventions.csv``), one flag each."""

LINE_SLOTS = 3
"""How many service lines get their own procedure columns (the rest count in aggregates)."""

E_M_RANGE = (99202, 99499)
"""Evaluation and management CPT codes (with a procedure the same day they need modifier 25)."""

_MANY_LINES = 256
"""From this many lines on, distinct values are found with pandas' hash table (see nunique)."""

DISTINCT_SERVICE_MODIFIERS = frozenset({"59", "XE", "XS", "XP", "XU"})

CATEGORICAL_FEATURES: tuple[str, ...] = (
    "payer_id",
    "payer_type",
    "claim_filing_indicator",
    "place_of_service",
    "provider_taxonomy",
    "frequency_code",
    "patient_sex",
    "principal_dx_category",
    "principal_dx_chapter",
    *[f"procedure_{i}" for i in range(1, LINE_SLOTS + 1)],
    *[f"procedure_family_{i}" for i in range(1, LINE_SLOTS + 1)],
    # Codes of the rest of the claim (levels learned from the practice's own data).
    "payer_responsibility",
    "patient_relationship",
    "delay_reason_code",
    "related_causes",
)

NUMERIC_CLAIM_FEATURES: tuple[str, ...] = (
    "n_lines",
    "n_diagnoses",
    "total_charge_log",
    "max_line_charge_log",
    "total_units",
    "max_units",
    "patient_age",
    "days_service_to_submission",
    "filing_limit_days",
    "days_past_filing_limit",
    "prior_auth_present",
    "referral_present",
    "referring_npi_present",
    "rendering_npi_present",
    "rendering_npi_valid",
    "billing_npi_valid",
    "taxonomy_present",
    "rendering_taxonomy_present",
    "has_other_coverage",
    "medicare_age_not_medicare_plan",
    "is_replacement",
    "em_with_procedure",
    "multi_procedure_no_distinct_modifier",
    "any_modifier_25",
    "any_distinct_service_modifier",
    "any_modifier_22",
    "any_laterality_modifier",
    "any_professional_technical_modifier",
    "lines_without_dx_pointer",
    "has_unlisted_procedure",
    "n_distinct_procedures",
    # The rest of the claim: coordination of benefits, accidents, attachments, line fields.
    "other_payer_known",
    "other_payer_paid_present",
    "other_payer_paid_share",
    "patient_out_of_state",
    "service_facility_present",
    "accident_date_present",
    "days_onset_to_service",
    "attachment_present",
    "attachment_sent",
    "note_present",
    "clia_present",
    "line_auth_lines",
    "lines_without_auth",
    "ndc_lines",
    "epsdt_referral",
    *CONVENTION_FLAGS,
)


def npi_is_valid(npi: pd.Series) -> pd.Series:
    """Luhn check of a 10-digit NPI with the 80840 health-industry prefix (CMS NPI standard)."""
    valid = map_text(text_column(npi), _npi_check_digit_ok, False, bool)
    return pd.Series(valid, index=npi.index)


def _npi_check_digit_ok(npi: str) -> bool:
    if len(npi) != 10 or not (npi.isascii() and npi.isdigit()):
        return False
    digits = [ord(c) - 48 for c in npi]
    # Double every second digit from the right of the 9-digit body; the prefix 80840 adds 24.
    total = 24
    for position, digit in enumerate(digits[:9]):
        if position % 2 == 0:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return (10 - total % 10) % 10 == digits[9]


def procedure_family(codes: pd.Series) -> pd.Series:
    """A coarse procedure family: the first three characters of the CPT/HCPCS code.

    CPT keeps related services in adjacent numbers (705xx brain MRI, 974xx therapy), and HCPCS
    level II codes share their letter and first digits, so the prefix groups codes a payer's
    rules usually treat alike without any payer-specific table.
    """
    return codes.astype("str").str.slice(0, 3)


def _family(code: str) -> str | None:
    return code[:3] or None


def _is_em(code: str) -> bool:
    return code.isascii() and code.isdigit() and E_M_RANGE[0] <= int(code) <= E_M_RANGE[1]


def _is_unlisted(code: str) -> bool:
    # CPT's unlisted codes end in 99 (e.g. 64999); E/M codes end in 99 too and are not unlisted.
    return (
        len(code) == 5 and code[:3].isascii() and code[:3].isdigit() and code[3:] == "99"
    ) and not _is_em(code)


def _present(text: str) -> bool:
    return text.strip() != ""


class ClaimGroups:
    """Per-claim reductions of line (or diagnosis) values, given each row's claim position.

    Rows sorted by claim (as :class:`ClaimArrays` keeps lines) are reduced segment by segment
    with ``reduceat``; unsorted rows fall back to ``ufunc.at``, which is several times slower.
    """

    def __init__(self, claim_index: np.ndarray, n_claims: int) -> None:
        self.claim_index = claim_index
        self.n_claims = n_claims
        self.count = np.bincount(claim_index, minlength=n_claims).astype(float)
        self.empty = self.count == 0
        self.is_sorted = bool(np.all(claim_index[1:] >= claim_index[:-1]))
        self.starts = group_starts(claim_index) if self.is_sorted else None

    def sum(self, values: np.ndarray) -> np.ndarray:
        total = np.bincount(self.claim_index, weights=values, minlength=self.n_claims)
        return np.where(self.empty, np.nan, total)

    def max(self, values: np.ndarray) -> np.ndarray:
        """Row-wise maximum per claim (``values`` may be 2-D); NaN for a claim with no rows."""
        values = np.asarray(values, dtype=float)
        out = np.full((self.n_claims, *values.shape[1:]), np.nan)
        if len(values) == 0:
            return out
        if self.starts is not None:
            out[self.claim_index[self.starts]] = np.maximum.reduceat(values, self.starts, axis=0)
            return out
        out[~self.empty] = -np.inf
        np.maximum.at(out, self.claim_index, values)
        return out

    def max_of_columns(self, values: np.ndarray) -> np.ndarray:
        """:meth:`max` of ``values`` laid out one row per feature, one column per row of the
        groups (the transpose of what :meth:`max` takes and gives): reduced along its rows
        without a transposed copy."""
        out = np.full((values.shape[0], self.n_claims), np.nan)
        if values.shape[1] == 0:
            return out
        if self.starts is not None:
            out[:, self.claim_index[self.starts]] = np.maximum.reduceat(values, self.starts, axis=1)
            return out
        return self.max(values.T).T

    def nunique(self, codes: np.ndarray, missing: np.ndarray) -> np.ndarray:
        """Distinct non-missing codes per claim."""
        width = int(codes.max(initial=0)) + 1
        pairs = self.claim_index[~missing] * width + codes[~missing]
        # On many lines pandas' hash table finds the distinct pairs several times faster than
        # np.unique; on a few, its call costs more. Either finds the same set.
        pairs = pd.unique(pairs) if len(pairs) > _MANY_LINES else np.unique(pairs)
        found = np.bincount(pairs // width, minlength=self.n_claims).astype(float)
        return np.where(self.empty, np.nan, found)


def build_claim_features(tables: ClaimTables) -> pd.DataFrame:
    """One row per claim (in ``tables.claims`` order) with the features named above.

    Also returns helper columns used to word explanations, not model inputs:
    ``line_of_procedure_<i>`` (the written line number behind each slot), ``modifiers_<i>``
    (that line's modifiers as written), ``principal_dx`` (the principal diagnosis code) and
    ``payer_name``.
    """
    return pd.DataFrame(claim_feature_columns(ClaimArrays.from_tables(tables)))


def claim_feature_columns(arrays: ClaimArrays) -> dict[str, np.ndarray]:
    """:func:`build_claim_features` as columns of the arrays (what the pipeline calls)."""
    claims, lines, factors = arrays.claims, arrays.lines, arrays.factors
    n = arrays.n_claims
    out: dict[str, np.ndarray] = {"claim_id": claims["claim_id"]}
    for column in (
        "payer_id",
        "claim_filing_indicator",
        "place_of_service",
        "frequency_code",
        "payer_type",
        "provider_taxonomy",
        "patient_sex",
        "patient_relationship",
        "delay_reason_code",
        "related_causes",
    ):
        out[column] = claims[column]
    # SBR01 is required on every 837: an input without it (a CSV) sends to the primary payer.
    responsibility = claims["payer_responsibility"]
    out["payer_responsibility"] = np.where(is_none(responsibility), "P", responsibility).astype(
        object
    )
    out.update(_rest_of_claim(arrays))
    out.update(convention_flags(arrays))

    out["days_service_to_submission"] = _day_difference(
        claims["submission_date"], claims["service_date_from"]
    )
    limits = _filing_limits()
    out["filing_limit_days"], not_medicare = map_texts(
        claims["payer_type"],
        ((lambda t: limits.get(t, np.nan), np.nan, float), (lambda t: t != "medicare", True, bool)),
        factors,
    )
    out["days_past_filing_limit"] = out["days_service_to_submission"] - out["filing_limit_days"]
    out["patient_age"] = (
        _day_difference(claims["service_date_from"], claims["patient_birth_date"]) / 365.25
    )
    for flag, column in (
        ("prior_auth_present", "prior_auth_number"),
        ("referral_present", "referral_number"),
        ("referring_npi_present", "referring_npi"),
        ("taxonomy_present", "provider_taxonomy"),
        ("rendering_taxonomy_present", "rendering_taxonomy"),
    ):
        out[flag] = map_text(claims[column], _present, False, float, factors)
    out["rendering_npi_present"], out["rendering_npi_valid"] = map_texts(
        claims["rendering_npi"],
        ((_present, False, float), (_npi_check_digit_ok, False, float)),
        factors,
    )
    out["billing_npi_valid"] = map_text(
        claims["billing_npi"], _npi_check_digit_ok, False, float, factors
    )
    out["has_other_coverage"] = claims["has_other_coverage"]
    # Medicare Secondary Payer: a patient of 65+ billed to a non-Medicare plan may have Medicare
    # as primary (or the plan may coordinate benefits with it).
    out["medicare_age_not_medicare_plan"] = ((out["patient_age"] >= 65) & not_medicare).astype(
        float
    )
    out["is_replacement"] = map_text(
        claims["frequency_code"], lambda f: f in ("7", "8"), False, float, factors
    )
    out["total_charge_log"] = np.log1p(np.clip(claims["total_charge"], 0, None))
    out.update(_line_aggregates(arrays))

    slot_lines = [np.flatnonzero(lines["slot"] == slot) for slot in range(1, LINE_SLOTS + 1)]
    in_slots = np.concatenate(slot_lines)
    slot_modifiers = np.empty(len(lines["slot"]), dtype=object)
    slot_modifiers[in_slots] = _modifier_text([lines[column][in_slots] for column in MODIFIERS])
    for slot, rows in enumerate(slot_lines, start=1):
        claim_of = lines["claim_index"][rows]
        procedure = factors.put(n, claim_of, lines["procedure_code"], rows)
        line_number = np.full(n, np.nan)
        line_number[claim_of] = lines["line_number"][rows]
        modifiers = np.full(n, None, dtype=object)
        modifiers[claim_of] = slot_modifiers[rows]
        out[f"procedure_{slot}"] = procedure
        out[f"procedure_family_{slot}"] = map_text(procedure, _family, None, object, factors)
        out[f"line_of_procedure_{slot}"] = line_number
        out[f"modifiers_{slot}"] = modifiers

    principal = principal_diagnoses(arrays)
    # The claim's own values, kept to word explanations (the matrix holds level codes).
    out["principal_dx"] = principal
    out["payer_name"] = claims["payer_name"]
    out["principal_dx_category"], out["principal_dx_chapter"] = map_texts(
        principal, ((lambda c: c[:3], None, object), (lambda c: c[:1], None, object))
    )
    out["n_diagnoses"] = np.bincount(arrays.diagnoses["claim_index"], minlength=n).astype(float)
    return out


def _modifier_text(modifiers: list[np.ndarray]) -> np.ndarray:
    """Each line's modifiers as written, in order ("26, 59"; ``None`` for a line without).

    Whole columns at a time: most lines have none, and a join per line would cost more than
    the claim's other features.
    """
    text = np.full(len(modifiers[0]), None, dtype=object)
    for values in modifiers:
        present = ~is_none(values)
        if not present.any():
            continue
        first = present & is_none(text)
        more = present & ~first
        text[first] = values[first]
        if more.any():
            text[more] = text[more] + ", " + values[more]
    return text


def _rest_of_claim(arrays: ClaimArrays) -> dict[str, np.ndarray]:
    """Features of the 837 elements beyond the core claim: other payers, states, accident and
    onset dates, attachments, notes, CLIA, line-level authorizations and NDCs."""
    claims, lines, factors = arrays.claims, arrays.lines, arrays.factors
    n = arrays.n_claims
    claim_of = lines["claim_index"]

    def present(values: np.ndarray) -> np.ndarray:
        return (~is_none(values)).astype(float)

    def per_claim(mask: np.ndarray) -> np.ndarray:
        return np.bincount(claim_of[mask], minlength=n).astype(float)

    paid = claims["other_payer_paid_amount"]
    charge = claims["total_charge"]
    patient_state, billing_state = claims["patient_state"], claims["billing_state"]
    both_states = ~is_none(patient_state) & ~is_none(billing_state)
    transmission = claims["attachment_transmission"]
    line_auth = ~is_none(lines["line_prior_auth_number"])
    claim_auth = ~is_none(claims["prior_auth_number"])
    onset = claims["onset_date"]
    service = claims["service_date_from"]
    return {
        "other_payer_known": np.maximum(
            present(claims["other_payer_id"]), np.nan_to_num(claims["has_other_coverage"])
        ),
        "other_payer_paid_present": (~np.isnan(paid)).astype(float),
        "other_payer_paid_share": np.where(
            np.isnan(paid) | ~(charge > 0), np.nan, paid / np.where(charge > 0, charge, 1.0)
        ),
        "patient_out_of_state": np.where(
            both_states, (patient_state != billing_state).astype(float), np.nan
        ),
        "service_facility_present": present(claims["service_facility_npi"]),
        "accident_date_present": (claims["accident_date"] != NO_DAY).astype(float),
        "days_onset_to_service": np.where(
            (onset == NO_DAY) | (service == NO_DAY), np.nan, (service - onset).astype(float)
        ),
        "attachment_present": np.maximum(
            present(claims["attachment_types"]),
            per_claim(~is_none(lines["line_attachment_types"])) > 0,
        ),
        # PWK02 "AA": available on request, i.e. not sent with the claim.
        "attachment_sent": map_text(
            transmission,
            lambda t: any(p.strip() not in ("", "AA") for p in t.split(",")),
            0.0,
            float,
            factors,
        ),
        "note_present": np.maximum(
            present(claims["claim_note"]), per_claim(~is_none(lines["line_note"])) > 0
        ),
        "clia_present": np.maximum(
            present(claims["clia_number"]), per_claim(~is_none(lines["line_clia_number"])) > 0
        ),
        "line_auth_lines": per_claim(line_auth),
        "lines_without_auth": per_claim(~line_auth & ~claim_auth[claim_of]),
        "ndc_lines": per_claim(~is_none(lines["ndc_code"])),
        "epsdt_referral": map_text(
            claims["epsdt_indicator"], lambda v: v.strip().upper() == "Y", 0.0, float, factors
        ),
    }


def principal_diagnoses(arrays: ClaimArrays) -> np.ndarray:
    """Each claim's principal diagnosis code (its lowest position; ``None`` when it has none)."""
    dx = arrays.diagnoses
    principal = np.full(arrays.n_claims, None, dtype=object)
    order = np.lexsort((dx["position"], dx["claim_index"]))
    sorted_claims = dx["claim_index"][order]
    first = order[group_starts(sorted_claims)]
    principal[dx["claim_index"][first]] = dx["code"][first]
    return principal


def _line_aggregates(arrays: ClaimArrays) -> dict[str, np.ndarray]:
    lines, factors = arrays.lines, arrays.factors
    groups = ClaimGroups(lines["claim_index"], arrays.n_claims)
    codes = lines["procedure_code"]
    is_em, is_unlisted = map_texts(
        codes, ((_is_em, False, bool), (_is_unlisted, False, bool)), factors
    )
    no_pointer = map_text(
        lines["diagnosis_pointers"], lambda p: not _present(p), True, float, factors
    )
    # One pass per modifier column: each value becomes a bit mask of the groups it belongs to.
    groups_bits = np.zeros(len(codes), dtype=np.int64)
    for column in MODIFIERS:
        groups_bits |= map_text(lines[column], _modifier_bits, 0, np.int64, factors)

    # Whether any line of the claim has a modifier of each group: one reduction for all groups.
    any_in_group = groups.max((groups_bits[:, None] & _MODIFIER_BITS) > 0)

    def any_modifier(group: str) -> np.ndarray:
        return any_in_group[:, list(_MODIFIER_BIT).index(group)]

    out = {
        "n_lines": np.where(groups.empty, np.nan, groups.count),
        "n_distinct_procedures": groups.nunique(
            factor_codes(codes, factors=factors), is_none(codes)
        ),
        "max_line_charge_log": np.log1p(np.clip(groups.max(lines["line_charge"]), 0, None)),
        "total_units": groups.sum(lines["units"]),
        "max_units": groups.max(lines["units"]),
        "lines_without_dx_pointer": groups.sum(no_pointer),
        "has_unlisted_procedure": groups.max(is_unlisted),
        "any_modifier_25": any_modifier("25"),
        "any_distinct_service_modifier": any_modifier("distinct"),
        "any_modifier_22": any_modifier("22"),
        "any_laterality_modifier": any_modifier("laterality"),
        "any_professional_technical_modifier": any_modifier("professional_technical"),
    }
    n_em = groups.sum(is_em.astype(float))
    n_non_em = out["n_lines"] - n_em
    em_with_procedure = (n_em > 0) & (n_non_em > 0)
    out["em_with_procedure"] = em_with_procedure
    out["multi_procedure_no_distinct_modifier"] = (n_non_em > 1) & ~(
        out["any_distinct_service_modifier"] > 0
    )
    for name in ("em_with_procedure", "multi_procedure_no_distinct_modifier"):
        out[name] = np.where(groups.empty, np.nan, out[name].astype(float))
    return out


_MODIFIER_GROUPS: dict[str, frozenset[str]] = {
    "25": frozenset({"25"}),
    "distinct": DISTINCT_SERVICE_MODIFIERS,
    "22": frozenset({"22"}),
    "laterality": frozenset({"LT", "RT", "50"}),
    "professional_technical": frozenset({"26", "TC"}),
}
_MODIFIER_BIT = {group: 1 << i for i, group in enumerate(_MODIFIER_GROUPS)}
_MODIFIER_BITS = np.array(list(_MODIFIER_BIT.values()), dtype=np.int64)
"""The groups' bits in ``_MODIFIER_BIT`` order (a line's bits against all groups at once)."""


def _modifier_bits(modifier: str) -> int:
    code = modifier.strip().upper()
    return sum(_MODIFIER_BIT[g] for g, members in _MODIFIER_GROUPS.items() if code in members)


def _day_difference(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    missing = (later == NO_DAY) | (earlier == NO_DAY)
    return np.where(missing, np.nan, (later - earlier).astype(float))


@lru_cache(maxsize=1)
def _filing_limits() -> dict[str, float]:
    days = code_tables().payer_type_defaults["timely_filing_days"]
    return {str(k): float(v) for k, v in days.items()}
