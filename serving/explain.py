"""Turn SHAP contributions into factors a biller can act on.

Contributions (log-odds, per model column) are added up per claim field (see
:func:`features.pipeline.feature_source`), worded with the claim's own values ("no prior
authorization number", "97 days since service vs a 90-day filing limit", "procedure 70553 on
line 2", "diagnosis G43909"), never with the matrix's level codes, and paired with a fix where
one exists.

A field's model columns are of different kinds: the claim's own fields, and history kept over a
grouping of earlier claims (a denial rate for all reasons or for one, an outcome or claim count,
a delay). A factor is worded after the column that carries most of it, as what that column
measures: a history rate as the history it is ("about 41% of earlier lines of 97110 to Acme
without an authorization number were denied (reason: Authorization / pre-certification)"), a
count as context ("rendering provider has 239 earlier claims to Acme"), never as a problem on
the claim. A factor is fixable on this claim (``actionable``, with its field's fix) when most of
it comes from what the biller can change on the claim, or from history of the very reason that
fix addresses; otherwise it is context, without a fix. Fixable factors that raise the risk are
listed first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.claim_features import LINE_SLOTS
from features.codes import DENIAL_CATEGORIES, code_tables, diagnosis_description
from features.history import (
    COUNT_FEATURES,
    EVIDENCE_FEATURES,
    HISTORY_FEATURE_LABELS,
    RATE_KEYS,
    RateKey,
)
from features.pipeline import Context, feature_source

Values = Mapping[str, Any]
"""One claim's model-matrix or context values, by column name."""

Describer = Callable[[Values, Values], str]


@dataclass(frozen=True)
class FieldRule:
    """How to word one claim field and what to do when it raises the risk."""

    actionable: bool
    describe: Describer
    fix: Callable[[Values, Values], str | None] | None = None
    reasons: frozenset[str] = frozenset()
    """Denial categories the fix addresses: a history rate of one of them keeps the fix."""
    problem_counts: frozenset[str] = frozenset()
    """History counts that are the field's problem itself, the number a payer's rule counts
    (earlier submissions of the same service, visits this year); other counts are context."""
    present: str | None = None
    """A matrix column that is set when what the fix would add is already on the claim (an
    authorization number): the claim's own columns are then no fix by themselves; only history
    of a reason the fix addresses, or the claim's likely reason, makes one ("check that the
    authorization covers these codes")."""


FIX_ON_CLAIM = "fix_on_claim"
"""The group of fields the biller can change on the claim (:attr:`Factor.actionable`)."""
CONTEXT = "context"
"""The group of everything else: the payer, history, counts."""
FACTOR_GROUPS = {FIX_ON_CLAIM: "Fix on this claim", CONTEXT: "Context"}
"""Each factor group with its label."""


@dataclass
class Factor:
    field: str
    description: str
    contribution: float
    direction: str
    actionable: bool
    fix: str | None
    line_number: int | None

    @property
    def group(self) -> str:
        """:data:`FIX_ON_CLAIM` for a field to fix on the claim, else :data:`CONTEXT`."""
        return FIX_ON_CLAIM if self.actionable else CONTEXT


@dataclass(frozen=True)
class HistoryColumn:
    """What a history column measures (see :mod:`features.history`)."""

    kind: Literal["rate", "count", "measure"]
    """A smoothed denial rate, claims or outcomes counted, or days (a delay, a gap)."""
    key: RateKey | None = None
    """The grouping a rate, or its count of known outcomes, is kept over."""
    reason: str | None = None
    """A per-reason rate's denial category (``None``: denials for any reason)."""
    recent: bool = False
    """Over the key's recent window of known outcomes only."""
    outcomes: str | None = None
    """A claim-level rate's count of known outcomes (the column), to say what it is of."""


def _history_columns() -> dict[str, HistoryColumn]:
    columns: dict[str, HistoryColumn] = {}
    for key in RATE_KEYS:
        for recent in (False, True) if key.window_days else (False,):
            stem = f"hist_{key.name}_{'recent_' if recent else ''}"
            outcomes = f"{stem}n" if key.level == "claim" else None
            columns[f"{stem}n"] = HistoryColumn("count", key, None, recent)
            columns[f"{stem}rate"] = HistoryColumn("rate", key, None, recent, outcomes)
            for category in DENIAL_CATEGORIES if key.by_category else ():
                columns[f"{stem}rate_{category}"] = HistoryColumn(
                    "rate", key, category, recent, outcomes
                )
    for name in EVIDENCE_FEATURES:
        columns[name] = HistoryColumn("rate", reason=name.removeprefix("hist_evidence_"))
    for name in COUNT_FEATURES:
        # Days and delays are measures, worded beside their field; the rest count claims.
        timed = "days" in name or "lag" in name
        columns[name] = HistoryColumn("measure" if timed else "count")
    return {name: column for name, column in columns.items() if name in HISTORY_FEATURE_LABELS}


HISTORY_COLUMNS: dict[str, HistoryColumn] = _history_columns()
"""Every history column by name: what it measures."""

_UNNAMED_HISTORY = HistoryColumn("count")
"""A history column this module does not know (a newer feature): worded as context."""


def history_column(name: str) -> HistoryColumn | None:
    """What a model column measures, if it is history (``None``: the claim's own field)."""
    if not name.startswith("hist_"):
        return None
    return HISTORY_COLUMNS.get(name, _UNNAMED_HISTORY)


def _flag(matrix_row: Values, column: str) -> bool:
    value = matrix_row.get(column)
    return value is not None and float(value) > 0  # NaN is not > 0


def _num(row: Values, column: str) -> float:
    value = row.get(column)
    return float("nan") if value is None else float(value)


def _text(row: Values, column: str) -> str | None:
    value = row.get(column)
    return value.strip() or None if isinstance(value, str) else None


def _plural(n: float, noun: str) -> str:
    return f"{n:.0f} {noun}" if n == 1 else f"{n:.0f} {noun}s"


def _line_codes(context: Values, modifiers: bool = False) -> list[tuple[str, int]]:
    """The claim's procedure codes (CPT-modifier notation with ``modifiers``) and their lines."""
    memo = context.memo() if isinstance(context, _Row) else None
    if memo is not None and modifiers in memo:
        return memo[modifiers]  # type: ignore[no-any-return]
    codes = []
    for i in range(1, LINE_SLOTS + 1):
        code = _text(context, f"procedure_{i}")
        if code is None:
            continue
        written = _text(context, f"modifiers_{i}") if modifiers else None
        if written:
            code = _with_modifiers(code, written)
        codes.append((code, int(context[f"line_of_procedure_{i}"])))
    if memo is not None:
        memo[modifiers] = codes
    return codes


