"""The scoring API: :func:`create_app` wires settings, model loading, middleware and routes.

Nothing happens at import. The model is loaded once, in the lifespan, from the registry
(``models:/denial-risk@champion`` by default) or a local path. MLflow's HTTP requests are
bounded for the app's life (``registry_timeout_seconds``, ``registry_retries``), so an
unreachable registry fails the load in seconds instead of holding the start for minutes. When
the model cannot be loaded the app still starts: it serves the last good local copy if the
registry could not be reached and a copy exists (``local_copy_dir``; ``/ready`` and
``/v1/model`` say so), else ``/ready`` answers 503 with the reason and scoring answers 503;
meanwhile a thread tries again with growing waits (``model_retry_seconds`` up to
``model_retry_max_seconds``), and ``POST /v1/admin/reload`` tries at once.

The lifespan also starts the scoring coalescer's worker thread (:mod:`serving.api.coalesce`),
which scores concurrent requests in shared calls, and stops it after the last answer.

The docs (``/docs``, ``/redoc``) load Swagger UI and ReDoc from the API itself
(``/static-offline-docs``, the copies the ``fastapi-offline`` package ships), never from a CDN:
they work on a network without the internet, and run no script another host could change.

Authentication: every route except ``/health``, ``/ready`` and the docs needs an ``X-API-Key``
from ``settings.api_keys``. With no keys configured the app refuses to be built unless
``settings.allow_no_auth`` (``DENIAL_RISK_ALLOW_NO_AUTH=true``) says so explicitly.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi_offline import FastAPIOffline

from denial_risk.settings import Settings, get_settings
from features.codes import preload_code_sets
from serving import worklist_routes
from serving.api import errors
from serving.api.coalesce import SWITCH_INTERVAL_SECONDS, ScoringCoalescer
from serving.api.deps import (
    FallbackLoader,
    LoadedModel,
    ModelHolder,
    ServiceLoader,
    freeze_heap,
)
from serving.api.metrics import ApiMetrics
from serving.api.middleware import RequestMiddleware
from serving.api.routes import analytics, claims, ops
from serving.service import RiskBands, ScoringService
from serving.worklist import load_worklist_service

DESCRIPTION = """
Scores US healthcare claims **before submission**: calibrated denial probability, risk band,
likely root causes and CARCs, and the claim fields behind the risk, each with a fix.

* Authenticate with the `X-API-Key` header (not needed for `/health`, `/ready`, `/docs`).
* A batch holds up to `max_batch_claims` claims (see `GET /v1/model`); a bad claim is reported
  in `errors` with its field path and what to fix, and the other claims are still scored.
* Errors are JSON `{detail, errors: [{field, message}], request_id}`.
"""


class ConfigurationError(RuntimeError):
    """Settings the API must not run with; the message says what to set."""


def registry_loader(settings: Settings) -> ServiceLoader:
    """A loader that resolves the settings' model URI (e.g. the champion alias) at each call,
    and keeps what it loads from the registry as the last good local copy."""

    def load() -> ScoringService:
        from serving.loading import LocalCopies, load_service  # MLflow import only to load

        return load_service(
            settings.resolved_model_uri(),
            settings.resolved_tracking_uri(),
            _bands(settings),
            LocalCopies(settings.local_copy_dir),
            settings.history_dataset,
        )

    return load


def local_copy_fallback(settings: Settings) -> FallbackLoader:
    """The last good local copy of the settings' model, when the registry cannot be reached."""

    def fallback(error: Exception) -> ScoringService | None:
        from serving.loading import LocalCopies, RegistryUnreachable

        if not isinstance(error, RegistryUnreachable):
            return None  # the registry answered (no such model, corrupt files): say so
        copies = LocalCopies(settings.local_copy_dir)
        return copies.load(
            settings.resolved_model_uri(), _bands(settings), settings.history_dataset
        )

    return fallback


