"""The model half of the fitted pipeline: denial probability, likely reason, likely CARCs.

``DenialRiskEstimator`` takes the model matrix from
:class:`features.pipeline.ClaimFeatureTransformer` and holds three LightGBM boosters:

* denial: binary, fit on the earlier part of the training period and calibrated (isotonic) on
  the later part, so probabilities mean what they say on claims the booster has not seen;
* reason: multiclass over root-cause categories, fit on denied claims;
* CARC: P(CARC | claim) = sum over categories of P(category | claim) x P(CARC | category,
  payer type), the second factor counted on the training denials. Which CARC a payer sends for
  a given root cause is a payer convention, not a property of the claim, so a table learns it
  as well as a booster would, at a fraction of the cost.

SHAP values are path-dependent TreeSHAP, the algorithm of LightGBM's ``pred_contrib`` and
``shap.TreeExplainer``, evaluated from per-leaf tables (:mod:`training.treeshap`) that equal
``pred_contrib`` to about 1e-15 at a sixth of its cost per claim.

The boosters read the matrix as one float array; its categorical columns (level codes) are named
in ``matrix.attrs["categorical_features"]`` by the feature step, and LightGBM is told so at fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression

from features.pipeline import column_index

OTHER_CARC = "other"


def _rounds_chosen(booster: lgb.Booster) -> int:
    """The rounds early stopping kept, else every round: a copied or unpickled booster has a
    ``best_iteration`` of -1 (truthy), not 0."""
    best = booster.best_iteration
    return best if best > 0 else booster.current_iteration()


SMALL_BATCH_ROWS = 2_000
"""Batches up to this size are predicted on one thread: starting the OpenMP team costs more than
the work, and the API's concurrent requests already keep the cores busy."""


COMPILED_FROM_ROWS = 5_000
"""Asked to (``compiled=True``: scoring's large batches), a binary booster's prediction of this
many rows on one thread walks compiled trees (:mod:`training.trees`): the same numbers, ~1.5x
faster. Smaller ones stay with LightGBM: an API request never waits for the kernel's
compilation."""


def categorical_columns(matrix: pd.DataFrame) -> list[str]:
    """The matrix's categorical columns (level codes), as the feature step declared them."""
    if "categorical_features" not in matrix.attrs:
        raise ValueError(
            "the model matrix does not say which columns are categorical "
            "(matrix.attrs['categorical_features']); build it with ClaimFeatureTransformer"
        )
    return list(matrix.attrs["categorical_features"])


def _values(matrix: pd.DataFrame) -> np.ndarray:
    """The matrix as the float array LightGBM reads: the feature step's float32 columns as they
    are (no copy). LightGBM widens each value to a double as it walks the trees, exactly as a
    float64 copy would hold it, so the numbers are the same; the copy cost a 170,000-claim
    evaluation 0.5 GB at the million-claim training run's peak."""
    values = matrix.to_numpy(copy=False)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    return values


def _threads(rows: int) -> int:
    """LightGBM's ``num_threads`` for a prediction (0: its default, every core)."""
    return 1 if rows <= SMALL_BATCH_ROWS else 0


def _booster_predict(
    booster: lgb.Booster,
    values: np.ndarray,
    num_threads: int | None = None,
    compiled: bool = False,
) -> np.ndarray:
    """``booster.predict(values)`` (probabilities), on ``num_threads`` (by default
    :func:`_threads`); rows are predicted independently, so it changes no number. With
    ``compiled``, a large one-thread prediction of a binary booster walks compiled trees (see
    :data:`COMPILED_FROM_ROWS`; a multiclass booster's many shallow trees gained nothing).

    One row (an API request for one claim) goes through ``Booster.predict`` too: LightGBM's
    single-row C entry point (through ``lightgbm.basic._LIB``, a private module) saved 1-3% of
    a one-claim request (BENCHMARKS.md, private internals), not worth a private internal.
    """
    if (
        compiled
        and num_threads == 1
        and len(values) >= COMPILED_FROM_ROWS
        and booster.num_model_per_iteration() == 1
    ):
        from training.trees import compiled_trees  # numba: imported for large batches only

        trees = compiled_trees(booster)
        if trees is not None and values.shape[1] == trees.n_features:
            return trees.predict(np.asarray(values, dtype=np.float64))
    threads = _threads(len(values)) if num_threads is None else num_threads
    return np.asarray(booster.predict(values, num_threads=threads))