def _with_modifiers(code: str, modifiers: str) -> str:
    """CPT-modifier notation: ``70553-26``, ``97140-59-XU``."""
    return "-".join([code, *(m.strip() for m in modifiers.split(","))])


def _procedures(context: Values, modifiers: bool = False) -> str:
    codes = [f"{code} (line {line})" for code, line in _line_codes(context, modifiers)]
    return ", ".join(codes) or "the procedures"


def _codes(context: Values, modifiers: bool = False, joiner: str = "or") -> str:
    """The claim's procedure codes as one noun: "97110", "97110 or 97530"."""
    codes = [code for code, _ in _line_codes(context, modifiers)]
    if not codes:
        return "its procedures"
    return codes[0] if len(codes) == 1 else f"{', '.join(codes[:-1])} {joiner} {codes[-1]}"


def _payer(context: Values) -> str:
    """The payer as the claim names it (its ID when the claim gives no name)."""
    memo = context.memo() if isinstance(context, _Row) else None
    if memo is not None and "payer" in memo:
        return memo["payer"]  # type: ignore[no-any-return]
    payer = _text(context, "payer_name") or f"payer {_text(context, 'payer_id') or '(unknown)'}"
    if memo is not None:
        memo["payer"] = payer
    return payer


def _payer_text(context: Values) -> str:
    kind = context.get("payer_type")
    if _text(context, "payer_name"):
        return f"payer {_payer(context)}, ID {context.get('payer_id')} ({kind})"
    return f"{_payer(context)} ({kind})"


def _diagnosis(context: Values) -> str:
    """The claim's principal diagnosis code, with its ICD-10-CM description when known."""
    code = _text(context, "principal_dx")
    if code is None:
        return "(none on the claim)"
    description = diagnosis_description(code)
    return f"{code} ({description})" if description else code


def _auth(m: Values, c: Values) -> str:
    if _flag(m, "prior_auth_present"):
        return f"prior authorization number present for {_procedures(c)}"
    return f"no prior authorization number (REF*G1) for {_procedures(c)}"


def _auth_fix(m: Values, c: Values) -> str | None:
    if _flag(m, "prior_auth_present"):
        return (
            f"Check that the authorization covers {_codes(c, joiner='and')}, their units and "
            "the dates of service"
        )
    return f"Obtain the payer's prior authorization and put its number on the claim (REF*G1) for {_procedures(c)}"  # noqa: E501


def _timeliness(m: Values, c: Values) -> str:
    lag, limit = _num(c, "days_service_to_submission"), _num(c, "filing_limit_days")
    return f"{lag:.0f} days since service vs a {limit:.0f}-day filing limit"


def _timeliness_fix(m: Values, c: Values) -> str | None:
    lag, limit = _num(c, "days_service_to_submission"), _num(c, "filing_limit_days")
    if lag > limit:
        return "Past the usual filing limit: attach proof of timely filing or the payer's extension"
    return f"Submit now: {limit - lag:.0f} days remain before the {limit:.0f}-day filing limit"


def _repeat_text(m: Values) -> str:
    same = _num(m, "hist_days_since_same_procedure")
    kind = _num(m, "hist_days_since_same_family")
    if same >= 0:
        return f"same procedure {same:.0f} days ago"
    if kind >= 0:
        return f"a service of the same kind {kind:.0f} days ago"
    return "no earlier claim for this service (first of its kind for the patient)"


def _eligibility(m: Values, c: Values) -> str:
    """What on the claim puts coverage in doubt ("" if nothing: the patient's dates and
    history say what they are in their own words)."""
    if _flag(m, "medicare_age_not_medicare_plan"):
        return "patient is 65 or older and billed to a non-Medicare plan (Medicare may be primary)"
    return ""


def _modifiers(m: Values, c: Values) -> str:
    coded = []
    for i in range(1, LINE_SLOTS + 1):
        code, written = _text(c, f"procedure_{i}"), _text(c, f"modifiers_{i}")
        if code and written:
            coded.append(
                f"{_with_modifiers(code, written)} (line {int(c[f'line_of_procedure_{i}'])})"
            )
    return "modifiers on " + ", ".join(coded) if coded else "no modifiers on the lines"


_BENEFIT_COUNTS = (
    "hist_patient_family_claims_this_year",
    "hist_procedure_claims_this_year",
    "hist_family_claims_this_year",
)
_DUPLICATE_COUNT = "hist_same_service_prior_submissions"


