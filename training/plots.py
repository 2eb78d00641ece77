"""Evaluation plots: calibration, precision-recall, SHAP summary by claim field."""

from __future__ import annotations

from pathlib import Path

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


def calibration_plot(
    y: np.ndarray, p: np.ndarray, path: Path, bayes: np.ndarray | None = None, bins: int = 15
) -> Path:
    """Reliability diagram with equal-mass bins; the Bayes-optimal scorer alongside if known."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for label, scores, style in (("model", p, "o-"), ("Bayes-optimal (simulator)", bayes, "s--")):
        if scores is None:
            continue
        order = np.argsort(scores)
        chunks = np.array_split(order, bins)
        ax.plot(
            [scores[c].mean() for c in chunks],
            [y[c].mean() for c in chunks],
            style,
            label=label,
            markersize=4,
        )
    top = float(max(p.max(), y.mean() * 2, 0.05))
    ax.plot([0, top], [0, top], color="grey", lw=1, label="perfect calibration")
    ax.set_xlabel("predicted denial probability")
    ax.set_ylabel("observed denial rate")
    ax.set_title("Calibration on the test period")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


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
