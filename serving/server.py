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
import time
from dataclasses import dataclass
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
    reloads = _Reloads.for_workers(context, workers)  # a reload reaches them all (see below)

    def start(number: int, together: Any = None) -> multiprocessing.process.BaseProcess:
        process = context.Process(
            target=_serve_worker,
            args=(host, port, together, reloads, number),
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


def _serve_worker(host: str, port: int, together: Any, reloads: _Reloads, slot: int) -> None:
    """Worker ``slot``: the app from the environment :func:`run` set, on its own socket,
    accepting connections once ``together`` (a barrier of all first workers, or None) is met,
    its reloads shared with the other workers through ``reloads``."""
    import uvicorn

    # Not listening yet: uvicorn listens once the app has started, which _StartTogether holds
    # back until every first worker has loaded its model.
    sock = _reuse_port_socket(host, port)
    settings = _settings_from_environment()
    app: Any = _ReloadEveryWorker(
        app_from_environment(), reloads, slot, settings.api_keys[0] if settings.api_keys else None
    )
    config = uvicorn.Config(
        _StartTogether(app, together) if together is not None else app,
        **uvicorn_options(settings),
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


# -- reloading every worker -------------------------------------------------------------------
# POST /v1/admin/reload reaches the one worker its connection landed on. With several workers
# the others kept the model replaced: after `denial-risk promote` and a reload answered 200,
# requests on the other worker's connections were still scored by the old version, for as long
# as that worker ran (`benchmarks/bench_load.py reload --workers 2`). So each worker's app is
# wrapped (_ReloadEveryWorker): a reload one worker answers 200 raises a generation the workers
# share; the others see it within _RELOAD_POLL_SECONDS and reload through the same route in
# process; and the first answers only once every worker has loaded that generation, or 503
# saying how many did not. A replacement worker loads the champion of its start and catches up
# with any generation raised meanwhile.

_RELOAD_PATH = "/v1/admin/reload"

_RELOAD_POLL_SECONDS = 0.25
"""How often a worker looks for a reload another worker was asked for."""

_RELOAD_WAIT_SECONDS = 300.0
"""How long a reload's answer waits for the other workers to have reloaded too."""


@dataclass(frozen=True)
class _Reloads:
    """What the workers share about reloads (multiprocessing objects, inherited at spawn).

    ``requested`` is the last generation asked for (a ``Value("q")``), ``loaded`` each worker's
    own (an ``Array("q")``): the generation it last loaded, negated when that reload failed.
    """

    requested: Any
    loaded: Any

    @classmethod
    def for_workers(cls, context: Any, workers: int) -> _Reloads:
        return cls(context.Value("q", 0), context.Array("q", workers))


class _ReloadEveryWorker:
    """ASGI wrapper of worker ``slot``'s app: a reload it answers reaches every worker."""

    def __init__(self, app: Any, reloads: _Reloads, slot: int, api_key: str | None) -> None:
        self.app = app
        self.reloads = reloads
        self.slot = slot
        self.api_key = api_key
        # The generation of the model this worker's start-up loads: any raised later is a
        # reload asked for after that model was chosen, to catch up with.
        self.starting_generation = reloads.requested.value
        self._follower: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
        elif scope["type"] == "http" and (scope["method"], scope["path"]) == ("POST", _RELOAD_PATH):
            await self._reload_everywhere(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _lifespan_send(self, send: Any) -> Any:
        async def lifespan_send(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.reloads.loaded[self.slot] = self.starting_generation
                self._follower = asyncio.get_running_loop().create_task(self._follow())
            elif message["type"].startswith("lifespan.shutdown") and self._follower:
                self._follower.cancel()
            await send(message)

        return lifespan_send

    async def _follow(self) -> None:
        """Reload whenever another worker has been asked to."""
        while True:
            await asyncio.sleep(_RELOAD_POLL_SECONDS)
            wanted = self.reloads.requested.value
            if wanted > abs(self.reloads.loaded[self.slot]):
                try:
                    status = await self._reload_here()
                except Exception:  # the app answers its own errors; this must keep following
                    status = 500
                self.reloads.loaded[self.slot] = wanted if status == 200 else -wanted

    async def _reload_here(self) -> int:
        """The app's own reload route called in process (its checks, metrics and log line)."""
        headers = [(b"content-length", b"0")]
        if self.api_key:
            headers.append((b"x-api-key", self.api_key.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": _RELOAD_PATH,
            "raw_path": _RELOAD_PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": None,
            "server": None,
            "state": {},
        }
        sent: list[Any] = []

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        return next((m["status"] for m in sent if m["type"] == "http.response.start"), 500)

    async def _reload_everywhere(self, scope: Any, receive: Any, send: Any) -> None:
        """This worker's reload; once answered 200, every other worker's before the answer."""
        answer: list[Any] = []

        async def hold(message: Any) -> None:
            answer.append(message)

        await self.app(scope, receive, hold)
        start = next((m for m in answer if m["type"] == "http.response.start"), None)
        if start is not None and start["status"] == 200:
            with self.reloads.requested.get_lock():
                self.reloads.requested.value += 1
                generation = self.reloads.requested.value
            self.reloads.loaded[self.slot] = generation
            behind = await asyncio.to_thread(self._wait_for_others, generation)
            if behind:
                answer = _reload_incomplete(start, len(self.reloads.loaded), behind)
        for message in answer:
            await send(message)

    def _wait_for_others(self, generation: int) -> list[str]:
        """Until every worker has loaded ``generation`` (or a later one); what each worker
        that has not says: failed, or not reloaded within :data:`_RELOAD_WAIT_SECONDS`."""
        deadline = time.monotonic() + _RELOAD_WAIT_SECONDS
        while True:
            loaded = list(self.reloads.loaded)
            failed = [i for i, g in enumerate(loaded) if g < 0 and -g >= generation]
            waiting = [i for i, g in enumerate(loaded) if abs(g) < generation]
            if not waiting or time.monotonic() > deadline:
                return [f"worker {i + 1}: failed" for i in failed] + [
                    f"worker {i + 1}: not reloaded within {_RELOAD_WAIT_SECONDS:.0f} s"
                    for i in waiting
                ]
            time.sleep(0.05)


def _reload_incomplete(start: Any, workers: int, behind: list[str]) -> list[Any]:
    """A 503 answer in place of a reload that some workers did not make."""
    request_id = dict(start.get("headers", [])).get(b"x-request-id", b"").decode() or None
    body = json.dumps(
        {
            "detail": f"reloaded in {workers - len(behind)} of {workers} workers "
            f"({'; '.join(behind)}); those keep the model they had: the server's log says why. "
            "Retry the reload, or restart the server",
            "errors": [],
            "request_id": request_id,
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    return [
        {"type": "http.response.start", "status": 503, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]