RULES: dict[str, FieldRule] = {
    "prior authorization": FieldRule(
        True, _auth, _auth_fix, frozenset({"authorization"}), present="prior_auth_present"
    ),
    "days from service to submission": FieldRule(
        True, _timeliness, _timeliness_fix, frozenset({"timely_filing"})
    ),
    "modifier 25 (E/M with procedure)": FieldRule(
        True,
        lambda m, c: (
            "E/M visit billed with a procedure the same day"
            + ("" if _flag(m, "any_modifier_25") else " without modifier 25")
        ),
        lambda m, c: (
            None
            if _flag(m, "any_modifier_25")
            else "Add modifier 25 to the E/M line if the visit was significant and "
            "separately identifiable"
        ),
        frozenset({"coding"}),
    ),
    "modifier 59/X (distinct procedures)": FieldRule(
        True,
        lambda m, c: (
            "several procedures the same day"
            + (
                ""
                if _flag(m, "any_distinct_service_modifier")
                else " without modifier 59/XE/XS/XP/XU"
            )
        ),
        lambda m, c: (
            None
            if _flag(m, "any_distinct_service_modifier")
            else "Add modifier 59 (or XE/XS/XP/XU) where the procedures were distinct; "
            "otherwise bundle"
        ),
        frozenset({"coding"}),
    ),
    "patient eligibility": FieldRule(
        True,
        _eligibility,
        lambda m, c: "Verify eligibility and coverage dates (270/271) before submission",
        frozenset({"eligibility"}),
    ),
    "other coverage (COB)": FieldRule(
        True,
        lambda m, c: (
            "patient has other coverage"
            if _flag(m, "has_other_coverage")
            else "no other coverage on the claim"
        ),
        lambda m, c: "Confirm which payer is primary (coordination of benefits) and bill it first",
        frozenset({"eligibility"}),
    ),
    "referral": FieldRule(
        True,
        lambda m, c: (
            "referral number present"
            if _flag(m, "referral_present")
            else "no referral number (REF*9F)"
        ),
        lambda m, c: (
            None
            if _flag(m, "referral_present")
            else "Add the referral number (REF*9F) if the plan requires one"
        ),
        frozenset({"authorization"}),
    ),
    "referring provider NPI": FieldRule(
        True,
        lambda m, c: (
            "referring provider NPI present"
            if _flag(m, "referring_npi_present")
            else "no referring/ordering provider NPI"
        ),
        lambda m, c: (
            None
            if _flag(m, "referring_npi_present")
            else "Add the referring or ordering provider's NPI"
        ),
        frozenset({"missing_information"}),
    ),
    "rendering provider NPI": FieldRule(
        True,
        lambda m, c: (
            "rendering provider NPI missing"
            if not _flag(m, "rendering_npi_present")
            else (
                "rendering provider NPI fails the check digit"
                if not _flag(m, "rendering_npi_valid")
                else "rendering provider NPI valid"
            )
        ),
        lambda m, c: "Correct the rendering provider's NPI (10 digits, valid check digit)",
        frozenset({"missing_information"}),
    ),
    "billing provider NPI": FieldRule(
        True,
        lambda m, c: (
            "billing NPI valid"
            if _flag(m, "billing_npi_valid")
            else "billing NPI fails the check digit"
        ),
        lambda m, c: "Correct the billing provider's NPI",
        frozenset({"missing_information"}),
    ),
    "diagnosis pointer": FieldRule(
        True,
        lambda m, c: (
            f"{_num(m, 'lines_without_dx_pointer'):.0f} line(s) without a diagnosis pointer"
        ),
        lambda m, c: "Point every service line to the diagnosis it treats",
        frozenset({"missing_information"}),
    ),
    "diagnosis supports procedure": FieldRule(
        True,
        lambda m, c: f"principal diagnosis {_diagnosis(c)} with {_procedures(c)}",
        lambda m, c: (
            "Check the diagnosis supports the procedure under the payer's policy "
            "(LCD/NCD); document medical necessity"
        ),
        frozenset({"medical_necessity"}),
    ),
    # Only history: fixable when this provider's credentialing denials with the payer carry it.
    "rendering provider with this payer": FieldRule(
        True,
        lambda m, c: "",
        lambda m, c: (
            f"Confirm the rendering provider is credentialed with {_payer(c)} on the date of "
            "service"
        ),
        frozenset({"credentialing"}),
    ),
    "possible duplicate": FieldRule(
        True,
        lambda m, c: "",
        lambda m, c: (
            "Do not resubmit a claim in process; send a replacement (frequency 7) to correct one"
        ),
        frozenset({"duplicate"}),
        frozenset({_DUPLICATE_COUNT}),
    ),
    "unlisted procedure code": FieldRule(
        True,
        lambda m, c: "unlisted procedure code on the claim",
        lambda m, c: "Attach documentation describing the unlisted procedure (PWK)",
        frozenset({"documentation"}),
    ),
    "units": FieldRule(
        True,
        lambda m, c: f"{_plural(_num(m, 'total_units'), 'unit')} in total",
        lambda m, c: (
            # One unit per line is no number to check against a unit limit.
            "Check units against the payer's limits (MUE) and the authorization"
            if _num(m, "max_units") > 1
            else None
        ),
        frozenset({"medical_necessity", "non_covered"}),
    ),
    "procedure combination and modifiers": FieldRule(
        True,
        lambda m, c: (
            f"this combination of procedures and modifiers ({_procedures(c, modifiers=True)})"
        ),
        lambda m, c: (
            # An E/M visit with a procedure and no modifier 25 is the pair's usual edit.
            "Add modifier 25 to the E/M line if the visit was significant and separately "
            "identifiable"
            if _flag(m, "em_with_procedure_no_mod25")
            else "Check NCCI edits for these codes: add 59/XE/XS/XP/XU where distinct, or bundle"
        ),
        frozenset({"coding"}),
    ),
    "benefit limit (visits this year)": FieldRule(
        True,
        lambda m, c: "",
        lambda m, c: "Check the patient's remaining benefit visits; request authorization for more",
        frozenset({"non_covered"}),
        frozenset(_BENEFIT_COUNTS),
    ),
    "frequency (days since the same procedure)": FieldRule(
        True,
        lambda m, c: _repeat_text(m),
        lambda m, c: (
            "Check the payer's frequency limit for this procedure; document why it was repeated"
        ),
        frozenset({"medical_necessity"}),
    ),
    "diagnosis": FieldRule(False, lambda m, c: f"principal diagnosis {_diagnosis(c)}"),
    "procedure": FieldRule(False, lambda m, c: f"procedure {_procedures(c)}"),
    "payer": FieldRule(False, lambda m, c: _payer_text(c)),
    "place of service": FieldRule(
        False, lambda m, c: f"place of service {c.get('place_of_service')}"
    ),
    "provider specialty": FieldRule(
        False, lambda m, c: f"provider taxonomy {c.get('provider_taxonomy')}"
    ),
    "rendering provider": FieldRule(False, lambda m, c: "rendering provider's earlier claims"),
    "claim frequency (original/replacement)": FieldRule(
        False, lambda m, c: "replacement claim" if _flag(m, "is_replacement") else "original claim"
    ),
    "patient age": FieldRule(False, lambda m, c: f"patient age {_num(m, 'patient_age'):.0f}"),
    "patient sex": FieldRule(False, lambda m, c: f"patient sex {c.get('patient_sex')}"),
    "charges": FieldRule(
        False, lambda m, c: f"total charge ${np.expm1(_num(m, 'total_charge_log')):,.0f}"
    ),
    "number of service lines": FieldRule(
        False, lambda m, c: f"{_num(m, 'n_lines'):.0f} service lines"
    ),
    "modifiers": FieldRule(False, _modifiers),
}


# -- history worded as the history it is ---------------------------------------------------------


def _to(c: Values) -> str:
    return f"to {_payer(c)}"


def _auth_state(m: Values) -> str:
    if _flag(m, "prior_auth_present"):
        return "with an authorization number"
    if _num(m, "line_auth_lines") > 0:
        return "with or without an authorization number, as its lines are"
    return "without an authorization number"


def _pair(c: Values, modifiers: bool = False) -> str:
    """Two of the claim's procedures (a pair rate is of two procedures, whatever the claim has)."""
    codes = _codes(c, modifiers, joiner="and")
    return f"two of {codes}" if len(_line_codes(c)) > 2 else codes


def _referral_state(m: Values) -> str:
    return "with a referral number" if _flag(m, "referral_present") else "without a referral number"


GroupWords = Callable[[Values, Values], str]

