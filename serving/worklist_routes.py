"""``POST /v1/denials/prioritize``: the denials worklist over HTTP.

Wiring (in :func:`serving.app.create_app`)::

    from serving.worklist import load_worklist_service
    from serving import worklist_routes

    # in the lifespan, once (a missing recovery model falls back to table rates):
    app.state.worklist_service = load_worklist_service(
        settings.resolved_tracking_uri(),
        f"models:/{settings.recovery_model_name}@{settings.champion_alias}",
    )
    app.include_router(worklist_routes.router)

The route takes its service from :func:`get_worklist_service` (``app.state.worklist_service``);
tests replace it with ``app.dependency_overrides[get_worklist_service] = lambda: service``.
Authentication is the API's ``X-API-Key`` check (:func:`serving.api.deps.require_api_key`).
The route validates its body itself, in the thread pool, after counting the denials
(:mod:`serving.api.bodies`).
"""

from __future__ import annotations

import datetime as dt
import math
from enum import StrEnum
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Body, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.api.bodies import DocumentedAs, validated_body
from serving.api.deps import KEY_REFUSALS, SettingsDep, require_api_key
from serving.schemas import ErrorResponse, PayerType
from serving.worklist import TRACKING, WORK_QUEUE, Worklist, WorklistService


def get_worklist_service(request: Request) -> WorklistService:
    """The worklist service built at start-up (503 with what to do when there is none)."""
    service = getattr(request.app.state, "worklist_service", None)
    if service is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the worklist service is not configured: set app.state.worklist_service at start-up "
            "(serving.worklist.load_worklist_service)",
        )
    return service


WorklistServiceDep = Annotated[WorklistService, Depends(get_worklist_service)]


class DenialKind(StrEnum):
    denial = "denial"
    rejection = "rejection"


class GroupCode(StrEnum):
    CO = "CO"
    PR = "PR"
    PI = "PI"
    OA = "OA"
    CR = "CR"


EARLIEST_DATE, LATEST_DATE = dt.date(1900, 1, 1), dt.date(2200, 12, 31)
"""The dates a denial, a service or a worklist's day may have: the worklist's deadlines and
ages are counted in pandas timestamps, whose range ends in 2262 (a date of 1600 or 9999 was a
500, not a clear refusal)."""


class DenialIn(BaseModel):
    """One denial from an 835 (or one front-end rejection from a 999/277CA)."""

    model_config = ConfigDict(extra="forbid")

    claim_id: str = Field(min_length=1, max_length=38, description="Patient control number.")
    kind: DenialKind = DenialKind.denial
    payer_id: str | None = Field(default=None, max_length=80)
    payer_name: str | None = Field(default=None, max_length=120)
    payer_type: PayerType | None = Field(  # type: ignore[valid-type]
        default=None, description="Unknown: taken from the payer override file, else 'other'."
    )
    payer_claim_number: str | None = Field(
        default=None, max_length=50, description="CLP07: quoted on corrected claims and appeals."
    )
    carc: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9]{1,5}$",
        description="Primary denial CARC; a code we do not know is kept and flagged 'unknown'.",
    )
    group_code: GroupCode | None = None
    rarcs: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,7}$")]] = Field(
        default_factory=list, max_length=20
    )
    denial_date: dt.date = Field(
        ge=EARLIEST_DATE, le=LATEST_DATE, description="Remittance (or rejection) date."
    )
    service_date: dt.date | None = Field(default=None, ge=EARLIEST_DATE, le=LATEST_DATE)
    denied_amount: float = Field(ge=0, le=10_000_000, description="Dollars not paid.")
    procedure_code: str | None = Field(default=None, max_length=5)
    prior_attempts: int = Field(default=0, ge=0, le=50)
    rejection_reason: str | None = Field(default=None, max_length=300)

    @model_validator(mode="after")
    def _denial_has_a_carc(self) -> DenialIn:
        if self.kind == DenialKind.denial and not self.carc:
            raise ValueError(
                "a denial needs its primary CARC (carc); send kind='rejection' for a claim "
                "rejected before adjudication"
            )
        return self


class PrioritizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    denials: list[DenialIn] = Field(min_length=1, max_length=100_000)
    as_of: dt.date | None = Field(
        default=None,
        ge=EARLIEST_DATE,
        le=LATEST_DATE,
        description="Date the list is made for; default: the latest denial date.",
    )
    limit: int | None = Field(
        default=None, ge=1, le=100_000, description="Return only the top `limit` queue rows."
    )


PrioritizeRequestBody = Annotated[Any, Body(), DocumentedAs(PrioritizeRequest)]
"""The body as FastAPI parsed it, documented as :class:`PrioritizeRequest`; the route validates
it (FastAPI would validate every denial on the event loop before the count limit applies)."""


class FactorOut(BaseModel):
    field: str
    description: str
    contribution: float
    direction: str


