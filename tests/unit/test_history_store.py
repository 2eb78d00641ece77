"""The history claims are scored against is the practice's data set as it stands, not the
model's (issue 18): a registered model holds no history, a remittance ingested after training
reaches the next score without a retrain, the API says how recent its history is and a reload
takes newer remittances in. The model is the small real champion (``small_registry``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from denial_risk.settings import Settings
from features.claim_tables import ClaimTables
from features.schema import ClaimsDataset
from serving.app import create_app
from serving.loading import ModelLoadError, load_service
from tests.utils.registry import SmallRegistry
from training import history_store, registry
from training.dataset import outcome_labels
from training.model import predict, with_history

KEY = "history-store-test-key-0123456789"


def _remitted_by(dataset: ClaimsDataset, day: pd.Timestamp) -> ClaimsDataset:
    """The data set as it stood on ``day``: every claim, the remittances that had arrived."""
    remits = dataset.remittances[dataset.remittances["remit_date"] <= day]
    kept = set(remits["remit_id"])

    def of_kept(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["remit_id"].isin(kept)].reset_index(drop=True)

    return ClaimsDataset(
        claims=dataset.claims,
        lines=dataset.lines,
        diagnoses=dataset.diagnoses,
        remittances=remits.reset_index(drop=True),
        remit_lines=of_kept(dataset.remit_lines),
        adjustments=of_kept(dataset.adjustments),
        remarks=of_kept(dataset.remarks),
    )


@pytest.fixture(scope="module")
def whole(small_registry: SmallRegistry) -> ClaimsDataset:
    return ClaimsDataset.read(small_registry.dataset)[0]


@pytest.fixture(scope="module")
def cutoff(whole: ClaimsDataset) -> pd.Timestamp:
    return pd.Timestamp(whole.remittances["remit_date"].quantile(0.6)).normalize()


@pytest.fixture
def earlier(whole: ClaimsDataset, cutoff: pd.Timestamp, tmp_path: Path) -> Path:
    folder = tmp_path / "earlier"
    _remitted_by(whole, cutoff).write(folder)
    return folder


def test_a_registered_model_holds_no_history_and_scores_with_its_data_sets(
    small_registry: SmallRegistry, whole: ClaimsDataset
) -> None:
    registry.configure(small_registry.tracking_uri)  # models:/ URIs resolve in this registry
    pipeline, named = registry.load_model(small_registry.model_uri)
    assert "rate_indexes_" not in pipeline.named_steps["features"].history_.__dict__
    assert named == small_registry.dataset.resolve()

    service = load_service(small_registry.model_uri, small_registry.tracking_uri)
    assert service.history is not None
    assert service.history.last_remittance == whole.remittances["remit_date"].max().date()
    assert service.history.claims == len(whole.claims)
    # The same scores as the model refreshed in memory with the data set's claims and outcomes.
    tables = ClaimTables.from_dataset(whole).subset(whole.claims["claim_id"].tail(60))
    expected = predict(
        with_history(pipeline, ClaimTables.from_dataset(whole), outcome_labels(whole)), tables
    ).denial_probability
    np.testing.assert_array_equal(predict(service.pipeline, tables).denial_probability, expected)


def test_remittances_ingested_after_training_reach_the_scores_without_a_retrain(
    small_registry: SmallRegistry, whole: ClaimsDataset, cutoff: pd.Timestamp, earlier: Path
) -> None:
    then = load_service(small_registry.model_uri, small_registry.tracking_uri, history=earlier)
    now = load_service(
        small_registry.model_uri, small_registry.tracking_uri, history=small_registry.dataset
    )
    assert then.history is not None and now.history is not None
    assert then.history.last_remittance is not None
    assert then.history.last_remittance <= cutoff.date() < now.history.last_remittance
    assert then.history.outcomes < now.history.outcomes
    latest = ClaimTables.from_dataset(whole).subset(whole.claims["claim_id"].tail(100))
    before = predict(then.pipeline, latest).denial_probability
    after = predict(now.pipeline, latest).denial_probability
    assert np.abs(after - before).max() > 1e-3  # the newer outcomes moved the history rates


def test_the_history_is_built_once_per_version_of_the_data_set(
    small_registry: SmallRegistry,
    whole: ClaimsDataset,
    earlier: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds: list[Path] = []
    build = history_store.build_history

    def counting(dataset_dir: Path, smoothing: float, prior_rate: float) -> Any:
        builds.append(dataset_dir)
        return build(dataset_dir, smoothing, prior_rate)

    monkeypatch.setattr(history_store, "build_history", counting)
    first = history_store.load_history(earlier, 5.0, 0.1)
    again = history_store.load_history(earlier, 5.0, 0.1)
    assert len(builds) == 1 and again.as_of == first.as_of
    assert len(list((earlier / history_store.CACHE_FOLDER).glob("*.pkl.zst"))) == 1

    # Other history parameters, or newer remittances written into the folder: built anew, the
    # older version's cache removed.
    history_store.load_history(earlier, 2.0, 0.1)
    assert len(builds) == 2
    whole.write(earlier)
    newer = history_store.load_history(earlier, 5.0, 0.1)
    assert len(builds) == 3 and newer.as_of.outcomes > first.as_of.outcomes
    assert len(list((earlier / history_store.CACHE_FOLDER).glob("*.pkl.zst"))) == 1

    # A damaged cache is rebuilt, not served.
    (cache,) = (earlier / history_store.CACHE_FOLDER).glob("*.pkl.zst")
    cache.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(256)))
    assert history_store.load_history(earlier, 5.0, 0.1).as_of.outcomes == newer.as_of.outcomes
    assert len(builds) == 4


def test_a_history_data_set_that_is_not_there_is_a_clear_load_error(
    small_registry: SmallRegistry, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match=r"history data set .* not found.*ingest --into"):
        load_service(
            small_registry.model_uri, small_registry.tracking_uri, history=tmp_path / "none"
        )


def test_the_api_reports_its_history_and_a_reload_takes_newer_remittances_in(
    small_registry: SmallRegistry, whole: ClaimsDataset, cutoff: pd.Timestamp, earlier: Path
) -> None:
    settings = Settings(
        model_uri=small_registry.model_uri,
        tracking_uri=small_registry.tracking_uri,
        api_keys=[KEY],
        local_copy_dir=earlier.parent / "copies",
        history_dataset=earlier,
    )
    auth = {"X-API-Key": KEY}
    with TestClient(create_app(settings)) as client:
        served = client.get("/v1/model", headers=auth).json()["history"]
        assert pd.Timestamp(served["last_remittance"]) <= cutoff
        assert served["claims"] == len(whole.claims)

        # The day's 835s are ingested into the data set; a reload (no restart) takes them in.
        shutil.rmtree(earlier)
        shutil.copytree(small_registry.dataset, earlier)
        reloaded = client.post("/v1/admin/reload", headers=auth).json()
        latest = f"{whole.remittances['remit_date'].max():%Y-%m-%d}"
        assert reloaded["changed"] is False  # the same model version, a newer history
        assert reloaded["history"]["last_remittance"] == latest
        assert client.get("/v1/model", headers=auth).json()["history"]["last_remittance"] == (
            latest
        )
