"""The claims data contract: one set of Parquet tables that the simulator and X12 ingest both write.

A data set is a folder of Parquet files, one per table below. Every reader validates against these
pandera schemas; rows that fail go to a quarantine frame with the reason, never silently dropped.

Tables (keys in brackets):

``claims`` [claim_id]
    One row per submitted claim (837 CLM). ``claim_id`` is the patient control number (CLM01).
``lines`` [claim_id, line_number]
    Service lines (SV1/SV2), procedure, up to four modifiers, units, charge, and the
    diagnosis pointers as positions joined by commas (``"1,2"``; empty when the line has none).
``diagnoses`` [claim_id, position]
    ICD-10-CM codes from HI, without the dot; position 1 is the principal diagnosis.
``remittances`` [remit_id]
    One row per 835 claim payment (CLP), with CLP02 status, charge, paid, patient share, date.
``remit_lines`` [remit_id, line_number]
    Service-line payments (SVC).
``adjustments`` [remit_id, line_number?, group_code, carc]
    Every CAS triplet; ``line_number`` is empty for a claim-level adjustment.
``remarks`` [remit_id, line_number?, rarc]
    Remittance advice remark codes (LQ, MOA/MIA).
``followups``
    What happened after a denial: action taken (corrected claim, appeal, ...), when, and whether
    payment was recovered; an empty ``resolved_date`` means the payer has not answered yet.
    Simulated, or derived from later 835s in real data.
``rejections``
    Front-end rejections (999 / 277CA / clearinghouse). A rejection never reached adjudication and
    is never a denial.

Money is in dollars, rounded to cents; dates are calendar days (midnight timestamps).
The simulator's ground truth (``truth.parquet``) is *not* part of the contract: no model reads it.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache, lru_cache, reduce
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.config import ValidationDepth, get_config_context
from pandera.errors import SchemaErrors

from features.codes import PAYER_TYPES

try:  # pandas >= 3.0; older versions build contract frames with the DataFrame constructor
    from pandas.api.internals import create_dataframe_from_blocks
except ImportError:  # pragma: no cover
    create_dataframe_from_blocks = None

PROCEDURE_CODE_PATTERN = r"^[A-Z0-9][0-9]{3}[A-Z0-9]$"
ICD10_PATTERN = r"^[A-TV-Z][0-9][0-9A-Z]{0,5}$"
NPI_PATTERN = r"^[0-9]{10}$"

_DATE = "datetime64[ns]"


def _text(nullable: bool = False, **kwargs: object) -> pa.Column:
    return pa.Column(str, nullable=nullable, coerce=True, **kwargs)  # type: ignore[arg-type]


def _date(nullable: bool = False) -> pa.Column:
    return pa.Column(_DATE, nullable=nullable, coerce=True)


def _money(nullable: bool = False) -> pa.Column:
    return pa.Column(float, nullable=nullable, coerce=True)


CLAIMS = pa.DataFrameSchema(
    {
        "claim_id": _text(checks=pa.Check.str_length(1, 38)),
        "submission_date": _date(),
        "claim_type": _text(checks=pa.Check.isin(["professional", "institutional"])),
        # 1 original, 7 replacement, 8 void; institutional bills use the other digits too.
        "frequency_code": _text(checks=pa.Check.str_matches(r"^[0-9A-Z]$")),
        "original_payer_claim_number": _text(nullable=True),
        "payer_id": _text(),
        "payer_name": _text(nullable=True),
        "claim_filing_indicator": _text(nullable=True),
        "payer_type": _text(checks=pa.Check.isin(list(PAYER_TYPES))),
        "billing_npi": _text(nullable=True),
        "rendering_npi": _text(nullable=True),
        "referring_npi": _text(nullable=True),
        "provider_taxonomy": _text(nullable=True),
        "place_of_service": _text(nullable=True),
        "total_charge": _money(),
        "service_date_from": _date(),
        "service_date_to": _date(),
        "patient_id": _text(),
        "patient_birth_date": _date(nullable=True),
        "patient_sex": _text(nullable=True, checks=pa.Check.isin(["M", "F", "U"])),
        "prior_auth_number": _text(nullable=True),
        "referral_number": _text(nullable=True),
        "has_other_coverage": pa.Column(bool, coerce=True),
    },
    unique=["claim_id"],
    strict="filter",
    name="claims",
)

LINE_CODE_COLUMNS = ("procedure_code", "revenue_code")
"""A service line needs at least one of these codes (institutional lines may carry only a
revenue code)."""


def _has_a_line_code(lines: pd.DataFrame) -> pd.Series:
    return reduce(operator.or_, (lines[column].notna() for column in LINE_CODE_COLUMNS))


# A named object (not an inline lambda) so the fast path below can recognise the rule.
_LINE_CODE_CHECK = pa.Check(
    _has_a_line_code,
    error="a service line needs a procedure (CPT/HCPCS) code or a revenue code",
)

LINES = pa.DataFrameSchema(
    {
        "claim_id": _text(),
        "line_number": pa.Column(int, checks=pa.Check.ge(1), coerce=True),
        # Institutional lines may carry only a revenue code (checked below).
        "procedure_code": _text(nullable=True, checks=pa.Check.str_matches(PROCEDURE_CODE_PATTERN)),
        "modifier_1": _text(nullable=True),
        "modifier_2": _text(nullable=True),
        "modifier_3": _text(nullable=True),
        "modifier_4": _text(nullable=True),
        "units": pa.Column(float, checks=pa.Check.gt(0), coerce=True),
        "line_charge": _money(),
        "service_date": _date(),
        "diagnosis_pointers": _text(nullable=True),
        "revenue_code": _text(nullable=True),
    },
    checks=_LINE_CODE_CHECK,
    unique=["claim_id", "line_number"],
    strict="filter",
    name="lines",
)

DIAGNOSES = pa.DataFrameSchema(
    {
        "claim_id": _text(),
        "position": pa.Column(int, checks=pa.Check.ge(1), coerce=True),
        "code": _text(checks=pa.Check.str_matches(ICD10_PATTERN)),
    },
    unique=["claim_id", "position"],
    strict="filter",
    name="diagnoses",
)

REMITTANCES = pa.DataFrameSchema(
    {
        "remit_id": _text(),
        "claim_id": _text(),
        "payer_claim_number": _text(nullable=True),
        "status_code": _text(),
        "total_charge": _money(),
        "paid_amount": _money(),
        "patient_responsibility": _money(nullable=True),
        "remit_date": _date(),
        "payer_id": _text(nullable=True),
        "payer_name": _text(nullable=True),
    },
    unique=["remit_id"],
    strict="filter",
    name="remittances",
)

REMIT_LINES = pa.DataFrameSchema(
    {
        "remit_id": _text(),
        "claim_id": _text(),
        "line_number": pa.Column(int, checks=pa.Check.ge(1), coerce=True),
        "procedure_code": _text(nullable=True),
        "line_charge": _money(),
        "paid_amount": _money(),
        "units": pa.Column(float, nullable=True, coerce=True),
    },
    strict="filter",
    name="remit_lines",
)

ADJUSTMENTS = pa.DataFrameSchema(
    {
        "remit_id": _text(),
        "claim_id": _text(),
        "line_number": pa.Column("Int64", nullable=True, coerce=True),
        "group_code": _text(checks=pa.Check.isin(["CO", "PR", "PI", "OA", "CR"])),
        "carc": _text(),
        "amount": _money(),
        "quantity": pa.Column(float, nullable=True, coerce=True),
    },
    strict="filter",
    name="adjustments",
)

REMARKS = pa.DataFrameSchema(
    {
        "remit_id": _text(),
        "claim_id": _text(),
        "line_number": pa.Column("Int64", nullable=True, coerce=True),
        "rarc": _text(),
    },
    strict="filter",
    name="remarks",
)

FOLLOWUPS = pa.DataFrameSchema(
    {
        "claim_id": _text(),
        "action": _text(
            checks=pa.Check.isin(
                ["corrected_claim", "appeal", "peer_to_peer", "eligibility_rebill"]
            )
        ),
        "action_date": _date(),
        "resolved_date": _date(nullable=True),
        "recovered": pa.Column(bool, coerce=True),
        "recovered_amount": _money(),
    },
    strict="filter",
    name="followups",
)

REJECTIONS = pa.DataFrameSchema(
    {
        "claim_id": _text(),
        "rejection_date": _date(),
        "source": _text(),
        "reason": _text(),
    },
    strict="filter",
    name="rejections",
)

SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "claims": CLAIMS,
    "lines": LINES,
    "diagnoses": DIAGNOSES,
    "remittances": REMITTANCES,
    "remit_lines": REMIT_LINES,
    "adjustments": ADJUSTMENTS,
    "remarks": REMARKS,
    "followups": FOLLOWUPS,
    "rejections": REJECTIONS,
}


def empty_table(name: str) -> pd.DataFrame:
    """An empty frame with the table's columns and dtypes (a fresh copy the caller may change)."""
    return _empty_table_template(name).copy()


