"""`denial-risk backtest`: a later period replayed as the product serves it.

From a day on, the claims are scored in steps of ``refresh_days``. On each step's first day the
model's history takes in what the practice knew that morning: every claim sent and every
remittance dated before that day (:func:`training.dataset.history_before`, the rule training
uses). The step's claims are then scored as one batch, each as of its own submission day: an
earlier claim of the same step counts among its submissions (the practice sent it), but a
remittance dated inside the step does not (the history waits for the next refresh). With
``retrain_days``, a model is fit on what was known on the first step's day and again every
``retrain_days`` (training's own fit); otherwise the one model given scores every step.

A daily refresh (``refresh_days=1``) gives every claim the features training's evaluation
gives it (history over every remittance dated before the claim's day); a weekly one, what a
practice refreshing its history weekly would have seen.

Nothing here knows how a claim is turned into a row of scores: a ``Scorer`` does it
(``ScoringService.score_frame`` for the command, :func:`training.model.predict_frame` for
training's second evaluation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from sklearn.pipeline import Pipeline

from features.claim_tables import ClaimTables
from training.dataset import TrainingDataError, history_before, labels_for, training_claims
from training.estimator import EstimatorConfig
from training.metrics import bayes_metrics, binary_metrics, evaluate, ratios_to_bayes
from training.model import build_pipeline, fit_pipeline, with_history

Scorer = Callable[[Pipeline, ClaimTables], pd.DataFrame]
"""Scores one step's claims with the step's pipeline: a frame with ``claim_id``,
``denial_probability`` and the ranked ``reason_1..``/``carc_1..`` columns, one row per claim in
the order given."""

Retrain = Callable[[pd.Timestamp], Pipeline]
"""A model fit on what was known on the day given (see :func:`fit_known_at`)."""

Progress = Callable[[str, float], None]

OUTCOME_COLUMNS = (
    "step",
    "step_day",
    "submission_date",
    "payer_type",
    "outcome",
    "denied",
    "known_reason",
    "known_carc",
    "remit_date",
)
"""What a backtest adds after the scorer's columns: the step that scored the claim and the day
its history was refreshed, when the claim was sent, and what is now known of its outcome."""


def _noop(stage: str, fraction: float) -> None:
    del stage, fraction


@dataclass(frozen=True)
class BacktestPlan:
    """Which claims are replayed, and how often the history (and the model) is brought up to
    date."""

    start: pd.Timestamp
    until: pd.Timestamp | None = None
    """Claims sent before this day only (default: every claim sent from ``start`` on)."""
    refresh_days: int = 7
    retrain_days: int = 0
    """0: the model given scores every step; N: a model is fit on the first step's day and
    every N days after."""

    def __post_init__(self) -> None:
        if self.refresh_days < 1:
            raise ValueError(f"--refresh-days must be at least 1, got {self.refresh_days}")
        if self.retrain_days < 0:
            raise ValueError(f"--retrain-days must be 0 (never) or more, got {self.retrain_days}")
        if self.until is not None and self.until <= self.start:
            raise ValueError(
                f"--until {self.until:%Y-%m-%d} is not after --from {self.start:%Y-%m-%d}: "
                "nothing to replay"
            )

    def claims(self, claims: pd.DataFrame) -> pd.Series:
        """Which of ``claims`` the backtest scores (a boolean mask)."""
        sent = pd.to_datetime(claims["submission_date"])
        mask = sent >= self.start
        return mask & (sent < self.until) if self.until is not None else mask

    def step_of(self, sent: pd.Series) -> np.ndarray:
        """Each claim's step (0 for the first), by its submission day."""
        days = (pd.to_datetime(sent) - self.start).dt.days.to_numpy()
        return days // self.refresh_days


@dataclass
class StepRecord:
    """What one step did and what it cost."""

    step: int
    day: str
    claims: int
    history_claims: int
    history_remittances: int
    last_remittance: str
    """The latest remittance date the step's history holds (always before ``day``)."""
    model: str
    refresh_seconds: float
    score_seconds: float
    retrain_seconds: float = 0.0


@dataclass
class Backtest:
    """Every replayed claim's scores and known outcome (:data:`OUTCOME_COLUMNS`), and the steps."""

    predictions: pd.DataFrame
    steps: list[StepRecord] = field(default_factory=list)

    def step_table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(s) for s in self.steps])


