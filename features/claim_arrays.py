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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.claim_tables import ClaimTables
from features.schema import column_array, with_optional_columns

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
    "payer_name",  # read only to name the payer in explanations
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
    # Optional contract columns (empty when an input lacks them).
    "payer_responsibility",
    "subscriber_group_number",
    "patient_relationship",
    "patient_key",
    "patient_state",
    "billing_state",
    "rendering_taxonomy",
    "service_facility_npi",
    "delay_reason_code",
    "related_causes",
    "epsdt_indicator",
    "attachment_types",
    "attachment_transmission",
    "claim_note",
    "clia_number",
    "other_payer_id",
    "other_payer_filing_indicator",
)
CLAIM_DATES = (
    "submission_date",
    "service_date_from",
    "patient_birth_date",
    "accident_date",
    "onset_date",
    "initial_treatment_date",
    "other_payer_adjudication_date",
)
CLAIM_NUMBERS = ("total_charge", "has_other_coverage", "other_payer_paid_amount")
LINE_TEXT = (
    "procedure_code",
    "modifier_1",
    "modifier_2",
    "modifier_3",
    "modifier_4",
    "diagnosis_pointers",
    "line_prior_auth_number",
    "line_referral_number",
    "ndc_code",
    "line_note",
    "line_attachment_types",
    "line_referring_npi",
    "line_place_of_service",
    "line_clia_number",
)
MODIFIERS = ("modifier_1", "modifier_2", "modifier_3", "modifier_4")


def text_column(
    series: Any, distinct: bool = False, factors: TextFactors | None = None
) -> np.ndarray:
    """A text column as an object array, ``None`` where missing.

    Large columns go through their distinct values, so equal text shares one Python string:
    a million claims repeat a few thousand payer IDs and codes, and one string object per row
    would cost tens of megabytes per column. A column of ``distinct`` values (claim IDs) is
    converted directly: there is nothing to share, and finding that out cost twice as long.
    The distinct values found are kept in ``factors``, if given.
    """
    if len(series) <= _ARROW_LIST_UP_TO and _is_arrow_text(series.dtype):
        # The same strings and None as the paths below. Both of those go through pyarrow
        # compute (a filter for missing values, a dictionary encoding), which costs a
        # few hundred microseconds per column whatever its length: most of a small batch's cost.
        array = series.array if isinstance(series, pd.Series | pd.Index) else series
        values = np.empty(len(series), dtype=object)
        values[:] = _arrow_values(array)
        return values
    if len(series) <= _SMALL:
        if isinstance(series, np.ndarray):
            return np.array([None if pd.isna(v) else v for v in series], dtype=object)
        values = series.to_numpy(dtype=object, na_value=None)
        return values if values.dtype == object else values.astype(object)
    if distinct and _is_arrow_text(series.dtype):
        array = series.array if isinstance(series, pd.Series | pd.Index) else series
        values = array.__arrow_array__().to_numpy(zero_copy_only=False)  # None where null
        return values if values.dtype == object else values.astype(object)
    codes, uniques = pd.factorize(series)
    shared = np.empty(len(uniques) + 1, dtype=object)
    shared[:-1] = np.asarray(uniques, dtype=object)  # the last slot stays None
    values = shared[codes]  # code -1 (missing) takes the last slot
    if factors is not None:
        factors.add(values, codes, shared[:-1])
    return values


def text_columns(
    columns: Sequence[Any], distinct: Sequence[bool] = (), factors: TextFactors | None = None
) -> list[np.ndarray]:
    """:func:`text_column` of each of several equally long columns (one frame's); ``distinct``
    flags the columns of distinct values, in order (the rest are not).

    Small pyarrow columns are read into one object array, a row per column: per column, a
    conversion costs a few microseconds whatever its length, which is most of one claim's.
    """
    length = len(columns[0]) if columns else 0
    if length > _ARROW_LIST_UP_TO or not all(_is_arrow_text(c.dtype) for c in columns):
        flags = [*distinct, *[False] * (len(columns) - len(distinct))]
        return [text_column(c, flag, factors) for c, flag in zip(columns, flags, strict=True)]
    flat: list[Any] = []
    for column in columns:
        flat.extend(_arrow_values(column))
    values = np.empty(len(flat), dtype=object)
    values[:] = flat
    return list(values.reshape(len(columns), length))


def _arrow_values(column: Any) -> list[Any]:
    """A pyarrow-backed column's values as Python objects (``None`` where missing)."""
    array = column.array if isinstance(column, pd.Series | pd.Index) else column
    chunked = array.__arrow_array__()
    # Reading the one chunk a frame column usually has skips the chunked array's own overhead.
    return chunked.chunk(0).to_pylist() if chunked.num_chunks == 1 else chunked.to_pylist()


