"""HTTP schemas of the scoring API: one model per direction, with bounds and enums.

Requests mirror the data contract (:mod:`features.schema`): a claim's own fields, its service
``lines`` and its ``diagnoses`` (ICD-10-CM codes). Each claim of a batch is validated on its own
(see :data:`ClaimItem`) so one bad claim becomes a per-claim error instead of failing the batch;
the envelope (``explain``, ``top_k``, the list itself) is validated as a whole.

Fields a payer would deny for but a biller can still send (an NPI failing its check digit, a
missing referral, an onset date after the service, an accident without its date) are *not*
refused here: the model scores them, and the explanation says what to fix. Only what the contract
cannot hold is refused: a 4-character CPT, a date that is not a date, a code outside its X12 code
set, or fields no 837 could carry together (a drug quantity without its NDC, attachment report
types without their transmission codes, an auto accident state without an auto accident).

Requests carry the whole contract: every optional column of ``claims`` and ``lines`` is a field
of :class:`ClaimIn` or :class:`ServiceLineIn` of the same name, each described by its 837
element. Free-text notes and patient keys are never logged nor quoted in errors.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from features.codes import PAYER_TYPES
from features.schema import ICD10_PATTERN, KEY_PATTERN, PROCEDURE_CODE_PATTERN

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


class FactorGroup(StrEnum):
    """Where a factor belongs: a field the biller can change on the claim, or context."""

    fix_on_claim = "fix_on_claim"
    context = "context"


# -- code fields -------------------------------------------------------------------------------
def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _icd10(value: Any) -> Any:
    # Billers write "E11.9"; the contract stores "E119".
    return value.strip().upper().replace(".", "") if isinstance(value, str) else value


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


# A constraint after a BeforeValidator is not in the JSON schema (pydantic runs it as a
# function), so the codes document the input they accept themselves: before the code is
# upper-cased, trimmed and (ICD-10) stripped of its dots, as the validators do.
PROCEDURE_CODE_INPUT = r"^\s*[A-Za-z0-9][0-9]{3}[A-Za-z0-9]\s*$"
ICD10_INPUT = r"^\s*\.*[A-TV-Za-tv-z]\.*[0-9](\.*[0-9A-Za-z]){0,5}\.*\s*$"

ProcedureCode = Annotated[
    str,
    BeforeValidator(_upper),
    Field(
        pattern=PROCEDURE_CODE_PATTERN,
        examples=["99213", "70553", "J1100"],
        json_schema_extra={"pattern": PROCEDURE_CODE_INPUT},
    ),
]
ModifierCode = Annotated[
    Annotated[str, Field(pattern=r"^[A-Z0-9]{2}$", examples=["25", "59", "LT"])] | None,
    BeforeValidator(_upper),
    BeforeValidator(_blank_to_none),
]
Icd10Code = Annotated[
    str,
    BeforeValidator(_icd10),
    Field(
        pattern=ICD10_PATTERN,
        examples=["I10", "E11.9"],
        json_schema_extra={"pattern": ICD10_INPUT},
    ),
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


# -- the rest of the claim (the contract's optional columns) -----------------------------------
# Closed X12 code sets are Literal types: the values stay plain ``str`` (what the contract frame
# takes as is) and OpenAPI lists them. Sets and formats are those of the 5010 837P/837I guides.
def _code(value: Any) -> Any:
    """A code as X12 writes it: trimmed, upper case; blank means not given."""
    if isinstance(value, str):
        return value.strip().upper() or None
    return value


def _delay_reason(value: Any) -> Any:
    # CLM20 is numeric: 3, "3" and "03" mean the same code.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return str(int(value))
    return _code(value)


def _code_list(value: Any) -> Any:
    """Codes joined by commas as the contract holds them (``"AA,EM"``); a JSON list of codes,
    spaces, colons (X12's component separator) and lower case are accepted too."""
    if isinstance(value, list | tuple) and all(isinstance(code, str) for code in value):
        value = ",".join(value)
    if isinstance(value, str):
        codes = [code for code in re.split(r"[\s,:]+", value.strip().upper()) if code]
        return ",".join(codes) or None
    return value


def _listed_once(value: str | None, info: ValidationInfo) -> str | None:
    codes = value.split(",") if value else []
    repeated = sorted({code for code in codes if codes.count(code) > 1})
    if repeated:
        raise ValueError(
            f"{info.field_name} lists {repeated[0]} more than once; list each code once"
        )
    return value


_DASHED_NDC_SHAPES = {(5, 4, 2), (4, 4, 2), (5, 3, 2), (5, 4, 1)}


def _ndc(value: Any) -> Any:
    """An NDC in its 11-digit (5-4-2) billing form: a dashed 10-digit NDC (4-4-2, 5-3-2, 5-4-1)
    is padded with the leading zero of its short segment, as payers convert it."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    parts = text.split("-")
    if all(part.isdigit() for part in parts) and tuple(map(len, parts)) in _DASHED_NDC_SHAPES:
        return parts[0].zfill(5) + parts[1].zfill(4) + parts[2].zfill(2)
    return text or None


def _code_pattern(codes: Sequence[str], most: int) -> str:
    """A pattern for 1 to ``most`` of ``codes`` joined by commas."""
    one = "(?:" + "|".join(codes) + ")"
    return rf"^{one}(?:,{one}){{0,{most - 1}}}$"


PayerResponsibilityCode = Literal["P", "S", "T", "A", "B", "C", "D", "E", "F", "G", "H", "U"]
"""SBR01: P primary, S secondary, T tertiary, A-H payer 4 to 11, U unknown."""
RelationshipCode = Literal["18", "01", "19", "20", "21", "39", "40", "53", "G8"]
"""SBR02 (18: the patient is the subscriber) and PAT01 individual relationship codes."""
UsStateCode = Literal[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN",
    "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH",
    "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT",
    "VT", "VA", "WA", "WV", "WI", "WY", "AS", "FM", "GU", "MH", "MP", "PR", "PW", "VI", "AA",
    "AE", "AP",
]  # fmt: skip
"""USPS codes of the states, DC, the territories and the armed forces (N4-02, CLM11-4)."""
DelayReasonCode = Literal["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "15"]
NdcUnitCode = Literal["F2", "GR", "ME", "ML", "UN"]
"""CTP05-1: F2 international unit, GR gram, ME milligram, ML millilitre, UN unit."""
UnitBasisCode = Literal["UN", "MJ", "DA"]
"""SV103 (837P): UN units, MJ minutes; SV204 (837I): UN units, DA days."""
YesNo = Literal["Y", "N"]

RELATED_CAUSES = ("AA", "EM", "OA")
"""CLM11-1 to -3: AA auto accident, EM employment, OA other accident."""
REPORT_TYPES = (
    "03", "04", "05", "06", "07", "08", "09", "10", "11", "13", "15", "21", "A3", "A4", "AM", "AS",
    "B2", "B3", "B4", "BR", "BS", "BT", "CB", "CK", "CT", "D2", "DA", "DB", "DG", "DJ", "DS", "EB",
    "HC", "HR", "I5", "IR", "LA", "M1", "MT", "NN", "OB", "OC", "OD", "OE", "OX", "OZ", "P4", "P5",
    "PE", "PN", "PO", "PQ", "PY", "PZ", "RB", "RR", "RT", "RX", "SG", "V5", "XP",
)  # fmt: skip
"""PWK01 attachment report type codes (e.g. 09 progress report, OB operative note)."""
TRANSMISSION_CODES = ("AA", "BM", "EL", "EM", "FT", "FX")
"""PWK02: AA available on request at the provider, BM mail, EL electronically only, EM e-mail,
FT file transfer, FX fax."""
DME_TRANSMISSION_CODES = ("AB", "AD", "AF", "AG", "NS")
"""PWK02 of a line's DME certificate of medical necessity (PWK*CT, 837P 2400)."""
MAX_ATTACHMENTS = 10  # PWK repeats 10 times in 2300 and in 2400 (plus the DME one there)
NOTE_LENGTH = 80
"""NTE02 holds 80 characters."""
NOTE_SEPARATOR = " | "
"""How the contract joins a claim's or line's NTE segments."""
MAX_NOTES = 10  # 837I: 10 claim NTEs; 837P: 1 (plus 1 or 2 per line)


def _notes(value: str | None, info: ValidationInfo) -> str | None:
    # Never quote the note itself: notes are free text and may hold anything.
    if value is None:
        return None
    notes = value.split(NOTE_SEPARATOR)
    if len(notes) > MAX_NOTES:
        raise ValueError(
            f"{info.field_name} holds {len(notes)} notes separated by '{NOTE_SEPARATOR}' but "
            f"at most {MAX_NOTES} (NTE segments) are kept; keep the ones the payer needs"
        )
    longest = max(len(note) for note in notes)
    if longest > NOTE_LENGTH:
        raise ValueError(
            f"{info.field_name} has a note of {longest} characters but an NTE segment holds "
            f"{NOTE_LENGTH}; shorten it, or split it into notes separated by '{NOTE_SEPARATOR}'"
        )
    return value


UsState = Annotated[UsStateCode | None, BeforeValidator(_code)]
Taxonomy = Annotated[
    Annotated[str, Field(pattern=r"^[0-9A-Z]{9}X$", examples=["207Q00000X"])] | None,
    BeforeValidator(_code),
]
Clia = Annotated[
    Annotated[str, Field(pattern=r"^[0-9A-Z]{10}$", examples=["05D0123456"])] | None,
    BeforeValidator(_code),
]
FilingIndicator = Annotated[
    Annotated[str, Field(pattern=r"^[0-9A-Z]{1,2}$", examples=["CI", "MB"])] | None,
    BeforeValidator(_code),
]
Identifier = Annotated[
    Annotated[str, Field(min_length=1, max_length=80)] | None, BeforeValidator(_blank_to_none)
]
Note = Annotated[
    Annotated[
        str,
        Field(max_length=MAX_NOTES * (NOTE_LENGTH + len(NOTE_SEPARATOR)) - len(NOTE_SEPARATOR)),
    ]
    | None,
    AfterValidator(_notes),
    BeforeValidator(_blank_to_none),
]
ClaimReportTypes = Annotated[
    Annotated[str, Field(pattern=_code_pattern(REPORT_TYPES, MAX_ATTACHMENTS))] | None,
    BeforeValidator(_code_list),
]
ClaimTransmissions = Annotated[
    Annotated[str, Field(pattern=_code_pattern(TRANSMISSION_CODES, MAX_ATTACHMENTS))] | None,
    BeforeValidator(_code_list),
]
LineReportTypes = Annotated[
    Annotated[str, Field(pattern=_code_pattern(REPORT_TYPES, MAX_ATTACHMENTS + 1))] | None,
    BeforeValidator(_code_list),
]
LineTransmissions = Annotated[
    Annotated[
        str,
        Field(
            pattern=_code_pattern(TRANSMISSION_CODES + DME_TRANSMISSION_CODES, MAX_ATTACHMENTS + 1)
        ),
    ]
    | None,
    BeforeValidator(_code_list),
]


_NOTES_TEXT = (
    f"up to {NOTE_LENGTH} characters per note, notes separated by '{NOTE_SEPARATOR}'. Never "
    "logged, never quoted in errors."
)
_TRANSMISSIONS_TEXT = (
    "one per report type in the same order: AA available on request, BM mail, EL "
    "electronically, EM e-mail, FT file transfer, FX fax"
)


def _attachments_paired(types: str | None, transmissions: str | None, where: str) -> None:
    """PWK01 and PWK02 come in pairs (one PWK segment each): the contract keeps them as two
    lists in segment order, which only pair up when they are as long as each other."""
    count_types = len(types.split(",")) if types else 0
    count_transmissions = len(transmissions.split(",")) if transmissions else 0
    if count_types != count_transmissions:
        raise ValueError(
            f"{where}attachment_types lists {count_types} report type(s) but "
            f"{where}attachment_transmission {count_transmissions} transmission code(s); every "
            "attachment (PWK segment) needs both, in the same order, e.g. '09,OB' and 'FX,EL'"
        )


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
    line_prior_auth_number: OptionalText = Field(
        default=None, description="2400 REF*G1: the prior authorization of this line."
    )
    line_referral_number: OptionalText = Field(
        default=None, description="2400 REF*9F: the referral of this line."
    )
    ndc_code: Annotated[
        Annotated[str, Field(pattern=r"^[0-9]{11}$", examples=["00409488802"])] | None,
        BeforeValidator(_ndc),
    ] = Field(
        default=None,
        description="2410 LIN03 (LIN02 = N4): the drug's National Drug Code, 11 digits (5-4-2). "
        "A dashed NDC (0409-4888-02, 5-4-2 or a 10-digit 4-4-2, 5-3-2, 5-4-1) is padded to 11.",
    )
    ndc_quantity: float | None = Field(
        default=None, gt=0, le=1_000_000, description="2410 CTP04: the quantity of the drug."
    )
    ndc_unit: Annotated[NdcUnitCode | None, BeforeValidator(_code)] = Field(
        default=None,
        description="2410 CTP05-1, the unit of ndc_quantity: F2 international unit, GR gram, "
        "ME milligram, ML millilitre, UN unit.",
    )
    line_note: Note = Field(
        default=None,
        description=f"2400 NTE02: {_NOTES_TEXT}",
    )
    line_attachment_types: LineReportTypes = Field(
        default=None,
        description="2400 PWK01 report type of each attachment of this line, separated by "
        "commas in segment order, e.g. 'OB' (operative note) or 'CT' (DME certificate).",
    )
    line_attachment_transmission: LineTransmissions = Field(
        default=None,
        description=f"2400 PWK02, {_TRANSMISSIONS_TEXT} (DME certificates: AB, AD, AF, AG, NS).",
    )
    line_rendering_npi: Npi = Field(
        default=None, description="2420A NM1*82: the rendering provider of this line."
    )
    line_referring_npi: Npi = Field(
        default=None,
        description="2420E NM1*DK / 2420F NM1*DN: the ordering or referring provider of this line.",
    )
    line_place_of_service: str | None = Field(
        default=None,
        pattern=r"^[0-9]{2}$",
        description="SV105: the place of service of this line when it differs from the claim's.",
    )
    line_clia_number: Clia = Field(
        default=None, description="2400 REF*X4: the CLIA number of this line's lab, 10 characters."
    )
    unit_basis: Annotated[UnitBasisCode | None, BeforeValidator(_code)] = Field(
        default=None,
        description="SV103 (837P): UN units, MJ minutes (anesthesia); SV204 (837I): UN, DA days.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ServiceLineIn:
        """What the contract cannot hold, each with the fix in its message."""
        if self.ndc_code is None and (self.ndc_quantity is not None or self.ndc_unit is not None):
            given = "ndc_quantity" if self.ndc_quantity is not None else "ndc_unit"
            raise ValueError(
                f"{given} is given without ndc_code; a drug quantity belongs to an NDC (2410 LIN "
                "and CTP): add the line's ndc_code or leave ndc_quantity and ndc_unit out"
            )
        if (self.ndc_quantity is None) != (self.ndc_unit is None):
            missing = "ndc_unit" if self.ndc_unit is None else "ndc_quantity"
            raise ValueError(
                f"{missing} is missing: an NDC quantity (CTP04) and its unit (CTP05) go together; "
                "give both (e.g. 2 and ML) or neither"
            )
        _attachments_paired(
            self.line_attachment_types, self.line_attachment_transmission, where="line_"
        )
        return self

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
                    "payer_responsibility": "P",
                    "patient_relationship": "18",
                    "patient_key": "ACCT-88213",
                    "patient_state": "OH",
                    "billing_state": "OH",
                    "rendering_taxonomy": "207Q00000X",
                    "onset_date": "2025-02-24",
                    "lines": [
                        {
                            "procedure_code": "70553",
                            "line_charge": 1450.0,
                            "units": 1,
                            "diagnosis_pointers": "1",
                            "line_prior_auth_number": "AUTH-55102",
                        }
                    ],
                    "diagnoses": ["G43.909"],
                }
            ]
        },
    )

    claim_id: str = Field(
        min_length=1, max_length=38, pattern=KEY_PATTERN, description="Patient control number."
    )
    submission_date: dt.date = Field(description="The day the claim is (to be) sent.")
    claim_type: ClaimType
    frequency_code: FrequencyCode = FrequencyCode.original
    original_payer_claim_number: OptionalText = None
    payer_id: str = Field(min_length=1, max_length=80, pattern=KEY_PATTERN)
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
        pattern=KEY_PATTERN,
        description="Member ID: a grouping key for the patient's claim history; never logged.",
    )
    patient_birth_date: dt.date | None = Field(default=None, description="Never logged.")
    patient_sex: PatientSex | None = None
    prior_auth_number: OptionalText = None
    referral_number: OptionalText = None
    has_other_coverage: bool = Field(
        default=False,
        description="Whether the patient has another payer (a 2320 loop). Default: true when "
        "other_payer_* fields are given, else false.",
    )
    payer_responsibility: Annotated[PayerResponsibilityCode | None, BeforeValidator(_code)] = Field(
        default=None,
        description="2000B SBR01: this payer's place, P primary, S secondary, T tertiary, "
        "A-H payer 4 to 11, U unknown.",
    )
    subscriber_group_number: OptionalText = Field(
        default=None, description="SBR03: the subscriber's group or policy number."
    )
    patient_relationship: Annotated[RelationshipCode | None, BeforeValidator(_code)] = Field(
        default=None,
        description="SBR02 18 when the patient is the subscriber, else PAT01: 01 spouse, "
        "19 child, 20 employee, 21 unknown, 39 organ donor, 40 cadaver donor, 53 life partner, "
        "G8 other.",
    )
    patient_key: Identifier = Field(
        default=None,
        description="Any stable key of the patient across member IDs (your patient account "
        "number); never logged.",
    )
    patient_state: UsState = Field(
        default=None, description="2010CA N4-02 (else 2010BA): the patient's state, e.g. OH."
    )
    subscriber_state: UsState = Field(
        default=None, description="2010BA N4-02: the subscriber's state."
    )
    billing_state: UsState = Field(
        default=None, description="2010AA N4-02: the billing provider's state."
    )
    billing_taxonomy: Taxonomy = Field(
        default=None, description="2000A PRV03: the billing provider's taxonomy code."
    )
    rendering_taxonomy: Taxonomy = Field(
        default=None, description="2310B PRV03: the rendering provider's taxonomy code."
    )
    service_facility_npi: Npi = Field(
        default=None, description="2310C NM1*77 NM109: the service facility's NPI."
    )
    service_facility_state: UsState = Field(
        default=None, description="2310C N4-02: the service facility's state."
    )
    delay_reason_code: Annotated[DelayReasonCode | None, BeforeValidator(_delay_reason)] = Field(
        default=None,
        description="CLM20 delay reason code: 1-11 or 15, why the claim is sent late (e.g. 1 "
        "proof of eligibility unknown, 7 third-party processing delay, 11 other).",
    )
    related_causes: Annotated[
        Annotated[str, Field(pattern=_code_pattern(RELATED_CAUSES, 3))] | None,
        AfterValidator(_listed_once),
        BeforeValidator(_code_list),
    ] = Field(
        default=None,
        description="CLM11-1 to -3: AA auto accident, EM employment, OA other accident, "
        "separated by commas, e.g. 'AA' or 'EM,OA'.",
    )
    auto_accident_state: UsState = Field(
        default=None,
        description="CLM11-4: the state of the auto accident (with AA in related_causes).",
    )
    epsdt_indicator: Annotated[YesNo | None, BeforeValidator(_code)] = Field(
        default=None, description="CRC*ZZ CRC02: an EPSDT referral was given, Y or N."
    )
    accident_date: dt.date | None = Field(default=None, description="DTP*439: accident date.")
    onset_date: dt.date | None = Field(
        default=None, description="DTP*431: onset of the current illness or symptom."
    )
    initial_treatment_date: dt.date | None = Field(
        default=None, description="DTP*454: initial treatment date."
    )
    attachment_types: ClaimReportTypes = Field(
        default=None,
        description="2300 PWK01 report type of each attachment, separated by commas in segment "
        "order, e.g. '09' (progress report) or '09,OB'.",
    )
    attachment_transmission: ClaimTransmissions = Field(
        default=None,
        description=f"2300 PWK02, {_TRANSMISSIONS_TEXT}.",
    )
    claim_note: Note = Field(
        default=None,
        description=f"2300 NTE02: {_NOTES_TEXT}",
    )
    clia_number: Clia = Field(
        default=None, description="2300 REF*X4: the lab's CLIA number, 10 characters."
    )
    other_payer_id: Identifier = Field(
        default=None, description="2330B NM1*PR NM109: the other payer's ID (the first one)."
    )
    other_payer_responsibility: Annotated[
        PayerResponsibilityCode | None, BeforeValidator(_code)
    ] = Field(default=None, description="2320 SBR01: the other payer's place (P, S, T, ...).")
    other_payer_filing_indicator: FilingIndicator = Field(
        default=None, description="2320 SBR09: the other payer's claim filing indicator."
    )
    other_payer_paid_amount: Money | None = Field(
        default=None, description="2320 AMT*D: paid by the other payer(s), in dollars."
    )
    other_payer_adjudication_date: dt.date | None = Field(
        default=None, description="2330B DTP*573: the day the other payer adjudicated the claim."
    )
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
        if self.patient_birth_date is not None and self.patient_birth_date > self.service_date_from:
            # The birth date is never repeated (it is the patient's); the field names it.
            raise ValueError(
                "patient_birth_date is after service_date_from: a patient is born before the "
                "service; check the birth date (DMG02) or the dates of service"
            )
        # Effective numbers: a line without one takes its position (as the tables will).
        numbers = [line.line_number or i for i, line in enumerate(self.lines, start=1)]
        if len(numbers) != len(set(numbers)):
            raise ValueError(
                "two service lines have the same line_number (a line without one takes its "
                "position); number service lines 1, 2, 3, ... or leave line_number out"
            )
        self._other_coverage_consistent()
        causes = self.related_causes.split(",") if self.related_causes else []
        if self.auto_accident_state is not None and "AA" not in causes:
            raise ValueError(
                "auto_accident_state is given but related_causes has no AA (auto accident); add "
                "AA to related_causes or leave auto_accident_state out"
            )
        _attachments_paired(self.attachment_types, self.attachment_transmission, where="")
        for position, line in enumerate(self.lines, start=1):
            too_far = [p for p in line.pointers() if p > len(self.diagnoses)]
            if too_far:
                raise ValueError(
                    f"service line {line.line_number or position} points to diagnosis "
                    f"{too_far[0]} but the claim lists {len(self.diagnoses)} diagnosis code(s); "
                    "point to a position in `diagnoses`"
                )
        return self

    def _other_coverage_consistent(self) -> None:
        """Another payer's fields mean other coverage: ``has_other_coverage`` follows them
        when left out, and may not say false beside them."""
        given = [
            name
            for name in (
                "other_payer_id",
                "other_payer_responsibility",
                "other_payer_filing_indicator",
                "other_payer_paid_amount",
                "other_payer_adjudication_date",
            )
            if getattr(self, name) is not None
        ]
        if not given or self.has_other_coverage:
            return
        if "has_other_coverage" in self.model_fields_set:
            raise ValueError(
                f"has_other_coverage is false but {given[0]} is given; set has_other_coverage "
                "to true (the claim names another payer) or leave the other payer's fields out"
            )
        self.has_other_coverage = True


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
    """One claim field's share of the risk (TreeSHAP, log-odds), worded for a biller with the
    claim's own values (codes, modifiers, payer name), and history as the history it is."""

    field: str = Field(examples=["prior authorization"])
    description: str = Field(
        examples=[
            "no prior authorization number (REF*G1) for 70553 (line 1)",
            "about 41% of earlier lines of 97110 to Example Health Plan without an "
            "authorization number were denied (reason: Authorization / pre-certification)",
            "rendering provider has 239 earlier claims to Example Health Plan",
        ]
    )
    contribution: float = Field(description="Log-odds added to the denial risk.")
    direction: Direction
    actionable: bool = Field(
        description="Something to fix on this claim: most of the contribution comes from the "
        "claim's own fields, or from history of the denial reason the fix addresses. False "
        "for context (the payer, counts and other history)."
    )
    fix: str | None = Field(
        default=None, description="What to change on the claim; only for a fixable risk."
    )
    line_number: int | None = None
    group: FactorGroup = Field(
        description="`fix_on_claim` for an actionable factor (a field the biller can change), "
        "else `context` (the payer, history, counts)."
    )


