"""Claim tables as numpy columns: the form the feature code computes on.

The feature code runs on one claim per API request and on a million claims per training run.
Pandas pays tens of microseconds per operation whatever the size, which dominated a single claim's
score; numpy pays about one. So :class:`ClaimArrays` converts the three contract tables once, and
the claim and history features work on its arrays at any batch size with the same code.

Conventions: text is an object array with ``None`` for missing; dates are ``int64`` day numbers
(days since 1970-01-01) with :data:`NO_DAY` for missing; lines are in canonical order (see
:func:`canonical_line_order`) with the position of their claim in ``claim_index``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.claim_tables import ClaimTables
from features.schema import column_array

NO_DAY = np.iinfo(np.int64).min
"""Day number of a missing date (what NaT becomes as ``datetime64[D]`` -> ``int64``)."""

_SMALL = 64
"""Up to this many values, mapping text value by value beats factorising it first."""

_ARROW_LIST_UP_TO = 512
"""Up to this many values, a pyarrow text column is read as a Python list (see text_column)."""

CLAIM_TEXT = (
    "claim_id",
    "frequency_code",
    "payer_id",
    "claim_filing_indicator",
    "payer_type",
    "billing_npi",
    "rendering_npi",
    "referring_npi",
    "provider_taxonomy",
    "place_of_service",
    "patient_id",
    "patient_sex",
    "prior_auth_number",
    "referral_number",
)
CLAIM_DATES = ("submission_date", "service_date_from", "patient_birth_date")
LINE_TEXT = (
    "procedure_code",
    "modifier_1",
    "modifier_2",
    "modifier_3",
    "modifier_4",
    "diagnosis_pointers",
)
MODIFIERS = ("modifier_1", "modifier_2", "modifier_3", "modifier_4")


def text_column(series: Any) -> np.ndarray:
    """A text column as an object array, ``None`` where missing.

    Large columns go through their distinct values, so equal text shares one Python string:
    a million claims repeat a few thousand payer IDs and codes, and one string object per row
    would cost tens of megabytes per column.
    """
    if len(series) <= _ARROW_LIST_UP_TO and _is_arrow_text(series.dtype):
        # The same strings and None as the paths below. Both of those go through pyarrow
        # compute (a filter for missing values, a dictionary encoding), which costs a
        # few hundred microseconds per column whatever its length: most of a small batch's cost.
        array = series.array if isinstance(series, pd.Series | pd.Index) else series
        values = np.empty(len(series), dtype=object)
        values[:] = array.__arrow_array__().to_pylist()
        return values
    if len(series) <= _SMALL:
        if isinstance(series, np.ndarray):
            return np.array([None if pd.isna(v) else v for v in series], dtype=object)
        values = series.to_numpy(dtype=object, na_value=None)
        return values if values.dtype == object else values.astype(object)
    codes, uniques = pd.factorize(series)
    distinct = np.empty(len(uniques) + 1, dtype=object)
    distinct[:-1] = np.asarray(uniques, dtype=object)  # the last slot stays None
    return distinct[codes]  # code -1 (missing) takes the last slot


def _is_arrow_text(dtype: Any) -> bool:
    """A pandas string dtype stored by pyarrow (``str``, ``string[pyarrow]``)."""
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def day_column(series: Any) -> np.ndarray:
    """A date column as int64 day numbers (:data:`NO_DAY` where missing)."""
    values = np.asarray(series)
    if values.dtype.kind != "M":
        values = np.asarray(pd.to_datetime(pd.Series(series)).to_numpy())
    return values.astype("datetime64[D]").astype(np.int64)


def map_text(values: np.ndarray, fn: Callable[[str], Any], missing: Any, dtype: Any) -> np.ndarray:
    """``fn`` applied to each text value (``missing`` where ``None``).

    Large arrays are factorised first, so ``fn`` runs once per distinct value: claims repeat a
    few thousand codes and IDs, not a million.
    """
    if len(values) <= _SMALL:
        return np.array([missing if v is None else fn(v) for v in values], dtype=dtype)
    codes, uniques = pd.factorize(values)
    mapped = np.array([*(fn(u) for u in uniques), missing], dtype=dtype)
    return mapped[codes]  # code -1 (missing) takes the last entry


def factor_codes(values: np.ndarray, sort: bool = False) -> np.ndarray:
    """Integer codes of text values (equal text, equal code; ``None`` gets the largest code).

    With ``sort`` the codes follow the text's sort order, so they can stand in for it in a
    sort; missing values sort last.
    """
    if len(values) <= _SMALL:
        distinct = {v for v in values if v is not None}
        ordered = (
            sorted(distinct) if sort else list(dict.fromkeys(v for v in values if v is not None))
        )
        code = {v: i for i, v in enumerate(ordered)}
        return np.array([code.get(v, len(ordered)) for v in values], dtype=np.int64)
    codes, uniques = pd.factorize(values, sort=sort)
    return np.where(codes < 0, len(uniques), codes)


@dataclass
class ClaimArrays:
    """The claims, their lines (canonical order) and diagnoses as arrays; see module docstring."""

    claims: dict[str, np.ndarray]
    lines: dict[str, np.ndarray]
    diagnoses: dict[str, np.ndarray]

    @property
    def n_claims(self) -> int:
        return len(self.claims["claim_id"])

    @classmethod
    def from_tables(cls, tables: ClaimTables) -> ClaimArrays:
        frame = tables.claims
        claims: dict[str, np.ndarray] = {c: text_column(column_array(frame, c)) for c in CLAIM_TEXT}
        claims.update({c: day_column(column_array(frame, c)) for c in CLAIM_DATES})
        for column in ("total_charge", "has_other_coverage"):
            claims[column] = _numbers(column_array(frame, column))
        position = _position_of(claims["claim_id"])

        lines_frame = tables.lines
        line_claim = _positions(position, column_array(lines_frame, "claim_id"))
        known = line_claim >= 0  # lines of claims not in this batch are not its features
        lines = {c: text_column(column_array(lines_frame, c))[known] for c in LINE_TEXT}
        revenue = text_column(column_array(lines_frame, "revenue_code"))[known]
        # An institutional line with only a revenue code is identified by REV<code>.
        lines["procedure_code"] = np.array(
            [
                p if p is not None else (None if r is None else "REV" + r)
                for p, r in zip(lines["procedure_code"], revenue, strict=True)
            ],
            dtype=object,
        )
        lines["claim_index"] = line_claim[known]
        for column in ("line_charge", "units", "line_number"):
            lines[column] = _numbers(column_array(lines_frame, column))[known]
        lines = _take(lines, canonical_line_order(lines))
        lines["slot"] = _slots(lines["claim_index"])

        dx_frame = tables.diagnoses
        dx_claim = _positions(position, column_array(dx_frame, "claim_id"))
        known = dx_claim >= 0
        diagnoses = {
            "claim_index": dx_claim[known],
            "position": _numbers(column_array(dx_frame, "position")).astype(np.int64)[known],
            "code": text_column(column_array(dx_frame, "code"))[known],
        }
        return cls(claims, lines, diagnoses)


def _numbers(values: Any) -> np.ndarray:
    """A numeric (or boolean) column as float64, NaN where missing."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64)
    return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan))