def _is_arrow_text(dtype: Any) -> bool:
    """A pandas string dtype stored by pyarrow (``str``, ``string[pyarrow]``)."""
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def day_column(series: Any) -> np.ndarray:
    """A date column as int64 day numbers (:data:`NO_DAY` where missing)."""
    values = np.asarray(series)
    if values.dtype.kind != "M":
        values = np.asarray(pd.to_datetime(pd.Series(series)).to_numpy())
    return values.astype("datetime64[D]").astype(np.int64)


def map_text(
    values: np.ndarray,
    fn: Callable[[str], Any],
    missing: Any,
    dtype: Any,
    factors: TextFactors | None = None,
) -> np.ndarray:
    """``fn`` applied to each text value (``missing`` where ``None``).

    Large arrays are factorised first (or their factors taken from ``factors``), so ``fn`` runs
    once per distinct value: claims repeat a few thousand codes and IDs, not a million.
    """
    if len(values) <= _SMALL:
        return np.array([missing if v is None else fn(v) for v in values], dtype=dtype)
    codes, uniques = factorize_text(values, factors)
    mapped = np.array([*(fn(u) for u in uniques), missing], dtype=dtype)
    return mapped[codes]  # code -1 (missing) takes the last entry


def map_texts(
    values: np.ndarray,
    mappings: Sequence[tuple[Callable[[str], Any], Any, Any]],
    factors: TextFactors | None = None,
) -> list[np.ndarray]:
    """:func:`map_text` of one array with each ``(fn, missing, dtype)``, factorising it once."""
    if len(values) <= _SMALL:
        return [
            np.array([missing if v is None else fn(v) for v in values], dtype=dtype)
            for fn, missing, dtype in mappings
        ]
    codes, uniques = factorize_text(values, factors)
    return [
        np.array([*(fn(u) for u in uniques), missing], dtype=dtype)[codes]
        for fn, missing, dtype in mappings
    ]


def is_none(values: np.ndarray) -> np.ndarray:
    """Where a text (object) array holds ``None``, in one vectorised comparison."""
    return np.equal(values, None)  # type: ignore[call-overload]  # numpy stubs lack object==None


def factor_codes(
    values: np.ndarray, sort: bool = False, factors: TextFactors | None = None
) -> np.ndarray:
    """Integer codes of text values (equal text, equal code; ``None`` gets the largest code).

    With ``sort`` the codes follow the text's sort order, so they can stand in for it in a
    sort; missing values sort last. Without, codes kept in ``factors`` serve.
    """
    if len(values) <= _SMALL:
        distinct = {v for v in values if v is not None}
        ordered = (
            sorted(distinct) if sort else list(dict.fromkeys(v for v in values if v is not None))
        )
        code = {v: i for i, v in enumerate(ordered)}
        return np.array([code.get(v, len(ordered)) for v in values], dtype=np.int64)
    codes, uniques = pd.factorize(values, sort=True) if sort else factorize_text(values, factors)
    return np.where(codes < 0, len(uniques), codes)


