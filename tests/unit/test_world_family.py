"""A family of worlds: drawn from a seed, each different, each plausible; the default one kept.

Plausibility is checked with the exact truth (mean true denial probability and the expected
cause mix from the ``p_*`` columns) on small simulations, so the checks do not wobble with
sampling noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from features.codes import DENIAL_CATEGORIES
from simulator import SimulationConfig, default_world_spec, draw_world_spec, simulate
from simulator.catalog import PROCEDURES
from simulator.spec import DriftEvent, WorldSpec
from simulator.world import rule_tables

CODES = {p.code for p in PROCEDURES}


def _rules(spec: WorldSpec) -> tuple:
    return tuple(
        (
            p.auth_codes,
            p.not_covered,
            p.ncci_pairs,
            p.unit_limits,
            p.visit_limits,
            p.lenient_necessity,
            p.timely_filing_days,
        )
        for p in spec.payers
    )


def test_the_same_world_seed_gives_the_same_world() -> None:
    assert draw_world_spec(12) == draw_world_spec(12)
    assert draw_world_spec(12).seed == 12


def test_drawn_worlds_differ_in_payers_and_rules() -> None:
    worlds = [draw_world_spec(seed) for seed in range(8)]
    payer_ids = {tuple(p.payer_id for p in w.payers) for w in worlds}
    assert len(payer_ids) == len(worlds)
    assert len({_rules(w) for w in worlds}) == len(worlds)
    assert len({len(w.payers) for w in worlds}) > 2
    # Rules are written per code: some payer lists part of a family only.
    imaging = {p.code for p in PROCEDURES if p.family == "advanced_imaging"}
    partial_lists = [
        p for w in worlds for p in w.payers if 0 < len(p.auth_codes & imaging) < len(imaging)
    ]
    assert partial_lists


@pytest.mark.parametrize("seed", range(30))
def test_drawn_world_is_well_formed(seed: int) -> None:
    spec = draw_world_spec(seed)
    assert 4 <= len(spec.payers) <= 14
    assert sum(p.claim_share for p in spec.payers) == pytest.approx(1.0)
    types = [p.payer_type for p in spec.payers]
    assert types.count("medicare") == 1 and "commercial" in types and "medicaid" in types
    for payer in spec.payers:
        assert payer.timely_filing_days in (90, 95, 120, 180, 365)
        assert not ({c for c, _ in payer.not_covered} - CODES)
        if payer.payer_type == "medicare":
            assert payer.timely_filing_days == 365 and not payer.auth_codes
    assert 1 <= len(spec.drift) <= 3
    assert spec.scale("eligibility") > 0 and spec.scale("missing_information") > 0
    assert sum(s.claim_share for s in spec.specialties) == pytest.approx(1.0)


def test_default_spec_is_todays_world() -> None:
    spec = default_world_spec()
    assert spec.seed is None and spec.category_scale == {}
    today = {
        # payer ID: (SBR09, claim share, filing limit, appeal window, strictness, fee factor)
        "04412": ("MB", 0.15, 365, 120, 0.9, 1.0),
        "61115": ("16", 0.10, 365, 60, 1.3, 1.0),
        "SX141": ("16", 0.07, 365, 60, 1.3, 1.0),
        "68071": ("MC", 0.10, 180, 90, 1.05, 0.72),
        "77034": ("MC", 0.08, 365, 60, 1.1, 0.70),
        "87716": ("CI", 0.13, 90, 180, 1.0, 1.45),
        "84981": ("BL", 0.11, 180, 180, 0.9, 1.40),
        "60045": ("12", 0.07, 120, 180, 1.05, 1.50),
        "62318": ("HM", 0.06, 90, 60, 1.2, 1.35),
        "SX123": ("CI", 0.04, 365, 180, 0.85, 1.55),
        "39026": ("12", 0.04, 180, 120, 1.1, 1.38),
        "99726": ("CH", 0.05, 365, 90, 1.0, 1.05),
    }
    assert {
        p.payer_id: (
            p.filing_indicator,
            p.claim_share,
            p.timely_filing_days,
            p.appeal_window_days,
            p.strictness,
            p.fee_factor,
        )
        for p in spec.payers
    } == today
    northstar = spec.payers[spec.payer_index("northstar")]
    assert "72148" in northstar.auth_codes and "97110" not in northstar.auth_codes
    assert [(e.kind, e.payer) for e in spec.drift] == [
        ("auth_add", "northstar"),
        ("lenient_withdraw", "bluebonnet"),
    ]
    assert all(e.at_fraction is None for e in spec.drift)  # on the configuration's drift date


def test_drift_events_split_the_timeline_into_rule_periods() -> None:
    base = default_world_spec()
    spec = dataclasses.replace(
        base,
        drift=(
            DriftEvent("filing_limit", "bluebonnet", at_fraction=0.25, days=90),
            DriftEvent("exclusion_add", "northstar", at_fraction=0.5, codes=("95806",), carc="204"),
            DriftEvent(
                "diagnosis_withdraw",
                "medicare",
                at_fraction=0.5,
                groups=("sleep",),
                diagnoses=("G4733",),
            ),
        ),
    )
    rules = rule_tables(spec, days=400, default_drift_day=240)
    assert list(rules.period_start[1:]) == [100, 200]
    assert list(rules.period(np.array([0, 99, 100, 199, 200, 399]))) == [0, 0, 1, 1, 2, 2]
    blue = spec.payer_index("bluebonnet")
    assert list(rules.filing_limit[:, blue]) == [180, 90, 90]
    north = spec.payer_index("northstar")
    code = [p.code for p in PROCEDURES].index("95806")
    assert list(rules.excluded[:, north, code] > 0) == [False, False, True]


def _expected_mix(truth: pd.DataFrame) -> pd.Series:
    adjudicated = truth[(truth["frequency_code"] == "1") & ~truth["rejected"]]
    columns = [f"p_{c}" for c in DENIAL_CATEGORIES]
    totals = adjudicated[columns].sum()
    return pd.Series(totals.to_numpy() / totals.sum(), index=list(DENIAL_CATEGORIES))


@pytest.mark.parametrize("seed", range(30))
def test_every_drawn_world_is_plausible(seed: int) -> None:
    result = simulate(SimulationConfig(n_claims=3_000, seed=1, world_seed=seed, days=365))
    truth = result.truth
    adjudicated = truth[(truth["frequency_code"] == "1") & ~truth["rejected"]]
    rate = adjudicated["true_denial_probability"].mean()
    assert 0.06 <= rate <= 0.20, rate
    mix = _expected_mix(truth)
    assert mix["eligibility"] > 0.03 and mix["missing_information"] > 0.03, mix.to_dict()
    assert mix.max() <= 0.45, mix.to_dict()
    assert result.summary["world"]["world_seed"] == seed


def test_two_practices_of_one_world_share_payers_and_differ_in_claims() -> None:
    a = simulate(SimulationConfig(n_claims=500, seed=1, world_seed=4))
    b = simulate(SimulationConfig(n_claims=500, seed=2, world_seed=4))
    assert a.summary["world"] == b.summary["world"]
    world_ids = {p["payer_id"] for p in a.summary["world"]["payers"]}
    assert set(a.dataset.remittances["payer_id"]) <= world_ids
    assert set(b.dataset.remittances["payer_id"]) <= world_ids
    assert not a.dataset.claims["total_charge"].equals(b.dataset.claims["total_charge"])
    default_ids = {p.payer_id for p in default_world_spec().payers}
    assert world_ids != default_ids
