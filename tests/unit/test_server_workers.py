"""Several server workers start accepting connections together, and a reload one of them
answers reaches them all (serving/server.py)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
from typing import Any

import pytest

from serving.server import _ReloadEveryWorker, _Reloads, _StartTogether


async def _lifespan_startup(app: Any) -> list[dict[str, Any]]:
    """Run an ASGI app's lifespan start-up as uvicorn does; the messages it sent."""
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    return sent


async def _app_that_starts(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "lifespan.startup.complete"})


def test_a_worker_reports_started_only_once_its_siblings_have() -> None:
    together = threading.Barrier(2)
    result: list[list[dict[str, Any]]] = []
    worker = threading.Thread(
        target=lambda: result.append(
            asyncio.run(_lifespan_startup(_StartTogether(_app_that_starts, together)))
        )
    )
    worker.start()
    worker.join(timeout=0.5)
    assert worker.is_alive() and not result  # held back: the sibling has not started
    together.wait(timeout=5)  # the sibling starts
    worker.join(timeout=5)
    assert result == [[{"type": "lifespan.startup.complete"}]]


def test_a_worker_serves_alone_when_a_sibling_never_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("serving.server._START_TOGETHER_SECONDS", 0.2)
    sent = asyncio.run(_lifespan_startup(_StartTogether(_app_that_starts, threading.Barrier(2))))
    assert sent == [{"type": "lifespan.startup.complete"}]


def test_requests_pass_through_untouched() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    asyncio.run(_StartTogether(app, threading.Barrier(2))({"type": "http"}, None, None))
    assert seen == ["http"]


# -- a reload reaches every worker ------------------------------------------------------------


class _FakeWorkerApp:
    """An app whose reload route answers ``status`` and counts its calls."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.reloads = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        self.reloads += 1
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def _serve_reload(apps: list[_FakeWorkerApp]) -> tuple[list[Any], list[int]]:
    """Wrap ``apps`` as the workers of one server, start them, POST a reload to the first;
    its answer's messages, and each app's reloads when that answer was sent."""
    reloads = _Reloads.for_workers(multiprocessing.get_context("spawn"), len(apps))
    workers = [_ReloadEveryWorker(app, reloads, slot, "k" * 20) for slot, app in enumerate(apps)]
    shutdown = asyncio.Event()
    lifespans = []
    for worker in workers:
        started = asyncio.Event()

        async def receive(started: asyncio.Event = started) -> dict[str, str]:
            if not started.is_set():
                started.set()
                return {"type": "lifespan.startup"}
            await shutdown.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: Any) -> None:
            return None

        lifespans.append(asyncio.create_task(worker({"type": "lifespan"}, receive, send)))
    await asyncio.sleep(0.05)
    answer: list[Any] = []
    seen: list[int] = []

    async def send_answer(message: Any) -> None:
        answer.append(message)
        seen[:] = [app.reloads for app in apps]

    async def no_body() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/v1/admin/reload", "headers": []}
    await asyncio.wait_for(workers[0](scope, no_body, send_answer), 10)
    await asyncio.sleep(0.1)  # ten polls: a worker that was not asked stays as it was
    shutdown.set()
    await asyncio.gather(*lifespans)
    return answer, seen


def test_a_reload_is_answered_once_every_worker_has_reloaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("serving.server._RELOAD_POLL_SECONDS", 0.01)
    apps = [_FakeWorkerApp(), _FakeWorkerApp(), _FakeWorkerApp()]
    answer, seen = asyncio.run(_serve_reload(apps))
    assert answer[0]["status"] == 200
    assert seen == [1, 1, 1]  # the sibling workers reloaded before the answer went out


def test_a_reload_a_worker_fails_is_answered_503_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("serving.server._RELOAD_POLL_SECONDS", 0.01)
    apps = [_FakeWorkerApp(), _FakeWorkerApp(status=503)]
    answer, _ = asyncio.run(_serve_reload(apps))
    assert answer[0]["status"] == 503
    assert (
        "reloaded in 1 of 2 workers (worker 2: failed)" in json.loads(answer[1]["body"])["detail"]
    )


def test_a_refused_reload_reaches_no_other_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload without a valid key is refused by the worker it reached, and goes no further."""
    monkeypatch.setattr("serving.server._RELOAD_POLL_SECONDS", 0.01)
    apps = [_FakeWorkerApp(status=403), _FakeWorkerApp()]
    answer, _ = asyncio.run(_serve_reload(apps))
    assert answer[0]["status"] == 403
    assert [app.reloads for app in apps] == [1, 0]
