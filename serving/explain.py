"""Turn SHAP contributions into factors a biller can act on.

Contributions (log-odds, per model column) are added up per claim field (see
:func:`features.pipeline.feature_source`), worded with the claim's own values ("no prior
authorization number", "97 days since service vs a 90-day filing limit", "procedure 70553 on
line 2"), and paired with a fix where one exists. Factors that cannot be acted on (the payer,
the patient's age) are listed after the actionable ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.claim_features import LINE_SLOTS
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


@dataclass
class Factor:
    field: str
    description: str
    contribution: float
    direction: str
    actionable: bool
    fix: str | None
    line_number: int | None


def _flag(matrix_row: Values, column: str) -> bool:
    value = matrix_row.get(column)
    return value is not None and bool(value) and not pd.isna(value) and float(value) > 0


def _num(row: Values, column: str) -> float:
    value = row.get(column)
    return float(value) if value is not None and not pd.isna(value) else float("nan")


def _procedures(context: Values) -> str:
    codes = [
        f"{context[f'procedure_{i}']} (line {int(context[f'line_of_procedure_{i}'])})"
        for i in range(1, LINE_SLOTS + 1)
        if isinstance(context.get(f"procedure_{i}"), str)
    ]
    return ", ".join(codes) or "the procedures"


def _auth(m: Values, c: Values) -> str:
    if _flag(m, "prior_auth_present"):
        return f"prior authorization number present for {_procedures(c)}"
    return f"no prior authorization number (REF*G1) for {_procedures(c)}"


def _auth_fix(m: Values, c: Values) -> str | None:
    if _flag(m, "prior_auth_present"):
        return "Check the authorization covers these codes, units and dates of service"
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
    if _flag(m, "medicare_age_not_medicare_plan"):
        return "patient is 65 or older and billed to a non-Medicare plan (Medicare may be primary)"
    prior = _num(m, "hist_patient_payer_prior_claims")
    gap = _num(m, "hist_patient_days_since_prior_claim")
    if prior == 0:
        return "first claim for this patient with this payer"
    if gap > 180:
        return f"{gap:.0f} days since the patient's previous claim"
    return f"patient's history with this payer ({prior:.0f} earlier claims)"


RULES: dict[str, FieldRule] = {
    "prior authorization": FieldRule(True, _auth, _auth_fix),
    "days from service to submission": FieldRule(True, _timeliness, _timeliness_fix),
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
    ),
    "patient eligibility": FieldRule(
        True,
        _eligibility,
        lambda m, c: "Verify eligibility and coverage dates (270/271) before submission",
    ),
    "other coverage (COB)": FieldRule(
        True,
        lambda m, c: (
            "patient has other coverage"
            if _flag(m, "has_other_coverage")
            else "no other coverage on the claim"
        ),
        lambda m, c: "Confirm which payer is primary (coordination of benefits) and bill it first",
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
    ),
    "billing provider NPI": FieldRule(
        True,
        lambda m, c: (
            "billing NPI valid"
            if _flag(m, "billing_npi_valid")
            else "billing NPI fails the check digit"
        ),
        lambda m, c: "Correct the billing provider's NPI",
    ),
    "diagnosis pointer": FieldRule(
        True,
        lambda m, c: (
            f"{_num(m, 'lines_without_dx_pointer'):.0f} line(s) without a diagnosis pointer"
        ),
        lambda m, c: "Point every service line to the diagnosis it treats",
    ),
    "diagnosis supports procedure": FieldRule(
        True,
        lambda m, c: f"principal diagnosis {m.get('principal_dx_category')}… with {_procedures(c)}",
        lambda m, c: (
            "Check the diagnosis supports the procedure under the payer's policy "
            "(LCD/NCD); document medical necessity"
        ),
    ),
    "rendering provider enrolment with payer": FieldRule(
        True,
        lambda m, c: (
            f"rendering provider has {_num(m, 'hist_provider_payer_prior_claims'):.0f} "
            "earlier claims with this payer"
        ),
        lambda m, c: (
            "Confirm the rendering provider is credentialed with this payer on the date of service"
        ),
    ),
    "possible duplicate": FieldRule(
        True,
        lambda m, c: (
            f"{_num(m, 'hist_same_service_prior_submissions'):.0f} earlier submission(s) "
            "for the same patient, date and procedures"
        ),
        lambda m, c: (
            "Do not resubmit a claim in process; send a replacement (frequency 7) to correct one"
        ),
    ),
    "unlisted procedure code": FieldRule(
        True,
        lambda m, c: "unlisted procedure code on the claim",
        lambda m, c: "Attach documentation describing the unlisted procedure (PWK)",
    ),
    "units": FieldRule(
        True,
        lambda m, c: f"{_num(m, 'total_units'):.0f} units in total",
        lambda m, c: "Check units against the payer's limits (MUE) and the authorization",
    ),
    "procedure combination and modifiers": FieldRule(
        True,
        lambda m, c: f"this combination of procedures and modifiers ({_procedures(c)})",
        lambda m, c: (
            "Check NCCI edits for these codes: add 59/XE/XS/XP/XU where distinct, or bundle"
        ),
    ),
    "benefit limit (visits this year)": FieldRule(
        True,
        lambda m, c: (
            f"{_num(m, 'hist_patient_family_claims_this_year'):.0f} earlier claims this "
            "year for this kind of service"
        ),
        lambda m, c: "Check the patient's remaining benefit visits; request authorization for more",
    ),
    "frequency (days since the same procedure)": FieldRule(
        True,
        lambda m, c: _repeat_text(m),
        lambda m, c: (
            "Check the payer's frequency limit for this procedure; document why it was repeated"
        ),
    ),
    "diagnosis": FieldRule(
        False, lambda m, c: f"principal diagnosis category {c.get('principal_dx_category')}"
    ),
    "procedure": FieldRule(False, lambda m, c: f"procedure {_procedures(c)}"),
    "payer": FieldRule(False, lambda m, c: f"payer {c.get('payer_id')} ({c.get('payer_type')})"),
    "place of service": FieldRule(
        False, lambda m, c: f"place of service {c.get('place_of_service')}"
    ),
    "provider specialty": FieldRule(
        False, lambda m, c: f"provider taxonomy {c.get('provider_taxonomy')}"
    ),
    "rendering provider": FieldRule(False, lambda m, c: "rendering provider's denial history"),
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
    "modifiers": FieldRule(False, lambda m, c: "modifiers on the lines"),
}


class _Row(Mapping[str, Any]):
    """One claim's values read straight from column arrays.

    The rules only ``get`` a few values per factor; building a pandas row per claim
    (``iloc``) cost more than the TreeSHAP values themselves.
    """

    __slots__ = ("_columns", "_index")

    def __init__(self, columns: Mapping[str, np.ndarray], index: int) -> None:
        self._columns = columns
        self._index = index

    def __getitem__(self, key: str) -> Any:
        return self._columns[key][self._index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


class _Columns(Mapping[str, np.ndarray]):
    """Columns of a 2-D array by name, sliced only when a rule asks for one.

    Slicing all of the matrix's columns up front cost more than wording a one-claim batch.
    """

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

    mapping: np.ndarray  # model column -> claim field, 0/1 (read-only)
    fields: tuple[str, ...]
    positions: dict[str, int]  # model column -> its index
    rules: tuple[FieldRule, ...]  # per field
    worded: tuple[bool, ...]  # per field: has a rule to word it
    actionable: np.ndarray  # per field
    has_line_fields: bool


@functools.lru_cache(maxsize=8)
def _layout(columns: tuple[str, ...]) -> _Layout:
    """Per model (its column names): mapping columns to fields and fields to rules.

    Cached because every request explains the same columns; working this out per call (a
    name lookup per column) cost more than explaining a one-claim batch.
    """
    sources = [feature_source(c) for c in columns]
    fields = sorted(set(sources))
    index = {f: j for j, f in enumerate(fields)}
    mapping = np.zeros((len(columns), len(fields)))
    for i, source in enumerate(sources):
        mapping[i, index[source]] = 1.0
    mapping.flags.writeable = False
    actionable = np.array([RULES.get(f, _UNKNOWN).actionable for f in fields], dtype=bool)
    actionable.flags.writeable = False
    return _Layout(
        mapping=mapping,
        fields=tuple(fields),
        positions={c: i for i, c in enumerate(columns)},
        rules=tuple(RULES.get(f, _UNKNOWN) for f in fields),
        worded=tuple(f in RULES for f in fields),
        actionable=actionable,
        has_line_fields=any(f in _LINE_FIELDS for f in fields),
    )


def explain_batch(
    contributions: pd.DataFrame,
    matrix: pd.DataFrame,
    context: Context,
    top_k: int = 5,
    min_abs: float = 0.02,
) -> list[list[Factor]]:
    """Top factors per claim: fixable risk-raising fields first, then other risks, then the rest.

    Contributions are summed per claim field with one matrix product and ranked for the whole
    batch with one sort; only the ``top_k`` fields chosen per claim are worded, so a batch of
    thousands of claims costs a few words per factor.
    """
    n = len(contributions)
    if n == 0:
        return []
    columns = [str(c) for c in contributions.columns.tolist()]
    layout = _layout(tuple(columns))
    values = contributions.to_numpy(dtype=np.float64, copy=False)
    grouped = values @ layout.mapping
    magnitude = np.abs(grouped)
    raises = grouped > 0
    # Sort keys: fixable risks (0), other risks (1), risk-lowering fields (2), below min_abs
    # (3, never shown); larger contributions first within a group.
    group = np.where(raises & layout.actionable, 0, np.where(raises, 1, 2))
    group = np.where(magnitude >= min_abs, group, 3)
    order = np.lexsort((-magnitude, group), axis=-1)[:, :top_k]
    # The chosen fields' keys as Python lists: indexing numpy per factor cost more than wording.
    chosen_fields = order.tolist()
    chosen_shown = (np.take_along_axis(group, order, axis=1) != 3).tolist()
    chosen_values = np.take_along_axis(grouped, order, axis=1).tolist()
    matrix_columns = [str(c) for c in matrix.columns.tolist()]
    m_columns = _Columns(
        matrix.to_numpy(dtype=np.float64, copy=False),
        layout.positions if matrix_columns == columns else _layout(tuple(matrix_columns)).positions,
    )
    lines = (
        _dominant_lines(_Columns(values, layout.positions), context, n)
        if layout.has_line_fields
        else [None] * n
    )
    fields, rules, worded = layout.fields, layout.rules, layout.worded
    results: list[list[Factor]] = []
    for row in range(n):
        m_row, c_row = _Row(m_columns, row), _Row(context, row)
        factors = []
        for j, shown, value in zip(
            chosen_fields[row], chosen_shown[row], chosen_values[row], strict=True
        ):
            if not shown:
                break
            field, rule = fields[j], rules[j]
            factors.append(
                Factor(
                    field=field,
                    description=rule.describe(m_row, c_row) if worded[j] else field,
                    contribution=round(value, 4),
                    direction="raises risk" if value > 0 else "lowers risk",
                    actionable=rule.actionable,
                    fix=rule.fix(m_row, c_row) if (rule.fix and value > 0) else None,
                    line_number=lines[row] if field in _LINE_FIELDS else None,
                )
            )
        results.append(factors)
    return results


_UNKNOWN = FieldRule(False, lambda m, c: "")
