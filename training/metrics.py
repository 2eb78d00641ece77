"""Evaluation metrics on the later (test) period: discrimination, calibration, reasons."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)

from features.codes import DENIAL_CATEGORIES

REPORTED_METRICS: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "recall_at_90_precision",
    "recall_at_95_precision",
    "brier",
    "log_loss",
    "ece",
    "reason_top1_accuracy",
    "reason_top3_accuracy",
    "carc_top3_accuracy",
)
"""The later-period metrics every report shows, in this order (model card, CLI, benchmarks)."""


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """Weighted mean |observed rate - mean prediction| over equal-mass bins of the prediction.

    Equal-mass bins because denial probabilities bunch near zero: equal-width bins would put
    most claims into one bin and hide miscalibration among the risky ones.
    """
    order = np.argsort(p, kind="mergesort")
    chunks = np.array_split(order, bins)
    total = len(p)
    return float(sum(len(c) / total * abs(y[c].mean() - p[c].mean()) for c in chunks if len(c)))


def recall_at_precision(y: np.ndarray, p: np.ndarray, precision_target: float) -> float:
    """Largest recall reachable while precision stays at or above the target (0 if never)."""
    precision, recall, _ = precision_recall_curve(y, p)
    ok = precision >= precision_target
    return float(recall[ok].max()) if ok.any() else 0.0


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    if y.min() == y.max():
        return {"n": float(len(y)), "denial_rate": float(y.mean())}
    return {
        "n": float(len(y)),
        "denial_rate": float(y.mean()),
        "mean_prediction": float(p.mean()),
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "recall_at_90_precision": recall_at_precision(y, p, 0.90),
        "recall_at_95_precision": recall_at_precision(y, p, 0.95),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
    }


def top_k_accuracy(truth: np.ndarray, probs: pd.DataFrame, k: int) -> float:
    """Share of rows whose true class is among the k most probable columns."""
    if len(truth) == 0:
        return float("nan")
    columns = np.asarray(probs.columns)
    top = np.argsort(-probs.to_numpy(), axis=1)[:, :k]
    hits = (columns[top] == np.asarray(truth)[:, None]).any(axis=1)
    return float(hits.mean())


def evaluate(
    y: np.ndarray,
    p: np.ndarray,
    groups: pd.Series,
    reason_truth: np.ndarray,
    reason_probs: pd.DataFrame,
    carc_truth: np.ndarray,
    carc_probs: pd.DataFrame,
) -> dict[str, float]:
    """All later-period metrics as a flat dict (``payer_type.<type>.<metric>`` for groups).

    Reason and CARC accuracies are measured on the claims that were denied.
    """
    metrics = binary_metrics(y, p)
    denied = np.asarray(y, dtype=bool)
    metrics["reason_top1_accuracy"] = top_k_accuracy(reason_truth[denied], reason_probs[denied], 1)
    metrics["reason_top3_accuracy"] = top_k_accuracy(reason_truth[denied], reason_probs[denied], 3)
    metrics["carc_top3_accuracy"] = top_k_accuracy(carc_truth[denied], carc_probs[denied], 3)
    for group, index in groups.groupby(groups).groups.items():
        rows = np.asarray(groups.index.get_indexer(index))
        for name, value in binary_metrics(np.asarray(y)[rows], np.asarray(p)[rows]).items():
            metrics[f"payer_type.{group}.{name}"] = value
    return metrics


def compare_by_group(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    groups: pd.Series | np.ndarray,
    metric: str = "roc_auc",
) -> pd.DataFrame:
    """Several models' ``metric`` (a key of :func:`binary_metrics`) on the same claims, per
    group (a payer, a payer type): one row per group, most claims first, with ``claims``,
    ``denials`` and one column per model (NaN where the group's claims are all denied or all
    paid)."""
    y = np.asarray(y, dtype=int)
    keys = pd.Series(np.asarray(groups, dtype=object)).fillna("(none)").astype(str)
    rows = []
    for group, index in keys.groupby(keys).groups.items():
        positions = np.asarray(index)
        row: dict[str, object] = {
            "group": group,
            "claims": len(positions),
            "denials": int(y[positions].sum()),
        }
        for name, p in scores.items():
            figures = binary_metrics(y[positions], np.asarray(p)[positions])
            row[name] = figures.get(metric, float("nan"))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["group", "claims", "denials", *scores])
    return frame.sort_values(["claims", "group"], ascending=[False, True], ignore_index=True)


RATIO_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc", "reason_top1_accuracy")
"""The metrics reported as a ratio to the Bayes-optimal scorer's (``ratio_to_bayes.<name>``)."""


def read_truth(path: Path, claim_ids: pd.Series) -> pd.DataFrame:
    """The simulator's ground truth that the Bayes-optimal figures need, for these claims only.

    Its exact denial and cause probabilities; not its causes, reasons or recovery. Read as a
    whole, a million claims' truth cost ~0.3 GB at training's memory peak (evaluation).
    """
    wanted = ["claim_id", "true_denial_probability", *[f"p_{c}" for c in DENIAL_CATEGORIES]]
    present = set(pq.read_schema(path).names)
    table = pq.read_table(path, columns=[c for c in wanted if c in present])
    ids = pa.array(claim_ids.astype(str).tolist(), type=table.schema.field("claim_id").type)
    return table.filter(pc.is_in(table["claim_id"], value_set=ids)).to_pandas()


def bayes_metrics(labels: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """The same metrics for the simulator's exact denial and cause probabilities, on the claims
    of ``labels`` (``claim_id``, ``denied``, ``payer_type``, ``category``, ``carc``)."""
    aligned = labels[["claim_id"]].merge(truth, on="claim_id", how="left")
    causes = [c for c in DENIAL_CATEGORIES if f"p_{c}" in aligned.columns]
    cause_probs = aligned[[f"p_{c}" for c in causes]].fillna(0.0)
    cause_probs.columns = causes
    metrics = evaluate(
        labels["denied"].astype(int).to_numpy(),
        aligned["true_denial_probability"].fillna(0.0).to_numpy(),
        labels["payer_type"].reset_index(drop=True),
        labels["category"].astype(str).to_numpy(),
        cause_probs,
        labels["carc"].astype(str).to_numpy(),
        pd.DataFrame(index=cause_probs.index),
    )
    metrics.pop("carc_top3_accuracy", None)
    return metrics


def ratios_to_bayes(metrics: dict[str, float], bayes: dict[str, float]) -> dict[str, float]:
    """``ratio_to_bayes.<name>``: the model's :data:`RATIO_METRICS` over the Bayes-optimal's."""
    return {
        f"ratio_to_bayes.{k}": metrics[k] / bayes[k]
        for k in RATIO_METRICS
        if k in metrics and bayes.get(k)
    }
