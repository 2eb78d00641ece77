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
        # Longer prefixes than another that matches them first.
        ("hist_procedure_claims_this_year", "benefit limit (visits this year)"),
        ("hist_days_past_known_coverage_end", "patient eligibility"),
    ],
)
def test_every_model_column_maps_to_a_claim_field(feature, source):
    assert feature_source(feature) == source


def test_all_model_columns_have_a_named_source():
    tables, outcomes = _history_world()
    transformer = ClaimFeatureTransformer(min_level_count=1).fit(tables, outcomes)
    unnamed = [c for c in transformer.get_feature_names_out() if feature_source(c) == c]
    assert unnamed == []


# -- fast paths give the slow paths' numbers, bit for bit ------------------------------------


def _bits(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype=np.float64).tobytes()


def _wider_world(n_claims: int = 80):
    """More claims than the small-batch paths take (64), several payers, patients and codes."""
    rng = np.random.default_rng(11)
    codes = ["70553", "99214", "20610", "J3301", "97110", None]
    claims = []
    for i in range(n_claims):
        day = pd.Timestamp("2025-01-01") + pd.Timedelta(days=int(rng.integers(0, 200)))
        lines = [
            {"procedure_code": code, "line_charge": float(rng.integers(10, 900))}
            for code in rng.choice([c for c in codes if c], size=int(rng.integers(1, 4)))
        ]
        claims.append(
            make_claim(
                claim_id=f"W{i:03d}",
                payer_id=["60054", "87726", "00431"][i % 3],
                patient_id=f"P{i % 17}",
                submission_date=f"{day:%Y-%m-%d}",
                service_date_from=f"{day - pd.Timedelta(days=4):%Y-%m-%d}",
                service_date_to=f"{day - pd.Timedelta(days=4):%Y-%m-%d}",
                prior_auth_number=None if i % 4 else f"A{i}",
                lines=lines,
            )
        )
    tables = tables_from(claims)
    submitted = pd.to_datetime(tables.claims["submission_date"])
    denied = rng.random(n_claims) < 0.4
    categories = np.where(denied, rng.choice(["authorization", "coding", "eligibility"]), "")
    return tables, _outcomes(tables, denied, categories, submitted + pd.Timedelta(days=20))


def test_features_of_a_claim_do_not_depend_on_the_batch_size():
    # Every claim is in the fitted history, so its features are its own: scored in the whole
    # batch (factorised, per-column paths) or alone and in fives (small-batch paths), the
    # matrix rows must be identical.
    tables, outcomes = _wider_world()
    transformer = ClaimFeatureTransformer(min_level_count=1).fit(tables, outcomes)
    whole = transformer.transform(tables)
    ids = tables.claims["claim_id"].tolist()
    for chunk in ([ids[0]], [ids[7]], ids[10:15], ids[60:80]):
        part = transformer.transform(tables.subset(chunk))
        rows = whole.set_index(tables.claims["claim_id"]).loc[chunk]
        assert _bits(part.to_numpy()) == _bits(rows.to_numpy())


def test_key_columns_hashed_together_hash_as_alone():
    from features.history import KeyColumns, column_hash_values

    columns = {
        "claim_index": np.arange(4),
        "payer": np.array(["60054", None, "87726", "60054"], dtype=object),
        "code": np.array([None, "70553", "", "J3301"], dtype=object),
        "day": np.array([20000, -5, 0, 20000], dtype=np.int64),
        "flag": np.array([0.0, -0.0, 1.0, np.nan]),
    }
    together = KeyColumns(columns)
    together.hash_columns(["payer", "code", "day", "flag"])
    for name in ("payer", "code", "day", "flag"):
        assert np.array_equal(together.column_hash(name), column_hash_values(columns[name]))
    # A table taking its rows from another (lines from claims) takes the hashes by row.
    rows = np.array([3, 3, 0, 1, 2])
    lines = KeyColumns({"claim_index": rows}, {"payer": (together, rows)})
    assert np.array_equal(
        lines.key(("payer",)),
        KeyColumns({"claim_index": rows, "payer": columns["payer"][rows]}).key(("payer",)),
    )
    assert lines["payer"].tolist() == columns["payer"][rows].tolist()