class FactorGroupOut(BaseModel):
    """A group of the claim's factors and the log-odds of all of the claim's fields in it."""

    group: FactorGroup
    label: str = Field(examples=["Fix on this claim"])
    contribution: float = Field(
        description="Log-odds the group's fields add to the denial risk: every field of the "
        "claim in the group, listed among the factors or not. With the model's base value, the "
        "groups add up to the claim's log-odds."
    )


class WhatIfOut(BaseModel):
    """A fix made on the claim and the claim scored again by the same model: "add the prior
    authorization number (REF*G1): 91% -> 14%"."""

    field: str = Field(
        description="The claim field of the factor the fix is for.",
        examples=["prior authorization"],
    )
    change: str = Field(
        description="What was changed on the claim.",
        examples=[
            "add the prior authorization number (REF*G1)",
            "add modifier 25 to 99214 (line 1)",
        ],
    )
    probability: float = Field(ge=0, le=1, description="P(denied) with the change made.")
    risk_removed: float = Field(
        description="The denial probability the change removes (negative: it adds risk)."
    )


class ClaimScoreOut(BaseModel):
    index: int = Field(ge=0, description="Position of the claim in the request.")
    claim_id: str
    denial_probability: float = Field(ge=0, le=1, description="Calibrated P(denied).")
    risk_band: RiskBand
    risk_band_threshold: str = Field(examples=[">= 0.35"])
    likely_reasons: list[ReasonOut]
    likely_carcs: list[CarcOut]
    factors: list[FactorOut] = Field(
        description="Empty when explain=false. Fixes (actionable factors that raise the risk) "
        "first, ordered by the risk they remove (measured by `what_if` where the fix was made, "
        "else the factor's own log-odds), then the other factors."
    )
    factor_groups: list[FactorGroupOut] = Field(
        default_factory=list,
        description="The factors' two groups (fix on this claim, context) with their "
        "contributions. Empty when explain=false.",
    )
    what_if: list[WhatIfOut] = Field(
        default_factory=list,
        description="For the claim's first three fixes that can be made on its fields (an "
        "authorization or referral number, a referring NPI, modifier 25 or 59, a diagnosis "
        "pointer, submitting today): the claim scored again with the fix made, most risk "
        "removed first. Empty when explain=false.",
    )
    suggested_fix: str | None = Field(
        description="For a medium or high risk: the fix of the claim's likely reason, from the "
        "first factor whose fix addresses it, else that reason's usual fix."
    )
    suggested_fix_reason: str | None = Field(
        default=None,
        description="The denial reason category the suggested fix addresses (the claim's most "
        "likely reason).",
        examples=["authorization"],
    )
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


