"""Run the scoring API under uvicorn (the `denial-risk serve` command calls :func:`run`)."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import TYPE_CHECKING

from denial_risk.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

_SETTINGS_ENV = "DENIAL_RISK_SERVER_SETTINGS_JSON"


def configure_logging(level: str) -> None:
    """One JSON object per line on stdout for the API's request log.

    The middleware writes each record as a JSON string, so the handler adds nothing around it.
    Called by :func:`run` (the entry point), never at import.
    """
    logger = logging.getLogger("denial_risk.api")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_denial_risk", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._denial_risk = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


def run(host: str, port: int, settings: Settings, workers: int = 1) -> None:
    """Serve the API on ``host:port`` until interrupted.

    ``workers`` > 1 starts that many processes, each loading the model once. Uvicorn then
    needs an app factory by import path, so ``settings`` travel to the workers as JSON in the
    ``DENIAL_RISK_SERVER_SETTINGS_JSON`` environment variable (inherited, never logged).
    Raises :class:`serving.app.ConfigurationError` on settings the API refuses (no API keys).
    """
    # Before serving.app is imported: it imports LightGBM, whose OpenMP reads the variable once.
    _limit_openmp_threads(settings.predict_threads)
    import uvicorn

    from serving.app import ConfigurationError, create_app

    problem = settings.api_auth_problem()
    if problem:
        raise ConfigurationError(problem)
    configure_logging(settings.log_level)
    # Requests are logged by our middleware (one JSON line each), not uvicorn's access log.
    if workers > 1:
        os.environ[_SETTINGS_ENV] = settings.model_dump_json()
        uvicorn.run(
            "serving.server:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=settings.log_level,
            access_log=False,
            proxy_headers=False,
        )
    else:
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level=settings.log_level,
            access_log=False,
            proxy_headers=False,
        )


def _limit_openmp_threads(threads: int) -> None:
    """Set OMP_NUM_THREADS for LightGBM before it is imported (here and in the workers).

    Uvicorn runs requests concurrently in a thread pool; if every LightGBM call also starts
    one OpenMP thread per core, a single-claim prediction waits ~10 ms for busy cores instead
    of taking ~0.1 ms. OpenMP reads the variable once, when LightGBM's library loads.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return  # the operator chose
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "lightgbm" in sys.modules:
        logging.getLogger("denial_risk.api").warning(
            json.dumps(
                {
                    "event": "openmp_threads_not_set",
                    "detail": "lightgbm was imported before serving.server.run; set "
                    "OMP_NUM_THREADS in the environment to control prediction threads",
                }
            )
        )


def app_from_environment() -> FastAPI:
    """App factory for multi-worker uvicorn: the settings :func:`run` was given, else the
    environment's ``DENIAL_RISK_*`` variables."""
    from denial_risk.settings import get_settings
    from serving.app import create_app

    given = os.environ.get(_SETTINGS_ENV)
    settings = Settings.model_validate_json(given) if given else get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