def replay(
    pipeline: Pipeline | None,
    tables: ClaimTables,
    outcomes: pd.DataFrame,
    plan: BacktestPlan,
    scorer: Scorer,
    retrain: Retrain | None = None,
    rejected: Container[str] = frozenset(),
    progress: Progress = _noop,
) -> Backtest:
    """Replay the claims of ``tables`` sent in ``plan``'s period (see the module docstring).

    ``outcomes`` is :func:`training.dataset.outcome_labels` of the same data set; ``rejected``
    the IDs of its front-end rejections (their outcome column says so). ``pipeline`` is left as
    it is: each step scores a copy with its own history (:func:`training.model.with_history`).
    ``pipeline`` may be ``None`` only with ``retrain`` and ``plan.retrain_days``; a retrained
    step's ``model_version`` column (if the scorer writes one) names the day its model was fit.
    """
    claims = tables.claims
    replayed = claims.loc[plan.claims(claims), ["claim_id", "submission_date", "payer_type"]]
    if replayed.empty:
        raise TrainingDataError(
            f"no claims sent from {plan.start:%Y-%m-%d}"
            + (f" to before {plan.until:%Y-%m-%d}" if plan.until is not None else "")
            + ": nothing to replay (move --from earlier)"
        )
    steps = plan.step_of(replayed["submission_date"])
    numbers = np.unique(steps)
    model = pipeline
    model_name = "given"
    retrained_on: pd.Timestamp | None = None
    frames: list[pd.DataFrame] = []
    records: list[StepRecord] = []
    for done, number in enumerate(numbers):
        day = plan.start + pd.Timedelta(days=int(number) * plan.refresh_days)
        progress(f"step {done + 1} of {len(numbers)} ({day:%Y-%m-%d})", done / len(numbers))
        retrain_seconds = 0.0
        if (
            retrain is not None
            and plan.retrain_days
            and (retrained_on is None or (day - retrained_on).days >= plan.retrain_days)
        ):
            started = time.perf_counter()
            model, retrained_on = retrain(day), day
            model_name = f"retrained {day:%Y-%m-%d}"
            retrain_seconds = time.perf_counter() - started
        if model is None:
            raise ValueError("a backtest needs a model, or retraining (retrain_days and retrain)")
        started = time.perf_counter()
        history = history_before(tables, outcomes, day)
        view = with_history(model, *history)
        refreshed = time.perf_counter()
        batch = replayed[steps == number]
        scores = scorer(view, tables.subset(batch["claim_id"]))
        del view
        if retrained_on is not None and "model_version" in scores.columns:
            scores["model_version"] = model_name
        frames.append(_with_outcomes(scores, batch, int(number) + 1, day, outcomes, rejected))
        remits = pd.to_datetime(history[1]["remit_date"])
        records.append(
            StepRecord(
                step=int(number) + 1,
                day=f"{day:%Y-%m-%d}",
                claims=len(batch),
                history_claims=len(history[0]),
                history_remittances=len(history[1]),
                last_remittance=f"{remits.max():%Y-%m-%d}" if len(remits) else "",
                model=model_name,
                refresh_seconds=refreshed - started,
                score_seconds=time.perf_counter() - refreshed,
                retrain_seconds=retrain_seconds,
            )
        )
    progress("replayed", 1.0)
    return Backtest(pd.concat(frames, ignore_index=True), records)


def _with_outcomes(
    scores: pd.DataFrame,
    batch: pd.DataFrame,
    step: int,
    day: pd.Timestamp,
    outcomes: pd.DataFrame,
    rejected: Container[str],
) -> pd.DataFrame:
    """The scorer's rows (in ``batch``'s order) with :data:`OUTCOME_COLUMNS`."""
    if len(scores) != len(batch) or not np.array_equal(
        scores["claim_id"].astype(str).to_numpy(), batch["claim_id"].astype(str).to_numpy()
    ):
        raise RuntimeError(f"step {step}: the scores are not one row per claim, in order")
    known = batch[["claim_id"]].merge(
        outcomes[["claim_id", "denied", "category", "carc", "remit_date"]],
        on="claim_id",
        how="left",
        validate="one_to_one",
    )
    has_outcome = known["remit_date"].notna().to_numpy()
    denied = known["denied"].astype("boolean").where(has_outcome)
    was_rejected = np.array([claim_id in rejected for claim_id in batch["claim_id"]], dtype=bool)
    outcome = np.select(
        [has_outcome & denied.fillna(False).to_numpy(), has_outcome, was_rejected],
        ["denied", "not denied", "front-end rejection"],
        default="no outcome yet",
    )
    frame = scores.reset_index(drop=True)
    frame["step"] = step
    frame["step_day"] = day
    frame["submission_date"] = pd.to_datetime(batch["submission_date"]).to_numpy()
    frame["payer_type"] = batch["payer_type"].to_numpy()
    frame["outcome"] = outcome
    frame["denied"] = denied.reset_index(drop=True)
    frame["known_reason"] = known["category"].where(denied.fillna(False)).to_numpy()
    frame["known_carc"] = known["carc"].where(denied.fillna(False)).to_numpy()
    frame["remit_date"] = pd.to_datetime(known["remit_date"]).to_numpy()
    return frame