@cache
def _empty_table_template(name: str) -> pd.DataFrame:
    # Built on first use, not at import: every ClaimsDataset needs six of these, and a pandera
    # validation per table is most of the cost of building one for a single claim.
    schema = SCHEMAS[name]
    frame = pd.DataFrame({col: pd.Series(dtype=object) for col in schema.columns})
    return schema.validate(frame)


_EXPECTED: dict[str, str] = {
    "procedure_code": "a 5-character CPT/HCPCS code (e.g. 99214, J3301)",
    "code": "an ICD-10-CM code without the dot (e.g. E119); ICD-9 codes are not accepted "
    "on 5010 claims",
    "claim_id": "a patient control number (CLM01) of 1-38 characters, unique in the file",
    "units": "a number of units greater than 0",
    "line_number": "a line number of 1 or more",
    "position": "a diagnosis position of 1 or more",
    "payer_type": f"one of {', '.join(PAYER_TYPES)}",
    "frequency_code": "a one-character claim frequency code (1 original, 7 replacement, 8 void)",
    "group_code": "a CAS group code: CO, PR, PI, OA or CR",
    "claim_type": "professional or institutional",
    "patient_sex": "M, F or U",
}


def _reason(column: str, check: str, value: object) -> str:
    if check in ("not_nullable", "column_in_dataframe") or pd.isna(value):
        return f"{column} is required but empty"
    if "unique" in check or check == "field_uniqueness":
        return f"{column} {value!r} appears more than once"
    expected = _EXPECTED.get(column)
    if expected:
        return f"{column} {value!r} is not {expected}"
    if check.startswith("coerce_dtype") or "dtype" in check:
        return f"{column} {value!r} has the wrong type ({check})"
    return f"{column} {value!r} fails {check}"


