"""`denial-risk train`: data set -> fitted pipeline -> later-period evaluation -> MLflow.

Steps: read and validate the data set (rows that fail go to ``schema-rejects.csv``); split by
time; fit the pipeline on the earlier period; score the later period point-in-time; compare with
the Bayes-optimal scorer when the simulator's ground truth is beside the data; log everything to
MLflow; once the run has finished, register a version; promote it to champion only if it beats
the current champion on the same test claims (or when forced).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import cast

import mlflow
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.pipeline import Pipeline

from features.atomic import atomic_file, write_text
from features.schema import ClaimsDataset, rejects_report
from training import plots, registry
from training.backtest import BacktestPlan, replay, summarise
from training.dataset import TrainingData, default_split, make_training_data
from training.estimator import BoosterParams, EstimatorConfig
from training.metrics import (
    REPORTED_METRICS,
    bayes_metrics,
    evaluate,
    ratios_to_bayes,
    read_truth,
)
from training.model import (
    Prediction,
    build_pipeline,
    fit_features,
    fit_model,
    predict,
    predict_frame,
)
from training.spill import SpilledMatrix
from training.tune import tune_booster

Progress = Callable[[str, float], None]

HEADLINE_METRICS = [
    "roc_auc",
    "pr_auc",
    "ece",
    "brier",
    "reason_top1_accuracy",
    "carc_top3_accuracy",
]


class TrainSettings(BaseModel):
    """What one training run does. Defaults suit a practice's two years of claims."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    dataset: Path
    out_dir: Path = Path("work/train")
    train_until: date | None = None
    test_from: date | None = None
    test_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    gate_metric: str = "roc_auc"
    force_promote: bool = False
    min_training_claims: int = Field(default=500, ge=10)
    max_training_claims: int | None = Field(
        default=400_000,
        ge=10,
        description=(
            "The booster learns from at most this many of the latest training-period claims, "
            "and the final refit from at most this many of the latest labelled claims (the "
            "test period's first); older claims still feed the history rates. None = every "
            "claim."
        ),
    )
    truth_path: Path | None = None
    experiment: str = "denial-risk"
    registered_model_name: str = "denial-risk"
    champion_alias: str = "champion"
    booster: BoosterParams = Field(default_factory=BoosterParams)
    shap_sample: int = 5000
    tune_trials: int = Field(default=0, ge=0, description="Optuna trials; 0 = no tuning.")
    served_refresh_days: int = Field(
        default=7,
        ge=0,
        description=(
            "The test period is also evaluated as served: replayed with the model's history "
            "refreshed every this many days (training.backtest), beside the daily refresh of "
            "the headline figures. 0 = only the daily refresh."
        ),
    )
    refit_denials: bool = Field(
        default=True,
        description=(
            "After evaluation, re-learn the denial booster on the labelled claims (the test "
            "period and the latest of the training period, up to max_training_claims) with "
            "the rounds the first fit chose."
        ),
    )


@dataclass
class TrainOutcome:
    run_id: str
    version: str
    promoted: bool
    gate_reason: str
    metrics: dict[str, float]
    bayes_metrics: dict[str, float]
    champion_metrics: dict[str, float]
    counts: dict[str, int]
    split: str
    out_dir: Path
    seconds: float
    artifacts: dict[str, Path] = field(default_factory=dict)
    served_metrics: dict[str, float] = field(default_factory=dict)
    """The test period as served (:func:`evaluate_as_served`), with its ratios to Bayes."""
    served_refresh_days: int = 0


def _noop(stage: str, fraction: float) -> None:
    del stage, fraction


