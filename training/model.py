"""The fitted pipeline (features + estimator) and the one predict path everything calls.

``build_pipeline`` makes the scikit-learn ``Pipeline`` that is the model artifact.
``predict_frame`` is the single scoring path: batch scoring, the API and the MLflow pyfunc all
call it, so there is no second implementation of the features to drift apart.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from features.claim_tables import ClaimTables
from features.history import HistoryFeatures
from features.pipeline import (
    MATRIX_DTYPE,
    ClaimFeatureTransformer,
    Context,
    FeatureBatch,
    column_index,
)
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
    history: tuple[ClaimTables, pd.DataFrame] | None = None,
) -> Pipeline:
    """Fit features on the training tables, then the estimator on their matrix.

    ``labels`` is aligned with ``tables.claims`` (see :func:`training.dataset.labels_for`).
    Done step by step rather than ``Pipeline.fit`` because the feature step needs the outcome
    dates (for history) and the estimator the submission dates (for its calibration slice).
    ``tuner``, if given, picks the estimator's settings from the training matrix first.
    ``history``: the claims and outcomes known at the training cutoff, for the history state
    (see :meth:`ClaimFeatureTransformer.fit`); by default the training claims themselves.
    """
    return fit_model(pipeline, fit_features(pipeline, tables, labels, history), labels, tuner)


def fit_features(
    pipeline: Pipeline,
    tables: ClaimTables,
    labels: pd.DataFrame,
    history: tuple[ClaimTables, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The first half of :func:`fit_pipeline`: fit the feature step, return the training
    matrix (one row per claim of ``tables``)."""
    features: ClaimFeatureTransformer = pipeline.named_steps["features"]
    features.fit(tables, labels, history)
    # The history's tables (most of a practice's claims, a gigabyte for a million) are not
    # needed by the boosters: released before the matrix is built.
    del history
    return features.transform(tables)


def fit_model(
    pipeline: Pipeline,
    matrix: pd.DataFrame,
    labels: pd.DataFrame,
    tuner: Callable[[pd.DataFrame, pd.DataFrame], EstimatorConfig] | None = None,
) -> Pipeline:
    """The second half of :func:`fit_pipeline`: fit the estimator on the training matrix."""
    if tuner is not None:
        pipeline.named_steps["model"].set_params(config=tuner(matrix, labels))
    pipeline.named_steps["model"].fit(matrix, labels)
    return pipeline


def with_history(pipeline: Pipeline, tables: ClaimTables, outcomes: pd.DataFrame) -> Pipeline:
    """A copy of the pipeline whose history state holds ``tables``/``outcomes``.

    Used to score claims point-in-time over a period after the training cutoff (evaluation, or a
    practice that has ingested newer remittances), without refitting anything.
    """
    view = with_history_state(pipeline, copy.copy(pipeline.named_steps["features"].history_))
    view.named_steps["features"].refresh_history(tables, outcomes)
    return view


def with_history_state(pipeline: Pipeline, state: HistoryFeatures) -> Pipeline:
    """A copy of the pipeline that looks history up in ``state`` (a history store's, see
    :mod:`training.history_store`); the pipeline given is left as it was."""
    features = pipeline.named_steps["features"]
    if (state.smoothing, state.prior_rate) != (features.smoothing, features.prior_rate):
        raise ValueError(
            f"the history was built with smoothing {state.smoothing} and prior rate "
            f"{state.prior_rate}, the model expects {features.smoothing} and "
            f"{features.prior_rate}"
        )
    view = copy.copy(pipeline)
    features = copy.copy(features)
    features.history_ = state
    view.steps = [("features", features), ("model", pipeline.named_steps["model"])]
    return view


def without_history(pipeline: Pipeline) -> Pipeline:
    """A copy of the pipeline holding no history (what is registered: the model's learned
    parts only); it scores once given a history (:func:`with_history_state`)."""
    features = pipeline.named_steps["features"]
    return with_history_state(pipeline, HistoryFeatures(features.smoothing, features.prior_rate))


