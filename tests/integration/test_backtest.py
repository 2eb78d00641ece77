"""``denial-risk backtest`` and training's evaluation as served, on the session's trained world."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from denial_risk.cli import app
from features.claim_arrays import day_column
from features.claim_tables import ClaimTables
from features.schema import ClaimsDataset
from serving.loading import load_service
from serving.service import ScoringService
from training import registry
from training.backtest import OUTCOME_COLUMNS, BacktestPlan, fit_known_at, replay, summarise
from training.dataset import default_split, make_training_data, outcome_labels, training_claims
from training.estimator import BoosterParams, EstimatorConfig
from training.metrics import evaluate
from training.model import predict_frame
from training.train import evaluate_pipeline, served_prefix

pytestmark = pytest.mark.integration

WEEK = pd.Timedelta(days=7)


@dataclass
class World:
    dataset: ClaimsDataset
    tables: ClaimTables
    outcomes: pd.DataFrame
    test_from: pd.Timestamp


@pytest.fixture(scope="module")
def world(trained) -> World:  # type: ignore[no-untyped-def]
    dataset, _ = ClaimsDataset.read(trained.sim_dir)
    split = default_split(dataset.claims)  # the split the session's training used
    return World(
        dataset, ClaimTables.from_dataset(dataset), outcome_labels(dataset), split.test_from
    )


@pytest.fixture(scope="module")
def champion(trained):  # type: ignore[no-untyped-def]
    return load_service(trained.model_uri, trained.tracking_uri)


def _served(service):  # type: ignore[no-untyped-def]
    """The `score` command's scorer: the service's own score_frame, on each step's pipeline."""
    return lambda pipeline, tables: ScoringService(pipeline, service.info).score_frame(tables)


def _day(value: pd.Timestamp) -> int:
    return int(day_column(pd.Series([value]))[0])


def test_a_steps_history_holds_what_was_known_that_morning_and_nothing_later(world, champion):
    """Each step's history holds every claim sent and every remittance dated before its day,
    none later; and what arrived later cannot change a step's scores."""
    start = world.test_from + 4 * WEEK
    held: list[tuple[int, int]] = []

    def spy(pipeline, tables):  # type: ignore[no-untyped-def]
        history = pipeline.named_steps["features"].history_
        held.append((int(history.remit_days_.max()), len(history.known_claims_)))
        return predict_frame(pipeline, tables)

    plan = BacktestPlan(start, start + 2 * WEEK, refresh_days=7)
    result = replay(champion.pipeline, world.tables, world.outcomes, plan, spy)
    assert [s.day for s in result.steps] == [f"{start:%Y-%m-%d}", f"{start + WEEK:%Y-%m-%d}"]
    remitted = pd.to_datetime(world.outcomes["remit_date"])
    sent = world.tables.claims["submission_date"]
    for (last_remittance, claims_held), step in zip(held, result.steps, strict=True):
        day = pd.Timestamp(step.day)
        assert last_remittance < _day(day)
        assert last_remittance == _day(remitted[remitted < day].max())  # none left out either
        assert claims_held == int((sent < day).sum()) == step.history_claims
    # The future rewritten: every outcome remitted from the first step's day on, flipped.
    later = (remitted >= start).to_numpy()
    rewritten = world.outcomes.copy()
    rewritten.loc[later, "denied"] = ~rewritten.loc[later, "denied"].astype(bool)
    rewritten.loc[later, "category"] = "coding"
    one_step = BacktestPlan(start, start + WEEK, refresh_days=7)
    after = replay(champion.pipeline, world.tables, rewritten, one_step, predict_frame).predictions
    before = result.predictions[result.predictions["step"] == 1]
    assert len(before) > 50
    np.testing.assert_array_equal(before["denial_probability"], after["denial_probability"])
    assert before["reason_1"].tolist() == after["reason_1"].tolist()


def test_daily_refresh_reproduces_trainings_evaluation(trained, world, champion):
    """Refreshed every day, the backtest scores each claim as training's evaluation does (its
    history: every remittance dated before its own day): the same probabilities and metrics,
    and `score`'s columns equal to them to the 4 places they are rounded to."""
    data = make_training_data(world.dataset, default_split(world.dataset.claims))
    evaluated = registry.load_pipeline(trained.model_uri)
    _, prediction = evaluate_pipeline(evaluated, data)
    until = world.test_from + pd.Timedelta(days=6)
    as_scored: list[pd.DataFrame] = []

    def both(pipeline, tables):  # type: ignore[no-untyped-def]
        as_scored.append(_served(champion)(pipeline, tables))
        return predict_frame(pipeline, tables)

    plan = BacktestPlan(world.test_from, until, refresh_days=1)
    result = replay(champion.pipeline, world.tables, world.outcomes, plan, both)
    assert len(result.steps) >= 4  # one per day with claims
    frame = result.predictions
    labels = data.test_labels
    window = (labels["submission_date"] < until).to_numpy()
    position = pd.Index(labels["claim_id"]).get_indexer(frame["claim_id"])
    scored = position >= 0  # the claims with an outcome (the test period's)
    assert sorted(position[scored]) == list(np.flatnonzero(window))
    np.testing.assert_allclose(
        frame["denial_probability"][scored],
        prediction.denial_probability[position[scored]],
        rtol=0,
        atol=1e-9,
    )
    rounded = pd.concat(as_scored, ignore_index=True)
    np.testing.assert_allclose(
        rounded["denial_probability"], frame["denial_probability"], rtol=0, atol=5e-5
    )
    assert rounded["reason_1"].tolist() == frame["reason_1"].tolist()
    ours = summarise(result)["metrics"]
    theirs = evaluate(
        labels["denied"].astype(int).to_numpy()[window],
        prediction.denial_probability[window],
        labels["payer_type"][window].reset_index(drop=True),
        labels["category"].astype(str).to_numpy()[window],
        prediction.reason_probs[window].reset_index(drop=True),
        labels["carc"].astype(str).to_numpy()[window],
        prediction.carc_probs[window].reset_index(drop=True),
    )
    assert ours.keys() == theirs.keys()
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-9), name


