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

Columns added after a table's first version are *optional* (:data:`OPTIONAL_COLUMNS`): an input
without them (an older data set, a CSV export) reads as if they were empty. They carry the rest of
the claim a payer's edits can turn on (line-level authorizations, NDC and CLIA numbers,
attachments, accident and delay codes, other-payer loops, 835 dates and corrected member IDs);
ARCHITECTURE.md has the table of which 837/835 elements are kept.

A data set written by ``ingest`` has a manifest beside its tables, ``dataset.json``
(:class:`DatasetManifest`, :func:`read_manifest`, :func:`write_manifest`): rows per table, the
latest payment and submission dates, and a fingerprint and version that change with the tables.

Money is in dollars, rounded to cents; dates are calendar days (midnight timestamps).
The simulator's ground truth (``truth.parquet``) is *not* part of the contract: no model reads it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import cache, lru_cache, reduce
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
from pandera.config import ValidationDepth, get_config_context
from pandera.errors import SchemaErrors

from features.codes import PAYER_TYPES

# pandas >= 3.0; older versions build contract frames with the DataFrame constructor. A private
# internal kept for what it buys (tests/unit/test_private_internals.py fails if it changes).
try:
    from pandas.api.internals import create_dataframe_from_blocks
except ImportError:  # pragma: no cover
    create_dataframe_from_blocks = None

PROCEDURE_CODE_PATTERN = r"^[A-Z0-9][0-9]{3}[A-Z0-9]$"
ICD10_PATTERN = r"^[A-TV-Z][0-9][0-9A-Z]{0,5}$"
NPI_PATTERN = r"^[0-9]{10}$"
KEY_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
"""A claim's, payer's or member's ID: at least one visible character and no control character
(a blank or NUL-bearing ID would group unrelated claims as one history)."""

_DATE = "datetime64[ns]"


def _text(nullable: bool = False, **kwargs: object) -> pa.Column:
    return pa.Column(str, nullable=nullable, coerce=True, **kwargs)  # type: ignore[arg-type]


def _date(nullable: bool = False) -> pa.Column:
    return pa.Column(_DATE, nullable=nullable, coerce=True)


def _money(nullable: bool = False) -> pa.Column:
    return pa.Column(float, nullable=nullable, coerce=True)


