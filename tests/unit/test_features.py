"""Claim features and point-in-time history: pure, order-free, and blind to the future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.claim_features import build_claim_features, npi_is_valid
from features.pipeline import ClaimFeatureTransformer, feature_source
from tests.utils.factories import make_claim, tables_from


def _outcomes(tables, denied, categories, remit_dates) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "claim_id": tables.claims["claim_id"],
            "remit_date": pd.to_datetime(remit_dates),
            "denied": denied,
            "category": categories,
        }
    )


def test_npi_luhn_check_accepts_valid_and_rejects_altered_numbers():
    npis = pd.Series(["1234567893", "1234567890", "12345", None, "1245319599"])
    assert npi_is_valid(npis).tolist() == [True, False, False, False, True]


def test_modifier_25_rule_flags_em_with_procedure_only_without_modifier():
    em_and_injection = [
        {"procedure_code": "99214", "line_charge": 200.0},
        {"procedure_code": "20610", "line_charge": 150.0},
    ]
    with_mod = [dict(em_and_injection[0], modifier_1="25"), em_and_injection[1]]
    tables = tables_from([make_claim(lines=em_and_injection), make_claim(lines=with_mod)])
    features = build_claim_features(tables)
    assert features["em_with_procedure"].tolist() == [1.0, 1.0]
    assert features["em_with_procedure_no_mod25"].tolist() == [1.0, 0.0]


def test_days_past_filing_limit_uses_payer_type_default():
    late = make_claim(
        service_date_from="2025-01-02", service_date_to="2025-01-02", submission_date="2025-05-02"
    )  # 120 days, commercial default 90
    features = build_claim_features(tables_from([late]))
    assert features.loc[0, "days_service_to_submission"] == 120
    assert features.loc[0, "days_past_filing_limit"] == 30


def test_reordering_service_lines_changes_no_feature():
    lines = [
        {"procedure_code": "99214", "line_charge": 200.0, "modifier_1": "25"},
        {"procedure_code": "20610", "line_charge": 150.0, "modifier_1": "RT"},
        {"procedure_code": "J3301", "line_charge": 30.0, "units": 4},
    ]
    a = tables_from([make_claim(claim_id="R1", lines=lines)])
    b = tables_from([make_claim(claim_id="R1", lines=list(reversed(lines)))])
    fa, fb = build_claim_features(a), build_claim_features(b)
    model_columns = [c for c in fa.columns if not c.startswith("line_of_")]
    pd.testing.assert_frame_equal(fa[model_columns], fb[model_columns])
    # ...while the written line number behind each slot follows the lines.
    assert fa.loc[0, "line_of_procedure_3"] == 3 and fb.loc[0, "line_of_procedure_3"] == 1


def _history_world():
    claims = []
    for i in range(12):
        day = pd.Timestamp("2025-01-01") + pd.Timedelta(days=10 * i)
        claims.append(
            make_claim(
                claim_id=f"H{i:03d}",
                submission_date=f"{day:%Y-%m-%d}",
                service_date_from=f"{day - pd.Timedelta(days=3):%Y-%m-%d}",
                service_date_to=f"{day - pd.Timedelta(days=3):%Y-%m-%d}",
                patient_id=f"P{i % 3}",
                lines=[{"procedure_code": "70553", "line_charge": 900.0}],
            )
        )
    tables = tables_from(claims)
    submitted = pd.to_datetime(tables.claims["submission_date"])
    remit = submitted + pd.Timedelta(days=25)
    rng = np.random.default_rng(3)
    denied = rng.random(len(claims)) < 0.5
    categories = np.where(denied, "authorization", "")
    return tables, _outcomes(tables, denied, categories, remit)


def test_history_features_ignore_outcomes_that_arrived_after_submission():
    tables, outcomes = _history_world()
    transformer = ClaimFeatureTransformer(min_level_count=1).fit(tables, outcomes)
    before = transformer.transform(tables)

    probe = 6  # claim H006, sent on day 60
    sent = pd.to_datetime(tables.claims.loc[probe, "submission_date"])
    future = outcomes["remit_date"] >= sent
    flipped = outcomes.copy()
    flipped.loc[future, "denied"] = ~flipped.loc[future, "denied"]
    flipped.loc[future, "category"] = np.where(flipped.loc[future, "denied"], "coding", "")
    after = ClaimFeatureTransformer(min_level_count=1).fit(tables, flipped).transform(tables)

    history_columns = [c for c in before.columns if c.startswith("hist_")]
    pd.testing.assert_series_equal(
        before.loc[probe, history_columns], after.loc[probe, history_columns]
    )
    # The flip is visible to a claim sent after those outcomes arrived: the test can fail.
    last = len(tables) - 1
    assert not before.loc[last, history_columns].equals(after.loc[last, history_columns])


def test_history_counts_only_outcomes_received_before_submission():
    tables, outcomes = _history_world()
    matrix = ClaimFeatureTransformer(min_level_count=1).fit(tables, outcomes).transform(tables)
    submitted = pd.to_datetime(tables.claims["submission_date"])
    expected = [int((outcomes["remit_date"] < day).sum()) for day in submitted]
    assert matrix["hist_payer_n"].tolist() == expected


def test_unseen_codes_map_to_other_level_not_an_error():
    tables, outcomes = _history_world()
    transformer = ClaimFeatureTransformer(min_level_count=1).fit(tables, outcomes)
    new = tables_from([make_claim(lines=[{"procedure_code": "0001U", "line_charge": 10.0}])])
    matrix = transformer.transform(new)
    # Categorical columns hold the position of the claim's value among the fitted levels.
    code = matrix.loc[0, "procedure_1"]
    assert transformer.levels_["procedure_1"][int(code)] == "__other__"
    assert "procedure_1" in matrix.attrs["categorical_features"]


@pytest.mark.parametrize(
    ("feature", "source"),
    [
        ("hist_payer_procedure_auth_rate", "prior authorization"),
        ("prior_auth_present", "prior authorization"),
        ("procedure_family_2", "procedure"),
        ("days_past_filing_limit", "days from service to submission"),
        ("hist_payer_rate", "payer"),
    ],
)
def test_every_model_column_maps_to_a_claim_field(feature, source):
    assert feature_source(feature) == source


def test_all_model_columns_have_a_named_source():
    tables, outcomes = _history_world()
    transformer = ClaimFeatureTransformer(min_level_count=1).fit(tables, outcomes)
    unnamed = [c for c in transformer.get_feature_names_out() if feature_source(c) == c]
    assert unnamed == []
