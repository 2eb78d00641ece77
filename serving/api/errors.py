"""Exception handlers: every refusal is JSON ``{detail, errors, request_id}`` that says what to do.

Validation errors become field paths with hints (never FastAPI's raw dump, which echoes the
input), a missing model becomes 503, an oversized batch 413.

A batch of bad items is answered with a problem per field of each: 5,000 empty claims (15 KB)
make 45,000 problems and 6.5 MB of JSON. Such answers are made in the thread pool (the hint of
each problem is Python work the event loop would otherwise do before answering anyone else),
and pydantic writes the JSON, in a third of the time of ``json.dumps``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.api.deps import ModelNotReady
from serving.api.middleware import shown_path
from serving.api.problems import pydantic_problems
from serving.api.scoring import BatchTooLarge, NothingScored
from serving.schemas import ErrorResponse, FieldProblem


def _answer(
    request: Request,
    status: int,
    detail: str,
    errors: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = ErrorResponse(
        detail=detail,
        errors=errors or [],
        request_id=request.scope.get("state", {}).get("request_id"),
    )
    return Response(
        body.model_dump_json(), status_code=status, headers=headers, media_type="application/json"
    )


async def _validation(request: Request, error: Exception) -> Response:
    return await run_in_threadpool(_validation_answer, request, error)


def _validation_answer(request: Request, error: Exception) -> Response:
    # Narrows the type for mypy (registered for RequestValidationError).
    assert isinstance(error, RequestValidationError)  # noqa: S101
    problems = pydantic_problems(error.errors())
    first = problems[0].message if problems else "invalid request"
    detail = (
        f"invalid request: {first}"
        if len(problems) == 1
        else f"invalid request: {len(problems)} problems, see `errors`"
    )
    return _answer(request, 422, detail, problems)


async def _not_ready(request: Request, error: Exception) -> Response:
    return _answer(
        request,
        503,
        f"no model loaded, so claims cannot be scored yet: {error}. Train and promote a model "
        "(`denial-risk train`), then POST /v1/admin/reload or restart the service",
        headers={"Retry-After": "30"},
    )


async def _too_large(request: Request, error: Exception) -> Response:
    return _answer(request, 413, str(error))


async def _nothing_scored(request: Request, error: Exception) -> Response:
    # Narrows the type for mypy (registered for NothingScored).
    assert isinstance(error, NothingScored)  # noqa: S101
    problems = [problem for claim in error.errors for problem in claim.problems]
    return await run_in_threadpool(_answer, request, 422, str(error), problems)


def _unreadable_body(error: StarletteHTTPException) -> str | None:
    """What is wrong with a JSON body FastAPI could not read, when that is why it answers 400.

    FastAPI turns a JSON syntax error into a validation error (422), but any other failure to
    read the body (bytes that are not UTF-8, arrays nested past Python's recursion limit) into a
    bare 400 "There was an error parsing the body", which the API does not document. Both are
    bodies that are not JSON, so both get the 422 a syntax error gets, saying which it was.
    """
    if error.status_code != 400 or error.__cause__ is None:
        return None
    cause = error.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return f"the request body is not valid JSON (it is not UTF-8 text: {cause.reason})"
    if isinstance(cause, RecursionError):
        return "the request body is not valid JSON the API can read (nested too deeply)"
    return f"the request body cannot be read as JSON ({type(cause).__name__})"


async def _http(request: Request, error: Exception) -> Response:
    # Narrows the type for mypy (registered for StarletteHTTPException).
    assert isinstance(error, StarletteHTTPException)  # noqa: S101
    unreadable = _unreadable_body(error)
    if unreadable is not None:
        hint = "send UTF-8 encoded JSON with Content-Type: application/json"
        problem = FieldProblem(field="body", message=f"{unreadable}; {hint}")
        return _answer(request, 422, f"invalid request: {problem.message}", [problem])
    detail = str(error.detail)
    if error.status_code == 404:
        shown = shown_path(request.url.path, request.scope)  # the client's text: see there
        detail = f"no route {request.method} {shown}; see /docs for the API"
    elif error.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}; see /docs"
    return _answer(request, error.status_code, detail, headers=getattr(error, "headers", None))


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ModelNotReady, _not_ready)
    app.add_exception_handler(BatchTooLarge, _too_large)
    app.add_exception_handler(NothingScored, _nothing_scored)
    app.add_exception_handler(StarletteHTTPException, _http)