@pytest.mark.parametrize("n_queries", [5, 3_000])
def test_event_lookups_in_key_order_equal_a_plain_search(n_queries):
    from features.history import EventIndex, KeyColumns

    rng = np.random.default_rng(5)
    keys = rng.integers(-50, 50, size=2_000)
    days = rng.integers(19_000, 19_400, size=2_000)
    values = rng.random((2_000, 3))
    index = EventIndex(keys, days, values)
    query_keys = rng.integers(-60, 60, size=n_queries)
    query_days = rng.integers(18_990, 19_420, size=n_queries)
    queries = KeyColumns(
        {"claim_index": np.arange(n_queries), "k": query_keys, "submission_day": query_days}
    )
    order = queries.order(("k",))
    assert (order is None) == (n_queries < 1_000)
    position = index.locate(query_keys, order)
    got = index.lookup_located(position, query_days, order)
    expected = np.zeros((n_queries, 3))
    for i, (key, day) in enumerate(zip(query_keys, query_days, strict=True)):
        rows = np.flatnonzero(keys == key)
        rows = rows[np.argsort(days[rows], kind="stable")]  # the index's (key, day) order
        earlier = int((days[rows] < day).sum())
        if earlier:
            expected[i] = np.cumsum(values[rows], axis=0)[earlier - 1]
    assert np.allclose(got, expected, rtol=0, atol=1e-12)
    # The key order is only a speed-up: without it the numbers are the same, bit for bit.
    plain = index.lookup_located(index.locate(query_keys), query_days)
    assert _bits(got) == _bits(plain)


def test_calibration_and_carc_rows_equal_the_library_paths():
    from sklearn.isotonic import IsotonicRegression

    from training.estimator import DenialRiskEstimator, _rows_by_value

    rng = np.random.default_rng(4)
    raw = rng.random(500)
    estimator = DenialRiskEstimator()
    estimator.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
        raw, rng.random(500) < raw
    )
    probe = np.concatenate([rng.random(50) * 1.2 - 0.1, [0.0, 1.0]])
    assert _bits(estimator._calibrated(probe)) == _bits(estimator.calibrator_.predict(probe))

    for n in (10, 200):
        values = rng.choice(np.array(["medicare", "commercial", None, "medicaid"], dtype=object), n)
        groups = _rows_by_value(values)
        assert sum(len(rows) for _, rows in groups) == n
        for value, rows in groups:
            assert rows.tolist() == np.flatnonzero(values == value).tolist()


@pytest.mark.parametrize("length", [4, 300, 2_000])
def test_text_columns_read_from_pyarrow_equal_to_numpy(length):
    from features.claim_arrays import text_column

    values = (["60054", None, "", "87726", " 25"] * length)[:length]
    for dtype in ("string[pyarrow]", "str"):
        series = pd.Series(values, dtype=dtype)
        for given in (series, series.array):
            got = text_column(given)
            assert got.dtype == object
            assert got.tolist() == series.to_numpy(dtype=object, na_value=None).tolist()


def test_new_claims_in_one_batch_count_each_other_as_without_the_shortcut(monkeypatch):
    # Small batches build only the batch indexes some two claims' keys can meet in; the
    # counts must be those of building them all.
    import features.history as history

    tables, outcomes = _wider_world(30)
    transformer = ClaimFeatureTransformer(min_level_count=1).fit(tables, outcomes)
    new = [
        make_claim(
            patient_id=patient,
            submission_date=day,
            service_date_from=day,
            service_date_to=day,
            lines=[{"procedure_code": code, "line_charge": 100.0}],
        )
        for patient, day, code in [
            ("P1", "2025-09-01", "70553"),
            ("P1", "2025-09-05", "70553"),
            ("P2", "2025-09-03", "99214"),
            ("NEW", "2025-09-04", "97110"),
        ]
    ]
    batch = tables_from(new)
    fast = transformer.transform(batch)
    monkeypatch.setattr(history, "_SMALL_BATCH", 0)
    everything = transformer.transform(batch)
    assert _bits(fast.to_numpy()) == _bits(everything.to_numpy())
    # The second visit of P1 counts the first one, sent four days earlier in the same batch.
    assert fast.loc[1, "hist_patient_prior_claims"] == fast.loc[0, "hist_patient_prior_claims"] + 1
    assert fast.loc[1, "hist_days_since_same_procedure"] == 4
