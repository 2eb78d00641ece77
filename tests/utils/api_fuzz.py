"""Property-based requests to the API, generated from its own OpenAPI schema (schemathesis).

Every operation the schema lists gets requests generated both within its documented schema
(positive) and outside it (negative: wrong types, missing fields, bodies that are not JSON),
each sent with the valid API key, a wrong one or none. Every response is checked against what
the schema documents: no 5xx, a documented status code, the documented content type and
headers, and a body matching the documented response schema.

Not checked: that schema-valid data is accepted (the API refuses claims the schema cannot
express as wrong, e.g. a service date after the submission date) and that schema-violating
data is refused (unknown query parameters are ignored, as HTTP APIs usually do).

Used by ``tests/integration/test_api_properties.py`` (CI-sized) and
``benchmarks/bench_api_fuzz.py`` (10,000 requests and more).
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as schema_checks

CHECKS = [
    schema_checks.not_a_server_error,
    schema_checks.status_code_conformance,
    schema_checks.content_type_conformance,
    schema_checks.response_headers_conformance,
    schema_checks.response_schema_conformance,
]

_SENT = ("method", "url", "headers", "params", "json", "content", "data", "cookies", "files")
"""The parts of schemathesis' request arguments the test client takes."""


@dataclass
class FuzzFindings:
    requests: int = 0
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    """(operation, status) -> responses."""
    failures: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    """(operation, status, what failed) -> responses."""
    examples: dict[tuple[str, int, str], str] = field(default_factory=dict)
    """The first failure of each kind, as schemathesis describes it (with a curl command)."""

    def merge(self, other: FuzzFindings) -> None:
        self.requests += other.requests
        self.statuses.update(other.statuses)
        self.failures.update(other.failures)
        for key, text in other.examples.items():
            self.examples.setdefault(key, text)

    def summary(self) -> str:
        lines = [f"{self.requests:,} requests; failures: {sum(self.failures.values()):,}"]
        for key, count in self.failures.most_common():
            lines.append(f"  {count:>5} x {key[0]} -> {key[1]}: {key[2]}")
            lines.append("        " + self.examples[key][:600].replace("\n", "\n        "))
        return "\n".join(lines)


def _failure_title(error: BaseException) -> str:
    titles = re.findall(r"^- (\S+ [^\n]+)$", str(error), flags=re.MULTILINE)
    return "; ".join(titles) or f"{type(error).__name__}: {str(error)[:200]}"


def fuzz_api(
    app: FastAPI,
    api_key: str,
    examples: int,
    seed: int,
    examples_for: Callable[[str], int] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> FuzzFindings:
    """Send generated requests to every operation of ``app`` (started, with its lifespan) and
    check each response against the schema.

    ``examples`` is the number of requests hypothesis generates per operation and mode (fewer
    where the operation has fewer distinct requests, such as ``/health``); ``examples_for`` may
    lower it for an operation, by its ``"METHOD /path"`` (a model reload costs a second).
    """
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    findings = FuzzFindings()
    keys = st.sampled_from([api_key] * 8 + [None, "not-a-key-" + "x" * 30])
    with TestClient(app, raise_server_exceptions=False) as client:
        for operation in operations:
            name = f"{operation.method.upper()} {operation.path}"
            count = examples_for(name) if examples_for else examples
            for mode in GenerationMode:
                found = _fuzz_operation(client, operation, mode, keys, count, seed)
                findings.merge(found)
                if progress:
                    progress(f"{name} {mode.value}", found.requests)
    return findings


def _fuzz_operation(
    client: TestClient,
    operation: Any,
    mode: GenerationMode,
    keys: st.SearchStrategy[str | None],
    examples: int,
    seed: int,
) -> FuzzFindings:
    findings = FuzzFindings()
    name = f"{operation.method.upper()} {operation.path}"

    @hypothesis.settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.generate],  # every request counts; failures are collected
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.seed(seed)
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode), key=keys)
    def send(case: Any, key: str | None) -> None:
        sent = case.as_transport_kwargs(headers={"X-API-Key": key or ""})
        if key is None:
            sent["headers"].pop("X-API-Key", None)
        response = client.request(**{part: sent[part] for part in _SENT if part in sent})
        findings.requests += 1
        findings.statuses[(name, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as failure:
            title = (name, response.status_code, _failure_title(failure))
            findings.failures[title] += 1
            findings.examples.setdefault(title, str(failure))

    # Unsatisfiable: nothing outside the schema to send (GET /health has no parameters).
    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        send()
    return findings