def fingerprint(data: TrainingData) -> dict[str, str]:
    digest = hashlib.sha256()
    for frame in (data.train_labels, data.test_labels):
        digest.update(frame["claim_id"].astype(str).str.cat(sep=",").encode())
        digest.update(frame["denied"].astype(int).astype(str).str.cat().encode())
    train_dates = data.train_labels["submission_date"]
    test_dates = data.test_labels["submission_date"]
    return {
        "data.train_rows": str(len(data.train_labels)),
        "data.test_rows": str(len(data.test_labels)),
        "data.train_period": f"{train_dates.min():%Y-%m-%d}..{train_dates.max():%Y-%m-%d}",
        "data.test_period": f"{test_dates.min():%Y-%m-%d}..{test_dates.max():%Y-%m-%d}",
        "data.sha256": digest.hexdigest()[:16],
    }


def evaluate_pipeline(
    pipeline: Pipeline, data: TrainingData
) -> tuple[dict[str, float], Prediction]:
    """Later-period metrics, scoring each test claim with the history known at its sending.

    The pipeline's history is brought up to the data set's last remittance in place (a claim's
    rates and counts still stop at its own submission day); the state it held is released
    first, so a million claims' history is never held twice.
    """
    pipeline.named_steps["features"].refresh_history(data.all_tables, data.all_outcomes)
    prediction = predict(pipeline, data.test_tables)
    labels = data.test_labels
    metrics = evaluate(
        labels["denied"].astype(int).to_numpy(),
        prediction.denial_probability,
        labels["payer_type"].reset_index(drop=True),
        labels["category"].astype(str).to_numpy(),
        prediction.reason_probs,
        labels["carc"].astype(str).to_numpy(),
        prediction.carc_probs,
    )
    return metrics, prediction


def evaluate_as_served(
    pipeline: Pipeline, data: TrainingData, refresh_days: int
) -> dict[str, float]:
    """Later-period metrics with the model served as a practice serves it: the test period
    replayed with the history refreshed every ``refresh_days`` (:mod:`training.backtest`), so a
    claim sees only the remittances dated before its step began, not every one dated before its
    own day as in :func:`evaluate_pipeline`. The pipeline itself is left as it is."""
    plan = BacktestPlan(data.split.test_from, refresh_days=refresh_days)
    backtest = replay(pipeline, data.all_tables, data.all_outcomes, plan, predict_frame)
    return cast(dict[str, float], summarise(backtest)["metrics"])


def served_prefix(refresh_days: int) -> str:
    """The MLflow metric prefix of :func:`evaluate_as_served`'s figures."""
    return f"as_served.refresh_{refresh_days}d."


def training_denial_rows(pipeline: Pipeline, data: TrainingData) -> pd.DataFrame:
    """The model rows of the training period's denied claims as the fit saw them (history as
    of the training cutoff): taken before evaluation moves the history on, for
    :func:`refit_reasons_with_later_period`."""
    denied = data.train_labels["denied"].astype(bool).to_numpy()
    tables = data.train_tables.subset(data.train_tables.claims["claim_id"][denied])
    return pipeline.named_steps["features"].transform(tables)


def _shap_sample(matrix: pd.DataFrame, rows: int) -> pd.DataFrame:
    return matrix.sample(n=min(rows, len(matrix)), random_state=7)


def latest_training_rows(
    submitted: pd.Series, max_claims: int | None, test_claims: int
) -> np.ndarray | None:
    """Positions of the training rows the final refit learns from, with every test-period
    claim: the latest, so that the refit too learns from at most ``max_claims`` claims (the
    whole test period if it alone holds more); ``None`` for all of them.

    The cap is what keeps a million-claim run within its time and memory (BENCHMARKS.md), and
    the claims it leaves out are the oldest, whose payers' rules are the most likely to have
    changed since.
    """
    if max_claims is None or len(submitted) + test_claims <= max_claims:
        return None
    room = max(max_claims - test_claims, 0)
    order = np.argsort(submitted.to_numpy(), kind="stable")
    return np.sort(order[len(order) - room :]) if room else np.empty(0, dtype=np.intp)


