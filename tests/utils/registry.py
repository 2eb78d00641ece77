"""A registry with a small real champion, built in seconds, for tests of loading and serving."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


@dataclass(frozen=True)
class SmallRegistry:
    tracking_uri: str
    model_uri: str
    version: str
    files: Path
    """The champion's files in the artifact store (``MLmodel``, ``artifacts/pipeline.pkl.zst``)."""
    dataset: Path
    """The data set it was trained on: its history by default."""

    @property
    def pipeline_file(self) -> Path:
        from training.registry import PIPELINE_FILE

        return self.files / "artifacts" / PIPELINE_FILE


def register_small_champion(work: Path, claims: int = 800) -> SmallRegistry:
    """Simulate ``claims`` claims, fit the real pipeline with a few boosting rounds, log it to a
    new sqlite registry under ``work`` (artifacts there too) and make it the champion.

    For tests of how a model is stored, loaded and served, not of what it predicts.
    """
    import mlflow

    from features.claim_tables import ClaimTables
    from simulator import SimulationConfig, simulate
    from training import registry
    from training.dataset import labels_for, outcome_labels
    from training.estimator import BoosterParams, EstimatorConfig
    from training.model import build_pipeline, fit_pipeline

    dataset = simulate(SimulationConfig(n_claims=claims, seed=5, days=200)).dataset
    labels = outcome_labels(dataset)
    tables = ClaimTables.from_dataset(dataset).subset(labels["claim_id"])
    config = EstimatorConfig(booster=BoosterParams(max_rounds=10, num_leaves=7))
    pipeline = fit_pipeline(build_pipeline(config), tables, labels_for(tables, labels))

    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    client = registry.configure(tracking_uri, create=True)
    experiment = mlflow.create_experiment("small", artifact_location=(work / "a").as_uri())
    example = tables.subset(tables.claims["claim_id"].head(3))
    history = work / "dataset"  # what its history is built from
    dataset.write(history)
    with mlflow.start_run(experiment_id=experiment):
        model_uri = registry.log_pipeline(pipeline, example, history)
    version = registry.register_version(client, "denial-risk", model_uri, "a small test model")
    registry.promote(client, "denial-risk", version)
    files = Path(urlparse(client.get_model_version_download_uri("denial-risk", version)).path)
    return SmallRegistry(tracking_uri, "models:/denial-risk@champion", version, files, history)
