"""``GET /v1/analytics/summary``: the denial analytics report's figures as JSON.

The data set comes from ``settings.resolved_analytics_dataset()``
(``DENIAL_RISK_ANALYTICS_DATASET``, default ``work_dir/ingested``); its facts are kept by an
:class:`serving.report.AnalyticsService` on ``app.state`` until its files change. Tests set
``app.dependency_overrides[get_analytics_service]``. Authenticated like every /v1 route.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict

from serving.api.deps import KEY_REFUSALS, require_api_key
from serving.report import AnalyticsService
from serving.schemas import ErrorResponse

_LOCK = threading.Lock()
EARLIEST_DATE, LATEST_DATE = dt.date(1900, 1, 1), dt.date(2200, 12, 31)


def get_analytics_service(request: Request) -> AnalyticsService:
    """The app's analytics service, built on first use from the settings' data set folder."""
    with _LOCK:
        service = getattr(request.app.state, "analytics_service", None)
        if service is None:
            folder = request.app.state.settings.resolved_analytics_dataset()
            service = AnalyticsService(folder)
            request.app.state.analytics_service = service
    return service


AnalyticsServiceDep = Annotated[AnalyticsService, Depends(get_analytics_service)]


class AnalyticsSummaryOut(BaseModel):
    """The figures of ``denial-risk report`` (report.json); features/analytics.py defines them."""

    model_config = ConfigDict(extra="allow")

    period: dict[str, Any]
    benchmarks: dict[str, Any]
    definitions: dict[str, str]
    headline: dict[str, Any]
    denial_rate_by_month: list[dict[str, Any]]
    breakdowns: dict[str, Any]
    point_of_origin: dict[str, Any]
    denials_received: dict[str, Any]
    payer_change_alerts: dict[str, Any]


router = APIRouter(
    prefix="/v1/analytics", tags=["analytics"], dependencies=[Depends(require_api_key)]
)


@router.get(
    "/summary",
    response_model=AnalyticsSummaryOut,
    responses={
        **KEY_REFUSALS,
        422: {"model": ErrorResponse, "description": "Invalid dates, or a period over ten years."},
        503: {"model": ErrorResponse, "description": "No data set configured or found."},
    },
    summary="Denial rates, breakdowns, open denials and payer-change alerts for a period",
)
def analytics_summary(
    service: AnalyticsServiceDep,
    start: Annotated[
        dt.date | None,
        Query(
            alias="from",
            ge=EARLIEST_DATE,
            le=LATEST_DATE,
            description="First day; default: the first of the month 11 months before `to`.",
        ),
    ] = None,
    end: Annotated[
        dt.date | None,
        Query(
            alias="to",
            ge=EARLIEST_DATE,
            le=LATEST_DATE,
            description="Last day; default: the data set's latest date.",
        ),
    ] = None,
) -> dict[str, Any]:
    """The same figures as the report's report.json, for the period asked."""
    if start and end and start > end:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"from ({start}) is after to ({end}): give a period that starts before it ends",
        )
    try:
        return service.summary(
            pd.Timestamp(start) if start else None, pd.Timestamp(end) if end else None
        )
    except FileNotFoundError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    except ValueError as error:  # a period too long to compare with the one before it
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
