"""Behaviour a billing expert expects of the trained model, checked on many claims at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.claim_tables import ClaimTables
from tests.utils.history import service_as_of

pytestmark = pytest.mark.behavioural


@pytest.fixture(scope="module")
def world(trained):
    # The tests change the latest claims and score them as new ones, so history stops before
    # them (else a claim resent with a later date is, rightly, a duplicate of itself).
    service, tables = service_as_of(trained, 0.9)
    return tables, service


def _late(tables: ClaimTables, mask: pd.Series, n: int) -> ClaimTables:
    chosen = tables.claims[mask].sort_values("submission_date").tail(n)["claim_id"]
    return tables.subset(chosen)


def _probabilities(service, tables) -> pd.DataFrame:
    return service.score_frame(tables).set_index("claim_id")


def test_removing_a_prior_authorization_raises_risk_and_points_to_authorization(world):
    tables, service = world
    claims = tables.claims
    # Claims sent on time: one already past its filing limit stays a timely-filing risk.
    on_time = (claims["submission_date"] - claims["service_date_from"]).dt.days <= 30
    with_auth = _late(tables, claims["prior_auth_number"].notna() & on_time, 150)
    assert len(with_auth) >= 50
    without = ClaimTables(
        with_auth.claims.assign(prior_auth_number=None), with_auth.lines, with_auth.diagnoses
    )
    before, after = _probabilities(service, with_auth), _probabilities(service, without)
    rise = after["denial_probability"] - before["denial_probability"]
    assert rise.mean() > 0.15
    assert (rise > 0).mean() > 0.8
    assert (after["likely_reason"] == "authorization").mean() > 0.7


def test_submitting_past_the_filing_limit_points_to_timely_filing(world):
    tables, service = world
    ordinary = _late(tables, tables.claims["payer_type"] == "commercial", 150)
    late = ordinary.claims.copy()
    late["submission_date"] = late["service_date_from"] + pd.Timedelta(days=400)
    pushed = ClaimTables(late, ordinary.lines, ordinary.diagnoses)
    before, after = _probabilities(service, ordinary), _probabilities(service, pushed)
    assert (after["denial_probability"] > before["denial_probability"]).mean() > 0.9
    assert (after["likely_reason"] == "timely_filing").mean() > 0.7


def test_reordering_service_lines_changes_nothing(world):
    tables, service = world
    multi = tables.lines.groupby("claim_id").size()
    ids = multi[multi >= 2].index[-200:]
    some = tables.subset(ids)
    shuffled = some.lines.copy()
    rng = np.random.default_rng(5)
    shuffled["line_number"] = shuffled.groupby("claim_id")["line_number"].transform(
        lambda s: rng.permutation(s.to_numpy())
    )
    shuffled = shuffled.sample(frac=1.0, random_state=3).reset_index(drop=True)
    reordered = ClaimTables(some.claims, shuffled, some.diagnoses)
    a = service.score_frame(some, explain=True).set_index("claim_id")
    b = service.score_frame(reordered, explain=True).set_index("claim_id").loc[a.index]
    np.testing.assert_array_equal(a["denial_probability"], b["denial_probability"])
    assert (a["likely_reason"] == b["likely_reason"]).all()
    assert (a["factor_1_contribution"].fillna(0) == b["factor_1_contribution"].fillna(0)).all()