@dataclass
class Prediction:
    """Everything the model says about a batch of claims, row-aligned with the input claims."""

    claim_ids: np.ndarray
    denial_probability: np.ndarray
    reason_probs: pd.DataFrame
    carc_probs: pd.DataFrame
    matrix: pd.DataFrame | None  # None when predict() was told not to keep it
    context: Context
    reason_order: np.ndarray | None = None
    """Each row's :data:`TOP_K` most likely reasons' column positions (:func:`top_columns`), if
    ranked while predicting (a chunked batch's chunks rank their own rows on both cores)."""
    carc_order: np.ndarray | None = None
    """The same for the CARC columns."""

    def model_matrix(self) -> pd.DataFrame:
        """The claims' model matrix (explanations need it)."""
        if self.matrix is None:
            raise ValueError("this prediction was made without keeping its model matrix")
        return self.matrix

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
    The passes run over blocks of rows small enough to stay in the CPU cache (a 200k-claim
    batch's CARC probabilities are ~100 MB: three passes over all of them cost three times
    as much).
    """
    n_rows, n_columns = values.shape
    k = min(k, n_columns)
    order = np.empty((n_rows, k), dtype=np.intp)
    if k == 0 or n_rows == 0:
        return order
    block = max(1, _TOP_BLOCK_VALUES // n_columns)
    for start in range(0, n_rows, block):
        remaining = values[start : start + block].copy()
        rows = np.arange(len(remaining))
        for place in range(k):
            best = remaining.argmax(axis=1)
            order[start : start + len(remaining), place] = best
            remaining[rows, best] = -np.inf
    return order


_TOP_BLOCK_VALUES = 65_536
"""Values per block of :func:`top_columns` (512 kB of float64: fits the CPU's L2 cache)."""


def predict(
    pipeline: Pipeline, tables: ClaimTables, keep_matrix: bool = True, compiled: bool = False
) -> Prediction:
    """Score claims: calibrated denial probability, reason and CARC probabilities.

    A large batch is scored in chunks on two threads (:func:`_scores_in_chunks`), with the same
    numbers, bit for bit, as scoring it in one pass. ``keep_matrix=False`` (scores without
    explanations) lets a chunked batch's model matrix go chunk by chunk: 1 GB per million
    claims that nothing would read. ``compiled=True`` (scoring) lets the chunks walk the denial
    booster's compiled trees (:mod:`training.trees`) and look history up with a compiled kernel
    (:mod:`features.lookup_kernel`): the same numbers, faster, for ~40-100 MB of compiled code
    in the process (training's evaluation, at its memory peak, does without).
    """
    features: ClaimFeatureTransformer = pipeline.named_steps["features"]
    model: DenialRiskEstimator = pipeline.named_steps["model"]
    workers = _chunk_workers() if len(tables) >= CHUNKED_FROM else 1
    if workers > 1:
        return _scores_in_chunks(features, model, tables, workers, keep_matrix, compiled)
    matrix, context = features.transform_with_context(tables)
    denial_probability = model.predict_proba(matrix)[:, 1]
    reasons = model.predict_reasons(matrix)
    carcs = model.predict_carcs(reasons, context["payer_type"])
    return Prediction(
        claim_ids=tables.claims["claim_id"].to_numpy(),
        denial_probability=denial_probability,
        reason_probs=reasons,
        carc_probs=carcs,
        matrix=matrix,
        context=context,
    )


CHUNKED_FROM = 20_000
"""From this many claims, :func:`predict` scores in chunks on two threads. Smaller batches (an
API request has at most 1,000 claims) keep the one-pass path: below this the chunks gained
nothing (measured: 10k claims 0.24 s either way, 5k claims slower in chunks), as the one-pass
path already predicts on every core and looks history up on two threads."""

CHUNK_CLAIMS = 25_000
"""Claims per chunk. Several chunks per thread, so a thread that finishes early takes the next
one and neither core waits long at the end; each large enough that the per-chunk numpy and
LightGBM calls cost little beside its work. (200k claims in 4 to 10 chunks scored equally fast,
within noise.)"""


def _chunk_workers() -> int:
    """Threads for chunked scoring: two, or one where only one CPU is ours to use."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform (macOS, Windows)
        usable = os.cpu_count() or 1
    return min(2, usable)


def _scores_in_chunks(
    features: ClaimFeatureTransformer,
    model: DenialRiskEstimator,
    tables: ClaimTables,
    workers: int,
    keep_matrix: bool = True,
    compiled: bool = False,
) -> Prediction:
    """:func:`predict` of a large batch, in chunks of claims.

    A chunk's features are partly Python holding the GIL; LightGBM's prediction releases it.
    Two threads, each taking the next chunk, overlap one chunk's features with another's
    prediction (on one LightGBM thread each), so both cores stay busy. What depends on the whole
    batch is done once first (:meth:`ClaimFeatureTransformer.batch`: the claims read once, and
    history's counts of earlier claims of the same batch); every later step is row by row, so
    the numbers equal the one-pass path's bit for bit (the CARC step too: it computes each row
    on its own, see :meth:`DenialRiskEstimator.carc_values`). The chunks fill their rows of the
    batch's matrix and probabilities, and rank their rows' top reasons and CARCs.
    """
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="score-chunk") as pool:
        # The batch's own submissions are indexed in one of the pool's threads meanwhile.
        batch = features.batch(tables, pool)
        return _scores_of_chunks(
            features,
            model,
            batch,
            tables.claims["claim_id"].to_numpy(),
            pool,
            workers,
            keep_matrix,
            compiled,
        )


def _scores_of_chunks(
    features: ClaimFeatureTransformer,
    model: DenialRiskEstimator,
    batch: FeatureBatch,
    claim_ids: np.ndarray,
    pool: ThreadPoolExecutor,
    workers: int,
    keep_matrix: bool = True,
    compiled: bool = False,
) -> Prediction:
    """:func:`_scores_in_chunks` of a batch read, each chunk taken by the next free thread of
    ``pool`` (of ``workers`` threads)."""
    n = batch.n_claims
    columns = (
        np.empty((len(features.feature_names_out_), n), dtype=MATRIX_DTYPE) if keep_matrix else None
    )
    denial_probability = np.empty(n)
    context = batch.context()
    payer_types = np.asarray(context["payer_type"], dtype=object)
    carcs = np.empty((n, len(model.carc_classes_)))
    reason_order = np.empty((n, min(TOP_K, len(model.reason_classes_))), dtype=np.intp)
    carc_order = np.empty((n, min(TOP_K, len(model.carc_classes_))), dtype=np.intp)
    # As many chunks per thread, of about equal size: no thread is left with a last chunk
    # while the other core idles.
    n_chunks = workers * -(-n // (workers * CHUNK_CLAIMS))
    bounds = [n * i // n_chunks for i in range(n_chunks + 1)]

    def score(start: int, stop: int) -> pd.DataFrame:
        # Both cores are busy: the chunk's lookups stay in this thread.
        chunk_columns = batch.columns(start, stop, side_by_side=False, compiled=compiled)
        chunk = features.frame(chunk_columns)
        denial_probability[start:stop] = model.predict_proba(chunk, 1, compiled)[:, 1]
        reasons = model.predict_reasons(chunk, num_threads=1)
        # In class order: predict_reasons' columns are the classes.
        reason_values = reasons.to_numpy()
        model.carc_values(reason_values, payer_types[start:stop], out=carcs[start:stop])
        # Row by row, as top_columns ranks the whole batch.
        reason_order[start:stop] = top_columns(reason_values, reason_order.shape[1])
        carc_order[start:stop] = top_columns(carcs[start:stop], carc_order.shape[1])
        if columns is not None:
            columns[:, start:stop] = chunk_columns
        return reasons

    parts = list(pool.map(score, bounds[:-1], bounds[1:]))
    reasons = pd.DataFrame(
        np.concatenate([part.to_numpy() for part in parts]), columns=parts[0].columns
    )
    return Prediction(
        claim_ids=claim_ids,
        denial_probability=denial_probability,
        reason_probs=reasons,
        carc_probs=pd.DataFrame(carcs, columns=column_index(model.carc_classes_), copy=False),
        matrix=features.frame(columns) if columns is not None else None,
        context=context,
        reason_order=reason_order,
        carc_order=carc_order,
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
