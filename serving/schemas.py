"""HTTP schemas of the scoring API: one model per direction, with bounds and enums.

Requests mirror the data contract (:mod:`features.schema`): a claim's own fields, its service
``lines`` and its ``diagnoses`` (ICD-10-CM codes). Each claim of a batch is validated on its own
(see :data:`ClaimItem`) so one bad claim becomes a per-claim error instead of failing the batch;
the envelope (``explain``, ``top_k``, the list itself) is validated as a whole.

Fields a payer would deny for but a biller can still send (an NPI failing its check digit, a
missing referral) are *not* refused here: the model scores them, and the explanation says what to
fix. Only what the contract cannot hold is refused (a 4-character CPT, a date that is not a date).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from features.codes import PAYER_TYPES
from features.schema import ICD10_PATTERN, PROCEDURE_CODE_PATTERN

MAX_BATCH_CLAIMS_CEILING = 100_000
"""Hard ceiling of the request schema; the configured limit (``max_batch_claims``) is lower."""

MAX_LINES = 999  # an 837I allows 999 service lines (837P: 50)
MAX_DIAGNOSES = 25  # 837I: 25 diagnosis codes (837P: 12)


class ClaimType(StrEnum):
    professional = "professional"
    institutional = "institutional"


class FrequencyCode(StrEnum):
    """CLM05-3 claim frequency: 1 original, 7 replacement, 8 void."""

    original = "1"
    replacement = "7"
    void = "8"


# Built from the code table so the API can never accept a payer type the features do not know.
PayerType = StrEnum("PayerType", {name: name for name in PAYER_TYPES})  # type: ignore[misc]


class PatientSex(StrEnum):
    M = "M"
    F = "F"
    U = "U"


class RiskBand(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


class Direction(StrEnum):
    raises = "raises risk"
    lowers = "lowers risk"


# -- code fields -------------------------------------------------------------------------------
def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _icd10(value: Any) -> Any:
    # Billers write "E11.9"; the contract stores "E119".
    return value.strip().upper().replace(".", "") if isinstance(value, str) else value


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


ProcedureCode = Annotated[
    str,
    BeforeValidator(_upper),
    Field(pattern=PROCEDURE_CODE_PATTERN, examples=["99213", "70553", "J1100"]),
]
ModifierCode = Annotated[
    Annotated[str, Field(pattern=r"^[A-Z0-9]{2}$", examples=["25", "59", "LT"])] | None,
    BeforeValidator(_upper),
    BeforeValidator(_blank_to_none),
]
Icd10Code = Annotated[
    str, BeforeValidator(_icd10), Field(pattern=ICD10_PATTERN, examples=["I10", "E11.9"])
]
OptionalText = Annotated[
    Annotated[str, Field(max_length=50)] | None, BeforeValidator(_blank_to_none)
]
Npi = Annotated[
    # Not checked for the Luhn digit on purpose: an invalid NPI is a denial risk to score.
    Annotated[str, Field(max_length=15, examples=["1234567893"])] | None,
    BeforeValidator(_blank_to_none),
]
Money = Annotated[float, Field(ge=0, le=10_000_000)]


class ServiceLineIn(BaseModel):
    """One service line (837 SV1/SV2 with its LX and DTP*472)."""

    model_config = ConfigDict(extra="forbid")

    line_number: int | None = Field(
        default=None, ge=1, le=MAX_LINES, description="As written on the claim; default: position."
    )
    procedure_code: ProcedureCode
    modifier_1: ModifierCode = None
    modifier_2: ModifierCode = None
    modifier_3: ModifierCode = None
    modifier_4: ModifierCode = None
    units: float = Field(default=1.0, gt=0, le=10_000)
    line_charge: Money
    service_date: dt.date | None = Field(default=None, description="Default: service_date_from.")
    diagnosis_pointers: str | None = Field(
        default=None,
        pattern=r"^\s*[1-9][0-9]?(\s*[,:]\s*[1-9][0-9]?){0,3}\s*$",
        description="Up to four 1-based positions in `diagnoses`, e.g. '1' or '1,2'. Leave it "
        "out only when the claim really has none: a line without a pointer is a denial risk "
        "and is scored as one.",
    )
    revenue_code: str | None = Field(default=None, pattern=r"^[0-9]{3,4}$")

    def pointers(self) -> list[int]:
        if not self.diagnosis_pointers:
            return []
        text = self.diagnosis_pointers.replace(":", ",")
        return [int(p) for p in text.split(",") if p.strip()]


class ClaimIn(BaseModel):
    """One claim as it would be submitted (837 CLM with its 2000/2300 loops), before scoring."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "claim_id": "PCN-000123",
                    "submission_date": "2025-03-10",
                    "claim_type": "professional",
                    "frequency_code": "1",
                    "payer_id": "60054",
                    "payer_name": "Example Health Plan",
                    "claim_filing_indicator": "CI",
                    "payer_type": "commercial",
                    "billing_npi": "1234567893",
                    "rendering_npi": "1245319599",
                    "provider_taxonomy": "207Q00000X",
                    "place_of_service": "11",
                    "service_date_from": "2025-03-03",
                    "patient_id": "MBR0001",
                    "patient_birth_date": "1970-06-01",
                    "patient_sex": "F",
                    "lines": [
                        {
                            "procedure_code": "70553",
                            "line_charge": 1450.0,
                            "units": 1,
                            "diagnosis_pointers": "1",
                        }
                    ],
                    "diagnoses": ["G43.909"],
                }
            ]
        },
    )

    claim_id: str = Field(min_length=1, max_length=38, description="Patient control number.")
    submission_date: dt.date = Field(description="The day the claim is (to be) sent.")
    claim_type: ClaimType
    frequency_code: FrequencyCode = FrequencyCode.original
    original_payer_claim_number: OptionalText = None
    payer_id: str = Field(min_length=1, max_length=80)
    payer_name: OptionalText = None
    claim_filing_indicator: str | None = Field(
        default=None, pattern=r"^[0-9A-Z]{1,2}$", description="SBR09, e.g. CI, MB, MC."
    )
    payer_type: PayerType  # type: ignore[valid-type]
    billing_npi: Npi = None
    rendering_npi: Npi = None
    referring_npi: Npi = None
    provider_taxonomy: str | None = Field(default=None, max_length=10, examples=["207Q00000X"])
    place_of_service: str | None = Field(default=None, pattern=r"^[0-9]{2}$", examples=["11"])
    total_charge: Money | None = Field(default=None, description="Default: sum of line charges.")
    service_date_from: dt.date
    service_date_to: dt.date | None = Field(default=None, description="Default: service_date_from.")
    patient_id: str = Field(
        min_length=1,
        max_length=80,
        description="Member ID: a grouping key for the patient's claim history; never logged.",
    )
    patient_birth_date: dt.date | None = Field(default=None, description="Never logged.")
    patient_sex: PatientSex | None = None
    prior_auth_number: OptionalText = None
    referral_number: OptionalText = None
    has_other_coverage: bool = False
    lines: list[ServiceLineIn] = Field(min_length=1, max_length=MAX_LINES)
    diagnoses: list[Icd10Code] = Field(
        min_length=1,
        max_length=MAX_DIAGNOSES,
        description="ICD-10-CM codes (dot optional); the first is the principal diagnosis.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ClaimIn:
        """Cross-field rules the contract relies on, each with the fix in its message."""
        end = self.service_date_to or self.service_date_from
        if end < self.service_date_from:
            raise ValueError(
                f"service_date_to {end} is before service_date_from {self.service_date_from}; "
                "swap them or correct the dates of service"
            )
        if self.submission_date < self.service_date_from:
            raise ValueError(
                f"submission_date {self.submission_date} is before service_date_from "
                f"{self.service_date_from}; a claim is sent after the service"
            )
        # Effective numbers: a line without one takes its position (as the tables will).
        numbers = [line.line_number or i for i, line in enumerate(self.lines, start=1)]
        if len(numbers) != len(set(numbers)):
            raise ValueError(
                "two service lines have the same line_number (a line without one takes its "
                "position); number service lines 1, 2, 3, ... or leave line_number out"
            )
        for position, line in enumerate(self.lines, start=1):
            too_far = [p for p in line.pointers() if p > len(self.diagnoses)]
            if too_far:
                raise ValueError(
                    f"service line {line.line_number or position} points to diagnosis "
                    f"{too_far[0]} but the claim lists {len(self.diagnoses)} diagnosis code(s); "
                    "point to a position in `diagnoses`"
                )
        return self


# -- per-claim validation inside a batch ---------------------------------------------------
@dataclass
class InvalidClaim:
    """A batch item that failed :class:`ClaimIn`, kept so the rest of the batch can be scored."""

    claim_id: str | None
    errors: list[dict[str, Any]] = field(default_factory=list)


_CLAIM = TypeAdapter(ClaimIn)


def _validate_alone(value: Any, handler: Any) -> ClaimIn | InvalidClaim:
    """Validate one batch item; turn its errors into an :class:`InvalidClaim` value."""
    try:
        return _CLAIM.validate_python(value)
    except ValidationError as error:
        claim_id = value.get("claim_id") if isinstance(value, dict) else None
        return InvalidClaim(
            claim_id=claim_id if isinstance(claim_id, str) else None,
            errors=[dict(e) for e in error.errors(include_url=False)],
        )


ClaimItem = Annotated[ClaimIn | SkipJsonSchema[InvalidClaim], WrapValidator(_validate_alone)]
"""A claim in a batch: documented as :class:`ClaimIn`, validated alone (errors kept per claim)."""


class ScoreRequest(BaseModel):
    """Claims to score (one or a batch) and how much explanation to return."""

    model_config = ConfigDict(extra="forbid")

    claims: list[ClaimItem] = Field(
        min_length=1,
        max_length=MAX_BATCH_CLAIMS_CEILING,
        description="One claim, or a batch of up to `max_batch_claims` (default 5,000; see "
        "GET /v1/model). A claim that fails validation is reported in `errors` and the others "
        "are still scored.",
    )
    explain: bool = Field(default=True, description="Add SHAP factors and fixes per claim.")
    top_k: int = Field(default=5, ge=1, le=20, description="Factors per claim when explaining.")


# -- responses -----------------------------------------------------------------------------
class ReasonOut(BaseModel):
    category: str = Field(examples=["authorization"])
    label: str = Field(examples=["Authorization / pre-certification"])
    probability: float = Field(ge=0, le=1, description="P(this root cause | denied).")


class CarcOut(BaseModel):
    code: str = Field(examples=["197"])
    description: str
    probability: float = Field(ge=0, le=1, description="P(this primary CARC | denied).")


class FactorOut(BaseModel):
    """One claim field's share of the risk (TreeSHAP, log-odds), worded for a biller."""

    field: str = Field(examples=["prior authorization"])
    description: str = Field(examples=["no prior authorization number (REF*G1) for 70553"])
    contribution: float = Field(description="Log-odds added to the denial risk.")
    direction: Direction
    actionable: bool
    fix: str | None = None
    line_number: int | None = None


class ClaimScoreOut(BaseModel):
    index: int = Field(ge=0, description="Position of the claim in the request.")
    claim_id: str
    denial_probability: float = Field(ge=0, le=1, description="Calibrated P(denied).")
    risk_band: RiskBand
    risk_band_threshold: str = Field(examples=[">= 0.35"])
    likely_reasons: list[ReasonOut]
    likely_carcs: list[CarcOut]
    factors: list[FactorOut] = Field(description="Empty when explain=false.")
    suggested_fix: str | None
    model_version: str


class FieldProblem(BaseModel):
    field: str = Field(
        description="Path in the request body, e.g. claims[2].lines[0].procedure_code.",
        examples=["claims[2].lines[0].procedure_code"],
    )
    message: str = Field(description="What is wrong and what to do about it.")


class ClaimErrorOut(BaseModel):
    """A claim that was not scored, with every problem found in it."""

    index: int | None = Field(description="Position in the request (None for an 837 body).")
    claim_id: str | None
    problems: list[FieldProblem]


class ScoreResponse(BaseModel):
    model_name: str
    model_version: str
    scored: int
    rejected: int
    results: list[ClaimScoreOut] = Field(description="Scored claims, in request order.")
    errors: list[ClaimErrorOut] = Field(description="Claims not scored, with what to fix.")


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx answer."""

    detail: str = Field(description="What went wrong and what to do.")
    errors: list[FieldProblem] = Field(default_factory=list)
    request_id: str | None = None


class ModelOut(BaseModel):
    name: str
    version: str
    alias: str | None
    uri: str
    training_period: str
    metrics: dict[str, float]
    risk_bands: dict[str, str] = Field(examples=[{"high": ">= 0.35"}])
    max_batch_claims: int
    loaded_at: dt.datetime


class HealthOut(BaseModel):
    status: str = "ok"


class ReadyOut(BaseModel):
    ready: bool
    model_version: str | None = None
    reason: str | None = None


class ReloadOut(BaseModel):
    previous_version: str | None
    version: str
    changed: bool
