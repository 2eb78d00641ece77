"""Evaluation plots: calibration, precision-recall, SHAP summary by claim field."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers or in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402

from features.atomic import atomic_file  # noqa: E402
from features.pipeline import feature_source  # noqa: E402

if TYPE_CHECKING:
    from training.estimator import DenialRiskEstimator


def calibration_plot(
    y: np.ndarray, p: np.ndarray, path: Path, bayes: np.ndarray | None = None, bins: int = 15
) -> Path:
    """Reliability diagram with equal-mass bins; the Bayes-optimal scorer alongside if known."""
    curves = {"model": p}
    if bayes is not None:
        curves["Bayes-optimal (simulator)"] = bayes
    return _save(calibration_figure(y, curves, bins), path)


def calibration_figure(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    bins: int = 15,
    title: str = "Calibration on the test period",
) -> Figure:
    """Reliability diagram of several scorers of the same claims (equal-mass bins, the
    binning of :func:`training.metrics.expected_calibration_error`)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    styles = ["o-", "s--", "^-.", "d:"]
    for i, (label, values) in enumerate(scores.items()):
        order = np.argsort(values)
        chunks = np.array_split(order, bins)
        ax.plot(
            [values[c].mean() for c in chunks],
            [y[c].mean() for c in chunks],
            styles[i % len(styles)],
            label=label,
            markersize=4,
        )
    top = float(max(*(np.max(v) for v in scores.values()), y.mean() * 2, 0.05))
    ax.plot([0, top], [0, top], color="grey", lw=1, label="perfect calibration")
    ax.set_xlabel("predicted denial probability")
    ax.set_ylabel("observed denial rate")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def precision_recall_plot(
    y: np.ndarray, p: np.ndarray, path: Path, bayes: np.ndarray | None = None
) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for label, scores in (("model", p), ("Bayes-optimal (simulator)", bayes)):
        if scores is None:
            continue
        precision, recall, _ = precision_recall_curve(y, scores)
        ax.plot(recall, precision, label=label)
    ax.axhline(y.mean(), color="grey", lw=1, ls=":", label="denial rate (no skill)")
    ax.set_xlabel("recall (share of denials caught)")
    ax.set_ylabel("precision (share of flagged claims denied)")
    ax.set_title("Precision-recall on the test period")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def by_source_field(contributions: pd.DataFrame) -> pd.DataFrame:
    """SHAP contributions summed per claim field a person recognises."""
    sources = [feature_source(c) for c in contributions.columns]
    return contributions.T.groupby(sources).sum().T


def field_explanation(model: DenialRiskEstimator, matrix: pd.DataFrame) -> shap.Explanation:
    """SHAP values of each claim's denial log-odds summed per claim field
    (:func:`by_source_field`), with the booster's base value, for ``shap.plots.waterfall``.

    ``base_values + values.sum(axis=1)`` is each claim's log-odds before calibration: the
    booster's raw score, whose probability :meth:`DenialRiskEstimator.predict_raw` gives (the
    served probability is that, calibrated).
    """
    grouped = by_source_field(model.contributions(matrix))
    booster = model.denial_booster_
    # LightGBM's bias column: the same for every row, so one row of zeros gives it.
    row = np.zeros((1, booster.num_feature()))
    bias = float(np.asarray(booster.predict(row, pred_contrib=True))[0, -1])
    return shap.Explanation(
        values=grouped.to_numpy(),
        base_values=np.full(len(grouped), bias),
        feature_names=list(grouped.columns),
    )


def shap_summary_plot(contributions: pd.DataFrame, path: Path, top: int = 15) -> Path:
    """SHAP summary (beeswarm) of the fields that move denial risk most, by source field."""
    grouped = by_source_field(contributions)
    explanation = shap.Explanation(
        values=grouped.to_numpy(),
        feature_names=list(grouped.columns),
    )
    plt.figure(figsize=(8, 6))
    shap.plots.beeswarm(explanation, max_display=top, show=False, color_bar=False)
    plt.title("What drives denial risk (SHAP, log-odds, by claim field)")
    plt.tight_layout()
    _save(plt.gcf(), path)
    plt.close("all")
    return path


def _save(fig: Figure, path: Path) -> Path:
    """The figure as a PNG at ``path``, complete or absent."""
    with atomic_file(path) as temp:
        fig.savefig(temp, dpi=110, format="png")
    plt.close(fig)
    return path