def refit_reasons_with_later_period(
    pipeline: Pipeline, data: TrainingData, train_rows: pd.DataFrame, test_matrix: pd.DataFrame
) -> None:
    """The registered model's reasons learned from the training period's denials
    (``train_rows``, see :func:`training_denial_rows`) and the test period's (see
    :meth:`DenialRiskEstimator.refit_reasons`)."""
    train_denied = data.train_labels["denied"].astype(bool).to_numpy()
    test_denied = data.test_labels["denied"].astype(bool).to_numpy()
    matrix = pd.concat([train_rows, test_matrix[test_denied]], ignore_index=True, copy=False)
    matrix.attrs = train_rows.attrs
    labels = pd.concat(
        [data.train_labels[train_denied], data.test_labels[test_denied]], ignore_index=True
    )
    pipeline.named_steps["model"].refit_reasons(matrix, labels)


def _refit_claims(data: TrainingData) -> str:
    refit = data.counts.get("denial_model_refit_claims")
    return f"{refit:,} " if refit else ""


def model_card(
    settings: TrainSettings,
    data: TrainingData,
    metrics: dict[str, float],
    bayes: dict[str, float],
    version: str | None = None,
    served: dict[str, float] | None = None,
) -> str:
    """The model card; ``served``: :func:`evaluate_as_served`'s figures, if measured."""
    lines = [
        f"# Model card: {settings.registered_model_name}" + (f" v{version}" if version else ""),
        "",
        "Predicts the probability that a payer denies a claim on first adjudication, the likely",
        "root-cause category and the likely CARC codes, from the 837 claim and the practice's",
        "earlier claims and remittances (point-in-time: only outcomes received before the claim",
        "was sent).",
        "",
        "## Data",
        f"- Data set: `{settings.dataset}`",
        f"- Split: {data.split.describe()} (by time, never at random)",
        *[f"- {k.replace('_', ' ')}: {v:,}" for k, v in data.counts.items()],
        "",
        "## Test-period metrics",
        *_metrics_table(metrics, bayes, served or {}, settings.served_refresh_days),
    ]
    payer_rows = sorted({k.split(".")[1] for k in metrics if k.startswith("payer_type.")})
    if payer_rows:
        lines += [
            "",
            "### By payer type",
            "| payer type | claims | denial rate | ROC-AUC | ECE |",
            "|---|---|---|---|---|",
        ]
        for group in payer_rows:

            def m(name: str, group: str = group) -> str:
                value = metrics.get(f"payer_type.{group}.{name}")
                return "—" if value is None else f"{value:.3f}"

            n = int(metrics.get(f"payer_type.{group}.n", 0))
            lines.append(f"| {group} | {n:,} | {m('denial_rate')} | {m('roc_auc')} | {m('ece')} |")
    lines += [
        "",
        "## Known limits",
        "- Bayes-optimal figures exist only for simulated data (the simulator's ground truth).",
        "- History: the boosters learned from claims sent before "
        f"{data.split.train_until:%Y-%m-%d}; it was evaluated with the history of every claim "
        f"and remittance of the data set, through the last remittance ({_last_remittance(data)}). "
        "The registered model holds no history: scoring builds it from the data set it was "
        "trained on, or the one `--history` names, so remittances ingested into it later "
        "(`denial-risk ingest --into`) count without a retrain.",
        "- After evaluation, the registered model takes in the test period: its probabilities "
        "are recalibrated (isotonic) on the calibration slice and the test period together, "
        "every labelled claim the evaluated denial booster did not learn from, and its reason "
        "model and CARC table are re-learned on both periods' denials. "
        + (
            f"Its denial booster is then refit on {_refit_claims(data)}labelled claims: the "
            "test period (the newest evidence of each payer's rules) and "
            "the latest of the training period, at most max_training_claims in all, with as "
            "many rounds as the evaluated one chose; the calibration stays the one learned on "
            "the evaluated booster's out-of-time scores. "
            if settings.refit_denials
            else "The denial booster is the evaluated one (`--no-refit`). "
        )
        + "The test-period figures above are the model's before that: an honest measure of a "
        "booster that had not seen the months it was tested on.",
        "- Payers, procedures and diagnoses rarer than the category threshold are pooled as "
        "'other'; a new payer starts from the prior denial rate.",
        "- Calibration drifts when payers change rules: watch the calibration plot each retrain.",
    ]
    return "\n".join(lines) + "\n"


