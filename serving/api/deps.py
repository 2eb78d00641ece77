"""Dependencies of the routes: the loaded model, the settings, the metrics, the scoring
coalescer, the API-key check.

Everything lives on ``app.state`` (set by :func:`serving.app.create_app`), never in module
globals, so two apps in one process (tests) do not share a model or counters. Tests replace the
model with ``app.dependency_overrides[get_scoring_service] = lambda: fake``.

The dependencies are ``async def`` although they never wait: FastAPI runs a plain ``def``
dependency in its thread pool, and half a dozen thread hand-offs per request cost more than
the lookups themselves.
"""

from __future__ import annotations

import gc
import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from denial_risk.settings import Settings
from serving.api.coalesce import ScoringCoalescer
from serving.api.metrics import ApiMetrics
from serving.service import ScoringService

ServiceLoader = Callable[[], ScoringService]
"""Builds a new ScoringService (from the registry); raises with a message when it cannot."""


class ModelNotReady(Exception):
    """No model is loaded: scoring answers 503 with the reason."""


@dataclass(frozen=True)
class LoadedModel:
    service: ScoringService
    loaded_at: datetime


class ModelHolder:
    """The scoring service in use, replaced atomically by :meth:`reload`.

    A request takes the current reference once (in its dependency) and keeps it to the end, so
    a reload never changes the model under a request in flight: the new service is fully built
    before a single reference assignment makes it current.
    """

    def __init__(self, loader: ServiceLoader) -> None:
        self._loader = loader
        self._lock = threading.Lock()  # serialises reloads; readers never take it
        self.current: LoadedModel | None = None
        self.error: str | None = "the model has not been loaded yet"

    def reload(self) -> tuple[LoadedModel | None, LoadedModel]:
        """Load the model now and make it current; return (previous, new).

        Raises whatever the loader raises; the previous model then stays in use. The objects
        alive after the swap are set aside from the garbage collector (:func:`freeze_heap`);
        those of the model replaced become collectable again first.
        """
        with self._lock:
            gc.unfreeze()
            try:
                fresh = LoadedModel(self._loader(), datetime.now(UTC))
                previous, self.current, self.error = self.current, fresh, None
            finally:
                freeze_heap()
            return previous, fresh

    def load_at_startup(self) -> None:
        """First load; a failure is recorded (for /ready and 503s) instead of raised."""
        try:
            self.reload()
        except Exception as error:  # any loader failure must leave the process serving /ready
            self.error = _short(f"{error}")


def freeze_heap() -> None:
    """Collect garbage once, then hide every object alive from later collections.

    A loaded model is some 400,000 Python objects. Every so often under load the collector
    walks all of them (a full collection, 100-300 ms with the GIL held), and the requests
    waiting then were the slowest 1 % in ``benchmarks/bench_http.py``. Objects that live as
    long as the model never need collecting (``gc.freeze``); objects of later requests are
    collected as usual. Called once the app has loaded what it serves.
    """
    gc.collect()
    gc.freeze()


def _short(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_holder(request: Request) -> ModelHolder:
    return request.app.state.holder


async def get_metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


async def get_coalescer(request: Request) -> ScoringCoalescer:
    return request.app.state.coalescer


SettingsDep = Annotated[Settings, Depends(get_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
CoalescerDep = Annotated[ScoringCoalescer, Depends(get_coalescer)]


async def get_loaded_model(holder: HolderDep) -> LoadedModel:
    current = holder.current
    if current is None:
        raise ModelNotReady(holder.error or "no model loaded")
    return current


LoadedModelDep = Annotated[LoadedModel, Depends(get_loaded_model)]


async def get_scoring_service(loaded: LoadedModelDep) -> ScoringService:
    """The scoring service for this request (503 via :class:`ModelNotReady` when none)."""
    return loaded.service


ServiceDep = Annotated[ScoringService, Depends(get_scoring_service)]

_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="One of the keys in DENIAL_RISK_API_KEYS.",
)


async def require_api_key(
    settings: SettingsDep, key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """401 without a key, 403 with a wrong one; open only when no keys are configured.

    :func:`serving.app.create_app` refuses to build an app with no keys unless
    ``allow_no_auth`` is set, so an empty key list here was chosen explicitly.
    """
    if not settings.api_keys:
        return
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing X-API-Key header: send one of the service's API keys in X-API-Key",
            headers={"WWW-Authenticate": "APIKey"},
        )
    # Compare against every key (no early exit) in constant time per key.
    given = key.encode()
    matched = False
    for accepted in settings.api_keys:
        matched |= hmac.compare_digest(given, accepted.encode())
    if not matched:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "X-API-Key not accepted: check the key with whoever runs this service",
        )