_GROUPS: dict[str, GroupWords] = {
    # What the earlier claims (lines, pairs) of a grouping have in common with this claim.
    "all": lambda m, c: "earlier claims of the practice",
    "payer": lambda m, c: f"earlier claims {_to(c)}",
    "lag": lambda m, c: "earlier claims sent a similar number of days after the service",
    "payer_lag": lambda m, c: (
        f"earlier claims {_to(c)} sent a similar number of days after the service"
    ),
    "payer_frequency": lambda m, c: (
        f"earlier claims {_to(c)} with frequency code {c.get('frequency_code')}"
    ),
    "payer_place": lambda m, c: (
        f"earlier claims {_to(c)} in place of service {c.get('place_of_service')}"
    ),
    "payer_coverage": lambda m, c: (
        f"earlier claims {_to(c)} with the same coordination of benefits and accident status"
    ),
    "payer_patient": lambda m, c: (
        f"earlier claims {_to(c)} for patients of the same relationship, state and age band"
    ),
    "payer_member_shape": lambda m, c: (
        f"earlier claims {_to(c)} with member IDs of the same format"
    ),
    "payer_specialty": lambda m, c: (
        f"earlier claims {_to(c)} from taxonomy {c.get('provider_taxonomy')} {_referral_state(m)}"
    ),
    "provider_payer": lambda m, c: f"earlier claims from this rendering provider {_to(c)}",
    "facility_payer": lambda m, c: (
        f"earlier claims {_to(c)} from this billing provider and service facility"
    ),
    "provider": lambda m, c: "earlier claims from this rendering provider",
    "patient_payer": lambda m, c: f"earlier claims of this patient {_to(c)}",
    "procedure_set": lambda m, c: (
        "earlier claims of the same procedures and modifiers "
        f"({_codes(c, modifiers=True, joiner='and')})"
    ),
    "same_service": lambda m, c: "earlier claims for the same patient, date and procedures",
    "lines": lambda m, c: "earlier service lines of the practice",
    "procedure": lambda m, c: f"earlier lines of {_codes(c)}",
    "payer_family": lambda m, c: (
        f"earlier lines {_to(c)} in the procedure family (first 3 characters) of {_codes(c)}"
    ),
    "payer_procedure": lambda m, c: f"earlier lines of {_codes(c)} {_to(c)}",
    "payer_procedure_auth": lambda m, c: f"earlier lines of {_codes(c)} {_to(c)} {_auth_state(m)}",
    "payer_procedure_units": lambda m, c: (
        f"earlier lines of {_codes(c)} {_to(c)} with as many units"
    ),
    "payer_procedure_modifiers": lambda m, c: (
        f"earlier lines of {_codes(c, modifiers=True)} {_to(c)} with the same modifiers"
    ),
    "payer_procedure_documents": lambda m, c: (
        f"earlier lines of {_codes(c)} {_to(c)} with the same attachments, NDC, CLIA and referral"
    ),
    "procedure_place": lambda m, c: f"earlier lines of {_codes(c)} in the same place of service",
    "procedure_patient": lambda m, c: (
        f"earlier lines of {_codes(c)} for patients of the same sex and age band"
    ),
    "procedure_provider": lambda m, c: (
        f"earlier lines of {_codes(c)} from taxonomy {c.get('provider_taxonomy')} "
        + ("with" if _flag(m, "referring_npi_present") else "without")
        + " an ordering provider"
    ),
    "diagnoses": lambda m, c: "earlier line diagnoses of the practice",
    "dx_procedure": lambda m, c: f"earlier lines of {_codes(c)}",
    "procedure_dx_category": lambda m, c: (
        f"earlier lines of {_codes(c)} with the same diagnosis category"
    ),
    "procedure_dx": lambda m, c: f"earlier lines of {_codes(c)} with the same diagnosis",
    "payer_procedure_dx": lambda m, c: (
        f"earlier lines of {_codes(c)} {_to(c)} with the same diagnosis category"
    ),
    "pairs": lambda m, c: "earlier pairs of procedures billed together",
    "procedure_pair": lambda m, c: f"earlier claims billing {_pair(c)} together",
    "procedure_pair_modifiers": lambda m, c: (
        f"earlier claims billing {_pair(c, modifiers=True)} together"
    ),
    "payer_procedure_pair": lambda m, c: f"earlier claims {_to(c)} billing {_pair(c)} together",
}

_HIGHEST = {
    # A line, diagnosis or pair rate's claim value is the highest of the claim's lines or pairs.
    "line": " (the highest of its procedures)",
    "diagnosis": " (the highest of its procedures)",
    "pair": " (the highest of its pairs)",
}

_COUNTS: dict[str, Callable[[float, Values], str]] = {
    "hist_patient_prior_claims": lambda n, c: (
        "first claim for this patient"
        if n < 1
        else f"patient has {_plural(n, 'earlier claim')} with any payer"
    ),
    "hist_patient_payer_prior_claims": lambda n, c: (
        f"first claim for this patient {_to(c)}"
        if n < 1
        else f"patient has {_plural(n, 'earlier claim')} {_to(c)}"
    ),
    "hist_provider_payer_prior_claims": lambda n, c: (
        f"first claim from this rendering provider {_to(c)}"
        if n < 1
        else f"rendering provider has {_plural(n, 'earlier claim')} {_to(c)}"
    ),
    "hist_person_prior_claims": lambda n, c: (
        f"patient has {_plural(n, 'earlier claim')} under any member ID"
    ),
    "hist_person_member_prior_claims": lambda n, c: (
        f"patient has {_plural(n, 'earlier claim')} under this member ID"
    ),
    "hist_person_payer_prior_claims": lambda n, c: (
        f"patient has {_plural(n, 'earlier claim')} {_to(c)} under any member ID"
    ),
    "hist_member_id_corrected": lambda n, c: (
        "no earlier remittance corrected this member ID"
        if n < 1
        else f"{_plural(n, 'earlier remittance')} corrected this member ID (NM1*74)"
    ),
    _DUPLICATE_COUNT: lambda n, c: (
        "no earlier submission for the same patient, date and procedures"
        if n < 1
        else f"{_plural(n, 'earlier submission')} for the same patient, date and procedures"
    ),
    "hist_patient_family_claims_this_year": lambda n, c: _this_year(
        n, c, "the same kind of service"
    ),
    "hist_procedure_claims_this_year": lambda n, c: _this_year(n, c, _codes(c)),
    "hist_family_claims_this_year": lambda n, c: _this_year(n, c, "these kinds of service"),
}


def _this_year(n: float, c: Values, service: str) -> str:
    if n < 1:
        return f"no earlier claim this year for the patient {_to(c)} for {service}"
    return f"patient has {_plural(n, 'earlier claim')} this year {_to(c)} for {service}"