def _rows_by_value(values: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """Each distinct value (``None`` for missing) with its rows, in ascending row order.

    One pass over the values (not one comparison of every row per value) for large batches;
    the rows of a value are the same, in the same order, as ``values == value`` selects.
    """
    if len(values) <= 64:
        return [(value, np.flatnonzero(values == value)) for value in set(values.tolist())]
    codes, uniques = pd.factorize(values)
    order = np.argsort(codes, kind="stable")  # stable: ascending rows within each value
    bounds = np.searchsorted(codes[order], np.arange(-1, len(uniques) + 1))
    distinct = [None, *uniques.tolist()]
    return [
        (distinct[i], order[bounds[i] : bounds[i + 1]])
        for i in range(len(distinct))
        if bounds[i + 1] > bounds[i]
    ]


def _mix(weights: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``weights @ table``, each row on its own: one multiply and add per column of ``weights``.

    Not a BLAS product: BLAS may round a row differently depending on the block of rows it is
    computed in (kernels and their fused multiply-adds vary with the number of rows), and chunked
    scoring must give a batch's numbers bit for bit. For 11 reasons the cost is alike.
    """
    out = weights[:, 0, None] * table[0]
    term = np.empty_like(out)
    for k in range(1, len(table)):
        np.multiply(weights[:, k, None], table[k], out=term)
        out += term
    return out


@dataclass
class BoosterParams:
    """LightGBM settings (defaults tuned on the simulator's training period, not its test).

    Trees are capped at 31 leaves and depth 7 because every explained claim pays TreeSHAP, whose
    cost grows with leaves x depth squared: unlimited leaf-wise trees of 63 leaves explained a
    claim about three times slower for the same ROC-AUC (within 0.001 on a 200k simulation).
    """

    learning_rate: float = 0.05
    num_leaves: int = 31
    max_depth: int = 7
    # 20, not 40: a payer's rule often shows on a few dozen claims of a practice (ROC-AUC
    # +0.005 on tuning worlds 1 and 2 of the simulated family, same on the default world).
    min_child_samples: int = 20
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_cat_to_onehot: int = 8
    cat_smooth: float = 20.0
    max_rounds: int = 1500
    early_stopping_rounds: int = 50
    num_threads: int = 2

    def lgb_params(self, objective: str, **extra: Any) -> dict[str, Any]:
        params = {
            k: v
            for k, v in asdict(self).items()
            if k not in {"max_rounds", "early_stopping_rounds"}
        }
        params.update(
            objective=objective, verbose=-1, seed=7, deterministic=True, force_col_wise=True
        )
        params.update(extra)
        return params


@dataclass
class EstimatorConfig:
    booster: BoosterParams = field(default_factory=BoosterParams)
    reason_booster: BoosterParams = field(
        # Smaller and faster-learning than the denial booster: it is predicted for every claim
        # (one tree per category per round). It learns from denied claims only, a few hundred
        # per category in a practice's history, so its leaves may hold as few as 10: with 40
        # (the earlier setting) top-1 accuracy was 0.80 of Bayes on a 24k-claim practice, with
        # 10 and 20 rounds at 0.15 it is 0.88 (tuning worlds 1 and 2: 0.917 -> 0.927 and
        # 0.924 -> 0.941). More rounds (30, 40) gained nothing. Early stopping keeps the best
        # round when the loss turns up earlier.
        default_factory=lambda: BoosterParams(
            num_leaves=15,
            max_depth=-1,
            learning_rate=0.15,
            min_child_samples=10,
            max_rounds=20,
            early_stopping_rounds=30,
        )
    )
    calibration_fraction: float = 0.2
    min_carc_count: int = 20
    carc_smoothing: float = 1.0


class DenialRiskEstimator(ClassifierMixin, BaseEstimator):
    """Calibrated denial model with reason and CARC models (see module docstring).

    ``fit(matrix, labels)``: ``labels`` is aligned with ``matrix`` and has ``denied`` (bool),
    ``category`` (root cause of the primary denial CARC, empty when paid), ``carc`` and
    ``submission_date`` (to split off the later calibration slice by time, never at random).
    """

    def __init__(self, config: EstimatorConfig | None = None) -> None:
        self.config = config

    # -- fitting -------------------------------------------------------------------------
    def fit(self, matrix: pd.DataFrame, labels: pd.DataFrame) -> DenialRiskEstimator:
        config = self.config or EstimatorConfig()
        y = labels["denied"].astype(int).to_numpy()
        if y.sum() == 0 or y.sum() == len(y):
            raise ValueError("training data needs both denied and paid claims")
        order = np.argsort(labels["submission_date"].to_numpy(), kind="mergesort")
        n_cal = max(1, int(len(order) * config.calibration_fraction))
        fit_idx, cal_idx = np.sort(order[:-n_cal]), np.sort(order[-n_cal:])

        self.feature_names_in_ = list(matrix.columns)
        self.classes_ = np.array([0, 1])
        self.denial_booster_ = self._train(
            config.booster.lgb_params("binary"),
            config.booster,
            matrix.iloc[fit_idx],
            y[fit_idx],
            matrix.iloc[cal_idx],
            y[cal_idx],
        )
        # Kept (a fifth of the training claims, 9 bytes each) for :meth:`recalibrate`.
        self.calibration_raw_ = self.predict_raw(matrix.iloc[cal_idx])
        self.calibration_labels_ = y[cal_idx].astype(np.int8)
        self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        self.calibrator_.fit(self.calibration_raw_, self.calibration_labels_)

        denied = labels["denied"].astype(bool).to_numpy()
        self.reason_classes_, self.reason_booster_ = self._fit_multiclass(
            matrix[denied],
            labels.loc[denied, "category"].astype(str).to_numpy(),
            labels.loc[denied, "submission_date"].to_numpy(),
            config,
            min_count=1,
        )
        self._fit_carc_table(labels[denied], config)
        return self

    @staticmethod
    def _train(
        params: dict[str, Any],
        booster: BoosterParams,
        x_fit: pd.DataFrame,
        y_fit: np.ndarray,
        x_val: pd.DataFrame,
        y_val: np.ndarray,
    ) -> lgb.Booster:
        categorical = categorical_columns(x_fit)
        train = lgb.Dataset(x_fit, y_fit, categorical_feature=categorical, free_raw_data=True)
        valid = lgb.Dataset(
            x_val, y_val, reference=train, categorical_feature=categorical, free_raw_data=True
        )
        return lgb.train(
            params,
            train,
            num_boost_round=booster.max_rounds,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(booster.early_stopping_rounds, verbose=False)],
        )

    def _fit_carc_table(self, denied: pd.DataFrame, config: EstimatorConfig) -> None:
        """P(CARC | category, payer type) with additive smoothing toward P(CARC | category)."""
        carcs = denied["carc"].astype(str)
        counts = carcs.value_counts()
        common = counts[counts >= config.min_carc_count].index
        carcs = carcs.where(carcs.isin(common), OTHER_CARC)
        self.carc_classes_ = np.array(sorted(set(carcs)))
        frame = pd.DataFrame(
            {
                "category": denied["category"].astype(str).to_numpy(),
                "payer_type": denied["payer_type"].astype(str).to_numpy(),
                "carc": carcs.to_numpy(),
            }
        )
        by_category = pd.crosstab(frame["category"], frame["carc"]).reindex(
            index=self.reason_classes_, columns=self.carc_classes_, fill_value=0
        )
        overall = (by_category + config.carc_smoothing / len(self.carc_classes_)).to_numpy()
        overall = overall / overall.sum(axis=1, keepdims=True)
        self.carc_given_reason_: dict[str, np.ndarray] = {"": overall}
        for payer_type, rows in frame.groupby("payer_type"):
            table = (
                pd.crosstab(rows["category"], rows["carc"])
                .reindex(index=self.reason_classes_, columns=self.carc_classes_, fill_value=0)
                .to_numpy()
            )
            smoothed = table + 5.0 * overall
            self.carc_given_reason_[str(payer_type)] = smoothed / smoothed.sum(
                axis=1, keepdims=True
            )

    def _fit_multiclass(
        self,
        matrix: pd.DataFrame,
        target: np.ndarray,
        dates: np.ndarray,
        config: EstimatorConfig,
        min_count: int,
    ) -> tuple[np.ndarray, lgb.Booster | None]:
        values, counts = np.unique(target, return_counts=True)
        keep = set(values[counts >= min_count])
        target = np.where(np.isin(target, list(keep)), target, OTHER_CARC)
        classes = np.unique(target)
        if len(classes) < 2:
            return classes, None
        codes = np.searchsorted(classes, target)
        order = np.argsort(dates, kind="mergesort")
        n_val = max(1, int(len(order) * config.calibration_fraction))
        fit_idx, val_idx = np.sort(order[:-n_val]), np.sort(order[-n_val:])
        params = config.reason_booster.lgb_params("multiclass", num_class=len(classes))
        booster = self._train(
            params,
            config.reason_booster,
            matrix.iloc[fit_idx],
            codes[fit_idx],
            matrix.iloc[val_idx],
            codes[val_idx],
        )
        return classes, booster

    # -- prediction ----------------------------------------------------------------------
    def predict_proba(
        self, matrix: pd.DataFrame, num_threads: int | None = None, compiled: bool = False
    ) -> np.ndarray:
        """P(paid), P(denied) per row; ``num_threads``: LightGBM's (default: by batch size);
        ``compiled``: a large one-thread batch may walk compiled trees (same numbers)."""
        raw = self.predict_raw(matrix, num_threads, compiled)
        # Isotonic regression is a step function: claims the booster ranks apart would tie.
        # A vanishing share of the raw score keeps the booster's order (and the probabilities
        # to within 1e-6), so precision at the top is not lost to ties.
        calibrated = (1.0 - 1e-6) * self._calibrated(raw) + 1e-6 * raw
        return np.column_stack([1.0 - calibrated, calibrated])

    def recalibrate(self, raw: np.ndarray, y: np.ndarray) -> None:
        """Refit the calibration on the calibration slice and these later claims' booster
        scores (``raw``, from :meth:`predict_raw`) and outcomes.

        The booster's scores drift upward on claims later than the ones it was calibrated on
        (tuning worlds of the simulated family: served probabilities 1 to 2 points above the
        realised rate). After evaluation the later period's claims are as unseen by the booster
        as the calibration slice; calibrating on both brings the served model's probabilities
        to the latest outcomes known."""
        self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        self.calibrator_.fit(
            np.concatenate([self.calibration_raw_, raw]),
            np.concatenate([self.calibration_labels_, np.asarray(y, dtype=np.int8)]),
        )

    def refit_denials(
        self, matrix: pd.DataFrame | Callable[[], pd.DataFrame], y: np.ndarray
    ) -> None:
        """Re-learn the denial booster on these claims (every labelled one), with as many rounds
        as the first fit chose; the calibration stays the one learned on the first booster's
        out-of-time scores.

        ``matrix`` may be a function that builds it: the rows are then let go once LightGBM has
        binned them, before the rounds run (a million-claim run's 400,000 rows are 0.6 GB).
        """
        config = self.config or EstimatorConfig()
        rounds = _rounds_chosen(self.denial_booster_)
        params = config.booster.lgb_params("binary")
        rows = matrix() if callable(matrix) else matrix
        data = lgb.Dataset(
            rows,
            y,
            params=params,  # binned as lgb.train would bin it: the same booster either way
            categorical_feature=categorical_columns(rows),
            free_raw_data=True,
        ).construct()
        del rows
        self.denial_booster_ = lgb.train(params, data, num_boost_round=rounds)

    def refit_reasons(self, matrix: pd.DataFrame, labels: pd.DataFrame) -> None:
        """Re-learn the reason model and the CARC table on these denied claims (the training
        period's and the later period's together), with as many rounds as the first fit chose.

        After evaluation the later period's denials are the newest evidence of each payer's
        rules: a payer that starts requiring an authorization or excludes a service shows in
        them first. (``labels`` as :meth:`fit`'s, denied claims only.)"""
        config = self.config or EstimatorConfig()
        target = labels["category"].astype(str).to_numpy()
        classes = np.unique(target)
        if self.reason_booster_ is None or len(classes) < 2:
            return
        rounds = _rounds_chosen(self.reason_booster_)
        params = config.reason_booster.lgb_params("multiclass", num_class=len(classes))
        data = lgb.Dataset(
            matrix,
            np.searchsorted(classes, target),
            categorical_feature=categorical_columns(matrix),
            free_raw_data=True,
        )
        self.reason_classes_ = classes
        self.reason_booster_ = lgb.train(params, data, num_boost_round=rounds)
        self._fit_carc_table(labels, config)

    def _calibrated(self, raw: np.ndarray) -> np.ndarray:
        """``calibrator_.predict(raw)``, without re-checking the booster's own output.

        What ``IsotonicRegression.predict`` does after validating its input (clip to the fitted
        range, interpolate), which costs ten times the interpolation for one claim.
        """
        calibrator = self.calibrator_
        interpolate = getattr(calibrator, "f_", None)
        thresholds = getattr(calibrator, "X_thresholds_", None)
        if (
            interpolate is None
            or thresholds is None
            or calibrator.out_of_bounds != "clip"
            or raw.ndim != 1
            or raw.dtype != thresholds.dtype
        ):
            return np.asarray(calibrator.predict(raw))
        clipped = np.clip(raw, calibrator.X_min_, calibrator.X_max_)
        return np.asarray(interpolate(clipped)).astype(clipped.dtype)

    def predict(self, matrix: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(matrix)[:, 1] >= 0.5).astype(int)

    def predict_raw(
        self, matrix: pd.DataFrame, num_threads: int | None = None, compiled: bool = False
    ) -> np.ndarray:
        """Uncalibrated booster output (probability scale), for benchmarks against the booster."""
        return _booster_predict(self.denial_booster_, _values(matrix), num_threads, compiled)

    def predict_reasons(self, matrix: pd.DataFrame, num_threads: int | None = None) -> pd.DataFrame:
        """P(root-cause category | denied), one column per category."""
        return self._class_probs(self.reason_booster_, self.reason_classes_, matrix, num_threads)

    def predict_carcs(self, reasons: pd.DataFrame, payer_types: np.ndarray) -> pd.DataFrame:
        """P(primary CARC | denied), one column per learned CARC (rare ones pooled as 'other').

        ``reasons`` is :meth:`predict_reasons`' output, ``payer_types`` each claim's payer type.
        """
        classes = list(self.reason_classes_)
        # Selecting columns builds a new frame; skip it when they are already in class order.
        ordered = reasons if list(reasons.columns) == classes else reasons[classes]
        out = self.carc_values(ordered.to_numpy(dtype=np.float64), payer_types)
        # ``out`` is this call's own array: the frame can hold it without a copy.
        columns = column_index(self.carc_classes_)
        return pd.DataFrame(out, index=reasons.index, columns=columns, copy=False)

    def carc_values(
        self, reason_values: np.ndarray, payer_types: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """:meth:`predict_carcs` as an array, from reason probabilities in class order; written
        into ``out`` if given (rows x CARC classes).

        Each row's CARC probabilities are its reason probabilities times its payer type's
        table, summed reason by reason in a fixed order (:func:`_mix`), so a row gets the same
        numbers however many rows it is computed with: chunks of a batch equal the batch.
        """
        payer_types = np.asarray(payer_types, dtype=object)
        if out is None:
            out = np.empty((len(reason_values), len(self.carc_classes_)))
        for payer_type, rows in _rows_by_value(payer_types):
            table = self.carc_given_reason_.get(str(payer_type), self.carc_given_reason_[""])
            out[rows] = _mix(reason_values[rows], table)
        return out

    @staticmethod
    def _class_probs(
        booster: lgb.Booster | None,
        classes: np.ndarray,
        matrix: pd.DataFrame,
        num_threads: int | None = None,
    ) -> pd.DataFrame:
        if booster is None:
            return pd.DataFrame(1.0, index=matrix.index, columns=list(classes))
        probs = _booster_predict(booster, _values(matrix), num_threads)
        return pd.DataFrame(probs, index=matrix.index, columns=column_index(classes), copy=False)

    def contributions(self, matrix: pd.DataFrame) -> pd.DataFrame:
        """TreeSHAP contributions to the denial log-odds per model column (no bias column).

        The booster's ``pred_contrib`` values (equal to about 1e-15), read from per-leaf tables
        built once per booster (:mod:`training.treeshap`): several times faster per claim than
        LightGBM's per-row recursion, which was most of the cost of an explained score.
        """
        from training.treeshap import tables_for  # local: keeps this edit to one method

        contrib = tables_for(self.denial_booster_).contributions(
            np.asarray(_values(matrix), dtype=np.float64)
        )
        # The column labels built once: a new Index of 128 names per call cost more than
        # TreeSHAP itself for one claim.
        columns = column_index(self.feature_names_in_)
        return pd.DataFrame(contrib, index=matrix.index, columns=columns, copy=False)
