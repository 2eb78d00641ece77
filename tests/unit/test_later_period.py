"""After evaluation the registered model takes in the later period: its calibration
(estimator.recalibrate) and its reasons (estimator.refit_reasons)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.estimator import DenialRiskEstimator
from training.train import latest_training_rows


def _claims(n: int, start: str, shift: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    risk = 1 / (1 + np.exp(-(x[:, 0] * 1.5 - 2.2 + shift)))
    denied = rng.random(n) < risk
    labels = pd.DataFrame(
        {
            "denied": denied,
            "category": np.where(denied, np.where(x[:, 1] > 0, "coding", "eligibility"), ""),
            "carc": np.where(denied, np.where(x[:, 1] > 0, "16", "27"), ""),
            "submission_date": pd.Timestamp(start) + pd.to_timedelta(np.arange(n) // 40, "D"),
            "payer_type": "commercial",
        }
    )
    matrix = pd.DataFrame(x, columns=["a", "b", "c"])
    matrix.attrs["categorical_features"] = []
    return matrix, labels


def test_recalibration_brings_probabilities_to_the_later_period():
    matrix, labels = _claims(6_000, "2024-01-01", 0.0, 1)
    model = DenialRiskEstimator().fit(matrix, labels)
    later, later_labels = _claims(6_000, "2024-06-01", -0.6, 2)  # fewer denials later
    y_later = later_labels["denied"].astype(int).to_numpy()
    before = model.predict_proba(later)[:, 1].mean()
    assert before > y_later.mean() + 0.02  # the drift the refit is for
    order_before = np.argsort(model.predict_proba(later)[:, 1], kind="stable")
    model.recalibrate(model.predict_raw(later), y_later)
    after = model.predict_proba(later)[:, 1]
    cal_rate = model.calibration_labels_.mean()
    # Calibrated on the calibration slice and the later claims together: between the two rates.
    combined = (model.calibration_labels_.sum() + y_later.sum()) / (
        len(model.calibration_labels_) + len(y_later)
    )
    assert abs(after.mean() - combined) < 0.01
    assert after.mean() < before and after.mean() < cal_rate
    # Monotone: the ranking of claims is the booster's, before and after.
    np.testing.assert_array_equal(np.argsort(after, kind="stable"), order_before)


def test_refit_reasons_learn_a_rule_that_shows_only_in_the_later_period():
    matrix, labels = _claims(6_000, "2024-01-01", 0.0, 3)
    model = DenialRiskEstimator().fit(matrix, labels)
    later, later_labels = _claims(12_000, "2024-06-01", 0.0, 4)
    # Later, the payer denies claims with high "c" for authorization, a reason never seen before
    # (earlier such denials were coding or eligibility, half as many as the later ones).
    denied = later_labels["denied"].to_numpy()
    new_rule = denied & (later["c"].to_numpy() > 1.0)
    later_labels.loc[new_rule, "category"] = "authorization"
    later_labels.loc[new_rule, "carc"] = "197"
    assert "authorization" not in model.reason_classes_
    both = pd.concat([matrix[labels["denied"]], later[denied]], ignore_index=True)
    both.attrs["categorical_features"] = []
    model.refit_reasons(
        both, pd.concat([labels[labels["denied"]], later_labels[denied]], ignore_index=True)
    )
    fresh, _ = _claims(2_000, "2024-09-01", 0.0, 5)
    reasons = model.predict_reasons(fresh)
    authorization = reasons["authorization"].to_numpy()
    top = reasons.columns.to_numpy()[reasons.to_numpy().argmax(axis=1)]
    high_c, low_c = fresh["c"].to_numpy() > 1.0, fresh["c"].to_numpy() < 0.8
    # Two thirds of the high-c denials it learned from are authorization denials.
    assert authorization[high_c].mean() > 0.45 and (top[high_c] == "authorization").mean() > 0.5
    assert authorization[low_c].mean() < 0.05
    assert "197" in model.carc_classes_


def test_refit_denials_learn_a_rule_that_shows_only_in_the_later_period():
    matrix, labels = _claims(6_000, "2024-01-01", 0.0, 5)
    model = DenialRiskEstimator().fit(matrix, labels)
    rounds = model.denial_booster_.best_iteration
    calibrator = model.calibrator_
    later, later_labels = _claims(6_000, "2024-06-01", 0.0, 6)
    # Later, the payer denies every claim with a high "c", which never mattered before.
    new_rule = later["c"].to_numpy() > 1.0
    later_labels.loc[new_rule, "denied"] = True
    y = np.concatenate([labels["denied"], later_labels["denied"]]).astype(int)
    high_c = later[new_rule]
    before = model.predict_proba(high_c)[:, 1].mean()
    model.refit_denials(pd.concat([matrix, later], ignore_index=True), y)
    after = model.predict_proba(high_c)[:, 1].mean()
    assert before < 0.3 and after > before + 0.2
    # As many rounds as the first fit chose; the out-of-time calibration is kept.
    assert model.denial_booster_.current_iteration() == rounds
    assert model.calibrator_ is calibrator


def test_the_refit_keeps_the_latest_training_claims_within_the_cap():
    submitted = pd.Series(pd.to_datetime(["2024-03-01", "2024-01-01", "2024-05-01", "2024-02-01"]))
    # Room for two training claims beside three test claims: the two latest, in row order.
    assert latest_training_rows(submitted, 5, 3).tolist() == [0, 2]
    assert latest_training_rows(submitted, 7, 3) is None  # within the cap: every row
    assert latest_training_rows(submitted, None, 3) is None
    # A test period over the cap on its own is kept whole, without training rows.
    assert latest_training_rows(submitted, 2, 3).tolist() == []