def _days_between(v: float, since: str, after: str) -> str:
    """A signed day count: ``v`` days since something, or (negative) before it."""
    return since.format(days=_plural(v, "day")) if v >= 0 else after.format(days=_plural(-v, "day"))


_MEASURES: dict[str, Callable[[float, Values], str]] = {
    # Delays and days from history, worded as what they measure (-1 and NaN: none known).
    "hist_patient_days_since_prior_claim": lambda v, c: (
        "no earlier claim for this patient"
        if v == -1
        else _days_between(
            v,
            "{days} since the service of the patient's previous claim",
            "the patient's previous claim is for a service {days} after this one",
        )
    ),
    "hist_days_since_paid_with_payer": lambda v, c: (
        f"{_payer(c)} has paid no earlier service for this patient"
        if v == -1
        else _days_between(
            v,
            f"{{days}} since the last service of this patient {_payer(c)} paid",
            f"{_payer(c)} paid a service of this patient {{days}} after this one",
        )
    ),
    "hist_days_past_known_coverage_end": lambda v, c: _days_between(
        v,
        "service {days} after the coverage end date an earlier remittance reported (DTM*036)",
        "service {days} before the coverage end date an earlier remittance reported (DTM*036)",
    ),
    "hist_payer_max_paid_lag": lambda v, c: (
        f"{_payer(c)} has paid no earlier claim yet"
        if v == -1
        else f"{_payer(c)} has paid claims sent up to {_plural(v, 'day')} after the service"
    ),
    "hist_days_past_paid_lag": lambda v, c: _days_between(
        v,
        f"sent {{days}} later than any claim {_payer(c)} has paid",
        f"sent {{days}} within the longest delay {_payer(c)} has paid",
    ),
    "hist_days_past_late_denied_lag": lambda v, c: _days_between(
        v,
        f"sent {{days}} past the shortest delay {_payer(c)} has denied as late",
        f"sent {{days}} short of the shortest delay {_payer(c)} has denied as late",
    ),
}
_NONE_KNOWN: dict[str, Callable[[Values], str]] = {
    "hist_days_past_known_coverage_end": lambda c: "no coverage end date reported for the patient",
    "hist_days_past_paid_lag": lambda c: f"{_payer(c)} has paid no earlier claim yet",
    "hist_days_past_late_denied_lag": lambda c: f"{_payer(c)} has denied no claim as late yet",
}


def _percent(rate: float) -> str:
    if rate < 0.005:
        return "under 1%"
    return "over 99%" if rate > 0.995 else f"about {rate:.0%}"


@functools.lru_cache(maxsize=16)
def _reason_label(category: str) -> str:
    return code_tables().category_label(category)


def history_text(column: str, m: Values, c: Values, info: HistoryColumn | None = None) -> str:
    """A history column of one claim worded as what it measures, with the claim's values
    (``info``: :func:`history_column` of it, when known)."""
    info = info or history_column(column)
    value = _num(m, column)
    if info is None:
        return column
    if value != value:  # NaN: nothing known
        if column in _NONE_KNOWN:
            return _NONE_KNOWN[column](c)
        return f"{HISTORY_FEATURE_LABELS.get(column, column)}: unknown"
    if info.kind == "measure" or (info.kind == "count" and info.key is None):
        if column in _COUNTS or column in _MEASURES:
            return (_COUNTS.get(column) or _MEASURES[column])(value, c)
        return f"{HISTORY_FEATURE_LABELS.get(column, column)}: {value:.0f}"
    if info.key is None:  # the highest per-reason rate over the claim's groupings
        return (
            f"highest denial rate for reason '{_reason_label(info.reason or 'other')}' among "
            f"the claim's payer, procedures, diagnoses, modifiers and providers: "
            f"{_percent(value)}"
        )
    key = info.key
    group = _GROUPS[key.name](m, c) if key.name in _GROUPS else key.label
    window = f" in the last {key.window_days} days of known outcomes" if info.recent else ""
    # A root grouping (every line alike) has one value for all of the claim's lines.
    highest = _HIGHEST.get(key.level, "") if key.columns and _several(key.level, c) else ""
    if info.kind == "count":
        if value < 1:
            return f"no {group} with a known outcome{window}"
        up_to = "up to " if highest else ""
        return f"{up_to}{value:.0f} {group} with a known outcome{window}{highest}"
    reason = f" (reason: {_reason_label(info.reason)})" if info.reason else ""
    answered = ""
    if info.outcomes is not None:
        n = _num(m, info.outcomes)
        if n == n and n < 1:
            # A group without outcomes takes its parent's rate: say so, not a rate of nothing.
            return (
                f"no {group} with a known outcome{window}; "
                f"{_percent(value)} denied{reason} in broader groups"
            )
        answered = f" ({n:.0f} with a known outcome)" if n == n else ""
    return f"{_percent(value)} of {group}{answered} were denied{reason}{window}{highest}"


def _several(level: str, c: Values) -> bool:
    """Whether the claim has more than one of what a level's rate is the highest of."""
    if level == "claim":
        return False
    procedures = len(_line_codes(c))
    return procedures > 2 if level == "pair" else procedures > 1


REASON_EVIDENCE = 0.05
"""A per-reason denial rate from which history shows that reason (one claim in 20). A group
without such denials is smoothed to about 1% (the 10% prior over 11 reasons): below this, a
rate cannot be what tells the biller to fix that reason."""


def evidence_floor(column: str, rule: FieldRule) -> float | None:
    """The value from which a fixable history column shows the problem its field's fix
    addresses: a rate of that reason from :data:`REASON_EVIDENCE`, a count a payer's rule counts
    from one. ``None`` for a claim field or a delay (fixable whatever its value)."""
    info = history_column(column)
    if info is None or info.kind == "measure":
        return None
    return 1.0 if info.kind == "count" else REASON_EVIDENCE


def column_fixable(column: str, rule: FieldRule, value: float | None = None) -> bool:
    """Whether a column of the field ``rule`` words is something to fix on the claim: the
    claim's own fields and delays, the counts a payer's rule counts, and history rates of a
    reason the field's fix addresses; with the claim's ``value`` of it, a count or rate only
    from its :func:`evidence_floor`. Other history is context."""
    if not rule.actionable:
        return False
    info = history_column(column)
    if info is None or info.kind == "measure":
        return True
    if info.kind == "count":
        fixable = column in rule.problem_counts
    else:
        fixable = info.reason is not None and info.reason in rule.reasons
    floor = evidence_floor(column, rule)
    return fixable and (value is None or floor is None or value >= floor)


