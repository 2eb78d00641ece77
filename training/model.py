"""The fitted pipeline (features + estimator) and the one predict path everything calls.

``build_pipeline`` makes the scikit-learn ``Pipeline`` that is the model artifact.
``predict_frame`` is the single scoring path: batch scoring, the API and the MLflow pyfunc all
call it, so there is no second implementation of the features to drift apart.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from features.claim_tables import ClaimTables
from features.pipeline import ClaimFeatureTransformer, Context
from training.estimator import DenialRiskEstimator, EstimatorConfig

TOP_K = 3


def build_pipeline(
    estimator_config: EstimatorConfig | None = None,
    features: ClaimFeatureTransformer | None = None,
) -> Pipeline:
    return Pipeline(
        [
            ("features", features or ClaimFeatureTransformer()),
            ("model", DenialRiskEstimator(estimator_config)),
        ]
    )


def fit_pipeline(
    pipeline: Pipeline,
    tables: ClaimTables,
    labels: pd.DataFrame,
    tuner: Callable[[pd.DataFrame, pd.DataFrame], EstimatorConfig] | None = None,
) -> Pipeline:
    """Fit features on the training tables, then the estimator on their matrix.

    ``labels`` is aligned with ``tables.claims`` (see :func:`training.dataset.labels_for`).
    Done step by step rather than ``Pipeline.fit`` because the feature step needs the outcome
    dates (for history) and the estimator the submission dates (for its calibration slice).
    ``tuner``, if given, picks the estimator's settings from the training matrix first.
    """
    features: ClaimFeatureTransformer = pipeline.named_steps["features"]
    features.fit(tables, labels)
    matrix = features.transform(tables)
    if tuner is not None:
        pipeline.named_steps["model"].set_params(config=tuner(matrix, labels))
    pipeline.named_steps["model"].fit(matrix, labels)
    return pipeline


def with_history(pipeline: Pipeline, tables: ClaimTables, outcomes: pd.DataFrame) -> Pipeline:
    """A copy of the pipeline whose history state holds ``tables``/``outcomes``.

    Used to score claims point-in-time over a period after the training cutoff (evaluation, or a
    practice that has ingested newer remittances), without refitting anything.
    """
    view = copy.copy(pipeline)
    features = copy.copy(pipeline.named_steps["features"])
    features.history_ = copy.copy(features.history_)
    features.refresh_history(tables, outcomes)
    view.steps = [("features", features), ("model", pipeline.named_steps["model"])]
    return view


@dataclass
class Prediction:
    """Everything the model says about a batch of claims, row-aligned with the input claims."""

    claim_ids: np.ndarray
    denial_probability: np.ndarray
    reason_probs: pd.DataFrame
    carc_probs: pd.DataFrame
    matrix: pd.DataFrame
    context: Context

    def top_reasons(self, k: int = TOP_K) -> list[list[tuple[str, float]]]:
        return _top(self.reason_probs, k)

    def top_carcs(self, k: int = TOP_K) -> list[list[tuple[str, float]]]:
        return _top(self.carc_probs, k)


def _top(probs: pd.DataFrame, k: int) -> list[list[tuple[str, float]]]:
    values = probs.to_numpy(dtype=np.float64)
    columns = np.asarray(probs.columns)
    order = top_columns(values, k)
    return [[(str(columns[j]), float(values[i, j])) for j in row] for i, row in enumerate(order)]


def top_columns(values: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` largest values' column positions, largest first; of equal values the
    leftmost column first (as a stable descending sort would rank them).

    ``k`` passes of ``argmax`` rather than a sort of every row: a batch needs only the top 3 of
    dozens of CARC columns, and sorting them all cost most of a large batch's post-processing.
    """
    n_rows, n_columns = values.shape
    k = min(k, n_columns)
    order = np.empty((n_rows, k), dtype=np.intp)
    if k == 0 or n_rows == 0:
        return order
    remaining = values.copy()
    rows = np.arange(n_rows)
    for place in range(k):
        best = remaining.argmax(axis=1)
        order[:, place] = best
        remaining[rows, best] = -np.inf
    return order


def predict(pipeline: Pipeline, tables: ClaimTables) -> Prediction:
    """Score claims: calibrated denial probability, reason and CARC probabilities."""
    features: ClaimFeatureTransformer = pipeline.named_steps["features"]
    model: DenialRiskEstimator = pipeline.named_steps["model"]
    matrix, context = features.transform_with_context(tables)
    reasons = model.predict_reasons(matrix)
    return Prediction(
        claim_ids=tables.claims["claim_id"].to_numpy(),
        denial_probability=model.predict_proba(matrix)[:, 1],
        reason_probs=reasons,
        carc_probs=model.predict_carcs(reasons, context["payer_type"]),
        matrix=matrix,
        context=context,
    )


def predict_frame(pipeline: Pipeline, tables: ClaimTables, k: int = TOP_K) -> pd.DataFrame:
    """A flat table of scores: the columns batch scoring and the pyfunc return."""
    prediction = predict(pipeline, tables)
    frame = pd.DataFrame(
        {
            "claim_id": prediction.claim_ids,
            "denial_probability": prediction.denial_probability,
        }
    )
    reasons = prediction.top_reasons(k)
    carcs = prediction.top_carcs(k)
    frame["likely_reason"] = [r[0][0] if r else "" for r in reasons]
    for i in range(k):
        frame[f"reason_{i + 1}"] = [r[i][0] if len(r) > i else None for r in reasons]
        frame[f"reason_{i + 1}_probability"] = [r[i][1] if len(r) > i else None for r in reasons]
    for i in range(k):
        frame[f"carc_{i + 1}"] = [c[i][0] if len(c) > i else None for c in carcs]
        frame[f"carc_{i + 1}_probability"] = [c[i][1] if len(c) > i else None for c in carcs]
    return frame
