"""Settings from one typed place, read once from the environment (prefix ``DENIAL_RISK_``).

Tests build their own ``Settings(...)`` and pass it in; nothing patches a global.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where data, the MLflow store and the service's secrets live."""

    model_config = SettingsConfigDict(env_prefix="DENIAL_RISK_", env_file=".env", extra="ignore")

    work_dir: Path = Field(default=Path("work"), description="Data sets, reports and plots.")
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default is a SQLite store under work_dir "
        "(MLFLOW_TRACKING_URI is honoured too).",
    )
    model_name: str = "denial-risk"
    recovery_model_name: str = "denial-recovery"
    champion_alias: str = "champion"
    model_uri: str | None = Field(
        default=None, description="Model to serve; default models:/<model_name>@champion."
    )
    history_dataset: Path | None = Field(
        default=None,
        description="Data set whose claims and remittances are the history new claims are "
        "scored with (`denial-risk ingest --into` keeps it current); by default the one the "
        "model was trained on.",
    )
    api_keys: list[str] = Field(default_factory=list, description="Accepted X-API-Key values.")
    max_batch_claims: int = Field(default=5000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=20_000_000, ge=1_000)
    max_header_bytes: int = Field(
        default=16_384,
        ge=1_024,
        le=1_048_576,
        description="Most bytes of a request's line and headers the API server accepts: a "
        "longer head is refused (400) and its connection closed as soon as that much has "
        "arrived. 16 KiB is h11's and Node's default; a browser's cookies for the host count.",
    )
    scoring_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="How long a scoring request may wait for its answer (queued behind other "
        "requests, then scored) before it is answered 503.",
    )
    allow_no_auth: bool = Field(
        default=False,
        description="Serve the API without X-API-Key checks when api_keys is empty. Only for a "
        "trusted local network; the API refuses to start with no keys unless this is true.",
    )
    risk_band_medium: float = Field(
        default=0.15, gt=0.0, lt=1.0, description="Denial probability from which a claim is medium."
    )
    risk_band_high: float = Field(
        default=0.35, gt=0.0, lt=1.0, description="Denial probability from which a claim is high."
    )
    predict_threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="OpenMP threads per LightGBM call in `denial-risk serve` (OMP_NUM_THREADS). "
        "1 suits many concurrent small requests: more threads per call oversubscribe the cores "
        "and each call then waits milliseconds for its threads.",
    )
    registry_timeout_seconds: int = Field(
        default=10,
        ge=1,
        le=600,
        description="How long `serve` waits for one answer of the MLflow tracking server or "
        "artifact store before the load fails (MLflow's MLFLOW_HTTP_REQUEST_TIMEOUT, 120 s by "
        "default, for the serving process).",
    )
    registry_retries: int = Field(
        default=1,
        ge=0,
        le=10,
        description="MLflow's own retries of one request in `serve` (MLFLOW_HTTP_REQUEST_MAX_"
        "RETRIES, 7 by default: with its backoff an unreachable server held the start for "
        "minutes). The API retries failed loads itself, in the background.",
    )
    model_retry_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="After a failed model load at start-up, the API tries again in the "
        "background after this many seconds, then doubles the wait each time.",
    )
    model_retry_max_seconds: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="The longest wait between two background load attempts.",
    )
    local_copy_dir: Path = Field(
        default=Path("models/last-good"),
        description="Where `serve` keeps a copy of each registry model it loads, one folder per "
        "model URI (models:/denial-risk@champion -> denial-risk@champion). When the registry "
        "cannot be reached at start-up the API serves the last copy meanwhile, and says so.",
    )
    analytics_dataset: Path | None = Field(
        default=None,
        description="Data set folder GET /v1/analytics/summary reads (written by `denial-risk "
        "ingest`); default: work_dir/ingested.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Level of the API's JSON request log."
    )

    @field_validator("api_keys")
    @classmethod
    def _keys_are_long_enough(cls, keys: list[str]) -> list[str]:
        short = [k for k in keys if len(k) < 16]
        if short:
            raise ValueError("every API key must be at least 16 characters long")
        return keys

    @model_validator(mode="after")
    def _retry_waits_are_ordered(self) -> Settings:
        if self.model_retry_seconds > self.model_retry_max_seconds:
            raise ValueError(
                f"model_retry_seconds ({self.model_retry_seconds}) must not exceed "
                f"model_retry_max_seconds ({self.model_retry_max_seconds})"
            )
        return self

    @model_validator(mode="after")
    def _bands_are_ordered(self) -> Settings:
        if self.risk_band_medium >= self.risk_band_high:
            raise ValueError(
                f"risk_band_medium ({self.risk_band_medium}) must be below risk_band_high "
                f"({self.risk_band_high})"
            )
        return self

    def api_auth_problem(self) -> str | None:
        """Why the API must not start with these settings, or ``None`` when auth is configured.

        Not a field validator: the batch CLI commands share these settings and need no keys.
        """
        if self.api_keys or self.allow_no_auth:
            return None
        return (
            "no API keys configured: set DENIAL_RISK_API_KEYS to a JSON list of keys of at "
            "least 16 characters (e.g. '[\"<random 32 chars>\"]'), or set "
            "DENIAL_RISK_ALLOW_NO_AUTH=true to serve without authentication on a trusted "
            "local network only"
        )

    def resolved_tracking_uri(self) -> str:
        """The MLflow URI to use: explicit setting, then MLFLOW_TRACKING_URI, then local SQLite."""
        import os

        if self.tracking_uri:
            return self.tracking_uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        return f"sqlite:///{(self.work_dir / 'mlflow.db').resolve()}"

    def resolved_analytics_dataset(self) -> Path:
        """The data set the analytics route reads: the setting, else ``work_dir/ingested``."""
        return self.analytics_dataset or self.work_dir / "ingested"

    def resolved_model_uri(self) -> str:
        return self.model_uri or f"models:/{self.model_name}@{self.champion_alias}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