def word_factor(
    field: str,
    lead: str,
    fixable: bool,
    value: float,
    m: Values,
    c: Values,
    info: HistoryColumn | None = None,
    by_reason: bool = False,
) -> tuple[str, str | None]:
    """A factor's description and fix, from the column that carries most of it (``lead``;
    ``info``: :func:`history_column` of it, when known).

    ``fixable``: the factor is something to fix on the claim (see :func:`column_fixable`);
    only then does it carry its field's fix, and only when it raises the risk. ``by_reason``:
    it is fixable because the claim's likely denial reason is one its fix addresses (see
    :func:`explain`), whatever its lead column: the claim's field is said first, then what the
    lead column measures (a count as a count).
    """
    rule = RULES.get(field)
    info = info or history_column(lead)
    if rule is None:
        return (field if info is None else history_text(lead, m, c, info)), None
    if not fixable:
        return (rule.describe(m, c) if info is None else history_text(lead, m, c, info)), None
    if info is None:
        text = rule.describe(m, c)
    elif info.kind == "count" and not by_reason:  # a count the payer's rule counts
        text = history_text(lead, m, c, info)
    elif info.kind == "measure" and lead not in _MEASURES:  # days the field's words give
        text = rule.describe(m, c) or history_text(lead, m, c, info)
    else:  # a rate, a delay (or, by reason, a count) says what it is beside the claim's field
        parts = (rule.describe(m, c), history_text(lead, m, c, info))
        text = "; ".join(part for part in parts if part)
    fix = rule.fix(m, c) if rule.fix is not None and value > 0 else None
    return text or field, fix


class _Row(Mapping[str, Any]):
    """One claim's values read straight from column arrays.

    The rules only ``get`` a few values per factor; building a pandas row per claim
    (``iloc``) cost more than the TreeSHAP values themselves.
    """

    __slots__ = ("_columns", "_index", "_memo")

    def __init__(self, columns: Mapping[str, np.ndarray], index: int) -> None:
        self._columns = columns
        self._index = index
        self._memo: dict[object, Any] | None = None

    def memo(self) -> dict[object, Any]:
        """What several of the claim's factors word alike (its payer, its procedure codes),
        worked out once per claim."""
        if self._memo is None:
            self._memo = {}
        return self._memo

    def __getitem__(self, key: str) -> Any:
        return self._columns[key][self._index]

    def get(self, key: str, default: Any = None) -> Any:
        # Mapping.get goes through __getitem__ and an exception per missing column: the
        # rules' most frequent call, at a few words per factor.
        column = self._columns.get(key)
        return default if column is None else column[self._index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


class _MatrixRow(Mapping[str, Any]):
    """One claim's model-matrix values by column name (read one at a time, as rules ask)."""

    __slots__ = ("_index", "_positions", "_values")

    def __init__(self, values: np.ndarray, positions: Mapping[str, int], index: int) -> None:
        self._values = values
        self._positions = positions
        self._index = index

    def __getitem__(self, key: str) -> Any:
        return self._values[self._index, self._positions[key]]

    def get(self, key: str, default: Any = None) -> Any:
        position = self._positions.get(key)
        return default if position is None else self._values[self._index, position]

    def __iter__(self) -> Iterator[str]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)


class _Columns(Mapping[str, np.ndarray]):
    """Columns of a 2-D array by name, sliced only when asked for one."""

    __slots__ = ("_positions", "_values")

    def __init__(self, values: np.ndarray, positions: Mapping[str, int]) -> None:
        self._values = values
        self._positions = positions

    def __getitem__(self, key: str) -> np.ndarray:
        return self._values[:, self._positions[key]]

    def __contains__(self, key: object) -> bool:
        return key in self._positions

    def __iter__(self) -> Iterator[str]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)


_LINE_FIELDS = frozenset({"procedure", "prior authorization", "diagnosis supports procedure"})


def _dominant_lines(
    contributions: Mapping[str, np.ndarray], context: Context, n: int
) -> list[int | None]:
    """Per claim, the written line number of the procedure slot with the largest |SHAP|.

    A slot counts only when it holds a line; ``None`` when no slot contributes.
    """
    strength = np.zeros((n, LINE_SLOTS))
    lines = np.full((n, LINE_SLOTS), np.nan)
    for slot in range(1, LINE_SLOTS + 1):
        for column in (f"procedure_{slot}", f"procedure_family_{slot}"):
            if column in contributions:
                strength[:, slot - 1] += np.abs(contributions[column])
        if f"line_of_procedure_{slot}" in context:
            lines[:, slot - 1] = np.asarray(context[f"line_of_procedure_{slot}"], dtype=float)
    strength = np.where(np.isnan(lines), 0.0, strength)
    best = np.argmax(strength, axis=1)  # first slot on ties, as a left-to-right scan would
    found = strength[np.arange(n), best] > 0.0
    chosen = lines[np.arange(n), best]
    return [int(chosen[i]) if found[i] else None for i in range(n)]


def source_matrix(columns: list[str]) -> tuple[np.ndarray, list[str]]:
    """0/1 matrix mapping model columns (rows) to claim fields (columns)."""
    layout = _layout(tuple(columns))
    return layout.mapping.copy(), list(layout.fields)


@dataclass(frozen=True)
class _Layout:
    """What explaining a model matrix needs to know about its columns, worked out once."""

    columns: tuple[str, ...]
    mapping: np.ndarray  # model column -> claim field, 0/1 (read-only)
    both: np.ndarray  # [mapping | the fixable columns' mapping]: one product gives both sums
    fields: tuple[str, ...]
    positions: dict[str, int]  # model column -> its index
    rules: tuple[FieldRule, ...]  # per field
    infos: tuple[HistoryColumn | None, ...]  # per model column: what it measures (history)
    has_fixable: np.ndarray  # per field: some of its columns are fixable on the claim
    fixable: np.ndarray  # per column: fixable on the claim (from its evidence floor)
    floored: np.ndarray  # the fixable columns that have a floor
    floored_floors: np.ndarray  # their floors
    floored_mapping: np.ndarray  # their rows of ``mapping``
    floored_slot: np.ndarray  # per column: its position in ``floored`` (-1: none)
    members: np.ndarray  # (field, width): each field's columns, padded with its first
    has_line_fields: bool
    present: tuple[tuple[str, np.ndarray], ...]
    """Per field with :attr:`FieldRule.present`: that matrix column and the field's own claim
    columns (fixable only while what the fix adds is absent)."""
    addresses: np.ndarray
    """(denial category, field): the field's fix addresses the category; a last row of False
    for a claim without a likely reason."""
    not_by_reason: np.ndarray
    """Per column: no lead for a field fixable by the likely reason, as it measures something
    else: a rate of a reason the field's fix does not address, or a count that is context."""


_CATEGORY_INDEX = {category: i for i, category in enumerate(DENIAL_CATEGORIES)}