def _metrics_table(
    metrics: dict[str, float], bayes: dict[str, float], served: dict[str, float], days: int
) -> list[str]:
    """The card's metrics: history refreshed daily, and as served if measured."""

    def value(figures: dict[str, float], name: str) -> str:
        return f"{figures[name]:.4f}" if name in figures else "—"

    def ratio(figures: dict[str, float], name: str) -> str:
        b = bayes.get(name)
        return f"{figures[name] / b:.3f}" if b and name in figures else "—"

    if not served:
        lines = ["| metric | model | Bayes-optimal | model / Bayes |", "|---|---|---|---|"]
        for name in (n for n in REPORTED_METRICS if n in metrics):
            lines.append(
                f"| {name} | {value(metrics, name)} | {value(bayes, name)} | "
                f"{ratio(metrics, name)} |"
            )
        return lines
    every = "every day" if days == 1 else f"every {days} days"
    lines = [
        "The same model two ways. *Daily*: a claim's history holds every remittance dated "
        "before its own day (the figures the gate compares). *As served*: the test period "
        f"replayed with the history refreshed {every} (`denial-risk backtest --refresh-days "
        f"{days}`), so a claim sees only the remittances dated before its step began.",
        "",
        "| metric | model, daily refresh | model, as served | Bayes-optimal | daily / Bayes "
        "| as served / Bayes |",
        "|---|---|---|---|---|---|",
    ]
    for name in (n for n in REPORTED_METRICS if n in metrics):
        lines.append(
            f"| {name} | {value(metrics, name)} | {value(served, name)} | {value(bayes, name)} "
            f"| {ratio(metrics, name)} | {ratio(served, name)} |"
        )
    return lines


def _last_remittance(data: TrainingData) -> str:
    dates = pd.to_datetime(data.all_outcomes["remit_date"])
    return f"{dates.max():%Y-%m-%d}" if len(dates) else "none"