def factorize_text(
    values: np.ndarray, factors: TextFactors | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(values)``, or the codes and distinct values ``factors`` keeps for them."""
    kept = factors.get(values) if factors is not None else None
    if kept is not None:
        return kept
    codes, uniques = pd.factorize(values)
    return codes, np.asarray(uniques, dtype=object)


_CODE_TYPES = (np.int8, np.int16, np.int32, np.int64)


class TextFactors:
    """The codes and distinct values of a batch's large text arrays, found once.

    A text column of a large batch is factorised when it is read (:func:`text_column`), and
    the features then map, hash and count its values by distinct value several times: each of
    those found the distinct values again (most of a 200,000-claim batch's feature set-up).
    Arrays are known by identity; a kept array is made read-only, so its codes cannot go stale.
    Codes are ``pd.factorize``'s (-1 for missing); the distinct values need not be distinct
    after :meth:`take` (only equal codes must mean equal text).
    """

    def __init__(self) -> None:
        self._kept: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def add(self, values: np.ndarray, codes: np.ndarray, uniques: np.ndarray) -> None:
        values.flags.writeable = False
        # In the narrowest integer type that holds every code and the count of distinct values:
        # most columns have a few dozen, and a million claims' codes kept as int64 for every
        # text column cost a training run 0.4 GB at its peak.
        narrow = next(t for t in _CODE_TYPES if len(uniques) < np.iinfo(t).max)
        self._kept[id(values)] = (values, codes.astype(narrow, copy=False), uniques)

    def get(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        kept = self._kept.get(id(values))
        if kept is None or kept[0] is not values:
            return None
        return kept[1], kept[2]

    def put(self, n: int, at: np.ndarray, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``n`` missing values (``None``) with ``values[rows]`` put at positions ``at``, its
        factors kept if those of ``values`` are."""
        placed = np.full(n, None, dtype=object)
        placed[at] = values[rows]
        kept = self.get(values)
        if kept is not None and n > _SMALL:
            codes = np.full(n, -1, dtype=kept[0].dtype)
            codes[at] = kept[0][rows]
            self.add(placed, codes, kept[1])
        return placed

    def forget(self, values: np.ndarray) -> None:
        """Let the factors of an array no longer used go (they hold it in memory)."""
        if self.get(values) is not None:
            del self._kept[id(values)]

    def take(self, values: np.ndarray, rows: Any, move: bool = False) -> np.ndarray:
        """``values[rows]``, its factors kept if those of ``values`` are; with ``move``, those
        of ``values`` (an intermediate array, unused after) are let go."""
        taken = values[rows]
        kept = self.get(values)
        if move:
            self.forget(values)
        if kept is not None and len(taken) > _SMALL:
            self.add(taken, kept[0][rows], kept[1])
        return taken


@dataclass
class ClaimArrays:
    """The claims, their lines (canonical order) and diagnoses as arrays; see module docstring."""

    claims: dict[str, np.ndarray]
    lines: dict[str, np.ndarray]
    diagnoses: dict[str, np.ndarray]
    factors: TextFactors = field(default_factory=lambda: TextFactors())
    """The factors of its large text arrays, found as they were read."""

    @property
    def n_claims(self) -> int:
        return len(self.claims["claim_id"])

    @classmethod
    def from_tables(cls, tables: ClaimTables) -> ClaimArrays:
        # Tables built by hand (tests, old callers) may lack the optional columns.
        frame = with_optional_columns("claims", tables.claims)
        factors = TextFactors()
        claims: dict[str, np.ndarray] = dict(
            zip(
                CLAIM_TEXT,
                # A batch's claim IDs are distinct (validated claims' are, and a repeat costs
                # only time here).
                text_columns(
                    [column_array(frame, c) for c in CLAIM_TEXT],
                    distinct=[c == "claim_id" for c in CLAIM_TEXT],
                    factors=factors,
                ),
                strict=True,
            )
        )
        claims.update({c: day_column(column_array(frame, c)) for c in CLAIM_DATES})
        for column in CLAIM_NUMBERS:
            claims[column] = _numbers(column_array(frame, column))
        claim_rows = _ClaimRows(claims["claim_id"], column_array(frame, "claim_id"))

        lines_frame = with_optional_columns("lines", tables.lines)
        line_claim = claim_rows(column_array(lines_frame, "claim_id"))
        # Lines of claims not in this batch are not its features (a request has none: no copy).
        known = _rows_of_known(line_claim)
        *line_text, revenue = (
            factors.take(values, known, move=True)
            for values in text_columns(
                [column_array(lines_frame, c) for c in (*LINE_TEXT, "revenue_code")],
                factors=factors,
            )
        )
        lines = dict(zip(LINE_TEXT, line_text, strict=True))
        # An institutional line with only a revenue code is identified by REV<code>.
        no_code = np.flatnonzero(is_none(lines["procedure_code"]))
        if len(no_code):
            procedure = lines["procedure_code"].copy()  # a new array, without factors
            procedure[no_code] = [None if r is None else "REV" + r for r in revenue[no_code]]
            factors.forget(lines["procedure_code"])
            lines["procedure_code"] = procedure
        factors.forget(revenue)
        lines["claim_index"] = line_claim[known]
        for column in ("line_charge", "units", "line_number"):
            lines[column] = _numbers(column_array(lines_frame, column))[known]
        order = canonical_line_order(lines)
        lines = {name: factors.take(values, order, move=True) for name, values in lines.items()}
        lines["slot"] = _slots(lines["claim_index"])

        dx_frame = tables.diagnoses
        dx_claim = claim_rows(column_array(dx_frame, "claim_id"))
        known = _rows_of_known(dx_claim)
        diagnoses = {
            "claim_index": dx_claim[known],
            "position": _numbers(column_array(dx_frame, "position")).astype(np.int64)[known],
            "code": text_column(column_array(dx_frame, "code"))[known],
        }
        return cls(claims, lines, diagnoses, factors)


def _rows_of_known(claim_position: np.ndarray) -> slice | np.ndarray:
    """Rows whose claim is in the batch (position >= 0): all of them as a slice, else a mask."""
    known = claim_position >= 0
    return slice(None) if known.all() else known


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


class _ClaimRows:
    """Each line's (or diagnosis') claim: its row in the batch, -1 when not in it.

    ``claim_ids`` are the batch's IDs as text (:func:`text_column`), ``column`` the claims'
    own ID column. For many rows stored by pyarrow: rows written claim by claim in the claims'
    order (as an 837, our Parquet and most exports write them) are numbered by their runs of
    equal IDs (:func:`_rows_by_runs`); otherwise pyarrow's hash join of the two text columns
    finds the rows several times faster than a lookup through Python strings, used only when
    the batch's IDs are distinct (as validated claims' are), where both give the same rows.
    """

    def __init__(self, claim_ids: np.ndarray, column: Any) -> None:
        self.claim_ids = claim_ids
        self.column = column
        self._position: Callable[[np.ndarray], np.ndarray] | None = None
        self._joinable: Any = None  # the batch's IDs as one pyarrow array, once checked

    def position(self, ids: np.ndarray) -> np.ndarray:
        if self._position is None:  # built on first use: ordered rows never need it
            self._position = _position_of(self.claim_ids)
        return self._position(ids)

    def __call__(self, row_claim_ids: Any) -> np.ndarray:
        if len(row_claim_ids) <= _ARROW_LIST_UP_TO:
            return self.position(text_column(row_claim_ids))
        arrow_rows = _is_arrow_text(row_claim_ids.dtype)
        if arrow_rows and _is_arrow_text(self.column.dtype):
            rows = _rows_by_runs(row_claim_ids.__arrow_array__(), self.column.__arrow_array__())
            if rows is not None:
                return rows
        batch = self._arrow_batch() if arrow_rows else None
        if batch is not None:
            ids = row_claim_ids.__arrow_array__()
            found = pc.index_in(ids, value_set=batch.cast(ids.type), skip_nulls=True)
            return np.asarray(found.fill_null(-1).to_numpy(), dtype=np.int64)
        # A claim's lines and diagnoses repeat its ID: look each distinct ID up once.
        codes, uniques = pd.factorize(row_claim_ids)
        distinct = np.empty(len(uniques) + 1, dtype=object)
        distinct[:-1] = np.asarray(uniques, dtype=object)  # the last slot stays None (missing)
        return self.position(distinct)[codes]

    def _arrow_batch(self) -> Any:
        """The batch's IDs as a pyarrow array if they can be joined on (else ``None``)."""
        if self._joinable is None:
            self._joinable = False
            if _is_arrow_text(self.column.dtype):
                batch = self.column.__arrow_array__().combine_chunks()
                if batch.null_count == 0 and pc.count_distinct(batch).as_py() == len(batch):
                    self._joinable = batch
        return self._joinable if self._joinable is not False else None


def _rows_by_runs(row_claim_ids: Any, claim_ids: Any) -> np.ndarray | None:
    """Each row's claim, where the rows come claim by claim in the claims' order (else ``None``).

    Both arguments are pyarrow text arrays. Row IDs that change exactly where a new claim's
    rows begin, one run per claim and the runs' IDs equal to the claims' in order: then the
    ``i``-th run's rows belong to the ``i``-th claim, and two passes of string comparison find
    that, several times faster than hashing every row's ID to join on (most of reading a large
    batch's lines and diagnoses). A claim without rows, rows out of order, a missing ID: the
    join instead.
    """
    if len(claim_ids) == 0 or row_claim_ids.null_count or claim_ids.null_count:
        return None
    rows = _one_chunk(row_claim_ids)
    starts = np.ones(len(rows), dtype=bool)
    starts[1:] = np.asarray(pc.not_equal(rows[1:], rows[:-1]), dtype=bool)
    first = np.flatnonzero(starts)
    if len(first) != len(claim_ids):
        return None
    heads = rows.take(pa.array(first)).cast(claim_ids.type)
    if not pc.all(pc.equal(heads, _one_chunk(claim_ids))).as_py():
        return None
    return np.cumsum(starts, dtype=np.int64) - 1


def _one_chunk(values: Any) -> Any:
    """A pyarrow array as one contiguous array (a chunked one's chunks joined)."""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _position_of(claim_ids: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A lookup from claim IDs to their row in ``claim_ids`` (-1 when absent)."""
    if len(claim_ids) <= _SMALL:
        where = {cid: i for i, cid in enumerate(claim_ids)}
        return lambda ids: np.array([where.get(cid, -1) for cid in ids], dtype=np.int64)
    index = pd.Index(claim_ids)
    return lambda ids: index.get_indexer(ids).astype(np.int64)
