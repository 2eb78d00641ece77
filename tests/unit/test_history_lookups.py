"""The history features' combined lookups give the per-index lookups' numbers, bit for bit.

:meth:`HistoryFeatures.transform` looks all fitted indexes up together (few numpy calls, for
one claim as for a million). The reference here is the plain path: each index on its own with
:meth:`EventIndex.lookup`, smoothed and combined as the features are defined. Whatever the
batch (one claim, a few, all; known claims or new ones; small or sorted searches), the two must
agree exactly.
"""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

import features.history as history
from features.claim_arrays import ClaimArrays
from features.claim_features import ClaimGroups, claim_feature_columns
from features.claim_tables import ClaimTables
from features.codes import DENIAL_CATEGORIES
from features.history import (
    EVIDENCE_FEATURES,
    HISTORY_FEATURES,
    RATE_KEYS,
    HistoryFeatures,
    _claim_hash,
    _rate_feature_names,
    claim_keys,
    diagnosis_keys,
    line_keys,
    pair_keys,
)
from features.pipeline import ClaimFeatureTransformer
from tests.unit.test_features import _wider_world


def _reference_history(
    fitted: HistoryFeatures, arrays: ClaimArrays, claim_features: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The history features by the plain path: one :meth:`EventIndex.lookup` per index."""
    claims = claim_keys(arrays, claim_features)
    lines = line_keys(arrays, claims)
    pairs = pair_keys(lines)
    diagnoses = diagnosis_keys(arrays, lines)
    tables = {"claim": claims, "line": lines, "diagnosis": diagnoses, "pair": pairs}
    n = len(claims)
    groups = {
        "line": ClaimGroups(lines["claim_index"], n),
        "pair": ClaimGroups(pairs["claim_index"], n),
    }

    def worst_line_best_diagnosis(rows: np.ndarray) -> np.ndarray:
        """Rows per diagnosis -> per claim: the minimum over each line's diagnoses, then the
        maximum over the claim's lines (NaN for a claim without any)."""
        out = np.full((n, rows.shape[1]), np.nan)
        line_of = diagnoses["line"]
        for claim in range(n):
            claim_lines = np.unique(line_of[diagnoses["claim_index"] == claim])
            if len(claim_lines):
                best = [rows[line_of == line].min(axis=0) for line in claim_lines]
                out[claim] = np.max(best, axis=0)
        return out

    reduce = {"line": groups["line"].max, "pair": groups["pair"].max}
    reduce["diagnosis"] = worst_line_best_diagnosis
    m, prior = fitted.smoothing, fitted.prior_rate
    k = len(DENIAL_CATEGORIES)
    # Windows end the day after the latest remittance known when the claim was sent.
    anchor = fitted._anchor_days(claims["submission_day"])
    smoothed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    worst = {level: np.zeros((len(table), k)) for level, table in tables.items()}
    out: dict[str, np.ndarray] = {}
    for key in RATE_KEYS:
        table = tables[key.level]
        keys, days = table.key(key.columns), table["submission_day"]
        counts = fitted.rate_indexes_[key.name].lookup(keys, days)
        categories = fitted.rate_indexes_[f"{key.name}:categories"].lookup(keys, days)
        count, denied = counts[:, 0], counts[:, 1]
        if key.parent is None:
            parent_rate, parent_categories = prior, prior / k
        else:
            parent_rate, parent_categories = smoothed[key.parent]
        rate = (denied + m * parent_rate) / (count + m)
        category_rates = (categories + m * parent_categories) / (count + m)[:, None]
        smoothed[key.name] = (rate, category_rates)
        worst[key.level] = np.maximum(worst[key.level], category_rates)
        features = [count, rate]
        if key.by_category:
            features += list(category_rates.T)
        if key.window_days:
            end = anchor[table["claim_index"]] - key.window_days
            counts_before = fitted.rate_indexes_[key.name].lookup(keys, end)
            categories_before = fitted.rate_indexes_[f"{key.name}:categories"].lookup(keys, end)
            recent_count = count - counts_before[:, 0]
            recent_denied = denied - counts_before[:, 1]
            recent = categories - categories_before
            features += [recent_count, (recent_denied + m * rate) / (recent_count + m)]
            if key.by_category:
                features += list(((recent + m * category_rates) / (recent_count + m)[:, None]).T)
        matrix = np.column_stack(features)
        if key.level != "claim":
            matrix = reduce[key.level](matrix)
        out.update(zip(_rate_feature_names(key), matrix.T, strict=True))
    evidence = worst["claim"]
    for level in ("line", "diagnosis", "pair"):
        evidence = np.fmax(evidence, reduce[level](worst[level]))
    out.update(zip(EVIDENCE_FEATURES, evidence.T, strict=True))

    # Submissions of this batch the fitted state does not hold count too (a claim never counts
    # itself: only earlier days count).
    new = ~np.isin(_claim_hash(claims["claim_id"]), fitted.known_claims_)
    batch = {}
    if new.any():
        batch = HistoryFeatures._submission_indexes(
            claims.take(np.flatnonzero(new)),
            lines.take(np.flatnonzero(new[lines["claim_index"]])),
        )
    for name, columns in HistoryFeatures._COUNT_KEYS.items():
        keys, days = claims.key(columns), claims["submission_day"]
        count = fitted.submission_indexes_[name].lookup(keys, days)[:, 0]
        if batch:
            count = count + batch[name].lookup(keys, days)[:, 0]
        out[name] = count
    for name, columns in HistoryFeatures._LINE_COUNT_KEYS.items():
        keys, days = lines.key(columns), lines["submission_day"]
        count = fitted.submission_indexes_[name].lookup(keys, days)
        if batch:
            count = count + batch[name].lookup(keys, days)
        out[name] = groups["line"].max(count)[:, 0]
    no_key = np.array([v is None for v in claims["patient_key"]], dtype=bool)
    for name in (
        "hist_person_prior_claims",
        "hist_person_member_prior_claims",
        "hist_person_payer_prior_claims",
    ):
        out[name] = np.where(no_key, np.nan, out[name])
    for name, (level, columns) in HistoryFeatures._LAST_SERVICE_KEYS.items():
        frame = claims if level == "claim" else lines
        keys, days = frame.key(columns), frame["submission_day"]
        latest = fitted.submission_indexes_[name].lookup(keys, days)[:, 0]
        if batch:
            latest = np.fmax(latest, batch[name].lookup(keys, days)[:, 0])
        since = np.where(np.isnan(latest), -1.0, frame["service_day"] - latest)
        if level == "line":
            gaps = np.where(since < 0, np.inf, since)
            shortest = -groups["line"].max(-gaps)
            since = np.where(np.isinf(shortest) | np.isnan(shortest), -1.0, shortest)
        out[name] = since

    def outcome(name: str) -> np.ndarray:
        columns, _ = history._OUTCOME_KEYS[name]
        return fitted.outcome_indexes_[name].lookup(claims.key(columns), claims["submission_day"])[
            :, 0
        ]

    lag = outcome("hist_payer_max_paid_lag")
    out["hist_payer_max_paid_lag"] = np.where(lag > 0, lag, -1.0)
    delay = claims["days_service_to_submission"]
    out["hist_days_past_paid_lag"] = delay - lag
    out["hist_days_past_late_denied_lag"] = delay + outcome("late_denied_lag")
    service_day = claims["service_day"].astype(float)
    last_paid = outcome("last_paid_service")
    out["hist_days_since_paid_with_payer"] = np.where(
        np.isnan(last_paid), -1.0, service_day - last_paid
    )
    out["hist_days_past_known_coverage_end"] = service_day - outcome("coverage_end")
    out["hist_member_id_corrected"] = outcome("member_corrected")
    return {name: out[name] for name in HISTORY_FEATURES}


def _assert_same_as_reference(
    fitted: HistoryFeatures, tables: ClaimTables, compiled: bool = False
) -> None:
    arrays = ClaimArrays.from_tables(tables)
    claim_features = claim_feature_columns(arrays)
    if compiled:  # large tables through the compiled kernel (features.lookup_kernel)
        got = fitted.batch(arrays, claim_features).features(0, arrays.n_claims, compiled=True)
    else:
        got = fitted.transform(arrays, claim_features)
    expected = _reference_history(fitted, arrays, claim_features)
    assert list(got) == list(expected) == list(HISTORY_FEATURES)
    for name in HISTORY_FEATURES:
        assert got[name].dtype == expected[name].dtype == np.float64, name
        assert np.array_equal(got[name], expected[name], equal_nan=True), name


def _fitted_on_first(n_fitted: int) -> tuple[HistoryFeatures, ClaimTables]:
    """History fitted on the first claims of the world; the rest are new to it."""
    tables, outcomes = _wider_world()
    ids = tables.claims["claim_id"].tolist()
    fitted_ids = ids[:n_fitted]
    transformer = ClaimFeatureTransformer(min_level_count=1).fit(
        tables.subset(fitted_ids), outcomes[outcomes["claim_id"].isin(fitted_ids)]
    )
    return transformer.history_, tables


@pytest.mark.parametrize(
    ("sort_queries_above", "side_by_side_from", "compiled"),
    [
        (history._SORT_QUERIES_ABOVE, history._LOOKUPS_SIDE_BY_SIDE_FROM, False),
        (2, 2, False),
        (2, 2, "rows in table order"),
        (2, 2, "rows in key order"),
    ],
)
@pytest.mark.parametrize("n_fitted", [80, 50])
def test_history_features_equal_the_per_index_lookups(
    monkeypatch, sort_queries_above, side_by_side_from, compiled, n_fitted
):
    # 80: every claim is known to the fitted state; 50: the last 30 are new (batch counts,
    # unknown keys). Low thresholds take the large-batch paths: sorted searches, and the line
    # lookups in a second thread beside the claim lookups; ``compiled``, the kernel's (taking
    # rows in key order for every index, or for none: these indexes have few keys).
    monkeypatch.setattr(history, "_SORT_QUERIES_ABOVE", sort_queries_above)
    monkeypatch.setattr(history, "_LOOKUPS_SIDE_BY_SIDE_FROM", side_by_side_from)
    if compiled == "rows in key order":
        monkeypatch.setattr(history, "_KERNEL_SORTS_ABOVE_KEYS", 0)
    compiled = bool(compiled)
    fitted, tables = _fitted_on_first(n_fitted)
    ids = tables.claims["claim_id"].tolist()
    for claim_id in ids:  # (a) every claim alone
        _assert_same_as_reference(fitted, tables.subset([claim_id]), compiled)
    for size in (3, 20):  # (b) small batches
        for start in range(0, len(ids), size):
            _assert_same_as_reference(fitted, tables.subset(ids[start : start + size]), compiled)
    _assert_same_as_reference(fitted, tables, compiled)  # (c) the whole set
    _assert_same_as_reference(fitted, tables.subset([]), compiled)  # and none at all


def test_combined_lookups_are_not_pickled_and_follow_a_refit():
    fitted, tables = _fitted_on_first(50)
    _assert_same_as_reference(fitted, tables)  # builds the combined lookups
    assert "_lookups" in fitted.__dict__
    loaded = pickle.loads(pickle.dumps(fitted))  # noqa: S301 (the test's own object)
    assert "_lookups" not in loaded.__dict__  # the fitted state is the indexes alone
    assert set(loaded.__dict__) == set(HistoryFeatures(5.0, 0.1).__dict__) | {
        "rate_indexes_",
        "outcome_indexes_",
        "submission_indexes_",
        "known_claims_",
        "cutoff_",
        "remit_days_",
    }
    _assert_same_as_reference(loaded, tables)

    # Refitted (as refresh_history does, on a copy) on all claims: new indexes, new lookups.
    _, outcomes = _wider_world()
    arrays = ClaimArrays.from_tables(tables)
    fitted.refresh(arrays, claim_feature_columns(arrays), outcomes)
    _assert_same_as_reference(fitted, tables)


def test_a_released_history_refuses_to_transform_until_refreshed():
    # Training releases the training cutoff's history while its boosters fit (evaluation
    # refreshes it over every claim): nothing may read the released state by mistake.
    fitted, tables = _fitted_on_first(50)
    _assert_same_as_reference(fitted, tables)
    fitted.release()
    assert not {"rate_indexes_", "outcome_indexes_", "submission_indexes_", "_lookups"} & set(
        fitted.__dict__
    )
    arrays = ClaimArrays.from_tables(tables)
    with pytest.raises(RuntimeError, match="released"):
        fitted.transform(arrays, claim_feature_columns(arrays))
    _, outcomes = _wider_world()
    fitted.refresh(arrays, claim_feature_columns(arrays), outcomes)
    _assert_same_as_reference(fitted, tables)


def test_a_large_batch_looks_its_lines_up_in_a_second_thread(monkeypatch):
    fitted, tables = _fitted_on_first(50)
    threads: list[str] = []
    line_values = history._TableLookups.values

    def recording(self, table, compiled=False, anchor_day=None):
        threads.append(threading.current_thread().name)
        return line_values(self, table, compiled, anchor_day)

    monkeypatch.setattr(history._TableLookups, "values", recording)
    monkeypatch.setattr(history, "_LOOKUPS_SIDE_BY_SIDE_FROM", len(tables))
    _assert_same_as_reference(fitted, tables)
    # The claims here, lines, diagnoses and pairs in the other thread (either may be first).
    assert sorted(threads) == sorted([threading.current_thread().name, *["line-lookups_0"] * 3])
    threads.clear()
    _assert_same_as_reference(fitted, tables.subset(tables.claims["claim_id"].iloc[1:]))
    assert set(threads) == {threading.current_thread().name}  # below the threshold: one thread


@pytest.mark.parametrize("length", [0, 1, 64, 65, 3_000])
def test_distinct_columns_hash_as_any_column(length: int) -> None:
    """Claim IDs are hashed value by value (no search for repeats): same hashes, and a repeat
    or a missing ID (invalid, but possible in raw tables) hashes as it would otherwise."""
    rng = np.random.default_rng(length)
    values = np.array([f"PCN{i:09d}" for i in rng.permutation(length)], dtype=object)
    if length > 2:
        values[1], values[2] = None, values[0]
    want = history.column_hash_values(values)
    assert history.column_hash_values(values, distinct=True).tobytes() == want.tobytes()
    table = history.KeyColumns({"claim_index": np.arange(length), "claim_id": values})
    assert table.column_hash("claim_id").tobytes() == want.tobytes()


def test_large_tables_search_in_key_then_day_order() -> None:
    """The order searches run in (see ``KeyColumns.order``): keys ascending (by their top
    bits), each key's rows by submission day, missing days included."""
    rng = np.random.default_rng(5)
    n = 3_000
    days = rng.integers(19_000, 19_400, n)
    days[:7] = history.NO_DAY
    payers = np.array(["P1", "P2", "P3", None], dtype=object)[rng.integers(0, 4, n)]
    table = history.KeyColumns(
        {"claim_index": np.arange(n), "submission_day": days, "payer_id": payers}
    )
    order = table.order(("payer_id",))
    assert order is not None and sorted(order.tolist()) == list(range(n))
    keys, ordered_days = table.key(("payer_id",))[order], days[order]
    assert np.all(np.diff(keys >> 24) >= 0)
    same_key = np.diff(keys) == 0
    known = (ordered_days[1:] != history.NO_DAY) & (ordered_days[:-1] != history.NO_DAY)
    assert np.all(np.diff(ordered_days)[same_key & known] >= 0)
    assert same_key.sum() >= n - 4  # four payer keys (missing is one): three key changes
