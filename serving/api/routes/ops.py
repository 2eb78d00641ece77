"""Operational routes: liveness, readiness, metrics, the model served, and hot reload."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from serving.api.deps import (
    KEY_REFUSALS,
    HolderDep,
    LoadedModelDep,
    MetricsDep,
    SettingsDep,
    require_api_key,
)
from serving.schemas import (
    ErrorResponse,
    HealthOut,
    HistoryOut,
    ModelOut,
    ReadyOut,
    ReloadOut,
)
from training.history_store import HistoryAsOf

open_router = APIRouter(tags=["operations"])
"""Routes without an API key: orchestrators probe them."""

router = APIRouter(
    tags=["operations"], dependencies=[Depends(require_api_key)], responses=KEY_REFUSALS
)


@open_router.get("/health", response_model=HealthOut, summary="The process is up")
async def health() -> HealthOut:
    # On the event loop, not in the thread pool: it answers while every pool thread is busy
    # (validating large batches, say) and while it waits for none of them.
    return HealthOut()


@open_router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "No model loaded; `reason` says why."}},
    summary="A model is loaded and claims can be scored",
)
def ready(holder: HolderDep) -> JSONResponse:
    """200 while claims can be scored, with a `warning` when the model is the last good local
    copy (the registry cannot be reached); 503 with the `reason` otherwise."""
    current = holder.current
    if current is None:
        body = ReadyOut(ready=False, reason=withheld_locations(holder.not_ready_reason()))
        return JSONResponse(body.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    body = ReadyOut(
        ready=True,
        model_version=current.service.info.version,
        warning=withheld_locations(holder.warning()),
    )
    return JSONResponse(body.model_dump())


_LOCATION = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+"  # a URL: a tracking server's, with any credentials
    r"|(?<![\w:/])(?!/v1/)/[^\s'\"/]+(?:/[^\s'\"/]+)+"  # an absolute path of two or more
    # parts, except this API's own routes (/v1/admin/reload), which a reason may point to
)


def withheld_locations(reason: str | None) -> str | None:
    """``reason`` without URLs and server paths: ``/ready`` answers without a key, and where
    the tracking server or the model files live is not for anyone who asks (the server's log
    has the whole message)."""
    if reason is None:
        return None
    return _LOCATION.sub("(location withheld; see the server's log)", reason)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.render(), media_type=metrics.content_type)


@router.get(
    "/v1/model",
    response_model=ModelOut,
    responses={503: {"model": ErrorResponse}},
    summary="The model being served",
)
def model(loaded: LoadedModelDep, holder: HolderDep, settings: SettingsDep) -> ModelOut:
    info = loaded.service.info
    bands = loaded.service.bands
    return ModelOut(
        name=info.name,
        version=info.version,
        alias=info.alias,
        uri=info.uri,
        training_period=info.training_period,
        metrics=info.metrics,
        risk_bands={band: bands.threshold_text(band) for band in ("low", "medium", "high")},
        max_batch_claims=settings.max_batch_claims,
        loaded_at=loaded.loaded_at,
        local_copy_saved_at=info.local_copy_saved_at,
        warning=withheld_locations(holder.warning()) if loaded.from_local_copy else None,
        history=_history(loaded.service.history),
    )


def _history(history: HistoryAsOf | None) -> HistoryOut | None:
    # Its fields by name; the data set's folder stays out of the answer.
    return None if history is None else HistoryOut.model_validate(history, from_attributes=True)


@router.post(
    "/v1/admin/reload",
    response_model=ReloadOut,
    responses={503: {"model": ErrorResponse, "description": "Reload failed; old model kept."}},
    summary="Load the current champion and the latest history, and swap them in",
)
async def reload(holder: HolderDep, metrics: MetricsDep) -> ReloadOut:
    """Load the model the settings name (by default the `@champion` alias, resolved now) with
    the history data set as it stands now (newly ingested remittances included), and make them
    current once fully loaded. Requests in flight finish on the model they started
    with; if loading fails the previous model stays in use.
    """
    try:
        previous, fresh = await run_in_threadpool(holder.reload)
    except Exception as error:  # loader failures of any type: keep serving the old model
        current = holder.current
        copy = " (local copy)" if current and current.from_local_copy else ""
        still = (
            f"still serving version {current.service.info.version}{copy}"
            if current
            else ("no model is loaded")
        )
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"reload failed ({still}): {error}",
        ) from None
    info = fresh.service.info
    metrics.set_model(info.name, info.version)
    old = previous.service.info.version if previous else None
    return ReloadOut(
        previous_version=old,
        version=info.version,
        changed=old != info.version,
        history=_history(fresh.service.history),
    )