class WorklistItemOut(BaseModel):
    rank: int | None
    section: str
    claim_id: str
    kind: str
    payer_id: str | None
    payer_name: str | None
    payer_type: str
    carc: str | None
    group_code: str | None
    rarc: str | None
    reason: str
    category: str
    category_label: str
    hard: bool
    preventable: bool
    clinical: bool
    route: str
    route_label: str
    next_action: str
    denial_date: dt.date
    deadline: dt.date
    deadline_basis: str
    days_left: int
    past_deadline: bool
    denied_amount: float
    recovery_probability: float
    expected_recovery: float
    effort_cost: float
    priority_score: float
    why: str
    factors: list[FactorOut]
    note: str
    probability_source: str


class PrioritizeResponse(BaseModel):
    as_of: dt.date | None
    model_version: str | None
    probability_source: str
    counts: dict[str, int]
    queue: list[WorklistItemOut] = Field(description="Soft denials to work, in rank order.")
    tracking: list[WorklistItemOut] = Field(
        description="Hard denials: write off and track the root cause."
    )


router = APIRouter(prefix="/v1/denials", tags=["denials"], dependencies=[Depends(require_api_key)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    **KEY_REFUSALS,
    413: {"model": ErrorResponse, "description": "More denials than max_batch_claims."},
    422: {"model": ErrorResponse, "description": "Invalid request."},
    503: {"model": ErrorResponse, "description": "Worklist service not configured."},
}


def request_frame(body: PrioritizeRequest) -> pd.DataFrame:
    """The request's denials as a denial frame (:data:`features.denials.DENIAL_FRAME_COLUMNS`)."""
    rows = []
    for d in body.denials:
        rows.append(
            {
                "claim_id": d.claim_id,
                "kind": d.kind.value,
                "payer_id": d.payer_id,
                "payer_name": d.payer_name,
                "payer_type": d.payer_type.value if d.payer_type else None,
                "payer_claim_number": d.payer_claim_number,
                "carc": d.carc,
                "group_code": d.group_code.value if d.group_code else None,
                "rarc": ";".join(sorted({r.upper() for r in d.rarcs})) or None,
                "denial_carcs": d.carc,
                "denial_date": pd.Timestamp(d.denial_date),
                "service_date": pd.Timestamp(d.service_date) if d.service_date else pd.NaT,
                "denied_amount": d.denied_amount,
                "procedure_code": d.procedure_code,
                "prior_attempts": d.prior_attempts,
                "worked_on": pd.NaT,
                "rejection_reason": d.rejection_reason,
            }
        )
    return pd.DataFrame(rows)


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if value is pd.NaT or (not isinstance(value, str | bool | int | float) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    return value


def response_of(worklist: Worklist, limit: int | None = None) -> PrioritizeResponse:
    """The worklist as the API's JSON: queue (optionally the top ``limit``) and tracking."""
    items: dict[str, list[WorklistItemOut]] = {WORK_QUEUE: [], TRACKING: []}
    fields = set(WorklistItemOut.model_fields) - {"factors"}
    for i, row in enumerate(worklist.rows.to_dict(orient="records")):
        section = row["section"]
        if section not in items or (
            section == WORK_QUEUE and limit and len(items[section]) >= limit
        ):
            continue
        values = {k: _clean(row[k]) for k in fields}
        values["factors"] = worklist.factors[i] if i < len(worklist.factors) else []
        for key in ("note", "why", "next_action"):
            values[key] = values[key] or ""
        items[section].append(WorklistItemOut(**values))
    summary = worklist.summary()
    counts = {
        k: int(v)
        for k, v in summary.items()
        if k.endswith("_rows")
        or k
        in ("rows", "past_deadline_in_queue", "unknown_carc", "rejections", "dropped_after_as_of")
    }
    return PrioritizeResponse(
        as_of=worklist.as_of.date() if worklist.as_of is not None else None,
        model_version=worklist.model_version,
        probability_source=worklist.probability_source,
        counts=counts,
        queue=items[WORK_QUEUE],
        tracking=items[TRACKING],
    )


@router.post(
    "/prioritize",
    response_model=PrioritizeResponse,
    responses=_ERRORS,
    summary="Rank denials into a worklist",
)
def prioritize(
    body: PrioritizeRequestBody, service: WorklistServiceDep, settings: SettingsDep
) -> PrioritizeResponse:
    """Classify each denial (hard/soft, preventable, clinical), route it (corrected claim,
    appeal, peer-to-peer, eligibility rebill; rejections: resubmission), give it a deadline and
    days left, and rank the soft ones by expected recovered dollars adjusted for urgency and the
    route's effort. Hard denials come back in `tracking`, never in the queue.
    """
    limit = settings.max_batch_claims
    request = validated_body(  # a plain ``def`` route: this runs in the thread pool
        PrioritizeRequest,
        body,
        "denials",
        limit,
        too_many=lambda count: HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"{count:,} denials in one request; at most {limit:,} are accepted (split the list)",
        ),
    )
    as_of = pd.Timestamp(request.as_of) if request.as_of else None
    worklist = service.prioritize(request_frame(request), as_of)
    return response_of(worklist, request.limit)
