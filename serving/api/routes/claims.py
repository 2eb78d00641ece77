"""Scoring routes: validate, call :mod:`serving.api.scoring`, record the outcome, return.

``/score`` validates its body itself (:mod:`serving.api.bodies`: the claims are counted before
any is validated, a batch is validated in the thread pool) and awaits its answer from the
scoring coalescer (:mod:`serving.api.coalesce`), which scores concurrent requests in shared
calls; ``/score-x12`` scores in the thread pool.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool

from serving.api.bodies import DocumentedAs, listed
from serving.api.coalesce import ScoringTimeout
from serving.api.deps import (
    KEY_REFUSALS,
    CoalescerDep,
    MetricsDep,
    ServiceDep,
    SettingsDep,
    require_api_key,
)
from serving.api.metrics import ApiMetrics
from serving.api.scoring import (
    NothingScored,
    PreparedRequest,
    ScoringOutcome,
    prepare_body,
    score_837,
)
from serving.schemas import ErrorResponse, ScoreRequest, ScoreResponse

router = APIRouter(prefix="/v1/claims", tags=["scoring"], dependencies=[Depends(require_api_key)])

_ERRORS = {
    **KEY_REFUSALS,
    413: {"model": ErrorResponse, "description": "Body or batch larger than allowed."},
    422: {"model": ErrorResponse, "description": "Invalid request, or no valid claim in it."},
    503: {"model": ErrorResponse, "description": "No model loaded, or no answer in time."},
}

_X12_EXAMPLE = (
    # One whole 837P interchange (one claim, made-up people), as the route reads it: an
    # abridged one was refused when tried from /docs.
    "ISA*00*          *00*          *ZZ*DENIALRISK     *ZZ*RECEIVER       *250310*1200*^*00501*"
    "000000001*0*P*:~GS*HC*DENIALRISK*RECEIVER*20250310*1200*1*X*005010X222A1~ST*837*0001*"
    "005010X222A1~BHT*0019*00*B00000001*20250310*1200*CH~NM1*41*2*DENIAL RISK SUBMITTER*****46*"
    "SUBMITTER1~PER*IC*BILLING OFFICE*TE*8005550100~NM1*40*2*RECEIVER*****46*RECEIVER1~"
    "HL*1**20*1~NM1*85*2*BILLING PROVIDER*****XX*1234567893~N3*100 MAIN STREET~N4*ANYTOWN~"
    "REF*EI*999999999~HL*2*1*22*0~SBR*P********CI~NM1*IL*1*PATIENT*A****MI*MBR0001~"
    "N3*1 PLACEHOLDER ROAD~N4*ANYTOWN~DMG*D8*19700601*F~NM1*PR*2*Example Health Plan*****PI*"
    "60054~CLM*EXAMPLE-1*180***11:B:1*Y*A*Y*Y~HI*ABK:I10~NM1*82*1*RENDERING*A****XX*1245319599~"
    "PRV*PE*PXC*207Q00000X~LX*1~SV1*HC:99213*180*UN*1***1~DTP*472*D8*20250303~SE*25*0001~"
    "GE*1*1~IEA*1*000000001~"
)


ScoreRequestBody = Annotated[Any, Body(), DocumentedAs(ScoreRequest)]
"""The body as FastAPI parsed it, documented as :class:`ScoreRequest` and validated by
:func:`prepare_body` (not by FastAPI, which would validate every claim on the event loop before
the batch limit applies)."""

INLINE_CLAIMS = 1
"""Requests of at most this many claims are validated on the event loop: one claim takes ~25 µs
(one with 999 bad service lines 13 ms), less than the two thread hand-offs a batch pays, each of
which can wait a switch interval for the scoring thread to let go of the GIL."""


async def _prepared(body: Any, max_batch_claims: int) -> PreparedRequest:
    claims = listed(body, "claims")
    if claims is not None and len(claims) <= INLINE_CLAIMS:
        return prepare_body(body, max_batch_claims)
    return await run_in_threadpool(prepare_body, body, max_batch_claims)


def _record(request: Request, metrics: ApiMetrics, outcome: ScoringOutcome) -> None:
    """Counts for the request log line and the metrics (never claim contents)."""
    response = outcome.response
    request.state.claims = response.scored + response.rejected
    request.state.scored = response.scored
    request.state.rejected = response.rejected
    request.state.model_version = response.model_version
    metrics.observe_scores(outcome.probabilities, response.rejected)


def _record_refusal(request: Request, metrics: ApiMetrics, error: NothingScored) -> None:
    request.state.claims = request.state.rejected = len(error.errors)
    request.state.scored = 0
    metrics.observe_scores([], len(error.errors))


@router.post(
    "/score",
    response_model=ScoreResponse,
    responses=_ERRORS,  # type: ignore[arg-type]
    summary="Score one claim or a batch",
)
async def score_claims(
    body: ScoreRequestBody,
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    coalescer: CoalescerDep,
) -> ScoreResponse:
    """Denial probability, risk band, likely reasons and CARCs, and (with `explain`) the claim
    fields behind the risk with a fix for each.

    Send up to `max_batch_claims` claims (5,000 by default; GET /v1/model shows the limit).
    A claim that fails validation is listed in `errors` with the field path and what to fix;
    the others are scored. When no claim is valid the answer is 422 with the problems.
    """
    try:
        prepared = await _prepared(body, settings.max_batch_claims)
        outcome = await coalescer.score(service, prepared)
    except NothingScored as error:
        _record_refusal(request, metrics, error)
        raise
    except ScoringTimeout as error:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, str(error), headers={"Retry-After": "10"}
        ) from None
    _record(request, metrics, outcome)
    return outcome.response


async def x12_body(request: Request) -> str:
    """The raw 837 text; refuses a body that is not an X12 interchange."""
    raw = (await request.body()).removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM: editors add one
    text = raw.decode("latin-1")  # X12 character sets are within latin-1
    if not text.lstrip().startswith("ISA"):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "the body is not an X12 interchange: send the content of one 837P/837I file, "
            "starting with its ISA segment, as text/plain",
        )
    return text


@router.post(
    "/score-x12",
    response_model=ScoreResponse,
    responses=_ERRORS,  # type: ignore[arg-type]
    summary="Score the claims of an 837 file",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/plain": {"schema": {"type": "string"}, "example": _X12_EXAMPLE}},
        }
    },
)
def score_x12(
    request: Request,
    body: Annotated[str, Depends(x12_body)],
    service: ServiceDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    explain: Annotated[bool, Query(description="Add SHAP factors and fixes.")] = True,
    top_k: Annotated[int, Query(ge=1, le=20, description="Factors per claim.")] = 5,
) -> ScoreResponse:
    """Same answer as `/v1/claims/score` for the claims of an 837P/837I interchange.

    Claims the X12 reader quarantines (missing payer, bad codes, duplicates) are listed in
    `errors` with the segment position and the reason.
    """
    try:
        outcome = score_837(service, body, explain, top_k, settings.max_batch_claims)
    except NothingScored as error:
        _record_refusal(request, metrics, error)
        raise
    _record(request, metrics, outcome)
    return outcome.response
