"""ASGI middleware: request id, body size limit, one JSON log line and metrics per request.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so the body limit can answer 413 before the
body is parsed, and so an unexpected exception still produces a JSON 500 with the request id.

The log line holds method, path, route, status, claim counts, duration and request id, and
nothing from the body: no member IDs, names or birth dates ever reach the log.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
import traceback
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api.metrics import ApiMetrics

logger = logging.getLogger("denial_risk.api")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class RequestMiddleware:
    """Wraps every HTTP request of the app (see module docstring)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: ApiMetrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status_holder = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        error_type = None
        try:
            if scope["method"] in _BODY_METHODS:
                body, too_large = await self._read_body(scope, receive)
                if too_large:
                    await self._too_large(send_with_id, request_id)
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_with_id)
        except Exception as error:  # an unexpected failure: answer 500, keep serving
            error_type = type(error).__name__
            # Frames only, not the message: messages can quote claim values.
            logger.error(
                json.dumps(
                    {
                        "event": "unhandled_error",
                        "request_id": request_id,
                        "error_type": error_type,
                        "traceback": "".join(traceback.format_tb(error.__traceback__)),
                    }
                )
            )
            if not status_holder["started"]:
                await _json(
                    send_with_id,
                    500,
                    {
                        "detail": "internal error while handling the request; it has been "
                        f"logged with request id {request_id}: quote it when reporting",
                        "errors": [],
                        "request_id": request_id,
                    },
                )
        finally:
            self._record(scope, state, status_holder["status"], started, request_id, error_type)

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, bool]:
        """The whole body, or ``too_large`` as soon as it exceeds the limit."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        return b"", True
                except ValueError:
                    pass
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), False

    async def _too_large(self, send: Send, request_id: str) -> None:
        limit = self.max_body_bytes
        await _json(
            send,
            413,
            {
                "detail": f"request body larger than {limit:,} bytes (DENIAL_RISK_MAX_BODY_BYTES); "
                "send fewer claims per request",
                "errors": [],
                "request_id": request_id,
            },
        )

    def _record(
        self,
        scope: Scope,
        state: dict[str, Any],
        status: int,
        started: float,
        request_id: str,
        error_type: str | None,
    ) -> None:
        seconds = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        path = scope["path"]
        self.metrics.observe_request(scope["method"], template, status, seconds)
        record: dict[str, Any] = {
            "event": "request",
            "request_id": request_id,
            "method": scope["method"],
            # Never the query string; a path other than its route's is the client's text (no
            # route, or a file under the docs' mount), so only this API's own words are kept.
            "path": path if path == template else shown_path(path, scope),
            "route": template,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        }
        for key in ("claims", "scored", "rejected", "model_version"):
            if key in state:
                record[key] = state[key]
        if error_type:
            record["error_type"] = error_type
        logger.info(json.dumps(record))


UNKNOWN_PART = "..."


def shown_path(path: str, scope: Scope) -> str:
    """``path`` as a log line or an answer may repeat it: the parts that are words of this
    API's routes (``v1``, ``claims``, ``score``...) kept, any other part :data:`UNKNOWN_PART`.

    A path without a route is the client's text: ``/v1/claims/W123456789`` puts a member ID in
    it, and the log and the 404 said it whole. ``/v1/claim/score`` still shows as
    ``/v1/.../score``.
    """
    app = scope.get("app")
    words = getattr(getattr(app, "state", None), "route_words", None)
    if words is None:
        words = _route_words(app)
        if app is not None:
            app.state.route_words = words  # the routes are fixed once the app serves
    return "/".join(part if not part or part in words else UNKNOWN_PART for part in path.split("/"))


def _route_words(app: Any) -> frozenset[str]:
    """The parts of the app's route paths: its own routes (the docs) and, for those of its
    routers, the paths its OpenAPI schema lists (FastAPI keeps included routers' routes in
    private objects)."""
    paths = [str(getattr(route, "path", "")) for route in getattr(app, "routes", ())]
    if callable(getattr(app, "openapi", None)):
        paths.extend(app.openapi().get("paths", {}))
    return frozenset(part for path in paths for part in path.split("/") if part and "{" not in part)


def _request_id(scope: Scope) -> str:
    """The caller's X-Request-ID when it is a safe token, else a new one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
    return _RequestIds.new()


class _RequestIds:
    """Random request ids without a system call each.

    ``uuid4`` reads ``os.urandom``, which lets go of the GIL; the event loop must then wait for
    the scoring thread to hand it back (see :data:`serving.api.coalesce.SWITCH_INTERVAL_SECONDS`).
    Ids need to be unique, not secret: a generator seeded from ``os.urandom`` once per process
    (and again in a forked child, so two workers never share a sequence) gives uuid4-shaped ids.
    """

    _generator: random.Random | None = None
    _pid = 0

    @classmethod
    def new(cls) -> str:
        if cls._generator is None or cls._pid != os.getpid():
            # Deliberate: unique, not secret (a caller may send any X-Request-ID of its own).
            cls._generator, cls._pid = random.Random(), os.getpid()  # noqa: S311
        return uuid.UUID(int=cls._generator.getrandbits(128), version=4).hex


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already-read body to the app, then defers to the server."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
