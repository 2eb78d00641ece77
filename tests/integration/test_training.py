"""Simulator -> training -> MLflow registry -> loading: the real pieces together."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.claim_tables import ClaimTables
from features.schema import ClaimsDataset
from serving.loading import load_service
from training import registry
from training.dataset import TrainingDataError
from training.estimator import BoosterParams, EstimatorConfig
from training.train import TrainSettings, run_training

pytestmark = pytest.mark.integration


def test_first_training_run_is_registered_and_promoted(trained):
    outcome = trained.outcome
    assert outcome.promoted and outcome.gate_reason == "no champion yet"
    client = registry.configure(trained.tracking_uri)
    assert registry.champion_version(client, "denial-risk", "champion") == outcome.version
    run = client.get_run(outcome.run_id)
    for key in (
        "roc_auc",
        "pr_auc",
        "ece",
        "brier",
        "log_loss",
        "recall_at_95_precision",
        "reason_top1_accuracy",
        "reason_top3_accuracy",
        "carc_top3_accuracy",
        "bayes.roc_auc",
        "ratio_to_bayes.roc_auc",
    ):
        assert key in run.data.metrics, key
    assert run.data.tags["data.sha256"]
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"plots", "model_card.md"} <= artifacts
    for plot in ("calibration", "precision_recall", "shap_summary"):
        assert outcome.artifacts[plot].stat().st_size > 10_000
    # What is registered learned from every labelled claim, the test period's too (below the
    # max_training_claims cap, as here, every one of them).
    counts = outcome.counts
    refit = counts["denial_model_refit_claims"]
    assert refit == counts["train_claims"] + counts["test_claims"]
    card = " ".join(outcome.artifacts["model_card"].read_text().split())
    assert f"denial booster is then refit on {refit:,} labelled claims" in card


def test_quality_close_to_bayes_optimal_on_the_later_period(trained):
    m, bayes = trained.outcome.metrics, trained.outcome.bayes_metrics
    # Looser than the 200k-claim targets in BENCHMARKS.md: this world has 24k claims.
    assert m["roc_auc"] >= 0.93 * bayes["roc_auc"]
    assert m["ece"] <= 0.04
    assert m["reason_top1_accuracy"] >= 0.8 * bayes["reason_top1_accuracy"]
    assert m["carc_top3_accuracy"] >= 0.5


def test_pyfunc_model_scores_exactly_like_the_service(trained):
    dataset, _ = ClaimsDataset.read(trained.sim_dir)
    tables = ClaimTables.from_dataset(dataset)
    some = tables.subset(tables.claims["claim_id"].tail(200))
    registry.configure(trained.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(trained.model_uri)
    flat = registry.json_safe(some.to_flat_lines())
    flat.loc[flat.index[0], "rendering_npi"] = None  # optional fields may be empty
    from_pyfunc = pyfunc.predict(flat)
    service = load_service(trained.model_uri, trained.tracking_uri)
    some.claims.loc[
        some.claims["claim_id"] == flat.loc[flat.index[0], "claim_id"], "rendering_npi"
    ] = None
    from_service = service.score_frame(some)
    merged = from_pyfunc.merge(from_service, on="claim_id", suffixes=("_pyfunc", "_service"))
    assert len(merged) == 200
    np.testing.assert_allclose(
        merged["denial_probability_pyfunc"], merged["denial_probability_service"], atol=1e-4
    )
    assert (merged["likely_reason_pyfunc"] == merged["likely_reason_service"]).all()


def test_reason_model_stays_small_because_every_claim_is_scored_with_it(trained):
    # The reason booster is predicted for every claim, not only denied ones: its round cap keeps
    # it at about a third of the denial booster's predict time (BENCHMARKS.md, Scoring).
    service = load_service(trained.model_uri, trained.tracking_uri)
    estimator = service.pipeline.named_steps["model"]
    classes = len(estimator.reason_classes_)
    cap = EstimatorConfig().reason_booster.max_rounds
    assert cap <= 20
    assert 0 < estimator.reason_booster_.num_trees() <= cap * classes


def test_weaker_model_is_registered_but_not_promoted_and_rollback_works(trained, tmp_path):
    client = registry.configure(trained.tracking_uri)
    champion = registry.champion_version(client, "denial-risk", "champion")
    weak = TrainSettings(
        dataset=trained.sim_dir,
        out_dir=tmp_path / "weak",
        booster=BoosterParams(max_rounds=2, num_leaves=2, early_stopping_rounds=1),
        shap_sample=200,
        served_refresh_days=0,  # the gate compares the daily figures only
    )
    outcome = run_training(weak, trained.tracking_uri)
    assert not outcome.promoted and "does not beat" in outcome.gate_reason
    assert registry.champion_version(client, "denial-risk", "champion") == champion

    registry.promote(client, "denial-risk", outcome.version)
    assert registry.champion_version(client, "denial-risk", "champion") == outcome.version
    aliases = {
        row.version: row.aliases for row in registry.list_versions(client, "denial-risk", [])
    }
    assert aliases[outcome.version] == ["champion"]  # what `denial-risk models` shows
    assert aliases[champion] == ["previous_champion"]
    assert registry.rollback(client, "denial-risk") == champion
    assert registry.champion_version(client, "denial-risk", "champion") == champion


def test_failed_run_leaves_the_champion_alone(trained, tmp_path):
    client = registry.configure(trained.tracking_uri)
    champion = registry.champion_version(client, "denial-risk", "champion")
    versions_before = len(registry.list_versions(client, "denial-risk", []))
    too_early = TrainSettings(
        dataset=trained.sim_dir,
        out_dir=tmp_path / "x",
        train_until="2000-01-01",
        test_from="2000-01-01",
    )
    with pytest.raises(TrainingDataError, match="at least 500 are needed"):
        run_training(too_early, trained.tracking_uri)
    assert registry.champion_version(client, "denial-risk", "champion") == champion
    assert len(registry.list_versions(client, "denial-risk", [])) == versions_before


def test_training_refuses_data_without_denials(trained, tmp_path):
    dataset, _ = ClaimsDataset.read(trained.sim_dir)
    # Only the ordinary price of a paid claim: patient share and the contractual write-down.
    dataset.adjustments = dataset.adjustments[
        dataset.adjustments["carc"].isin(["1", "2", "3", "45"])
    ]
    dataset.remittances = dataset.remittances.assign(status_code="1")
    dataset.remittances["paid_amount"] = dataset.remittances["total_charge"]
    folder = tmp_path / "no-denials"
    dataset.write(folder)
    with pytest.raises(TrainingDataError, match="no denied claims"):
        run_training(TrainSettings(dataset=folder, out_dir=tmp_path / "o"), trained.tracking_uri)


def test_schema_failures_are_reported_next_to_the_output(trained, tmp_path):
    dataset, _ = ClaimsDataset.read(trained.sim_dir)
    lines = dataset.lines.copy()
    lines.loc[lines.index[:5], "procedure_code"] = "7055"
    dataset.lines = lines
    folder = tmp_path / "bad"
    dataset.write(folder)
    settings = TrainSettings(
        dataset=folder,
        out_dir=tmp_path / "out",
        booster=BoosterParams(max_rounds=20),
        shap_sample=100,
        force_promote=False,
        served_refresh_days=0,
    )
    run_training(settings, f"sqlite:///{tmp_path / 'other.db'}")
    report = pd.read_csv(tmp_path / "out" / "schema-rejects.csv")
    assert (report["table"] == "lines").sum() == 5
    assert report["reason"].str.contains("procedure_code").any()
    assert (report["table"] == "claims").sum() >= 1  # their claims are quarantined whole


def test_training_rows_equal_the_rows_served_on_the_claims_own_day(sim_dir):
    """Train as it will be served: a training claim's features (counts of earlier submissions,
    rejected and unanswered claims included; rates; recent windows) equal what a model whose
    history holds what was known on that claim's day gives it when it is scored then."""
    from training.dataset import default_split, make_training_data
    from training.model import build_pipeline

    dataset, _ = ClaimsDataset.read(sim_dir)
    data = make_training_data(dataset, default_split(dataset.claims))
    features = build_pipeline().named_steps["features"]
    features.fit(
        data.train_tables, data.train_labels, history=data.history_before(data.split.train_until)
    )
    training_rows = features.transform(data.train_tables).to_numpy()
    claims = data.train_tables.claims
    days = pd.to_datetime(claims["submission_date"])
    rng = np.random.default_rng(3)
    compared = 0
    for day in rng.choice(np.sort(days.unique())[len(days.unique()) // 3 :], 4, replace=False):
        served = copy_with_history(features, *data.history_before(pd.Timestamp(day)))
        rows = np.flatnonzero((days == day).to_numpy())
        batch = data.train_tables.subset(claims["claim_id"].iloc[rows])
        np.testing.assert_array_equal(served.transform(batch).to_numpy(), training_rows[rows])
        compared += len(rows)
    assert compared >= 20


def copy_with_history(features, tables, outcomes):
    import copy

    served = copy.copy(features)
    served.history_ = copy.copy(features.history_)
    served.refresh_history(tables, outcomes)
    return served


def test_a_training_row_cap_keeps_the_latest_claims_and_all_of_history(sim_dir):
    """``max_training_claims``: the booster's rows are the latest training-period claims; the
    history their rates come from still holds every earlier claim."""
    from training.dataset import default_split, make_training_data

    dataset, _ = ClaimsDataset.read(sim_dir)
    split = default_split(dataset.claims)
    whole = make_training_data(dataset, split)
    cap = len(whole.train_tables) // 3
    capped = make_training_data(dataset, split, max_training_claims=cap)

    kept = capped.train_tables.claims
    assert len(kept) == cap
    assert capped.counts["train_claims_history_only"] == len(whole.train_tables) - cap
    dropped = whole.train_tables.claims[
        ~whole.train_tables.claims["claim_id"].isin(kept["claim_id"])
    ]
    assert dropped["submission_date"].max() <= kept["submission_date"].min()
    assert capped.train_labels["claim_id"].tolist() == kept["claim_id"].tolist()
    history_claims, _ = capped.history_before(split.train_until)
    assert set(dropped["claim_id"]) <= set(history_claims.claims["claim_id"])
    assert len(capped.test_tables) == len(whole.test_tables)


def test_train_command_caps_the_boosters_rows(trained, tmp_path):
    """``denial-risk train --max-training-claims N``: the run learns from N claims and says how
    many older ones fed only the history (model card and console)."""
    from typer.testing import CliRunner

    from denial_risk.cli import app

    out = tmp_path / "capped"
    result = CliRunner().invoke(
        app,
        ["train", str(trained.sim_dir), "--out", str(out), "--max-training-claims", "1500",
         "--served-refresh-days", "0", "--tracking-uri", f"sqlite:///{tmp_path / 'capped.db'}"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Trained on 1,500 claims" in " ".join(result.output.split())
    card = (out / "model_card.md").read_text()
    older = trained.outcome.counts["train_claims"] - 1500
    assert f"- train claims history only: {older:,}" in card


def test_a_version_whose_training_never_finished_cannot_be_promoted(trained):
    """Issue 20: a `train` killed after registering left a READY version with its run stuck
    RUNNING, and `promote` accepted it."""
    from typer.testing import CliRunner

    from denial_risk.cli import app

    client = registry.configure(trained.tracking_uri)
    champion = registry.champion_version(client, "denial-risk", "champion")
    finished = client.get_model_version("denial-risk", champion)
    experiment = client.get_run(finished.run_id).info.experiment_id
    # Registered inside a run that then died (a SIGKILL leaves its run RUNNING).
    run = client.create_run(experiment)
    orphan = client.create_model_version("denial-risk", finished.source, run_id=run.info.run_id)
    assert client.get_model_version("denial-risk", orphan.version).status == "READY"

    with pytest.raises(registry.IncompleteVersion, match="training run is RUNNING"):
        registry.promote(client, "denial-risk", orphan.version)
    result = CliRunner().invoke(
        app, ["promote", str(orphan.version), "--tracking-uri", trained.tracking_uri]
    )
    assert result.exit_code != 0 and "is incomplete" in " ".join(result.output.split())
    assert registry.champion_version(client, "denial-risk", "champion") == champion
    rows = {row.version: row for row in registry.list_versions(client, "denial-risk", [])}
    assert rows[str(orphan.version)].incomplete == "its training run is RUNNING"
    assert rows[champion].incomplete is None
    client.set_terminated(run.info.run_id, "KILLED")
    with pytest.raises(registry.IncompleteVersion, match="KILLED"):
        registry.promote(client, "denial-risk", orphan.version)
