"""Settings from one typed place, read once from the environment (prefix ``DENIAL_RISK_``).

Tests build their own ``Settings(...)`` and pass it in; nothing patches a global.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
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
    api_keys: list[str] = Field(default_factory=list, description="Accepted X-API-Key values.")
    max_batch_claims: int = Field(default=5000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=20_000_000, ge=1_000)

    @field_validator("api_keys")
    @classmethod
    def _keys_are_long_enough(cls, keys: list[str]) -> list[str]:
        short = [k for k in keys if len(k) < 16]
        if short:
            raise ValueError("every API key must be at least 16 characters long")
        return keys

    def resolved_tracking_uri(self) -> str:
        """The MLflow URI to use: explicit setting, then MLFLOW_TRACKING_URI, then local SQLite."""
        import os

        if self.tracking_uri:
            return self.tracking_uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        return f"sqlite:///{(self.work_dir / 'mlflow.db').resolve()}"

    def resolved_model_uri(self) -> str:
        return self.model_uri or f"models:/{self.model_name}@{self.champion_alias}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