class HistoryOut(BaseModel):
    """How recent the history new claims are scored against is."""

    last_remittance: dt.date | None = Field(
        description="The latest remittance (835) the history holds: outcomes after it are not "
        "known to the scores. Ingest newer 835s (`denial-risk ingest --into`), then reload."
    )
    last_submission: dt.date | None = Field(description="The latest claim it holds was sent.")
    claims: int
    outcomes: int
    built_at: dt.datetime


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
    local_copy_saved_at: dt.datetime | None = Field(
        default=None,
        description="Set when the model served is the last good local copy (the registry "
        "could not be reached): when that copy was saved.",
    )
    warning: str | None = Field(
        default=None,
        description="Why the model served is not the one asked for, when it is not.",
    )
    history: HistoryOut | None = Field(
        default=None, description="The history claims are scored against, as of when."
    )


class HealthOut(BaseModel):
    status: str = "ok"


class ReadyOut(BaseModel):
    ready: bool
    model_version: str | None = None
    reason: str | None = Field(default=None, description="Why no model is served.")
    warning: str | None = Field(
        default=None,
        description="Why the model served is not the one asked for: the last good local copy "
        "while the registry cannot be reached.",
        examples=[
            "serving the local copy of denial-risk version 3 saved 2025-06-30 14:02 UTC (the "
            "last one loaded from the registry): cannot load model "
            "'models:/denial-risk@champion': the model registry cannot be reached (connection "
            "refused); retrying in the background"
        ],
    )


class ReloadOut(BaseModel):
    previous_version: str | None
    version: str
    changed: bool
    history: HistoryOut | None = Field(
        default=None, description="The history now scored against (newly ingested included)."
    )