def fit_known_at(
    tables: ClaimTables,
    outcomes: pd.DataFrame,
    day: pd.Timestamp,
    config: EstimatorConfig,
    min_training_claims: int,
    max_training_claims: int | None,
) -> Pipeline:
    """Training's fit (:func:`training.model.fit_pipeline`) on what was known on ``day``: the
    claims sent before it whose remittance had arrived before it (the latest
    ``max_training_claims``), with the history of every claim and remittance before it."""
    ids, _ = training_claims(tables.claims, outcomes, day, max_training_claims)
    train_tables = tables.subset(ids)
    labels = labels_for(train_tables, outcomes)
    if len(labels) < min_training_claims or not labels["denied"].astype(bool).any():
        raise TrainingDataError(
            f"only {len(labels):,} claims ({int(labels['denied'].astype(bool).sum()):,} denied) "
            f"had a known outcome by {day:%Y-%m-%d}: too few to retrain on (at least "
            f"{min_training_claims:,}, some denied); move --from later or retrain less often"
        )
    pipeline = build_pipeline(config)
    return fit_pipeline(
        pipeline, train_tables, labels, history=history_before(tables, outcomes, day)
    )


def summarise(backtest: Backtest, truth: pd.DataFrame | None = None) -> dict[str, object]:
    """The figures of a backtest over its claims with a known outcome.

    ``metrics``: the same names as training's evaluation (:func:`training.metrics.evaluate`),
    reason and CARC accuracies from the ranked columns the scorer wrote; ``by_month``: each
    submission month's claims, observed denial rate, mean prediction, ROC-AUC and ECE (where
    calibration drifts shows here); with ``truth`` (simulated data), the Bayes-optimal scorer's
    metrics on the same claims and the ratios to them.
    """
    frame = backtest.predictions
    known = frame[frame["denied"].notna()].reset_index(drop=True)
    if known.empty:
        raise TrainingDataError("none of the replayed claims has a known outcome yet")
    y = known["denied"].astype(int).to_numpy()
    p = known["denial_probability"].to_numpy(dtype=float)
    metrics = evaluate(
        y,
        p,
        known["payer_type"].astype(str),
        known["known_reason"].astype(str).to_numpy(),
        _ranked(known, "reason"),
        known["known_carc"].astype(str).to_numpy(),
        _ranked(known, "carc"),
    )
    months = pd.to_datetime(known["submission_date"]).dt.strftime("%Y-%m")
    by_month = []
    for month, rows in known.groupby(months.to_numpy()).indices.items():
        figures = binary_metrics(y[rows], p[rows])
        by_month.append(
            {
                "month": str(month),
                "claims": len(rows),
                "denial_rate": figures["denial_rate"],
                "mean_prediction": float(p[rows].mean()),
                "roc_auc": figures.get("roc_auc", float("nan")),
                "ece": figures.get("ece", float("nan")),
            }
        )
    steps = backtest.step_table()
    summary: dict[str, object] = {
        "claims": len(frame),
        "claims_with_outcome": len(known),
        "outcomes": frame["outcome"].value_counts().to_dict(),
        "period": f"{frame['submission_date'].min():%Y-%m-%d}.."
        f"{frame['submission_date'].max():%Y-%m-%d}",
        "steps": len(steps),
        "metrics": metrics,
        "by_month": by_month,
        "seconds": {
            "refresh_per_step": float(steps["refresh_seconds"].mean()),
            "refresh": float(steps["refresh_seconds"].sum()),
            "score": float(steps["score_seconds"].sum()),
            "retrain": float(steps["retrain_seconds"].sum()),
        },
    }
    if truth is not None:
        labels = known.rename(columns={"known_reason": "category", "known_carc": "carc"})
        labels["category"] = labels["category"].fillna("")
        labels["carc"] = labels["carc"].fillna("")
        bayes = bayes_metrics(labels, truth)
        summary["bayes"] = bayes
        summary["ratios"] = ratios_to_bayes(metrics, bayes)
    return summary


def _ranked(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The ranked ``<name>_1..k`` columns as a score per class (k for the first, 0 for a class
    not listed), so that a top-k accuracy over it counts the classes listed, in their order."""
    columns = [
        c for c in frame.columns if c.startswith(f"{name}_") and c[len(name) + 1 :].isdigit()
    ]
    listed = [frame[c].astype("string") for c in columns]
    classes = sorted(set().union(*(set(c.dropna()) for c in listed)))
    scores = np.zeros((len(frame), len(classes)))
    for rank, column in enumerate(listed):
        codes = pd.Categorical(column, categories=classes).codes
        rows = np.flatnonzero(codes >= 0)
        scores[rows, codes[rows]] = len(columns) - rank
    return pd.DataFrame(scores, columns=classes)


def learned_until(client: MlflowClient, name: str, version: str) -> pd.Timestamp | None:
    """The last submission day of the claims a registered version learned from (its training
    run's test period, which the registered model is recalibrated and refit on), if recorded."""
    run_id = client.get_model_version(name, version).run_id
    period = client.get_run(run_id).data.tags.get("data.test_period", "") if run_id else ""
    last = period.rpartition("..")[2]
    return pd.Timestamp(last) if last else None