def _bands(settings: Settings) -> RiskBands:
    return RiskBands(medium=settings.risk_band_medium, high=settings.risk_band_high)


@contextmanager
def bounded_registry_requests(settings: Settings) -> Iterator[None]:
    """MLflow's HTTP timeout and retries for this process as the settings bound them, while
    the app runs. MLflow reads them from the environment at each request; its defaults (120 s,
    7 retries with exponential backoff) held the start for minutes when the registry was
    unreachable, with nothing listening."""
    bounded = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(settings.registry_timeout_seconds),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.registry_retries),
    }
    before = {name: os.environ.get(name) for name in bounded}
    os.environ.update(bounded)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def create_app(settings: Settings | None = None, loader: ServiceLoader | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: the environment's).

    ``loader`` builds the scoring service at start-up and on reload; by default it loads
    ``settings.resolved_model_uri()`` from ``settings.resolved_tracking_uri()``. Tests pass their
    own settings, or a loader, or override :func:`serving.api.deps.get_scoring_service`.

    Raises :class:`ConfigurationError` when no API key is configured and ``allow_no_auth`` is
    not set.
    """
    settings = settings or get_settings()
    problem = settings.api_auth_problem()
    if problem:
        raise ConfigurationError(problem)
    holder = (
        ModelHolder(loader)
        if loader
        else ModelHolder(registry_loader(settings), local_copy_fallback(settings))
    )
    metrics = ApiMetrics()
    coalescer = ScoringCoalescer(
        max_claims_per_call=settings.max_batch_claims,
        timeout_seconds=settings.scoring_timeout_seconds,
    )

    def loaded(fresh: LoadedModel) -> None:
        metrics.set_model(fresh.service.info.name, fresh.service.info.version)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with bounded_registry_requests(settings):
            # In a thread so a slow registry does not block the loop's other start-up work.
            await run_in_threadpool(holder.load_at_startup)
            current = holder.current
            info = current.service.info if current else None
            metrics.set_model(info.name if info else None, info.version if info else None)
            if not hasattr(app.state, "worklist_service"):
                # A missing recovery model is not fatal: the worklist then ranks by the
                # category table rates and says so in every row.
                app.state.worklist_service = await run_in_threadpool(
                    load_worklist_service,
                    settings.resolved_tracking_uri(),
                    f"models:/{settings.recovery_model_name}@{settings.champion_alias}",
                )
            # The diagnosis code set takes seconds to read: not in the first explained
            # request. Loaded before the heap is frozen, so collections never walk it.
            await run_in_threadpool(preload_code_sets)
            freeze_heap()  # the worklist's model too (the scoring model froze as it loaded)
            coalescer.start()
            holder.start_retrying(
                settings.model_retry_seconds, settings.model_retry_max_seconds, loaded
            )
            switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(switch_interval, SWITCH_INTERVAL_SECONDS))
            try:
                yield
            finally:
                # A load under way ends within MLflow's bounded request time.
                await run_in_threadpool(holder.stop_retrying, settings.registry_timeout_seconds)
                # Uvicorn has answered the requests in flight by now; any still queued are
                # scored before the thread ends (joined off the loop: a round may be running).
                await run_in_threadpool(coalescer.stop, settings.scoring_timeout_seconds)
                sys.setswitchinterval(switch_interval)
                gc.unfreeze()  # what this app held can be collected once it is gone

    app = FastAPIOffline(  # a FastAPI app whose docs pages use the assets it serves itself
        title="Denial risk scoring API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Swagger UI's badge would send the spec's URL to the public validator.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.coalescer = coalescer
    app.add_middleware(
        RequestMiddleware,  # type: ignore[arg-type]
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
    )
    errors.install(app)
    app.include_router(ops.open_router)
    app.include_router(ops.router)
    app.include_router(claims.router)
    app.include_router(worklist_routes.router)
    app.include_router(analytics.router)
    return app