def run_training(
    settings: TrainSettings, tracking_uri: str, progress: Progress = _noop
) -> TrainOutcome:
    """Train, evaluate, log, register and gate. Raises ``TrainingDataError`` on unusable data."""
    started = time.perf_counter()
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    progress("reading and validating the data set", 0.02)
    dataset, rejects = ClaimsDataset.read(settings.dataset)
    if len(rejects):
        with atomic_file(out / "schema-rejects.csv") as temp:
            rejects_report(rejects).to_csv(temp, index=False)
    split = default_split(
        dataset.claims,
        pd.Timestamp(settings.train_until) if settings.train_until else None,
        pd.Timestamp(settings.test_from) if settings.test_from else None,
        settings.test_fraction,
    )
    progress("building point-in-time training set", 0.08)
    data = make_training_data(
        dataset, split, settings.min_training_claims, settings.max_training_claims
    )
    # The tables live on in ``data``; the remittance frames are not needed again.
    del dataset
    data.counts["schema_rejected_rows"] = len(rejects)

    progress("fitting features and LightGBM models", 0.15)
    pipeline = build_pipeline(EstimatorConfig(booster=settings.booster))
    tuned: dict[str, float] = {}

    def tuner(matrix: pd.DataFrame, labels: pd.DataFrame) -> EstimatorConfig:
        booster, best_auc = tune_booster(
            matrix,
            labels,
            settings.booster,
            settings.tune_trials,
            progress=lambda stage, f: progress(stage, 0.15 + 0.4 * f),
        )
        tuned.update(
            {
                f"tuned.{k}": float(v)
                for k, v in asdict(booster).items()
                if isinstance(v, int | float)
            }
        )
        tuned["tuned.cv_roc_auc"] = best_auc
        return EstimatorConfig(booster=booster)

    matrix = fit_features(
        pipeline,
        data.train_tables,
        data.train_labels,
        history=data.history_before(split.train_until),
    )
    # Everything the training cutoff's history still has to give is taken before the boosters
    # are fit; then that history and the training period's tables are released (evaluation
    # builds the history over every claim): a million claims' boosters fit in 1.3 GB less.
    reason_rows = training_denial_rows(pipeline, data)
    refit_rows = latest_training_rows(
        data.train_tables.claims["submission_date"],
        settings.max_training_claims,
        len(data.test_labels),
    )
    data.release_training_tables()
    pipeline.named_steps["features"].release_history()
    fit_model(pipeline, matrix, data.train_labels, tuner if settings.tune_trials else None)
    # The training rows wait on disk for the final refit while evaluation builds the history
    # over every claim (see training.spill).
    spilled = SpilledMatrix(matrix, out) if settings.refit_denials else None
    del matrix

    served: dict[str, float] = {}
    if settings.served_refresh_days:
        # Before evaluate_pipeline: the model's own history is released now, so the replay's
        # step by step histories are the only one held.
        progress(
            f"evaluating as served (history refreshed every {settings.served_refresh_days} days)",
            0.45,
        )
        served = evaluate_as_served(pipeline, data, settings.served_refresh_days)

    progress("evaluating on the later period", 0.6)
    # What is evaluated, registered and served: the fitted model with its history brought up to
    # the last remittance of the data set, not stopped at the training cutoff months earlier.
    metrics, prediction = evaluate_pipeline(pipeline, data)
    truth_path = settings.truth_path or settings.dataset / "truth.parquet"
    bayes: dict[str, float] = {}
    truth_p = None
    if truth_path.exists():
        truth = read_truth(truth_path, data.test_labels["claim_id"])
        bayes = bayes_metrics(data.test_labels, truth)
        truth_p = (
            data.test_labels[["claim_id"]]
            .merge(truth[["claim_id", "true_denial_probability"]], on="claim_id", how="left")[
                "true_denial_probability"
            ]
            .fillna(0.0)
            .to_numpy()
        )
    ratios = ratios_to_bayes(metrics, bayes)
    served = {**served, **ratios_to_bayes(served, bayes)} if served else {}
    prefix = served_prefix(settings.served_refresh_days)

    progress("drawing plots", 0.7)
    y = data.test_labels["denied"].astype(int).to_numpy()
    # The figures above are the model's as it was evaluated. What is registered is then
    # calibrated on the later period too (see DenialRiskEstimator.recalibrate): the model card
    # says so.
    estimator = pipeline.named_steps["model"]
    estimator.recalibrate(estimator.predict_raw(prediction.model_matrix()), y)
    refit_reasons_with_later_period(pipeline, data, reason_rows, prediction.model_matrix())
    del reason_rows
    if spilled is not None:
        # What is registered learns from every labelled claim: the test period's are the
        # newest evidence of each payer's rules (tuning worlds: ROC-AUC 0.010-0.015 x Bayes
        # higher on the months after the data set, as served; BENCHMARKS.md).
        train_y = data.train_labels["denied"].astype(int).to_numpy()
        if refit_rows is not None:
            train_y = train_y[refit_rows]
        # The test period's rows wait on disk too while the refit's matrix is built, the
        # prediction's copy let go once its SHAP sample is taken: the stacked frame is then the
        # only copy of any row (a million-claim run's test rows were 0.3 GB at its peak).
        shap_rows = _shap_sample(prediction.model_matrix(), settings.shap_sample)
        later = SpilledMatrix(prediction.model_matrix(), out)
        prediction.matrix = None
        estimator.refit_denials(
            lambda: spilled.stacked_on(later, refit_rows), np.concatenate([train_y, y])
        )
        data.counts["denial_model_refit_claims"] = len(train_y) + len(y)
    else:
        shap_rows = _shap_sample(prediction.model_matrix(), settings.shap_sample)
    artifacts = {
        "calibration": plots.calibration_plot(
            y, prediction.denial_probability, out / "calibration.png", truth_p
        ),
        "precision_recall": plots.precision_recall_plot(
            y, prediction.denial_probability, out / "precision_recall.png", truth_p
        ),
    }
    contributions = pipeline.named_steps["model"].contributions(shap_rows)
    artifacts["shap_summary"] = plots.shap_summary_plot(contributions, out / "shap_summary.png")

    progress("logging to MLflow and registering", 0.8)
    client = registry.configure(tracking_uri, create=True)
    registry.end_stopped_runs(client)
    mlflow.set_experiment(settings.experiment)
    with mlflow.start_run(run_name=f"train {split.describe()}", tags=registry.owner_tags()) as run:
        mlflow.log_params(
            {
                "train_until": f"{split.train_until:%Y-%m-%d}",
                "test_from": f"{split.test_from:%Y-%m-%d}",
                "gate_metric": settings.gate_metric,
                "as_served.refresh_days": settings.served_refresh_days,
                **{f"booster.{k}": v for k, v in asdict(settings.booster).items()},
            }
        )
        mlflow.set_tags({**fingerprint(data), "dataset": str(settings.dataset)})
        # One call, one database transaction: the names never overlap (bayes., ratio_to_bayes.,
        # as_served.refresh_<n>d., tuned. prefixes).
        mlflow.log_metrics(
            {
                **{k: float(v) for k, v in metrics.items() if np.isfinite(v)},
                **{f"bayes.{k}": float(v) for k, v in bayes.items() if np.isfinite(v)},
                **ratios,
                **{prefix + k: float(v) for k, v in served.items() if np.isfinite(v)},
                **tuned,
            }
        )
        mlflow.log_dict(data.counts, "data_counts.json")
        for path in artifacts.values():
            mlflow.log_artifact(str(path), artifact_path="plots")
        example = data.test_tables.subset(data.test_tables.claims["claim_id"].head(3))
        model_uri = registry.log_pipeline(pipeline, example, settings.dataset)
        card = model_card(settings, data, metrics, bayes, served=served)
        mlflow.log_text(card, "model_card.md")

        progress("comparing with the champion", 0.9)
        champion_metrics: dict[str, float] | None = None
        champion = registry.champion_version(
            client, settings.registered_model_name, settings.champion_alias
        )
        if champion is not None:
            champion_pipeline = registry.load_pipeline(
                f"models:/{settings.registered_model_name}/{champion}"
            )
            champion_metrics, _ = evaluate_pipeline(champion_pipeline, data)
        promoted, reason = registry.promotion_decision(
            settings.gate_metric, metrics, champion_metrics, settings.force_promote
        )
        mlflow.set_tags({"gate.promoted": str(promoted), "gate.reason": reason})
        run_id = run.info.run_id
    # Registered, then promoted, only once the run has closed with everything logged: a
    # training killed earlier leaves no version, and never a champion (issue 20).
    version = registry.register_version(client, settings.registered_model_name, model_uri, card)
    write_text(out / "model_card.md", model_card(settings, data, metrics, bayes, version, served))
    if promoted:
        registry.promote(client, settings.registered_model_name, version, settings.champion_alias)
    write_text(
        out / "metrics.json",
        json.dumps(
            {
                "model": metrics,
                "bayes": bayes,
                "ratios": ratios,
                **({"as_served": served} if served else {}),
                "as_served_refresh_days": settings.served_refresh_days,
            },
            indent=2,
        ),
    )
    progress("done", 1.0)
    return TrainOutcome(
        run_id=run_id,
        version=version,
        promoted=promoted,
        gate_reason=reason,
        metrics={**metrics, **ratios},
        bayes_metrics=bayes,
        champion_metrics=champion_metrics or {},
        counts=data.counts,
        split=split.describe(),
        out_dir=out,
        seconds=time.perf_counter() - started,
        artifacts={**artifacts, "model_card": out / "model_card.md"},
        served_metrics=served,
        served_refresh_days=settings.served_refresh_days if served else 0,
    )