def test_backtest_command_writes_every_later_claim_with_scores_and_outcome(
    trained, world, champion, tmp_path
):
    last = pd.Timestamp(world.tables.claims["submission_date"].max())
    start = last - 2 * WEEK
    out = tmp_path / "backtest.csv"
    result = CliRunner().invoke(
        app,
        ["backtest", str(trained.sim_dir), "--from", f"{start:%Y-%m-%d}", "--out", str(out),
         "--tracking-uri", trained.tracking_uri],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, dtype={"claim_id": str})
    claims = world.tables.claims
    later = claims.loc[claims["submission_date"] >= start, "claim_id"]
    assert sorted(frame["claim_id"]) == sorted(later)  # one row each, none left out
    score_columns = list(champion.score_frame(world.tables.subset(later.head(2))).columns)
    assert list(frame.columns) == [*score_columns, *OUTCOME_COLUMNS]
    assert frame["step"].max() == 3
    step_day, sent = pd.to_datetime(frame["step_day"]), pd.to_datetime(frame["submission_date"])
    assert ((step_day <= sent) & (sent < step_day + WEEK)).all()
    rejected = set(world.dataset.rejections["claim_id"])
    outcomes = frame.set_index("claim_id")["outcome"]
    assert all(outcomes[c] == "front-end rejection" for c in rejected if c in outcomes.index)
    summary = json.loads((tmp_path / "backtest-summary.json").read_text())
    assert summary["claims"] == len(frame)
    assert summary["claims_with_outcome"] == int(frame["denied"].notna().sum())
    assert {"roc_auc", "ece", "reason_top1_accuracy"} <= set(summary["metrics"])
    assert summary["bayes"]["roc_auc"] > 0.5  # the data set's truth.parquet
    assert set(summary["ratios"]) == {
        "ratio_to_bayes.roc_auc",
        "ratio_to_bayes.pr_auc",
        "ratio_to_bayes.reason_top1_accuracy",
    }
    assert [m["month"] for m in summary["by_month"]] == sorted(
        pd.to_datetime(frame.loc[frame["denied"].notna(), "submission_date"])
        .dt.strftime("%Y-%m")
        .unique()
    )
    # The champion learned from these months: the figures are flagged as optimistic.
    assert any("learned from claims" in w for w in summary["warnings"])
    assert "learned from claims sent up to" in " ".join(result.output.split())


def test_retraining_learns_only_what_was_known_on_its_day(world):
    day = world.test_from + WEEK
    ids, _ = training_claims(world.tables.claims, world.outcomes, day, None)
    known = world.outcomes.set_index("claim_id").loc[ids]
    sent = world.tables.claims.set_index("claim_id").loc[ids, "submission_date"]
    assert (pd.to_datetime(known["remit_date"]) < day).all() and (sent < day).all()
    capped, left = training_claims(world.tables.claims, world.outcomes, day, 1000)
    assert len(capped) == 1000 and left == len(ids) - 1000
    assert sent.loc[capped].min() >= sent.drop(capped).max()  # the latest kept

    def retrain(when: pd.Timestamp):  # type: ignore[no-untyped-def]
        small = BoosterParams(max_rounds=10, num_leaves=7, num_threads=1)
        config = EstimatorConfig(booster=small, reason_booster=replace(small, max_rounds=3))
        return fit_known_at(world.tables, world.outcomes, when, config, 500, 1500)

    plan = BacktestPlan(day, day + WEEK, refresh_days=7, retrain_days=7)
    result = replay(None, world.tables, world.outcomes, plan, predict_frame, retrain)
    assert [s.model for s in result.steps] == [f"retrained {day:%Y-%m-%d}"]
    assert result.steps[0].retrain_seconds > 0
    probability = result.predictions["denial_probability"]
    assert len(probability) > 50 and probability.between(0, 1).all() and probability.std() > 0


def test_training_reports_its_test_period_as_served_too(trained):
    outcome = trained.outcome
    served, daily = outcome.served_metrics, outcome.metrics
    assert outcome.served_refresh_days == 7
    # The same claims, scored with a history up to a week older than each claim's day.
    assert served["n"] == daily["n"] == outcome.counts["test_claims"]
    assert served["denial_rate"] == daily["denial_rate"]
    assert served["roc_auc"] != daily["roc_auc"]
    run = registry.configure(trained.tracking_uri).get_run(outcome.run_id)
    prefix = served_prefix(7)
    assert run.data.metrics[prefix + "roc_auc"] == pytest.approx(served["roc_auc"])
    assert prefix + "ratio_to_bayes.roc_auc" in run.data.metrics
    assert run.data.params["as_served.refresh_days"] == "7"
    card = outcome.artifacts["model_card"].read_text()
    header = next(line for line in card.splitlines() if line.startswith("| metric"))
    assert "daily refresh" in header and "as served" in header
    row = next(line for line in card.splitlines() if line.startswith("| roc_auc |"))
    assert f"{served['roc_auc']:.4f}" in row and f"{daily['roc_auc']:.4f}" in row
