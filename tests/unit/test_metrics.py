"""Evaluation metrics and time-ordered folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training.metrics import (
    compare_by_group,
    expected_calibration_error,
    recall_at_precision,
    top_k_accuracy,
)
from training.tune import time_ordered_folds


def test_ece_is_zero_for_calibrated_scores_and_large_for_overconfident_ones():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.6, 200_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.005
    assert expected_calibration_error(y, np.clip(p * 1.6, 0, 1)) > 0.1


def test_recall_at_precision_finds_the_largest_recall_meeting_the_target():
    y = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    assert recall_at_precision(y, p, 1.0) == pytest.approx(0.75)
    assert recall_at_precision(y, p, 0.8) == pytest.approx(1.0)


def test_top_k_accuracy_counts_true_class_within_k():
    probs = pd.DataFrame({"a": [0.6, 0.1], "b": [0.3, 0.2], "c": [0.1, 0.7]})
    truth = np.array(["b", "a"])
    assert top_k_accuracy(truth, probs, 1) == 0.0
    assert top_k_accuracy(truth, probs, 2) == 0.5
    assert top_k_accuracy(truth, probs, 3) == 1.0


def test_time_ordered_folds_always_validate_on_later_claims():
    dates = (
        pd.Series(pd.date_range("2024-01-01", periods=400, freq="D"))
        .sample(frac=1.0, random_state=1)
        .reset_index(drop=True)
    )
    folds = time_ordered_folds(dates, n_folds=3)
    assert len(folds) == 3
    for fit_idx, val_idx in folds:
        assert dates.iloc[fit_idx].max() < dates.iloc[val_idx].min()
    assert len(folds[0][0]) < len(folds[2][0])  # expanding window


def test_compare_by_group_gives_each_models_metric_per_group():
    rng = np.random.default_rng(3)
    n = 4_000
    groups = rng.choice(["A", "B", "C"], n)
    y = (rng.random(n) < 0.2).astype(int)
    good = np.clip(0.2 + 0.5 * (y - 0.2) + rng.normal(0, 0.15, n), 0, 1)
    noise = rng.random(n)
    y[groups == "C"] = 0  # one class only: no ROC-AUC
    table = compare_by_group(y, {"good": good, "noise": noise}, pd.Series(groups))
    assert list(table.columns) == ["group", "claims", "denials", "good", "noise"]
    assert table["claims"].is_monotonic_decreasing and table["claims"].sum() == n
    for row in table.itertuples(index=False):
        rows = groups == row.group
        assert row.denials == y[rows].sum()
        if row.group == "C":
            assert np.isnan(row.good) and np.isnan(row.noise)
        else:
            assert row.good == pytest.approx(roc_auc_score(y[rows], good[rows]))
            assert row.noise == pytest.approx(roc_auc_score(y[rows], noise[rows]))
            assert row.good > row.noise
