"""Property-based API tests: requests generated from the OpenAPI schema to every route.

At least 2,000 requests (``tests/utils/api_fuzz.py``), in and outside each route's documented
schema, with a valid key, a wrong one and none, to an app serving a real champion from a real
registry. Every response must be documented: no 5xx, a documented status and content type, a
body matching its schema. ``benchmarks/bench_api_fuzz.py`` sends 10,000 and more.
"""

from __future__ import annotations

from pathlib import Path

from denial_risk.settings import Settings
from serving.app import create_app
from tests.utils.api_fuzz import fuzz_api
from tests.utils.registry import SmallRegistry

API_KEY = "property-test-key-0123456789abcdef"
REQUESTS_IN_CI = 2_000


def test_generated_requests_to_every_route_get_documented_answers(
    small_registry: SmallRegistry, tmp_path: Path
) -> None:
    from simulator import SimulationConfig, simulate, write_simulation

    practice = tmp_path / "practice"  # a small data set for the analytics route
    write_simulation(simulate(SimulationConfig(n_claims=400, seed=3)), practice)
    settings = Settings(
        tracking_uri=small_registry.tracking_uri,
        model_uri=small_registry.model_uri,
        api_keys=[API_KEY],
        local_copy_dir=tmp_path / "last-good",
        analytics_dataset=practice,
    )
    findings = fuzz_api(
        create_app(settings),
        API_KEY,
        examples=230,
        seed=20,
        # A reload loads the model again from the registry (about a second each).
        # A summary recomputes a period's figures (a fraction of a second here).
        examples_for=lambda name: {"POST /v1/admin/reload": 8, "GET /v1/analytics/summary": 30}.get(
            name, 230
        ),
    )
    print(findings.summary())
    assert findings.requests >= REQUESTS_IN_CI
    assert not findings.failures, findings.summary()
    # The requests reached every route and its answers: not only refusals.
    routes = {route for route, _ in findings.statuses}
    assert len(routes) == 9, routes
    answered = {route for (route, status), n in findings.statuses.items() if status == 200}
    assert answered == routes, f"never answered 200: {routes - answered}"
    refused = {status for (_, status) in findings.statuses}
    assert {401, 403, 422} <= refused, refused