def validate_table(name: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate one table; return ``(valid_rows, quarantined_rows)``.

    Quarantined rows keep their key columns and gain ``table`` and ``reason`` (the failed check
    and column, in words). Whole-table problems (a missing column) raise ``ValueError`` because no
    row can be trusted then.

    A small table whose rows all pass is checked without pandera (see :func:`_valid_if_clean`),
    with the same result; any other table goes through pandera, which names what failed.
    """
    valid, rejected = _validate_table(name, frame)
    return valid, empty_rejects() if rejected is None else rejected


def _validate_table(name: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """:func:`validate_table`, with ``None`` for the rejects when the fast path passed every row
    (an empty frame costs about as much as checking a one-claim table)."""
    schema = _schema_with_all_columns(name, frame)
    if len(frame) <= _FAST_PATH_MAX_ROWS and _pandera_checks_data():
        rules = _table_rules(name)
        # The fast path never returns the frame it is given, so resetting a default index first
        # (a copy of every column) would buy nothing.
        plain = frame if _has_default_index(frame) else frame.reset_index(drop=True)
        valid = _valid_if_clean(rules, plain) if rules is not None else None
        if valid is not None:
            return valid, None
    return _pandera_validate(name, schema, frame.reset_index(drop=True))


def _validate_table_with_pandera(
    name: str, frame: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`validate_table` without the fast path: the reference the fast path must equal."""
    schema = _schema_with_all_columns(name, frame)
    return _pandera_validate(name, schema, frame.reset_index(drop=True))


def _schema_with_all_columns(name: str, frame: pd.DataFrame) -> pa.DataFrameSchema:
    schema = SCHEMAS[name]
    missing = [c for c in schema.columns if c not in frame.columns]
    if missing:
        raise ValueError(f"table '{name}' is missing required column(s): {', '.join(missing)}")
    return schema


def _pandera_validate(
    name: str, schema: pa.DataFrameSchema, frame: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    try:
        return schema.validate(frame, lazy=True), empty_rejects()
    except SchemaErrors as errors:
        cases = errors.failure_cases
        bad_index = cases["index"].dropna()
        reasons: dict[int, list[str]] = {}
        for _, case in cases.iterrows():
            if pd.isna(case["index"]):
                continue
            column_level = case.get("schema_context") == "Column"
            if column_level and case["column"] in schema.columns:
                text = _reason(case["column"], str(case["check"]), case["failure_case"])
            else:
                text = str(case["check"])
            row_reasons = reasons.setdefault(int(case["index"]), [])
            if text not in row_reasons:
                row_reasons.append(text)
        bad = sorted({int(i) for i in bad_index})
        if not bad:
            raise ValueError(f"table '{name}' failed validation: {errors}") from None
        good = frame.drop(index=bad)
        rejected = frame.loc[bad].copy()
        rejected.insert(0, "table", name)
        rejected["reason"] = ["; ".join(reasons[i]) for i in bad]
        return schema.validate(good), rejected


def empty_rejects() -> pd.DataFrame:
    """The quarantine frame when nothing was quarantined (a fresh copy the caller may change)."""
    return _empty_rejects_template().copy()


@cache
def _empty_rejects_template() -> pd.DataFrame:
    return pd.DataFrame(columns=["table", "reason"])


# -- the fast path: small, clean tables without pandera ---------------------------------------
# pandera costs tens of milliseconds per table whatever its size, most of a one-claim API
# request. For a small table we evaluate the same rules, read from the schema objects, in plain
# Python; only when every row passes do we build the coerced frame ourselves. A failing row, or
# anything we cannot evaluate exactly as pandera would, sends the table to pandera, so rejects
# and their reasons always come from pandera.

_FAST_PATH_MAX_ROWS = 2_000
"""Per-value Python checks cost per row, pandera mostly per table. Measured on the claims and
lines tables: about three times faster than pandera at 2,000 rows, level at about 6,000 lines;
bigger tables (data set reads) go straight to pandera."""

_ValueTest = Callable[[Any], bool]


@dataclass(frozen=True)
class _ColumnRules:
    """What pandera checks on one column, in a form that runs per value."""

    column: pa.Column
    dtype: Any
    """The pandas dtype pandera coerces the column to."""
    check_nulls: bool
    value_tests: tuple[_ValueTest, ...]
    """Builtin checks as per-value predicates (applied to non-null values, like pandera)."""
    series_checks: tuple[pa.Check, ...]
    """Other checks, run through pandera's own check on the coerced column."""


@dataclass(frozen=True)
class _TableRules:
    """What pandera checks on one table, read from its schema once."""

    columns: dict[str, _ColumnRules]
    refuse_other_columns: bool
    """``strict=True``: a column the schema does not name fails the table (else it is dropped)."""
    unique_keys: tuple[tuple[str, ...], ...]
    one_of_columns: tuple[tuple[str, ...], ...]
    """Row rules: at least one of these columns holds a value."""


def _pandera_checks_data() -> bool:
    # When pandera is configured to skip data checks (or validation altogether), let it do just
    # that rather than check more than it would.
    config = get_config_context()
    return bool(
        config.validation_enabled and config.validation_depth == ValidationDepth.SCHEMA_AND_DATA
    )


@cache
def _table_rules(name: str) -> _TableRules | None:
    """The table's rules for the fast path, or ``None`` when the schema uses a feature the fast
    path does not evaluate (the table then always goes through pandera)."""
    schema = SCHEMAS[name]
    if (
        schema.dtype is not None
        or schema.index is not None
        or schema.parsers
        or schema.ordered
        or schema.add_missing_columns
        or getattr(schema, "drop_invalid_rows", False)
        or schema.strict not in (True, "filter")
    ):
        return None
    one_of: list[tuple[str, ...]] = []
    for check in schema.checks:
        if check is not _LINE_CODE_CHECK:
            return None
        one_of.append(LINE_CODE_COLUMNS)
    columns: dict[str, _ColumnRules] = {}
    unique_keys: list[tuple[str, ...]] = []
    for column_name, column in schema.columns.items():
        rules = _column_rules(column, coerce=bool(column.coerce or schema.coerce))
        if rules is None:
            return None
        columns[column_name] = rules
        if column.unique:
            unique_keys.append((column_name,))
    if schema.unique:
        keys = [schema.unique] if isinstance(schema.unique[0], str) else schema.unique
        unique_keys.extend(tuple(key) for key in keys)
    return _TableRules(
        columns=columns,
        refuse_other_columns=schema.strict is True,
        unique_keys=tuple(unique_keys),
        one_of_columns=tuple(one_of),
    )


def _column_rules(column: pa.Column, coerce: bool) -> _ColumnRules | None:
    if (
        column.dtype is None
        or not coerce
        or column.regex
        or column.parsers
        or column.default is not None
        or getattr(column, "drop_invalid_rows", False)
    ):
        return None
    value_tests: list[_ValueTest] = []
    series_checks: list[pa.Check] = []
    for check in column.checks:
        if check.groupby is not None:
            return None
        test = _value_test(check) if check.ignore_na and not check.element_wise else None
        if test is not None:
            value_tests.append(test)
        else:
            series_checks.append(check)
    dtype = column.dtype.type
    # numpy integer and boolean columns cannot hold a missing value once coerced.
    can_hold_nulls = getattr(dtype, "kind", None) not in ("i", "u", "b")
    return _ColumnRules(
        column=column,
        dtype=dtype,
        check_nulls=not column.nullable and can_hold_nulls,
        value_tests=tuple(value_tests),
        series_checks=tuple(series_checks),
    )


def _value_test(check: pa.Check) -> _ValueTest | None:
    """A builtin check as a predicate on one non-null value, from the check's own statistics."""
    stats = check.statistics or {}
    if check.name == "isin":
        try:
            allowed = frozenset(stats["allowed_values"])
        except TypeError:  # unhashable allowed values: let pandera's own check decide
            return None
        return allowed.__contains__
    if check.name == "str_matches":
        pattern = re.compile(stats["pattern"])

        # pandas matches with RE2 where it gives the answer Python's re would and with re
        # otherwise; on ASCII text the two agree, anything else is left to pandera.
        def matches(value: Any) -> bool:
            return isinstance(value, str) and value.isascii() and bool(pattern.match(value))

        return matches
    if check.name == "str_length":
        low, high, exact = stats.get("min_value"), stats.get("max_value"), stats.get("exact_value")

        def has_length(value: Any) -> bool:
            if not isinstance(value, str):
                return False
            if exact is not None:
                return len(value) == exact
            return (low is None or len(value) >= low) and (high is None or len(value) <= high)

        return has_length
    if check.name == "greater_than":
        bound = stats["min_value"]
        return lambda value: value > bound
    if check.name == "greater_than_or_equal_to":
        bound = stats["min_value"]
        return lambda value: value >= bound
    return None


def _valid_if_clean(rules: _TableRules, frame: pd.DataFrame) -> pd.DataFrame | None:
    """The frame pandera would return when every row passes, or ``None`` when any row fails or
    the frame is unusual in a way pandera handles specially (duplicate or multi-level labels).

    ``frame`` is not modified. On a small frame each pandas call costs far more than the values
    it touches, so a column is only read when it has to be coerced or checked, and then once,
    as a list; a column already in the schema's dtype is kept as it is.
    """
    labels = frame.columns
    if labels.nlevels != 1 or not labels.is_unique:
        return None
    # A text Index converts each label it yields or lists; its array lists them in one call.
    names = _as_list(labels.array)
    others = [label for label in names if label not in rules.columns]
    if others and rules.refuse_other_columns:
        return None
    dtypes = dict(zip(names, frame.dtypes.tolist(), strict=True))
    coerced: dict[str, Any] = {}
    values: dict[str, list[Any]] = {}

    def checked_values(name: str) -> list[Any]:
        # The column's values as pandera checks them: after coercion.
        if name not in values:
            values[name] = _as_list(coerced[name] if name in coerced else column_array(frame, name))
        return values[name]

    try:
        for name, column in rules.columns.items():
            dtype = dtypes[name]
            if dtype is not column.dtype and dtype != column.dtype:
                coerced[name] = _coerce(frame[name], dtype, column)
            if not (column.check_nulls or column.value_tests or column.series_checks):
                continue
            present = _present(checked_values(name))
            if column.check_nulls and len(present) != len(checked_values(name)):
                return None
            for test in column.value_tests:
                if not all(map(test, present)):
                    return None
            for check in column.series_checks:
                series = pd.Series(coerced[name]) if name in coerced else frame[name]
                if not check(series).check_passed:
                    return None
        for key in rules.unique_keys:
            rows = list(zip(*map(checked_values, key), strict=True))
            if any(len(_present(row)) < len(row) for row in rows) or len(set(rows)) < len(rows):
                return None
        for alternatives in rules.one_of_columns:
            codes = map(checked_values, alternatives)
            if not all(_present(row) for row in zip(*codes, strict=True)):
                return None
        # Like pandera: schema columns keep their place, others go (strict="filter").
        valid = frame.drop(columns=others) if others else frame
        return valid.assign(**coerced) if coerced else valid.copy(deep=False)
    except Exception:  # a failed coercion or a value that cannot be compared: pandera says what
        return None


def _coerce(series: pd.Series, dtype: Any, column: _ColumnRules) -> Any:
    """pandera's coercion of a column to the schema's dtype (raises where pandera would fail)."""
    if _is_text(column.dtype) and _is_object(dtype):
        # pandera coerces with astype; astype and pd.array both hand these very objects to the
        # text dtype's _from_sequence, so the arrays are the same.
        return pd.array(series.to_numpy(), dtype=column.dtype)
    if column.dtype == np.dtype("datetime64[ns]") and _is_naive_datetime(dtype):
        # From a timezone-naive datetime column pandera's to_datetime step returns the column
        # unchanged, so its coercion is the unit conversion alone: each timestamp's count of
        # nanoseconds, which pandas computes (and refuses out of range) for the values read.
        stamps = series.tolist()
        return np.array([stamp.value for stamp in stamps], dtype=np.int64).view(column.dtype)
    coerced = column.column.dtype.try_coerce(series)
    if coerced.dtype != column.dtype:
        raise TypeError(f"{series.name} coerced to {coerced.dtype}, not {column.dtype}")
    return coerced


def column_values(frame: pd.DataFrame, name: str) -> list[Any]:
    """A column's values as a list of Python objects: missing text as ``None``, datetimes as
    nanosecond counts (NaT as ``None``).

    Several times faster than ``frame[name].tolist()`` on a few values, and faster on many.
    """
    return _as_list(column_array(frame, name))


def column_array(frame: pd.DataFrame, name: str) -> Any:
    """The array holding one column of a frame with unique labels, for reading only.

    ``frame[name].array`` builds a Series around it first: ten times the cost of the read on a
    small frame, and most of the cost of validating one claim. pandas has no public accessor
    without that, so the block manager's (stable since pandas 1.x) is used where it answers
    one whole column; anywhere else, the Series.
    """
    read = getattr(getattr(frame, "_mgr", None), "iget_values", None)
    if read is not None:
        position = frame.columns.get_loc(name)
        if isinstance(position, int):
            array = read(position)
            if getattr(array, "ndim", None) == 1 and len(array) == len(frame):
                return array
    return frame[name].array


def _as_list(array: Any) -> list[Any]:
    """An array's values as Python objects, in one call for the common kinds of array.

    Datetimes come out as nanosecond counts (``None`` for NaT), not timestamps: the fast path
    only looks for missing dates, and anything that would compare them with a timestamp
    raises and leaves the table to pandera."""
    if isinstance(array, pd.Series):
        array = array.array
    if isinstance(array, pd.arrays.ArrowExtensionArray):
        # Series.tolist goes through an object ndarray: ten times slower on a few values.
        return array.__arrow_array__().to_pylist()
    return (array if isinstance(array, np.ndarray) else array.to_numpy()).tolist()


def _has_default_index(frame: pd.DataFrame) -> bool:
    index = frame.index
    return (
        isinstance(index, pd.RangeIndex)
        and index.start == 0
        and index.step == 1
        and index.name is None
    )


def _is_object(dtype: Any) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind == "O"


def _is_text(dtype: Any) -> bool:
    return isinstance(dtype, pd.StringDtype)


def _is_naive_datetime(dtype: Any) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind == "M"


def _present(values: Sequence[Any]) -> list[Any]:
    """The values that are not missing. After coercion a missing value is None (a datetime
    array's NaT read back), NaN or NaT, the last two the only values unequal to themselves;
    ``pd.NA`` cannot even be compared and raises, which sends the table to pandera. Several times
    faster than ``pd.isna`` per value."""
    return [value for value in values if value is not None and value == value]


# -- contract frames built in their final dtypes -----------------------------------------------
# A frame of inferred dtypes, coerced to the contract's afterwards, costs pandas work per column
# twice: most of a one-claim API request. Plain Python values of the contract's types can go
# straight into the final dtype instead, and the fast path above then has nothing to coerce.

_NAT_DAY = np.iinfo(np.int64).min
"""numpy's missing day (NaT) as a day number."""
_UNIX_EPOCH_ORDINAL = 719_163
"""``datetime.date(1970, 1, 1).toordinal()``: day numbers count from it."""
_NANOSECONDS_PER_DAY = 86_400 * 10**9
_NANOSECOND_RANGE = (int(pd.Timestamp.min.value), int(pd.Timestamp.max.value))
_EXACT_TYPES: dict[np.dtype[Any], tuple[type, ...]] = {
    np.dtype(np.float64): (float, type(None)),  # None becomes NaN, as pandas and pandera make it
    np.dtype(np.int64): (int,),
    np.dtype(np.bool_): (bool,),
}
"""Python types that numpy converts to the dtype exactly as pandera's coercion would."""


def contract_frame(name: str, columns: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Table ``name`` built from columns of Python values, in the contract's dtypes.

    For valid values the frame equals what :func:`validate_table` makes of
    ``pd.DataFrame(columns)``, without building that frame first. Text as ``str`` (or ``None``),
    dates as ``datetime.date`` (or ``None``), and numbers and booleans as Python ``float``,
    ``int`` and ``bool`` go straight into the contract's dtype. If any column holds anything else
    (or a date that a nanosecond timestamp cannot hold), the frame is built by ``pd.DataFrame``
    from the columns as they are (dates as the second-resolution timestamps ``pd.to_datetime``
    makes of them), so validation coerces or quarantines them as it would any input. Nothing is
    checked here: the frame still has to be validated.
    """
    rules = _table_rules(name)
    typed: dict[str, Any] = {}
    all_typed = True
    text_dtypes: dict[str, Any] = {}
    for column, values in columns.items():
        rule = rules.columns.get(column) if rules is not None else None
        array = _typed_column(values, rule.dtype) if rule is not None else None
        if array is _ARROW_TEXT:
            text_dtypes[column] = rule.dtype if rule is not None else None
        elif array is None:
            all_typed = False
            array = values
            if rule is not None and rule.dtype == np.dtype(_DATE) and _all_dates(values):
                array = _day_numbers(values).view("datetime64[D]").astype("datetime64[s]")
        typed[column] = array
    if text_dtypes:
        typed.update(_arrow_text_columns(columns, text_dtypes))
    if not all_typed or create_dataframe_from_blocks is None:
        return pd.DataFrame(typed)
    return _frame_of_arrays(typed)


_ARROW_TEXT = object()
""":func:`_typed_column`'s answer for text that pyarrow holds as it is: built for all such
columns of a table at once by :func:`_arrow_text_columns`."""


def _typed_column(values: Sequence[Any], dtype: Any) -> Any:
    """The values as an array of ``dtype`` when they convert exactly as pandera's coercion
    converts them (:data:`_ARROW_TEXT` for text that pyarrow holds), else ``None``."""
    if _is_text(dtype):
        if not all(type(value) is str or value is None for value in values):
            return None
        if dtype.storage == "pyarrow":
            return _ARROW_TEXT
        return pd.array(np.array(values, dtype=object), dtype=dtype)
    if dtype == np.dtype(_DATE):
        if not _all_dates(values):
            return None
        days = _day_numbers(values)
        known = days[days != _NAT_DAY]
        low, high = _NANOSECOND_RANGE
        if len(known) and not (
            low <= int(known.min()) * _NANOSECONDS_PER_DAY
            and int(known.max()) * _NANOSECONDS_PER_DAY <= high
        ):
            return None  # out of range: pandera's coercion says how it fails
        return days.view("datetime64[D]").astype(dtype)
    exact_types = _EXACT_TYPES.get(dtype)
    if exact_types is None or not all(type(value) in exact_types for value in values):
        return None
    try:
        return np.array(values, dtype=dtype)
    except OverflowError:  # an int beyond int64
        return None


def _arrow_text_columns(
    columns: Mapping[str, Sequence[Any]], dtypes: dict[str, Any]
) -> dict[str, Any]:
    """The columns named in ``dtypes`` (``str`` or ``None`` values) as the arrays pd.array,
    pandera's coercion, makes of them: pyarrow large strings in their text dtype.

    One pyarrow array holds all of them, each column a slice of it: converting the values costs
    little, each call into pyarrow several microseconds.
    """
    every_value = [value for column in dtypes for value in columns[column]]
    text = pyarrow.array(every_value, type=pyarrow.large_string())
    arrays = {}
    start = 0
    for column, dtype in dtypes.items():
        length = len(columns[column])
        arrays[column] = pd.arrays.ArrowStringArray(text.slice(start, length), dtype=dtype)
        start += length
    return arrays


def _all_dates(values: Sequence[Any]) -> bool:
    # Exactly dates: a datetime (a subclass) has a time of day that day numbers would drop.
    return all(type(value) is dt.date or value is None for value in values)


def _day_numbers(dates: Sequence[dt.date | None]) -> np.ndarray:
    """Days since 1970-01-01 (NaT's number for ``None``): numpy's datetime64[D] values, without
    numpy's slow parsing of date objects or pd.to_datetime's fixed cost."""
    days = [_NAT_DAY if day is None else day.toordinal() - _UNIX_EPOCH_ORDINAL for day in dates]
    return np.array(days, dtype=np.int64)


def _frame_of_arrays(arrays: dict[str, Any]) -> pd.DataFrame:
    """A frame holding these equal-length arrays as they are (no inference, no copies).

    pd.DataFrame(arrays) would check and copy each again, several microseconds a column. Numpy
    arrays of one dtype share a block, as pandas would consolidate them.
    """
    assert create_dataframe_from_blocks is not None
    values = list(arrays.values())
    blocks: list[tuple[Any, np.ndarray]] = []
    positions_of: dict[np.dtype[Any], list[int]] = {}
    for position, array in enumerate(values):
        if isinstance(array, np.ndarray):
            positions_of.setdefault(array.dtype, []).append(position)
        else:
            blocks.append((array, np.array([position], dtype=np.intp)))
    for positions in positions_of.values():
        block = np.vstack([values[position] for position in positions])
        blocks.append((block, np.array(positions, dtype=np.intp)))
    rows = pd.RangeIndex(len(values[0]) if values else 0)
    return create_dataframe_from_blocks(blocks, index=rows, columns=_labels(tuple(arrays)))


@lru_cache(maxsize=64)
def _label_index(names: tuple[str, ...]) -> pd.Index:
    return pd.Index(list(names))


def _labels(names: tuple[str, ...]) -> pd.Index:
    """The column labels as pd.Index(names) makes them; one inference per table, then a view
    (its own name, shared values and lookup engine) for each frame."""
    return _label_index(names).view()


@dataclass
class ClaimsDataset:
    """All tables of one data set, validated. Missing optional tables are empty frames."""

    claims: pd.DataFrame
    lines: pd.DataFrame
    diagnoses: pd.DataFrame
    remittances: pd.DataFrame = field(default_factory=lambda: empty_table("remittances"))
    remit_lines: pd.DataFrame = field(default_factory=lambda: empty_table("remit_lines"))
    adjustments: pd.DataFrame = field(default_factory=lambda: empty_table("adjustments"))
    remarks: pd.DataFrame = field(default_factory=lambda: empty_table("remarks"))
    followups: pd.DataFrame = field(default_factory=lambda: empty_table("followups"))
    rejections: pd.DataFrame = field(default_factory=lambda: empty_table("rejections"))

    @classmethod
    def table_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def write(self, directory: str | Path) -> None:
        """Write every table as ``<name>.parquet`` into ``directory`` (created if needed)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name in self.table_names():
            getattr(self, name).to_parquet(out / f"{name}.parquet", index=False)

    @classmethod
    def read(cls, directory: str | Path) -> tuple[ClaimsDataset, pd.DataFrame]:
        """Read and validate a data set folder; return it with the quarantined rows.

        Claims whose lines or diagnoses were quarantined are quarantined too (a claim is scored
        whole or not at all), and their child rows are removed with them.
        """
        folder = Path(directory)
        if not folder.is_dir():
            raise FileNotFoundError(f"data set folder not found: {folder}")
        tables: dict[str, pd.DataFrame] = {}
        quarantined: list[pd.DataFrame] = []
        for name in cls.table_names():
            path = folder / f"{name}.parquet"
            if not path.exists():
                if name in ("claims", "lines", "diagnoses"):
                    raise FileNotFoundError(f"data set {folder} has no {name}.parquet")
                tables[name] = empty_table(name)
                continue
            valid, rejected = validate_table(name, pd.read_parquet(path))
            tables[name] = valid
            if len(rejected):
                quarantined.append(rejected)
        dataset = cls(**tables)
        rejects = pd.concat(quarantined, ignore_index=True) if quarantined else empty_rejects()
        return dataset.drop_incomplete_claims(rejects)

    def drop_incomplete_claims(self, rejects: pd.DataFrame) -> tuple[ClaimsDataset, pd.DataFrame]:
        """Quarantine claims with a rejected child row or with no service line at all."""
        self.claims, self.lines, self.diagnoses, all_rejects = quarantine_incomplete_claims(
            self.claims, self.lines, self.diagnoses, rejects
        )
        return self, all_rejects


def quarantine_incomplete_claims(
    claims: pd.DataFrame, lines: pd.DataFrame, diagnoses: pd.DataFrame, rejects: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """:meth:`ClaimsDataset.drop_incomplete_claims` on the three claim tables alone (no
    remittance tables to build); returns ``(claims, lines, diagnoses, rejects)``."""
    bad_ids: set[str] = set()
    if len(rejects):  # filtering an empty frame costs more than the rest on one claim
        child_rejects = rejects[rejects["table"].isin(["lines", "diagnoses"])]
        bad_ids = set(child_rejects.get("claim_id", pd.Series(dtype=str)).dropna())
    no_lines = set(claims["claim_id"]) - set(lines["claim_id"])
    extra: list[pd.DataFrame] = []
    if bad_ids:
        rows = claims[claims["claim_id"].isin(bad_ids)].copy()
        rows.insert(0, "table", "claims")
        rows["reason"] = "a service line or diagnosis of this claim failed validation"
        extra.append(rows)
    if no_lines:
        rows = claims[claims["claim_id"].isin(no_lines)].copy()
        rows.insert(0, "table", "claims")
        rows["reason"] = "claim has no valid service line"
        extra.append(rows)
    drop = bad_ids | no_lines
    if drop:
        claims = claims[~claims["claim_id"].isin(drop)].reset_index(drop=True)
        lines = lines[~lines["claim_id"].isin(drop)].reset_index(drop=True)
        diagnoses = diagnoses[~diagnoses["claim_id"].isin(drop)].reset_index(drop=True)
    all_rejects = pd.concat([rejects, *extra], ignore_index=True) if extra else rejects
    return claims, lines, diagnoses, all_rejects
