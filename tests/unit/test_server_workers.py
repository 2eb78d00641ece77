"""Several server workers start accepting connections together (serving/server.py)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from serving.server import _StartTogether


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
