"""Prometheus metrics of one app: requests, latency, claims scored and the score distribution.

Each app gets its own ``CollectorRegistry`` (not the process-global default) so creating several
apps in one process, as the tests do, never registers a metric twice.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0)
_SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))


class ApiMetrics:
    """The service's metrics, exposed as Prometheus text on ``GET /metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "denial_risk_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "denial_risk_http_request_duration_seconds",
            "Time from request received to response sent, by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.claims = Counter(
            "denial_risk_claims",
            "Claims received for scoring, by outcome (scored or rejected).",
            ["outcome"],
            registry=self.registry,
        )
        self.scores = Histogram(
            "denial_risk_denial_probability",
            "Distribution of the calibrated denial probabilities returned.",
            buckets=_SCORE_BUCKETS,
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "denial_risk_model_loaded",
            "1 when a model is loaded and scoring is possible, else 0.",
            registry=self.registry,
        )
        self.model_info = Gauge(
            "denial_risk_model_info",
            "The model being served (value 1).",
            ["name", "version"],
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_scores(self, probabilities: list[float], rejected: int) -> None:
        for probability in probabilities:
            self.scores.observe(probability)
        self.claims.labels("scored").inc(len(probabilities))
        if rejected:
            self.claims.labels("rejected").inc(rejected)

    def set_model(self, name: str | None, version: str | None) -> None:
        self.model_info.clear()
        if name is None or version is None:
            self.model_loaded.set(0)
            return
        self.model_loaded.set(1)
        self.model_info.labels(name, version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