CLAIMS = pa.DataFrameSchema(
    {
        "claim_id": _text(checks=[pa.Check.str_length(1, 38), pa.Check.str_matches(KEY_PATTERN)]),
        "submission_date": _date(),
        "claim_type": _text(checks=pa.Check.isin(["professional", "institutional"])),
        # 1 original, 7 replacement, 8 void; institutional bills use the other digits too.
        "frequency_code": _text(checks=pa.Check.str_matches(r"^[0-9A-Z]$")),
        "original_payer_claim_number": _text(nullable=True),
        "payer_id": _text(checks=pa.Check.str_matches(KEY_PATTERN)),
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
        "patient_id": _text(checks=pa.Check.str_matches(KEY_PATTERN)),
        "patient_birth_date": _date(nullable=True),
        "patient_sex": _text(nullable=True, checks=pa.Check.isin(["M", "F", "U"])),
        "prior_auth_number": _text(nullable=True),
        "referral_number": _text(nullable=True),
        "has_other_coverage": pa.Column(bool, coerce=True),
        # -- optional (see OPTIONAL_COLUMNS) --
        # 2000B SBR01: P primary, S secondary, T tertiary (A-H: payer 4 to 11).
        "payer_responsibility": _text(nullable=True),
        # SBR03 group or policy number; SBR02/PAT01 relationship (18 self, 01 spouse, 19 child).
        "subscriber_group_number": _text(nullable=True),
        "patient_relationship": _text(nullable=True),
        # A stable key of the patient across payers and member IDs (the practice's account
        # number; X12 ingest: a hash of name, birth date and sex). A key, never a feature.
        "patient_key": _text(nullable=True),
        "patient_state": _text(nullable=True),
        "subscriber_state": _text(nullable=True),
        "billing_state": _text(nullable=True),
        # PRV of the billing provider (2000A) and of the rendering provider (2310B);
        # provider_taxonomy above is the rendering one, else the billing one.
        "billing_taxonomy": _text(nullable=True),
        "rendering_taxonomy": _text(nullable=True),
        # 2310C service facility location (NM1*77).
        "service_facility_npi": _text(nullable=True),
        "service_facility_state": _text(nullable=True),
        # CLM20 delay reason code (1-11, 15): why a claim is sent late.
        "delay_reason_code": _text(nullable=True),
        # CLM11: related causes joined by commas (AA auto accident, EM employment, OA other
        # accident) and the auto accident's state.
        "related_causes": _text(nullable=True),
        "auto_accident_state": _text(nullable=True),
        # CRC*ZZ EPSDT referral indicator (Y/N), 837P.
        "epsdt_indicator": _text(nullable=True),
        "accident_date": _date(nullable=True),
        "onset_date": _date(nullable=True),
        "initial_treatment_date": _date(nullable=True),
        # 2300 PWK: report types (PWK01) and transmission codes (PWK02), joined by commas in
        # segment order (e.g. "09" and "FX"; AA = available on request).
        "attachment_types": _text(nullable=True),
        "attachment_transmission": _text(nullable=True),
        # 2300 NTE text. Kept as written; never logged, never a feature beyond its presence.
        "claim_note": _text(nullable=True),
        "clia_number": _text(nullable=True),
        # 2320/2330 other payer (the first one; its paid amount summed over all of them).
        "other_payer_id": _text(nullable=True),
        "other_payer_responsibility": _text(nullable=True),
        "other_payer_filing_indicator": _text(nullable=True),
        "other_payer_paid_amount": _money(nullable=True),
        "other_payer_adjudication_date": _date(nullable=True),
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
        # -- optional (see OPTIONAL_COLUMNS) --
        # Line-level fields are prefixed ``line_`` where the claim has a field of the same name,
        # so a flat claim-lines layout (one row per line, claim fields repeated) can hold both.
        # 2400 REF*G1 / REF*9F: authorization and referral of this line.
        "line_prior_auth_number": _text(nullable=True),
        "line_referral_number": _text(nullable=True),
        # 2410 LIN*N4 drug identification and its CTP quantity and unit (UN, ML, GR, F2, ME).
        "ndc_code": _text(nullable=True),
        "ndc_quantity": pa.Column(float, nullable=True, coerce=True),
        "ndc_unit": _text(nullable=True),
        "line_note": _text(nullable=True),
        "line_attachment_types": _text(nullable=True),
        "line_attachment_transmission": _text(nullable=True),
        # 2420A rendering and 2420E/F ordering or referring provider of this line.
        "line_rendering_npi": _text(nullable=True),
        "line_referring_npi": _text(nullable=True),
        # SV105 place of service of this line (when it differs from the claim's).
        "line_place_of_service": _text(nullable=True),
        "line_clia_number": _text(nullable=True),
        # SV103 unit basis: UN units, MJ minutes.
        "unit_basis": _text(nullable=True),
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
        # -- optional (see OPTIONAL_COLUMNS) --
        # CLP06 claim filing indicator and CLP09 frequency code, as the payer adjudicated it.
        "claim_filing_indicator": _text(nullable=True),
        "frequency_code": _text(nullable=True),
        # NM1*QC patient and NM1*IL insured member IDs; NM1*74 the corrected member ID the
        # payer has on file (a registration error the next claim can avoid).
        "patient_member_id": _text(nullable=True),
        "insured_member_id": _text(nullable=True),
        "corrected_member_id": _text(nullable=True),
        # DTM*232/233 statement period, DTM*050 received, DTM*036 coverage expiration.
        "statement_from": _date(nullable=True),
        "statement_to": _date(nullable=True),
        "received_date": _date(nullable=True),
        "coverage_expiration_date": _date(nullable=True),
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
        # -- optional (see OPTIONAL_COLUMNS) --
        "modifier_1": _text(nullable=True),
        "modifier_2": _text(nullable=True),
        "modifier_3": _text(nullable=True),
        "modifier_4": _text(nullable=True),
        # SVC06: the code as submitted, when the payer adjudicated another one (SVC01).
        "original_procedure_code": _text(nullable=True),
        "service_date": _date(nullable=True),
        "allowed_amount": _money(nullable=True),
        # REF*6R line item control number (which submitted line this is).
        "line_control_number": _text(nullable=True),
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
        # -- optional: the segment the remark came in (MOA, MIA or LQ) --
        "source": _text(nullable=True),
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

OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "claims": (
        "payer_responsibility", "subscriber_group_number", "patient_relationship", "patient_key",
        "patient_state", "subscriber_state", "billing_state", "billing_taxonomy",
        "rendering_taxonomy", "service_facility_npi", "service_facility_state",
        "delay_reason_code", "related_causes", "auto_accident_state", "epsdt_indicator",
        "accident_date", "onset_date", "initial_treatment_date", "attachment_types",
        "attachment_transmission", "claim_note", "clia_number", "other_payer_id",
        "other_payer_responsibility", "other_payer_filing_indicator", "other_payer_paid_amount",
        "other_payer_adjudication_date",
    ),
    "lines": (
        "line_prior_auth_number", "line_referral_number", "ndc_code", "ndc_quantity", "ndc_unit",
        "line_note", "line_attachment_types", "line_attachment_transmission",
        "line_rendering_npi", "line_referring_npi", "line_place_of_service", "line_clia_number",
        "unit_basis",
    ),
    "remittances": (
        "claim_filing_indicator", "frequency_code", "patient_member_id", "insured_member_id",
        "corrected_member_id", "statement_from", "statement_to", "received_date",
        "coverage_expiration_date",
    ),
    "remit_lines": (
        "modifier_1", "modifier_2", "modifier_3", "modifier_4", "original_procedure_code",
        "service_date", "allowed_amount", "line_control_number",
    ),
    "remarks": ("source",),
}  # fmt: skip
"""Columns an input may lack (data sets written before they existed, CSV exports): they read as
empty. Every one is nullable."""

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
    "payer_id": "a payer ID with a visible character and no control character",
    "patient_id": "a member ID with a visible character and no control character",
    "line_number": "a line number of 1 or more",
    "position": "a diagnosis position of 1 or more",
    "payer_type": f"one of {', '.join(PAYER_TYPES)}",
    "frequency_code": "a one-character claim frequency code (1 original, 7 replacement, 8 void)",
    "group_code": "a CAS group code: CO, PR, PI, OA or CR",
    "claim_type": "professional or institutional",
    "patient_sex": "M, F or U",
}