BY_REASON_SHARE = 0.25
"""A field made fixable by the claim's likely reason (see :func:`explain`) raises the risk by at
least this share of the claim's largest risk-raising field: the field that carries the reason,
not one that happens to have a fix for it and a few hundredths of the log-odds."""


@functools.lru_cache(maxsize=8)
def _layout(columns: tuple[str, ...]) -> _Layout:
    """Per model (its column names): mapping columns to fields and fields to rules.

    Cached because every request explains the same columns; working this out per call (a
    name lookup per column) cost more than explaining a one-claim batch.
    """
    sources = [feature_source(c) for c in columns]
    fields = sorted(set(sources))
    index = {f: j for j, f in enumerate(fields)}
    rules = tuple(RULES.get(f, _UNKNOWN) for f in fields)
    mapping = np.zeros((len(columns), len(fields)))
    fixable = np.zeros((len(columns), len(fields)))
    floors = np.full(len(columns), np.nan)
    not_by_reason = np.zeros(len(columns), dtype=bool)
    by_field: list[list[int]] = [[] for _ in fields]
    for i, (column, source) in enumerate(zip(columns, sources, strict=True)):
        j = index[source]
        mapping[i, j] = 1.0
        fixable[i, j] = column_fixable(column, rules[j])
        floor = evidence_floor(column, rules[j]) if fixable[i, j] else None
        floors[i] = np.nan if floor is None else floor
        info = history_column(column)
        not_by_reason[i] = info is not None and (
            (info.reason is not None and info.reason not in rules[j].reasons)
            or (info.kind == "count" and column not in rules[j].problem_counts)
        )
        by_field[j].append(i)
    width = max(len(found) for found in by_field)
    # Padded with the field's first column again: a repeat changes no maximum.
    members = np.array([found + [found[0]] * (width - len(found)) for found in by_field])
    both = np.hstack([mapping, fixable])
    fixable_columns = np.asarray(fixable.any(axis=1))
    has_fixable = np.asarray(fixable.any(axis=0))
    floored = np.flatnonzero(~np.isnan(floors))
    floored_slot = np.full(len(columns), -1, dtype=np.intp)
    floored_slot[floored] = np.arange(len(floored))
    present = tuple(
        (
            rule.present,
            np.array([i for i in by_field[j] if history_column(columns[i]) is None], dtype=np.intp),
        )
        for j, rule in enumerate(rules)
        if rule.present is not None and rule.present in columns
    )
    addresses = np.zeros((len(DENIAL_CATEGORIES) + 1, len(fields)), dtype=bool)
    for j, rule in enumerate(rules):
        if rule.actionable and rule.fix is not None:
            for reason in rule.reasons:
                addresses[_CATEGORY_INDEX[reason], j] = True
    for array in (
        mapping,
        both,
        members,
        fixable_columns,
        has_fixable,
        floors,
        floored,
        floored_slot,
        addresses,
        not_by_reason,
    ):
        array.flags.writeable = False
    return _Layout(
        columns=columns,
        mapping=mapping,
        both=both,
        fields=tuple(fields),
        positions={c: i for i, c in enumerate(columns)},
        rules=rules,
        infos=tuple(history_column(c) for c in columns),
        has_fixable=has_fixable,
        fixable=fixable_columns,
        floored=floored,
        floored_floors=floors[floored],
        floored_mapping=mapping[floored],
        floored_slot=floored_slot,
        members=members.astype(np.intp),
        has_line_fields=any(f in _LINE_FIELDS for f in fields),
        present=present,
        addresses=addresses,
        not_by_reason=not_by_reason,
    )


