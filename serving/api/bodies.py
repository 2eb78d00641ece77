"""JSON bodies that are counted before they are validated, and validated off the event loop.

FastAPI validates a route's body model on the event loop, before the route runs, so a limit the
route applies comes after every item of the body was validated: a batch of 100,001 empty claims
(300 KB, any valid key) spent ten seconds there building each claim's errors, and no other
request of the process, ``/health`` included, was answered meanwhile. A route whose body holds a
long list declares it as ``Annotated[Any, Body(), DocumentedAs(Model)]`` instead: FastAPI still
parses the JSON (bounded by the body size limit) and documents ``Model`` in OpenAPI as before,
and the route validates the parsed value with :func:`validated_body`, which counts the list
first, in the thread pool (``run_in_threadpool``, or a plain ``def`` route).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class DocumentedAs:
    """Annotation for a body FastAPI parses but does not validate, documented as ``model`` (the
    same ``$ref`` to the same component a ``model`` body has)."""

    model: type[BaseModel]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.any_schema()

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        documented = self.model.__pydantic_core_schema__
        if documented["type"] != "definitions":
            # A model without nested models: as a definition of its own, so that it becomes a
            # component and the body a reference to it (as a `model` body is documented).
            reference = core_schema.definition_reference_schema(documented["ref"])
            documented = core_schema.definitions_schema(reference, [documented])
        return handler(documented)


def listed(body: Any, field: str) -> list[Any] | None:
    """The list ``body[field]`` of a parsed JSON body, or ``None`` when there is none."""
    items = body.get(field) if isinstance(body, dict) else None
    return items if isinstance(items, list) else None


def validated_body(
    model: type[ModelT],
    body: Any,
    field: str,
    limit: int,
    too_many: Callable[[int], Exception],
) -> ModelT:
    """``body`` (parsed JSON) as ``model``, its list ``field`` counted before any item of it
    is validated: ``too_many(count)`` is raised over ``limit``.

    Raises :class:`fastapi.exceptions.RequestValidationError` (answered 422, as FastAPI answers
    a body that does not fit its model, locations under ``body``) when ``body`` does not fit.
    """
    items = listed(body, field)
    if items is not None and len(items) > limit:
        raise too_many(len(items))
    try:
        # from_attributes as FastAPI validates a body: a non-JSON body (bytes) is then refused
        # as "not an object" with the Content-Type hint, not as "not a ScoreRequest".
        return model.model_validate(body, from_attributes=True)
    except ValidationError as error:
        errors = [
            {**problem, "loc": ("body", *problem["loc"])}
            for problem in error.errors(include_url=False)
        ]
        raise RequestValidationError(errors, body=body) from None


__all__ = ["DocumentedAs", "listed", "validated_body"]
