"""Load a model for serving: from the MLflow registry (alias or version) or a local model path."""

from __future__ import annotations

from mlflow import MlflowClient

from serving.service import ModelInfo, RiskBands, ScoringService
from training import registry


def load_service(
    model_uri: str, tracking_uri: str, bands: RiskBands | None = None
) -> ScoringService:
    """A ScoringService for ``model_uri`` (``models:/name@alias``, ``models:/name/3`` or a path).

    Raises ``RuntimeError`` with a message saying what to do when nothing can be loaded.
    """
    # A local model folder needs no registry (and must load where none exists).
    client = registry.configure(tracking_uri) if model_uri.startswith("models:/") else None
    try:
        pipeline = registry.load_pipeline(model_uri)
    except Exception as error:  # MLflow raises several types for "not there"
        raise RuntimeError(
            f"cannot load model '{model_uri}': {error}. Train one with `denial-risk train` "
            "or pass --model with a registry URI or a local model folder."
        ) from error
    return ScoringService(pipeline, describe_model(client, model_uri), bands)


def describe_model(client: MlflowClient | None, model_uri: str) -> ModelInfo:
    """Name, version, alias, training period and headline metrics of a registry model URI."""
    if client is None or not model_uri.startswith("models:/"):
        return ModelInfo(name=model_uri, version="local", alias=None, uri=model_uri)
    reference = model_uri.removeprefix("models:/")
    alias = None
    if "@" in reference:
        name, alias = reference.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, number = reference.split("/", 1)
        version = client.get_model_version(name, number)
    run = client.get_run(version.run_id) if version.run_id else None
    metrics = {}
    period = ""
    if run is not None:
        metrics = {
            k: v
            for k, v in run.data.metrics.items()
            if k in {"roc_auc", "pr_auc", "ece", "brier", "reason_top1_accuracy"}
        }
        period = run.data.tags.get("data.train_period", "")
    return ModelInfo(
        name=name,
        version=str(version.version),
        alias=alias,
        uri=model_uri,
        training_period=period,
        metrics=metrics,
    )
