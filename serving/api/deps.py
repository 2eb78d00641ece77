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
import json
import logging
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
from serving.schemas import ErrorResponse
from serving.service import ScoringService

ServiceLoader = Callable[[], ScoringService]
"""Builds a new ScoringService (from the registry); raises with a message when it cannot."""

FallbackLoader = Callable[[Exception], ScoringService | None]
"""Given why the loader failed, a service from the last good local copy when that failure is one
a copy may stand in for (the registry cannot be reached), else ``None``; raises with a message
when the copy is missing or cannot be read."""

log = logging.getLogger("denial_risk.api")


class ModelNotReady(Exception):
    """No model is loaded: scoring answers 503 with the reason."""


@dataclass(frozen=True)
class LoadedModel:
    service: ScoringService
    loaded_at: datetime

    @property
    def from_local_copy(self) -> bool:
        return self.service.info.local_copy_saved_at is not None


class ModelHolder:
    """The scoring service in use, replaced atomically by :meth:`reload`.

    A request takes the current reference once (in its dependency) and keeps it to the end, so
    a reload never changes the model under a request in flight: the new service is fully built
    before a single reference assignment makes it current.

    A start-up load that fails does not stop the app: the holder serves the last good local
    copy meanwhile when the failure allows one (``fallback``), and :meth:`start_retrying`
    tries the loader again in the background, with growing waits, until the model it names
    is current.
    """

    def __init__(self, loader: ServiceLoader, fallback: FallbackLoader | None = None) -> None:
        self._loader = loader
        self._fallback = fallback
        self._lock = threading.Lock()  # serialises swaps; readers never take it
        self._stop = threading.Event()
        self._retrier: threading.Thread | None = None
        self.current: LoadedModel | None = None
        self.error: str | None = "the model has not been loaded yet"
        """Why the model the settings name is not current (``None`` once it is)."""

    def reload(self) -> tuple[LoadedModel | None, LoadedModel]:
        """Load the model now and make it current; return (previous, new).

        Raises whatever the loader raises; the previous model then stays in use. The objects
        alive after the swap are set aside from the garbage collector (:func:`freeze_heap`);
        those of the model replaced become collectable again first.
        """
        with self._lock:
            return self._swap(self._loader)

    def _swap(self, load: ServiceLoader) -> tuple[LoadedModel | None, LoadedModel]:
        gc.unfreeze()
        try:
            fresh = LoadedModel(load(), datetime.now(UTC))
            previous, self.current = self.current, fresh
            self.error = None if not fresh.from_local_copy else self.error
        finally:
            freeze_heap()
        return previous, fresh

    def load_at_startup(self) -> None:
        """First load; a failure is recorded (for /ready and 503s) instead of raised, and the
        last good local copy is served when the failure allows it."""
        try:
            self.reload()
        except Exception as error:  # any loader failure must leave the process serving /ready
            self._failed(error)
            return
        log.info(json.dumps({"event": "model_loaded", **_described(self.current)}))

    def _failed(self, error: Exception) -> None:
        """Record why the load failed; with nothing to serve, serve the local copy if allowed."""
        self.error = _short(f"{error}")
        log.warning(json.dumps({"event": "model_not_loaded", "reason": f"{error}"}))
        if self.current is not None or self._fallback is None:
            return
        fallback = self._fallback
        try:
            with self._lock:
                if self.current is None:
                    self._swap(lambda: _required(fallback(error)))
        except _NoFallback:
            return
        except Exception as copy_error:  # a missing or unreadable copy: any type
            self.error = _short(f"{error}; {copy_error}")
            return
        log.warning(json.dumps({"event": "serving_local_copy", **_described(self.current)}))

    @property
    def needs_loading(self) -> bool:
        """Whether the model the settings name is not current (none, or the local copy)."""
        current = self.current
        return current is None or current.from_local_copy

    @property
    def retrying(self) -> bool:
        return self._retrier is not None and self._retrier.is_alive()

    def start_retrying(
        self,
        first_wait: float,
        longest_wait: float,
        loaded: Callable[[LoadedModel], None] = lambda fresh: None,
    ) -> None:
        """While :attr:`needs_loading`, try the loader again on a thread: after ``first_wait``
        seconds, the wait doubling up to ``longest_wait``; ``loaded`` is called with the model
        once it is current. :meth:`stop_retrying` ends the thread."""
        if not self.needs_loading or self.retrying:
            return
        self._stop.clear()
        self._retrier = threading.Thread(
            target=self._retry,
            args=(first_wait, longest_wait, loaded),
            name="denial-risk-model-retry",
            daemon=True,  # a load stuck past shutdown must not hold the process
        )
        self._retrier.start()

    def _retry(
        self, wait: float, longest_wait: float, loaded: Callable[[LoadedModel], None]
    ) -> None:
        while not self._stop.wait(wait) and self.needs_loading:
            try:
                _, fresh = self.reload()
            except Exception as error:  # any loader failure: record it, wait longer, again
                self._failed(error)
                wait = min(2 * wait, longest_wait)
                continue
            log.info(json.dumps({"event": "model_loaded", **_described(fresh)}))
            loaded(fresh)

    def stop_retrying(self, timeout: float) -> None:
        self._stop.set()
        if self._retrier is not None:
            self._retrier.join(timeout)

    def not_ready_reason(self) -> str:
        """Why no model is served, and what the API is doing about it."""
        reason = self.error or "no model loaded"
        return f"{reason}; retrying in the background" if self.retrying else reason

    def warning(self) -> str | None:
        """What a client should know about the model served, when it is not the one the
        settings name (the registry could not be reached: the last good local copy)."""
        current = self.current
        if current is None or not current.from_local_copy:
            return None
        info = current.service.info
        saved = info.local_copy_saved_at
        when = f" saved {saved:%Y-%m-%d %H:%M} UTC" if saved else ""
        retrying = "; retrying in the background" if self.retrying else ""
        return (
            f"serving the local copy of {info.name} version {info.version}{when} (the last one "
            f"loaded from the registry): {self.error}{retrying}"
        )


class _NoFallback(Exception):
    """The failure is not one a local copy may stand in for."""


def _required(service: ScoringService | None) -> ScoringService:
    if service is None:
        raise _NoFallback
    return service


def _described(loaded: LoadedModel | None) -> dict[str, object]:
    if loaded is None:
        return {}
    info = loaded.service.info
    saved = info.local_copy_saved_at
    return {
        "model": info.name,
        "version": info.version,
        "source": "local copy" if saved else info.uri,
        **({"copy_saved_at": saved.isoformat()} if saved else {}),
    }


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
        raise ModelNotReady(holder.not_ready_reason())
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


KEY_REFUSALS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "No X-API-Key header."},
    403: {"model": ErrorResponse, "description": "X-API-Key not accepted."},
}
"""The answers of :func:`require_api_key`, documented on every router that depends on it."""


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