def canonical_line_order(lines: dict[str, np.ndarray]) -> np.ndarray:
    """Line order within each claim: charge (descending), then code, modifier 1 and units.

    So the order a billing system happens to write the lines in changes nothing. Missing values
    sort last; ties keep the written order.
    """
    charge = lines["line_charge"]
    units = lines["units"]
    return np.lexsort(
        (
            np.where(np.isnan(units), np.inf, units),
            factor_codes(lines["modifier_1"], sort=True),
            factor_codes(lines["procedure_code"], sort=True),
            np.where(np.isnan(charge), np.inf, -charge),
            lines["claim_index"],
        )
    )


def group_starts(sorted_groups: np.ndarray) -> np.ndarray:
    """Indices where a new group begins in an array sorted by group."""
    if len(sorted_groups) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.empty(len(sorted_groups), dtype=bool)
    change[0] = True
    np.not_equal(sorted_groups[1:], sorted_groups[:-1], out=change[1:])
    return np.flatnonzero(change)


def _slots(claim_index: np.ndarray) -> np.ndarray:
    """1-based position of each line within its claim (lines sorted by claim)."""
    starts = group_starts(claim_index)
    sizes = np.diff(np.append(starts, len(claim_index)))
    return np.arange(len(claim_index)) - np.repeat(starts, sizes) + 1


def _take(columns: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[rows] for name, values in columns.items()}


def _positions(position: Callable[[np.ndarray], np.ndarray], claim_ids: Any) -> np.ndarray:
    """``position(text_column(claim_ids))``, looking each distinct claim ID up once.

    A claim's lines and diagnoses repeat its ID; the lookup is the costly part for a large batch.
    """
    if len(claim_ids) <= _ARROW_LIST_UP_TO:
        return position(text_column(claim_ids))
    codes, uniques = pd.factorize(claim_ids)
    distinct = np.empty(len(uniques) + 1, dtype=object)
    distinct[:-1] = np.asarray(uniques, dtype=object)  # the last slot stays None (missing)
    return position(distinct)[codes]


def _position_of(claim_ids: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A lookup from claim IDs to their row in ``claim_ids`` (-1 when absent)."""
    if len(claim_ids) <= _SMALL:
        where = {cid: i for i, cid in enumerate(claim_ids)}
        return lambda ids: np.array([where.get(cid, -1) for cid in ids], dtype=np.int64)
    index = pd.Index(claim_ids)
    return lambda ids: index.get_indexer(ids).astype(np.int64)
