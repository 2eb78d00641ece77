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

from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from features.codes import PAYER_TYPES

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
    checks=pa.Check(
        lambda df: df["procedure_code"].notna() | df["revenue_code"].notna(),
        error="a service line needs a procedure (CPT/HCPCS) code or a revenue code",
    ),
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
    """An empty frame with the table's columns and dtypes."""
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
    """
    schema = SCHEMAS[name]
    missing = [c for c in schema.columns if c not in frame.columns]
    if missing:
        raise ValueError(f"table '{name}' is missing required column(s): {', '.join(missing)}")
    frame = frame.reset_index(drop=True)
    try:
        return schema.validate(frame, lazy=True), _no_rejects()
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


def _no_rejects() -> pd.DataFrame:
    return pd.DataFrame(columns=["table", "reason"])


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
        rejects = pd.concat(quarantined, ignore_index=True) if quarantined else _no_rejects()
        return dataset.drop_incomplete_claims(rejects)

    def drop_incomplete_claims(self, rejects: pd.DataFrame) -> tuple[ClaimsDataset, pd.DataFrame]:
        """Quarantine claims with a rejected child row or with no service line at all."""
        child_rejects = rejects[rejects["table"].isin(["lines", "diagnoses"])]
        bad_ids = set(child_rejects.get("claim_id", pd.Series(dtype=str)).dropna())
        no_lines = set(self.claims["claim_id"]) - set(self.lines["claim_id"])
        extra: list[pd.DataFrame] = []
        if bad_ids:
            rows = self.claims[self.claims["claim_id"].isin(bad_ids)].copy()
            rows.insert(0, "table", "claims")
            rows["reason"] = "a service line or diagnosis of this claim failed validation"
            extra.append(rows)
        if no_lines:
            rows = self.claims[self.claims["claim_id"].isin(no_lines)].copy()
            rows.insert(0, "table", "claims")
            rows["reason"] = "claim has no valid service line"
            extra.append(rows)
        drop = bad_ids | no_lines
        if drop:
            self.claims = self.claims[~self.claims["claim_id"].isin(drop)].reset_index(drop=True)
            self.lines = self.lines[~self.lines["claim_id"].isin(drop)].reset_index(drop=True)
            self.diagnoses = self.diagnoses[~self.diagnoses["claim_id"].isin(drop)].reset_index(
                drop=True
            )
        all_rejects = pd.concat([rejects, *extra], ignore_index=True) if extra else rejects
        return self, all_rejects