IDENTIFYING_COLUMNS = frozenset(
    {
        "patient_id",
        "patient_key",
        "patient_birth_date",
        "subscriber_group_number",
        "patient_member_id",
        "insured_member_id",
        "corrected_member_id",
        "claim_note",
        "line_note",
    }
)
"""Columns that identify a patient, or are free text that may: no quarantine reason, report or
error repeats their values (the data set's own tables hold them)."""

REJECT_KEY_COLUMNS = ("table", "file", "position", "claim_id", "remit_id", "line_number")
"""What locates a quarantined row in its input: a rejects file holds these and the reason."""


def rejects_report(rejects: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows as a rejects file shows them: where each row is and why it was
    quarantined, not its values (a claim row holds the member ID, birth date and notes; the
    input has them, at the place the keys say)."""
    return rejects[[c for c in rejects.columns if c in REJECT_KEY_COLUMNS or c == "reason"]]


def _reason(column: str, check: str, value: object) -> str:
    if check in ("not_nullable", "column_in_dataframe") or pd.isna(value):
        return f"{column} is required but empty"
    shown = "(value not repeated)" if column in IDENTIFYING_COLUMNS else repr(value)
    if "unique" in check or check == "field_uniqueness":
        return f"{column} {shown} appears more than once"
    expected = _EXPECTED.get(column)
    if expected:
        return f"{column} {shown} is not {expected}"
    if check.startswith("coerce_dtype") or "dtype" in check:
        return f"{column} {shown} has the wrong type ({check})"
    return f"{column} {shown} fails {check}"


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
    frame = with_optional_columns(name, frame)
    schema = _schema_with_all_columns(name, frame)
    frame, out_of_range = _without_dates_out_of_range(schema, frame)
    if len(frame) <= _FAST_PATH_MAX_ROWS and _pandera_checks_data():
        rules = _table_rules(name)
        # The fast path never returns the frame it is given, so resetting a default index first
        # (a copy of every column) would buy nothing.
        plain = frame if _has_default_index(frame) else frame.reset_index(drop=True)
        valid = _valid_if_clean(rules, plain) if rules is not None else None
        if valid is not None:
            return valid, _with_rejects(name, out_of_range, None)
    valid, rejected = _pandera_validate(name, schema, frame.reset_index(drop=True))
    return valid, _with_rejects(name, out_of_range, rejected)


def _validate_table_with_pandera(
    name: str, frame: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`validate_table` without the fast path: the reference the fast path must equal."""
    frame = with_optional_columns(name, frame)
    schema = _schema_with_all_columns(name, frame)
    frame, out_of_range = _without_dates_out_of_range(schema, frame)
    valid, rejected = _pandera_validate(name, schema, frame.reset_index(drop=True))
    combined = _with_rejects(name, out_of_range, rejected)
    return valid, empty_rejects() if combined is None else combined


DATE_RANGE = (pd.Timestamp("1677-09-22"), pd.Timestamp("2262-04-11"))
"""The dates a table can hold (pandas' nanosecond timestamps); a claim with a date outside is
quarantined, not the whole batch it came in."""


def _without_dates_out_of_range(
    schema: pa.DataFrameSchema, frame: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``frame`` without the rows holding a date outside :data:`DATE_RANGE`, and those rows
    with their reason (``None`` when there are none).

    pandera coerces a date column as a whole: one birth date of 0001-01-01 failed the column,
    so every claim in the table. Dates that do not parse are left to pandera, which names them
    row by row. The reason does not repeat the date (a birth date is the patient's)."""
    bad = np.zeros(len(frame), dtype=bool)
    reasons: dict[int, list[str]] = {}  # bad rows only: a data set's read has millions of rows
    for column, spec in schema.columns.items():
        if str(spec.dtype) != _DATE or column not in frame.columns:
            continue
        if column_array(frame, column).dtype == np.dtype(_DATE):  # without a Series
            continue  # nanosecond dates are within the range by construction
        values = frame[column]
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            parsed = values
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "could not infer format"
                parsed = pd.to_datetime(values, errors="coerce")
                # The format is inferred from the first value: values written otherwise (a
                # few, or none) are parsed one by one.
                again = parsed.isna() & values.notna()
                if again.any():
                    parsed = parsed.astype("datetime64[s]")
                    parsed[again] = pd.to_datetime(values[again], errors="coerce", format="mixed")
        outside = (
            parsed.notna() & ((parsed < DATE_RANGE[0]) | (parsed > DATE_RANGE[1]))
        ).to_numpy()
        for row in np.flatnonzero(outside):
            reasons.setdefault(int(row), []).append(
                f"{column} is outside the dates a claim can hold "
                f"({DATE_RANGE[0]:%Y-%m-%d} to {DATE_RANGE[1]:%Y-%m-%d})"
            )
        bad |= outside
    if not bad.any():
        return frame, None
    rejected = frame[bad].reset_index(drop=True)
    for column in rejected.columns:
        if pd.api.types.is_datetime64_any_dtype(rejected[column].dtype):
            # As objects: quarantined rows are concatenated with others' nanosecond dates.
            rejected[column] = rejected[column].astype(object)
    rejected["reason"] = ["; ".join(reasons[int(row)]) for row in np.flatnonzero(bad)]
    return frame[~bad], rejected


def _with_rejects(
    name: str, out_of_range: pd.DataFrame | None, rejected: pd.DataFrame | None
) -> pd.DataFrame | None:
    """Rows quarantined for their dates before validation, then those validation rejected."""
    if out_of_range is None:
        return rejected
    out_of_range.insert(0, "table", name)
    if rejected is None or rejected.empty:
        return out_of_range
    return pd.concat([out_of_range, rejected], ignore_index=True)


def with_optional_columns(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the table's optional columns it lacks added as empty (a shallow copy when
    any is added; the frame itself otherwise)."""
    absent = [c for c in OPTIONAL_COLUMNS.get(name, ()) if c not in frame.columns]
    if not absent:
        return frame
    # Missing text, dates and amounts alike: pandera coerces None to the column's dtype.
    return frame.assign(**{column: None for column in absent})


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
    it touches, so each schema column is read once as an array (its dtype from it, not from
    ``frame.dtypes``, which builds a Series), coerced only when not in the schema's dtype, and
    listed only when checked; a column already in the schema's dtype is kept as it is.
    """
    labels = frame.columns
    if labels.nlevels != 1 or not labels.is_unique:
        return None
    # A text Index converts each label it yields or lists; its array lists them in one call.
    names = _as_list(labels.array)
    others = [label for label in names if label not in rules.columns]
    if others and rules.refuse_other_columns:
        return None
    coerced: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    values: dict[str, list[Any]] = {}

    def checked_values(name: str) -> list[Any]:
        # The column's values as pandera checks them: after coercion.
        if name not in values:
            values[name] = _as_list(arrays[name])
        return values[name]

    def checked_series(name: str) -> pd.Series:
        return pd.Series(coerced[name]) if name in coerced else frame[name]

    try:
        for name, column in rules.columns.items():
            array = _unwrapped(column_array(frame, name))
            dtype = array.dtype
            if dtype is not column.dtype and dtype != column.dtype:
                array = coerced[name] = _coerce(frame[name], dtype, column)
            arrays[name] = array
        if not _rows_pass(rules, checked_values, checked_series):
            return None
        # Like pandera: schema columns keep their place, others go (strict="filter").
        valid = frame.drop(columns=others) if others else frame
        return valid.assign(**coerced) if coerced else valid.copy(deep=False)
    except Exception:  # a failed coercion or a value that cannot be compared: pandera says what
        return None


def _unwrapped(array: Any) -> Any:
    """A column's array with the dtype ``frame.dtypes`` gives: numpy values read through a
    Series (``Series.array``) come wrapped in a NumpyExtensionArray of another dtype."""
    return array.to_numpy() if isinstance(array, pd.arrays.NumpyExtensionArray) else array


def _rows_pass(
    rules: _TableRules,
    values_of: Callable[[str], Sequence[Any]],
    series_of: Callable[[str], pd.Series],
) -> bool:
    """Whether every row passes the table's rules, given each schema column's values as
    pandera checks them (coerced; missing text as None, datetimes as nanosecond counts) and
    as a Series for checks without a per-value form. Raises where a value cannot be compared.
    """
    for name, column in rules.columns.items():
        if not (column.check_nulls or column.value_tests or column.series_checks):
            continue
        values = values_of(name)
        present = _present(values)
        if column.check_nulls and len(present) != len(values):
            return False
        for test in column.value_tests:
            if not all(map(test, present)):
                return False
        for check in column.series_checks:
            if not check(series_of(name)).check_passed:
                return False
    for key in rules.unique_keys:
        rows = list(zip(*map(values_of, key), strict=True))
        if any(len(_present(row)) < len(row) for row in rows) or len(set(rows)) < len(rows):
            return False
    for alternatives in rules.one_of_columns:
        codes = map(values_of, alternatives)
        if not all(_present(row) for row in zip(*codes, strict=True)):
            return False
    return True


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
    one whole column; anywhere else, the Series. A private internal kept for what it buys
    (BENCHMARKS.md, private internals; tests/unit/test_private_internals.py fails if it changes).
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

_TEXT, _ARROW_TEXT, _DATES, _EXACT = "text", "arrow text", "dates", "exact"
"""How :func:`contract_frame` builds a column: text of another storage (``pd.array``), pyarrow
text (all such columns of a table in one call), dates (day numbers, all columns at once),
numbers and booleans (numpy, from the Python types in :data:`_EXACT_TYPES`)."""


@cache
def _column_kinds(name: str) -> dict[str, str]:
    """The table's columns that :func:`contract_frame` builds itself, and how; any other column
    (a dtype not listed above, or no fast-path rules for the table) is left to pandas."""
    rules = _table_rules(name)
    kinds = {}
    for column, rule in rules.columns.items() if rules is not None else ():
        if _is_text(rule.dtype):
            kinds[column] = _ARROW_TEXT if rule.dtype.storage == "pyarrow" else _TEXT
        elif rule.dtype == np.dtype(_DATE):
            kinds[column] = _DATES
        elif rule.dtype in _EXACT_TYPES:
            kinds[column] = _EXACT
    return kinds


def contract_frame(name: str, columns: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Table ``name`` built from columns of Python values, in the contract's dtypes.

    For valid values the frame equals what :func:`validate_table` makes of
    ``pd.DataFrame(columns)``, without building that frame first. Text as ``str`` (or ``None``),
    dates as ``datetime.date`` (or ``None``), and numbers and booleans as Python ``float``,
    ``int`` and ``bool`` go straight into the contract's dtype. If any column holds anything else
    (or a date that a nanosecond timestamp cannot hold), the frame is built by ``pd.DataFrame``
    from the columns as they are (dates as the second-resolution timestamps ``pd.to_datetime``
    makes of them), so validation coerces or quarantines them as it would any input.

    The frame still has to be validated; the fast path then has nothing to convert. (Checking
    the rows on the values given and recording the result on the frame, trusted while its
    blocks were unchanged, saved 9% of a one-claim request: too little for reading pandas'
    block manager to tell "unchanged"; BENCHMARKS.md, private internals.)
    """
    if len({len(values) for values in columns.values()}) > 1:
        return pd.DataFrame(dict(columns))  # pandas' error for columns of unequal lengths
    rules = _table_rules(name)
    kinds = _column_kinds(name)
    arrays: dict[str, Any] = {}  # in the order given; None until built below
    arrow_text: dict[str, Any] = {}
    dates: list[str] = []
    all_typed = True
    for column, values in columns.items():
        kind = kinds.get(column)
        array: Any = None
        if kind is not None:
            dtype = rules.columns[column].dtype if rules is not None else None
            if kind in (_ARROW_TEXT, _TEXT):
                if all(type(value) is str or value is None for value in values):
                    if kind == _ARROW_TEXT:
                        arrow_text[column] = dtype
                        arrays[column] = None
                        continue
                    array = pd.array(np.array(values, dtype=object), dtype=dtype)
            elif kind == _DATES:
                if _all_dates(values):
                    dates.append(column)
                    arrays[column] = None
                    continue
            else:
                array = _exact_array(values, dtype)
        if array is None:
            all_typed = False
            array = values
        arrays[column] = array
    if arrow_text:
        arrays.update(_arrow_text_columns(columns, arrow_text))
    date_block = _date_block(columns, dates, arrays) if dates else None
    if date_block is None and dates:
        all_typed = False  # a date out of the nanosecond range: pandera says how it fails
    if not all_typed or create_dataframe_from_blocks is None:
        return pd.DataFrame(arrays)
    return _frame_of_blocks(_block_layout(name, tuple(arrays)), arrays, date_block)


def _exact_array(values: Sequence[Any], dtype: Any) -> np.ndarray | None:
    """The values as a numpy array of ``dtype`` when numpy converts them exactly as pandera's
    coercion would (see :data:`_EXACT_TYPES`), else ``None``."""
    exact_types = _EXACT_TYPES[dtype]
    if not all(type(value) in exact_types for value in values):
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
    little, each call into pyarrow several microseconds. The array is chunked, as each column's
    would be, so that the text arrays take their slices as they are.
    """
    every_value = [value for column in dtypes for value in columns[column]]
    text = pyarrow.chunked_array([pyarrow.array(every_value, type=pyarrow.large_string())])
    arrays = {}
    start = 0
    for column, dtype in dtypes.items():
        length = len(columns[column])
        arrays[column] = pd.arrays.ArrowStringArray(text.slice(start, length), dtype=dtype)
        start += length
    return arrays


def _date_block(
    columns: Mapping[str, Sequence[Any]], dates: list[str], arrays: dict[str, Any]
) -> np.ndarray | None:
    """The date columns (``datetime.date`` or ``None`` values) as one datetime64[ns] block, a
    row per column, each row also put in ``arrays``; ``None`` when a date is out of the
    nanosecond range, with each column that has one as the second-resolution dates pandas
    makes of it instead."""
    days = np.array([_day_numbers(columns[column]) for column in dates], dtype=np.int64)
    known = days[days != _NAT_DAY]
    low, high = _NANOSECOND_RANGE
    if not len(known) or (
        low <= int(known.min()) * _NANOSECONDS_PER_DAY
        and int(known.max()) * _NANOSECONDS_PER_DAY <= high
    ):
        block = days.view("datetime64[D]").astype(_DATE)
        arrays.update(zip(dates, block, strict=True))
        return block
    for column, row in zip(dates, days, strict=True):
        known = row[row != _NAT_DAY]
        in_range = not len(known) or (
            low <= int(known.min()) * _NANOSECONDS_PER_DAY
            and int(known.max()) * _NANOSECONDS_PER_DAY <= high
        )
        arrays[column] = row.view("datetime64[D]").astype(_DATE if in_range else "datetime64[s]")
    return None


def _all_dates(values: Sequence[Any]) -> bool:
    # Exactly dates: a datetime (a subclass) has a time of day that day numbers would drop.
    return all(type(value) is dt.date or value is None for value in values)


def _day_numbers(dates: Sequence[dt.date | None]) -> list[int]:
    """Days since 1970-01-01 (NaT's number for ``None``): numpy's datetime64[D] values, without
    numpy's slow parsing of date objects or pd.to_datetime's fixed cost."""
    return [_NAT_DAY if day is None else day.toordinal() - _UNIX_EPOCH_ORDINAL for day in dates]


@dataclass(frozen=True)
class _BlockLayout:
    """Where each column of a contract frame goes among pandas' blocks: one per extension
    array (text), one 2-D block for the dates and one per numpy dtype, as pandas would
    consolidate them. The placements are read-only templates: each frame gets its own copy
    (pandas keeps the array it is given, and copies a read-only one itself at a higher cost)."""

    labels: tuple[str, ...]
    extension_arrays: tuple[tuple[str, np.ndarray], ...]
    dates: np.ndarray | None
    numpy_columns: tuple[tuple[tuple[str, ...], np.ndarray], ...]


@lru_cache(maxsize=64)
def _block_layout(name: str, labels: tuple[str, ...]) -> _BlockLayout:
    kinds = _column_kinds(name)
    extension_arrays: list[tuple[str, np.ndarray]] = []
    dates: list[int] = []
    numpy_columns: dict[Any, list[tuple[str, int]]] = {}
    rules = _table_rules(name)
    # Narrows the type for mypy (only tables with rules are built).
    assert rules is not None  # noqa: S101
    for position, column in enumerate(labels):
        kind = kinds[column]
        if kind in (_TEXT, _ARROW_TEXT):
            extension_arrays.append((column, _placement([position])))
        elif kind == _DATES:
            dates.append(position)
        else:
            numpy_columns.setdefault(rules.columns[column].dtype, []).append((column, position))
    return _BlockLayout(
        labels=labels,
        extension_arrays=tuple(extension_arrays),
        dates=_placement(dates) if dates else None,
        numpy_columns=tuple(
            (tuple(column for column, _ in group), _placement([p for _, p in group]))
            for group in numpy_columns.values()
        ),
    )


def _placement(positions: list[int]) -> np.ndarray:
    placement = np.array(positions, dtype=np.intp)
    placement.flags.writeable = False
    return placement


def _frame_of_blocks(
    layout: _BlockLayout, arrays: dict[str, Any], date_block: np.ndarray | None
) -> pd.DataFrame:
    """A frame holding these equal-length arrays as they are (no inference, no copies).

    pd.DataFrame(arrays) would check and copy each again, several microseconds a column: 14%
    of a one-claim API request, and with :func:`column_array`'s reads a third of it
    (BENCHMARKS.md, private internals).
    """
    # Narrows the type for mypy (its caller checked).
    assert create_dataframe_from_blocks is not None  # noqa: S101
    blocks: list[tuple[Any, np.ndarray]] = [
        (arrays[column], placement.copy()) for column, placement in layout.extension_arrays
    ]
    if layout.dates is not None:
        blocks.append((date_block, layout.dates.copy()))
    for names, placement in layout.numpy_columns:
        if len(names) == 1:
            block = arrays[names[0]].reshape(1, -1)
        else:
            block = np.vstack([arrays[column] for column in names])
        blocks.append((block, placement.copy()))
    rows = pd.RangeIndex(len(arrays[layout.labels[0]]) if layout.labels else 0)
    return create_dataframe_from_blocks(blocks, index=rows, columns=_labels(layout.labels))


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
        """Write every table as ``<name>.parquet`` into ``directory`` (created if needed), each
        file complete or absent. A folder missing tables still reads (as empty tables): a
        command whose output is a data set writes it with ``features.atomic.atomic_folder``."""
        from features.atomic import atomic_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name in self.table_names():
            with atomic_file(out / f"{name}.parquet") as temp:
                getattr(self, name).to_parquet(temp, index=False)

    @classmethod
    def read(
        cls, directory: str | Path, only: Sequence[str] | None = None
    ) -> tuple[ClaimsDataset, pd.DataFrame]:
        """Read and validate a data set folder; return it with the quarantined rows.

        Claims whose lines or diagnoses were quarantined are quarantined too (a claim is scored
        whole or not at all), and their child rows are removed with them. ``only`` names the
        tables to read (the claim tables always are); the others are left empty, unread.
        """
        folder = Path(directory)
        if not folder.is_dir():
            raise FileNotFoundError(f"data set folder not found: {folder}")
        tables: dict[str, pd.DataFrame] = {}
        quarantined: list[pd.DataFrame] = []
        wanted = None if only is None else {*only, *CLAIM_TABLES}
        for name in cls.table_names():
            path = folder / f"{name}.parquet"
            if wanted is not None and name not in wanted:
                tables[name] = empty_table(name)
                continue
            if not path.exists():
                if name in CLAIM_TABLES:
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

    def known_before(self, day: dt.date | pd.Timestamp) -> ClaimsDataset:
        """The data set as the practice had it on ``day``: claims submitted before it,
        remittances paid before it (with their lines, adjustments and remarks), rejections
        received before it, and follow-ups taken before it, unanswered if the payer answered on
        or after it. A model trained on it has seen nothing from ``day`` on (a champion of the
        past, to compare with a newer model on what came later)."""
        cut = pd.Timestamp(day)
        claims = self.claims[self.claims["submission_date"] < cut]
        kept = claims["claim_id"]
        remittances = self.remittances[self.remittances["remit_date"] < cut]
        paid = remittances["remit_id"]
        followups = self.followups[self.followups["action_date"] < cut].copy()
        later = followups["resolved_date"].notna() & (followups["resolved_date"] >= cut)
        followups.loc[later, "resolved_date"] = pd.NaT
        followups.loc[later, "recovered"] = False
        followups.loc[later, "recovered_amount"] = 0.0

        def of(frame: pd.DataFrame, key: str, values: pd.Series) -> pd.DataFrame:
            return frame[frame[key].isin(values)].reset_index(drop=True)

        return ClaimsDataset(
            claims=claims.reset_index(drop=True),
            lines=of(self.lines, "claim_id", kept),
            diagnoses=of(self.diagnoses, "claim_id", kept),
            remittances=remittances.reset_index(drop=True),
            remit_lines=of(self.remit_lines, "remit_id", paid),
            adjustments=of(self.adjustments, "remit_id", paid),
            remarks=of(self.remarks, "remit_id", paid),
            followups=followups.reset_index(drop=True),
            rejections=self.rejections[self.rejections["rejection_date"] < cut].reset_index(
                drop=True
            ),
        )

    def drop_incomplete_claims(self, rejects: pd.DataFrame) -> tuple[ClaimsDataset, pd.DataFrame]:
        """Quarantine claims with a rejected child row or with no service line at all."""
        self.claims, self.lines, self.diagnoses, all_rejects = quarantine_incomplete_claims(
            self.claims, self.lines, self.diagnoses, rejects
        )
        return self, all_rejects


CLAIM_TABLES = ("claims", "lines", "diagnoses")
"""The tables of claims as submitted (an 837's content): what scoring reads."""


def quarantine_incomplete_claims(
    claims: pd.DataFrame, lines: pd.DataFrame, diagnoses: pd.DataFrame, rejects: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """:meth:`ClaimsDataset.drop_incomplete_claims` on the three claim tables alone (no
    remittance tables to build); returns ``(claims, lines, diagnoses, rejects)``."""
    bad_ids: set[str] = set()
    if len(rejects):  # filtering an empty frame costs more than the rest on one claim
        child_rejects = rejects[rejects["table"].isin(["lines", "diagnoses"])]
        bad_ids = set(child_rejects.get("claim_id", pd.Series(dtype=str)).dropna())
    no_lines = set(claims.loc[~ids_in(claims["claim_id"], lines["claim_id"]), "claim_id"].dropna())
    extra: list[pd.DataFrame] = []
    if bad_ids:
        rows = claims[ids_in(claims["claim_id"], bad_ids)].copy()
        rows.insert(0, "table", "claims")
        rows["reason"] = "a service line or diagnosis of this claim failed validation"
        extra.append(rows)
    if no_lines:
        rows = claims[ids_in(claims["claim_id"], no_lines)].copy()
        rows.insert(0, "table", "claims")
        rows["reason"] = "claim has no valid service line"
        extra.append(rows)
    drop = bad_ids | no_lines
    if drop:
        claims = claims[~ids_in(claims["claim_id"], drop)].reset_index(drop=True)
        lines = lines[~ids_in(lines["claim_id"], drop)].reset_index(drop=True)
        diagnoses = diagnoses[~ids_in(diagnoses["claim_id"], drop)].reset_index(drop=True)
    all_rejects = pd.concat([rejects, *extra], ignore_index=True) if extra else rejects
    return claims, lines, diagnoses, all_rejects


def ids_in(ids: pd.Series, wanted: pd.Series | set[str]) -> np.ndarray:
    """Whether each ID is among ``wanted``, as a boolean array (missing IDs: no).

    By pyarrow's hash set for pyarrow text, else by a hash index: pandas' ``isin`` of pyarrow
    text took seconds per 200,000 claims (and Python sets of them half a second).
    """
    values = pd.Series(sorted(wanted), dtype=ids.dtype) if isinstance(wanted, set) else wanted
    if isinstance(ids.dtype, pd.StringDtype) and ids.dtype.storage == "pyarrow":
        id_array = ids.array.__arrow_array__()
        as_arrow = getattr(values.array, "__arrow_array__", None)
        value_set = (
            pyarrow.chunked_array(as_arrow()).combine_chunks()
            if as_arrow is not None
            else pyarrow.array(values.dropna().astype(str).tolist())
        )
        found = pc.is_in(id_array, value_set=value_set.cast(id_array.type))
        return np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(pd.Index(pd.unique(values.dropna())).get_indexer(ids) >= 0)


# -- the data set's manifest ---------------------------------------------------------------------
MANIFEST_FILE = "dataset.json"
"""Beside a data set's tables: what they hold and how recent they are (:class:`DatasetManifest`)."""


@dataclass(frozen=True)
class DatasetManifest:
    """What a data set folder holds, readable without reading its tables.

    Attributes
    ----------
    fingerprint
        SHA-256 over every table file's bytes: changes whenever a table changes, stays when a
        run added nothing.
    version
        1 for a new data set, one more each time its fingerprint changed.
    updated_at
        When a table last changed (ISO 8601, UTC).
    rows
        Rows per table.
    latest_remit_date, latest_submission_date
        The last payment (835) date and the last claim submission date (``YYYY-MM-DD``), or
        None when the table is empty: how far the data set's history reaches.
    """

    fingerprint: str
    version: int
    updated_at: str
    rows: dict[str, int]
    latest_remit_date: str | None
    latest_submission_date: str | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def read_manifest(directory: str | Path) -> DatasetManifest | None:
    """The manifest of the data set in ``directory``; None when it has none (a data set written
    by ``simulate`` or before manifests existed)."""
    path = Path(directory) / MANIFEST_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return DatasetManifest(
        fingerprint=str(data["fingerprint"]),
        version=int(data["version"]),
        updated_at=str(data["updated_at"]),
        rows={str(k): int(v) for k, v in data["rows"].items()},
        latest_remit_date=data.get("latest_remit_date"),
        latest_submission_date=data.get("latest_submission_date"),
    )


def write_manifest(
    directory: str | Path, dataset: ClaimsDataset, previous: DatasetManifest | None = None
) -> DatasetManifest:
    """Write ``dataset.json`` for the tables ``dataset`` wrote into ``directory``.

    ``previous`` is the manifest of the data set being replaced, if any: the version goes up
    (and ``updated_at`` moves) only when the fingerprint changed.
    """
    from features.atomic import write_text

    folder = Path(directory)
    digest = hashlib.sha256()
    for name in ClaimsDataset.table_names():
        path = folder / f"{name}.parquet"
        digest.update(name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.exists() else b"")
    fingerprint = digest.hexdigest()
    version, updated_at = 1, dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if previous is not None:
        unchanged = previous.fingerprint == fingerprint
        version = previous.version if unchanged else previous.version + 1
        updated_at = previous.updated_at if unchanged else updated_at
    manifest = DatasetManifest(
        fingerprint=fingerprint,
        version=version,
        updated_at=updated_at,
        rows={name: len(getattr(dataset, name)) for name in ClaimsDataset.table_names()},
        latest_remit_date=_latest_day(dataset.remittances["remit_date"]),
        latest_submission_date=_latest_day(dataset.claims["submission_date"]),
    )
    write_text(folder / MANIFEST_FILE, manifest.to_json())
    return manifest


def _latest_day(dates: pd.Series) -> str | None:
    latest = pd.to_datetime(dates).max() if len(dates) else pd.NaT
    return None if pd.isna(latest) else pd.Timestamp(latest).strftime("%Y-%m-%d")
