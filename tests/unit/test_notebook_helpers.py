"""The small public helpers the notebooks call: a data set as known on a day, one payer-change
combination week by week, a reliability diagram of several models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.payer_change import combination_weeks
from features.schema import ClaimsDataset
from training.metrics import expected_calibration_error


@pytest.fixture(scope="module")
def practice() -> ClaimsDataset:
    from simulator import SimulationConfig, simulate

    return simulate(SimulationConfig(n_claims=1_500, seed=4, days=365)).dataset


def test_a_data_set_known_before_a_day_holds_nothing_from_that_day_on(practice):
    day = pd.Timestamp("2024-09-01")
    known = practice.known_before(day)
    assert (known.claims["submission_date"] < day).all()
    assert (known.remittances["remit_date"] < day).all()
    assert (known.rejections["rejection_date"] < day).all()
    assert (known.followups["action_date"] < day).all()
    assert not (known.followups["resolved_date"] >= day).any()
    # What was known then is all there; every child row belongs to a kept parent.
    sent = practice.claims["submission_date"] < day
    assert set(known.claims["claim_id"]) == set(practice.claims.loc[sent, "claim_id"])
    paid = practice.remittances["remit_date"] < day
    assert len(known.remittances) == int(paid.sum())
    for name in ("lines", "diagnoses"):
        assert set(getattr(known, name)["claim_id"]) <= set(known.claims["claim_id"])
    for name in ("remit_lines", "adjustments", "remarks"):
        child = getattr(known, name)
        assert set(child["remit_id"]) <= set(known.remittances["remit_id"])
        expected = getattr(practice, name)["remit_id"].isin(
            practice.remittances.loc[paid, "remit_id"]
        )
        assert len(child) == int(expected.sum())
    # A follow-up answered after the day is open then, with nothing recovered yet.
    taken = practice.followups[practice.followups["action_date"] < day]
    answered_later = int((taken["resolved_date"] >= day).sum())
    assert answered_later > 0
    open_then = known.followups["resolved_date"].isna()
    assert int(open_then.sum()) == int(taken["resolved_date"].isna().sum()) + answered_later
    assert (known.followups.loc[open_then, "recovered_amount"] == 0).all()


def _events(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3_000
    denied = rng.random(n) < 0.2
    return pd.DataFrame(
        {
            "remit_date": pd.Timestamp("2024-01-03")
            + pd.to_timedelta(rng.integers(0, 200, n), "D"),
            "denied": denied,
            "category": np.where(denied, rng.choice(["authorization", "coding"], n), None),
            "carc": np.where(denied, rng.choice(["197", "4", "16"], n), None),
            "payer_id": rng.choice(["P1", "P2"], n),
            "procedure_code": rng.choice(["97110", "99213"], n),
            "family": "971",
            "denied_amount": 0.0,
        }
    )


@pytest.mark.parametrize("procedure", [None, "97110"], ids=["payer x CARC", "payer x procedure"])
def test_combination_weeks_count_the_combinations_claims_and_denials(procedure):
    events = _events(3)
    reason = "197" if procedure is None else "authorization"
    weeks = combination_weeks(events, "P1", reason, procedure)
    group = events["payer_id"] == "P1"
    if procedure is not None:
        group &= events["procedure_code"] == procedure
    column = "carc" if procedure is None else "category"
    hit = group & events["denied"] & (events[column] == reason)
    assert weeks["claims"].sum() == group.sum() and weeks["denials"].sum() == hit.sum()
    assert (weeks["week"].dt.weekday == 0).all()
    assert (weeks["week"].diff().dropna() == pd.Timedelta(days=7)).all()
    day = pd.Timestamp("2024-03-14")
    monday = day - pd.Timedelta(days=day.weekday())
    row = weeks.set_index("week").loc[monday]
    in_week = (events["remit_date"] >= monday) & (
        events["remit_date"] < monday + pd.Timedelta(7, "D")
    )
    assert row["claims"] == (group & in_week).sum()
    assert row["rate"] == pytest.approx((hit & in_week).sum() / (group & in_week).sum())


def test_calibration_figure_draws_each_model_at_its_ece_bins():
    from training.plots import calibration_figure

    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.5, 3_000)
    y = (rng.random(p.size) < p).astype(int)
    figure = calibration_figure(
        y, {"calibrated": p, "twice as sure": np.clip(2 * p, 0, 1)}, bins=10
    )
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert {"calibrated", "twice as sure", "perfect calibration"} <= set(lines)
    # The points are the bins the ECE is computed over: their mean gap is the ECE.
    for name, scores in (("calibrated", p), ("twice as sure", np.clip(2 * p, 0, 1))):
        x, observed = (np.asarray(v) for v in lines[name].get_data())
        assert np.mean(np.abs(observed - x)) == pytest.approx(
            expected_calibration_error(y, scores, bins=10)
        )