def _take_cells(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``values[i, columns[i, ...]]`` for each row ``i``, read from the array as it is laid out
    (a copy of a batch's contributions in the other order cost more than the reading)."""
    rows = np.arange(len(values)).reshape(-1, *([1] * (columns.ndim - 1)))
    if values.flags.f_contiguous and not values.flags.c_contiguous:
        return values.T.reshape(-1).take(columns * len(values) + rows)
    flat = np.ascontiguousarray(values).reshape(-1)
    return flat.take(rows * values.shape[1] + columns)


@dataclass
class Explanations:
    """A batch's factors, and per claim the log-odds of each factor group over all of its
    fields (shown or not): :data:`FIX_ON_CLAIM` (``fix_contribution``) and :data:`CONTEXT`
    (``context_contribution``). With the model's base value they add up to the claim's
    log-odds."""

    factors: list[list[Factor]]
    fix_contribution: np.ndarray
    context_contribution: np.ndarray


def explain(
    contributions: pd.DataFrame,
    matrix: pd.DataFrame,
    context: Context,
    top_k: int = 5,
    min_abs: float = 0.02,
    likely_reasons: np.ndarray | None = None,
) -> Explanations:
    """Top factors per claim: fixable risk-raising fields first, then other risks, then the rest.

    Contributions are summed per claim field (and per field over the columns fixable on the
    claim, see :func:`column_fixable`) with one matrix product and ranked for the whole batch
    with one sort. A field is fixable on a claim when its fixable columns carry at least half
    of its contribution. A field whose rule names what the fix adds (:attr:`FieldRule.present`)
    and finds it on the claim is no fix by its own columns.

    ``likely_reasons``: each claim's most likely denial category (``None``: unknown). A field
    that raises the risk and whose fix addresses that reason is fixable too (the reason model
    and the field agree on what to fix), unless its lead column is history of another reason or
    a count that is context, or a count or rate below the evidence that would show the reason
    (see :func:`evidence_floor`).

    Only the ``top_k`` fields chosen per claim are worded, each after its column of largest
    contribution in its direction among the part that carries it (all of its columns when it
    is fixable by reason), so a batch of thousands of claims costs a few words per factor.
    """
    n = len(contributions)
    if n == 0:
        return Explanations([], np.zeros(0), np.zeros(0))
    columns = [str(c) for c in contributions.columns.tolist()]
    layout = _layout(tuple(columns))
    values = contributions.to_numpy(dtype=np.float64, copy=False)
    matrix_columns = [str(c) for c in matrix.columns.tolist()]
    m_values = matrix.to_numpy(dtype=np.float64, copy=False)
    m_positions = (
        layout.positions if matrix_columns == columns else _layout(tuple(matrix_columns)).positions
    )
    n_fields = len(layout.fields)
    sums = values @ layout.both
    grouped, fixable_part = sums[:, :n_fields], sums[:, n_fields:]
    # Per claim and column: fixable on the claim (history only from its evidence floor).
    fixable_cells = np.broadcast_to(layout.fixable, values.shape)
    floored = layout.floored
    weak = None
    if len(floored):
        floored_in_matrix = (
            floored
            if m_positions is layout.positions
            else np.array([m_positions.get(layout.columns[i], 0) for i in floored])
        )
        weak = ~(m_values[:, floored_in_matrix] >= layout.floored_floors)  # NaN: weak
        fixable_part = fixable_part - (values[:, floored] * weak) @ layout.floored_mapping
        fixable_cells = fixable_cells.copy()
        fixable_cells[:, floored] &= ~weak
    for present_column, own in layout.present:
        # What the fix adds is on the claim already: its own columns are no fix by themselves.
        present = m_values[:, m_positions[present_column]] > 0
        if len(own) and present.any():
            fixable_part = fixable_part - (values[:, own] * present[:, None]) @ layout.mapping[own]
            if not fixable_cells.flags.writeable:
                fixable_cells = fixable_cells.copy()
            fixable_cells[:, own] &= ~present[:, None]
    magnitude = np.abs(grouped)
    raises = grouped > 0
    fixable = layout.has_fixable & (2.0 * np.sign(grouped) * fixable_part >= magnitude)
    # A field the likely reason makes fixable carries a share of the claim's largest risk.
    carries = grouped >= np.maximum(min_abs, BY_REASON_SHARE * grouped.max(axis=1, keepdims=True))
    by_reason = _fixable_by_reason(
        layout, likely_reasons, values, grouped, carries & ~fixable, weak
    )
    if by_reason is not None:
        fixable = fixable | by_reason
    fix_contribution = (grouped * fixable).sum(axis=1)
    context_contribution = grouped.sum(axis=1) - fix_contribution
    # Sort keys: fixable risks (0), other risks (1), risk-lowering fields (2), below min_abs
    # (3, never shown); larger contributions first within a group.
    group = np.where(raises & fixable, 0, np.where(raises, 1, 2))
    group = np.where(magnitude >= min_abs, group, 3)
    order = np.lexsort((-magnitude, group), axis=-1)[:, :top_k]
    rows = np.arange(n)[:, None]
    chosen_values = grouped[rows, order]
    chosen_fixable = fixable[rows, order]
    chosen_by_reason = (
        by_reason[rows, order] if by_reason is not None else np.zeros(order.shape, dtype=bool)
    )
    # Each chosen field's lead column: its largest contribution in the field's direction
    # among the part (fixable on the claim or not) that carries the field.
    candidates = layout.members[order]
    in_part = (_take_cells(fixable_cells, candidates) == chosen_fixable[..., None]) | (
        chosen_by_reason[..., None]
    )
    signed = _take_cells(values, candidates) * np.sign(chosen_values)[..., None]
    signed = np.where(in_part, signed, -np.inf)
    lead = candidates[rows, np.arange(order.shape[1]), signed.argmax(axis=2)]
    # The chosen fields' keys as Python lists: indexing numpy per factor cost more than wording.
    chosen_fields = order.tolist()
    chosen_shown = (group[rows, order] != 3).tolist()
    chosen_leads = lead.tolist()
    chosen_fix = chosen_fixable.tolist()
    chosen_reason = chosen_by_reason.tolist()
    chosen_list = chosen_values.tolist()
    lines = (
        _dominant_lines(_Columns(values, layout.positions), context, n)
        if layout.has_line_fields
        else [None] * n
    )
    fields, names, infos = layout.fields, layout.columns, layout.infos
    results: list[list[Factor]] = []
    for row in range(n):
        m_row, c_row = _MatrixRow(m_values, m_positions, row), _Row(context, row)
        factors = []
        demoted = False
        for j, shown, value, lead_column, fix_here, reason_here in zip(
            chosen_fields[row],
            chosen_shown[row],
            chosen_list[row],
            chosen_leads[row],
            chosen_fix[row],
            chosen_reason[row],
            strict=True,
        ):
            if not shown:
                break
            field = fields[j]
            description, fix = word_factor(
                field,
                names[lead_column],
                fix_here,
                value,
                m_row,
                c_row,
                infos[lead_column],
                by_reason=reason_here,
            )
            if reason_here and fix is None:
                # The field's fix says nothing on this claim (no units to check): context,
                # worded after its lead column as context is.
                fix_here = reason_here = False
                description, fix = word_factor(
                    field, names[lead_column], False, value, m_row, c_row, infos[lead_column]
                )
                fix_contribution[row] -= value
                context_contribution[row] += value
                demoted = True
            factors.append(
                Factor(
                    field=field,
                    description=description,
                    contribution=round(value, 4),
                    direction="raises risk" if value > 0 else "lowers risk",
                    actionable=fix_here,
                    fix=fix,
                    line_number=lines[row] if field in _LINE_FIELDS else None,
                )
            )
        if demoted:  # fixable risks first again (a stable sort keeps the rest in order)
            factors.sort(key=lambda f: 0 if f.actionable and f.contribution > 0 else 1)
        results.append(factors)
    return Explanations(results, fix_contribution, context_contribution)


def _fixable_by_reason(
    layout: _Layout,
    reasons: np.ndarray | None,
    values: np.ndarray,
    grouped: np.ndarray,
    open_fields: np.ndarray,
    weak: np.ndarray | None,
) -> np.ndarray | None:
    """(claim, field): fixable because the claim's likely reason is one the field's fix
    addresses (see :func:`explain`); only among ``open_fields`` (risks not fixable already).

    The lead column is found for those pairs alone: a rate of another reason, a count that is
    context, or a floored column below its floor, leaves the field context."""
    if reasons is None:
        return None
    unknown = len(DENIAL_CATEGORIES)  # the row of False
    codes = np.array(
        [_CATEGORY_INDEX.get(r, unknown) if isinstance(r, str) else unknown for r in reasons],
        dtype=np.intp,
    )
    by_reason = layout.addresses[codes] & open_fields
    claims, fields = np.nonzero(by_reason)
    if len(claims) == 0:
        return by_reason
    members = layout.members[fields]
    signed = values[claims[:, None], members] * np.sign(grouped[claims, fields])[:, None]
    lead = members[np.arange(len(claims)), signed.argmax(axis=1)]
    refused = layout.not_by_reason[lead]
    if weak is not None:
        slot = layout.floored_slot[lead]
        refused |= (slot >= 0) & weak[claims, np.maximum(slot, 0)]
    by_reason[claims[refused], fields[refused]] = False
    return by_reason


_UNKNOWN = FieldRule(False, lambda m, c: "")


def fix_reasons(field: str) -> frozenset[str]:
    """The denial categories the fix of a claim field's factor addresses."""
    rule = RULES.get(field)
    return rule.reasons if rule is not None else frozenset()
