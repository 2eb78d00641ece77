"""Run the scoring API under uvicorn (the `denial-risk serve` command calls :func:`run`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any

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


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options of every uvicorn server of the API (one process, or each worker).

    HTTP is parsed by h11, which refuses a request whose line and headers exceed
    ``settings.max_header_bytes`` as soon as that much has arrived (400, connection closed).
    httptools, uvicorn's choice when installed, has no such limit: a 50 MB header was read
    whole, in 3 to 8 s, and answered. h11 costs ~35 µs more CPU per request (~0.4% of a
    scored claim).
    """
    return {
        "http": "h11",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "log_level": settings.log_level,
        # Requests are logged by our middleware (one JSON line each), not uvicorn's access log.
        "access_log": False,
        "proxy_headers": False,
    }


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
    if workers > 1:
        os.environ[_SETTINGS_ENV] = settings.model_dump_json()
        if _kernel_spreads_connections():
            _serve_with_one_socket_per_worker(host, port, workers)
            return
        uvicorn.run(
            "serving.server:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            **uvicorn_options(settings),
        )
    else:
        uvicorn.run(create_app(settings), host=host, port=port, **uvicorn_options(settings))


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
    from serving.app import create_app

    settings = _settings_from_environment()
    configure_logging(settings.log_level)
    return create_app(settings)


def _settings_from_environment() -> Settings:
    from denial_risk.settings import get_settings

    given = os.environ.get(_SETTINGS_ENV)
    return Settings.model_validate_json(given) if given else get_settings()


# -- several workers --------------------------------------------------------------------------
# Clients keep their connections open, so the worker that accepts a connection serves it to the
# end. Under uvicorn's own supervisor the workers share one socket that listens from the start:
# clients that connected while one worker was still loading the model all went to the other,
# which then served all 20 of them while its sibling idled (p50 19-22 ms at 250 req/s instead of
# 9-14 ms, depending on start-up timing). Here each worker has its own SO_REUSEPORT socket,
# which starts listening only once every worker has started, and Linux then spreads new
# connections across the sockets by a hash of the client's address and port.

_START_TOGETHER_SECONDS = 600.0
"""How long a started worker waits for its siblings before it serves alone."""


_UVICORN_STARTUP_FAILURE = 3
"""The exit code of a uvicorn server whose app failed to start (``uvicorn.server``)."""


def _kernel_spreads_connections() -> bool:
    """Whether SO_REUSEPORT balances connections here (Linux; BSD and macOS do not balance)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _serve_with_one_socket_per_worker(host: str, port: int, workers: int) -> None:
    """Run ``workers`` uvicorn processes, each on its own SO_REUSEPORT socket, until SIGINT or
    SIGTERM; a worker that dies is replaced, as uvicorn's own supervisor does."""
    import multiprocessing
    import multiprocessing.connection

    # Holds the port (and learns it when ``port`` is 0) without listening: the kernel hands
    # connections only to the listening sockets of the group, the workers'.
    reserved = _reuse_port_socket(host, port)
    port = reserved.getsockname()[1]
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked threads

    # The first workers start together (see above); a replacement joins the others at once.
    all_started = context.Barrier(workers)

    def start(number: int, together: Any = None) -> multiprocessing.process.BaseProcess:
        process = context.Process(
            target=_serve_worker,
            args=(host, port, together),
            name=f"denial-risk-worker-{number}",
        )
        process.start()
        return process

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [start(number, all_started) for number in range(workers)]
    log = logging.getLogger("denial_risk.api")
    log.info(json.dumps({"event": "serving", "host": host, "port": port, "workers": workers}))
    try:
        while not stopping:
            multiprocessing.connection.wait([p.sentinel for p in processes], timeout=0.5)
            for number, process in enumerate(processes):
                if process.exitcode is None or stopping:
                    continue
                if process.exitcode == _UVICORN_STARTUP_FAILURE:
                    # The app itself cannot start (its reason is in the worker's log above):
                    # starting it again would fail the same way, in a loop.
                    raise SystemExit(_UVICORN_STARTUP_FAILURE)
                log.warning(json.dumps({"event": "worker_replaced", "exit_code": process.exitcode}))
                processes[number] = start(number)
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)  # uvicorn's graceful shutdown
        for process in processes:
            process.join()
        reserved.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve_worker(host: str, port: int, together: Any) -> None:
    """One worker process: the app from the environment :func:`run` set, on its own socket,
    accepting connections once ``together`` (a barrier of all first workers, or None) is met."""
    import uvicorn

    # Not listening yet: uvicorn listens once the app has started, which _StartTogether holds
    # back until every first worker has loaded its model.
    sock = _reuse_port_socket(host, port)
    app = app_from_environment()
    config = uvicorn.Config(
        _StartTogether(app, together) if together is not None else app,
        **uvicorn_options(_settings_from_environment()),
    )
    uvicorn.Server(config).run(sockets=[sock])


class _StartTogether:
    """ASGI wrapper: reports the app's start-up complete only once all sibling workers have
    started too (or after :data:`_START_TOGETHER_SECONDS`, so one stuck worker cannot keep
    the others from serving)."""

    def __init__(self, app: Any, together: Any) -> None:
        self.app = app
        self.together = together

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_when_all_started(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete":
                # A sibling that has not started in time breaks the barrier: serve alone then,
                # rather than not at all.
                with contextlib.suppress(threading.BrokenBarrierError):
                    await asyncio.to_thread(self.together.wait, _START_TOGETHER_SECONDS)
            await send(message)

        await self.app(scope, receive, send_when_all_started)
