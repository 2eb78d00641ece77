"""Compiled trees give LightGBM's predictions bit for bit, or are not used.

Boosters are trained here on generated data that makes LightGBM learn every kind of split the
kernel reads: numerical ones without and with a side for missing values (NaN, and zero when
``zero_as_missing``), categorical ones with codes below and past 63. Rows to predict mix those
values with every edge case LightGBM reads specially.
"""

from __future__ import annotations

import logging

import lightgbm as lgb
import numpy as np
import pytest

from training import estimator, trees
from training.trees import CompiledTrees, compiled_trees, probe_rows


def _training_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    wide = rng.integers(0, 120, n).astype(float)  # categories past 63 decide the label too
    narrow = rng.integers(0, 12, n).astype(float)
    numeric = rng.normal(size=n)
    sparse = np.where(rng.random(n) < 0.4, 0.0, rng.normal(2.0, 1.0, n))
    gappy = np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n))
    score = (
        np.isin(wide, [3, 70, 71, 90, 101]) * 1.5
        + (narrow % 3 == 0) * 1.0
        + numeric
        + (sparse == 0) * 1.2
        + np.where(np.isnan(gappy), 1.5, gappy)
    )
    labels = (score + rng.normal(0, 0.5, n) > 1.5).astype(int)
    return np.column_stack([wide, narrow, numeric, sparse, gappy]), labels


def _booster(objective: str, zero_as_missing: bool = False, seed: int = 0) -> lgb.Booster:
    values, labels = _training_data(3_000, seed)
    params: dict[str, object] = {
        "objective": objective,
        "num_leaves": 15,
        "min_data_in_leaf": 5,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "max_cat_to_onehot": 2,
        "zero_as_missing": zero_as_missing,
        "verbose": -1,
        "seed": seed,
    }
    if objective == "multiclass":
        params["num_class"] = 3
        labels = labels + (values[:, 2] > 0.5).astype(int)
    data = lgb.Dataset(values, labels, categorical_feature=[0, 1], free_raw_data=False)
    return lgb.train(params, data, num_boost_round=40)


def _rows_to_predict(booster: lgb.Booster, seed: int) -> np.ndarray:
    values, _ = _training_data(2_000, seed + 100)
    return np.vstack([values, probe_rows(CompiledTrees(booster), rows=2_000)])


@pytest.mark.parametrize(
    ("objective", "zero_as_missing"),
    [("binary", False), ("binary", True), ("multiclass", False)],
)
def test_compiled_trees_predict_what_lightgbm_predicts(
    objective: str, zero_as_missing: bool
) -> None:
    booster = _booster(objective, zero_as_missing)
    compiled = CompiledTrees(booster)
    kinds = set(compiled._forest.kind.tolist())
    # Every path is read (with zero_as_missing every numerical split has a side for zero).
    plain = set() if zero_as_missing else {trees._PLAIN}
    assert kinds == {trees._CATEGORICAL, trees._SPECIAL} | plain
    missing = set(compiled._forest.missing_type[compiled._forest.kind == trees._SPECIAL])
    assert -1 in missing  # a categorical split sending a category past 63 left
    assert (trees._MISSING_ZERO if zero_as_missing else trees._MISSING_NAN) in missing

    rows = _rows_to_predict(booster, seed=1)
    for layout in (rows, np.asfortranarray(rows)):
        got = compiled.predict(layout)
        want = booster.predict(layout, num_threads=1)
        assert got.shape == want.shape
        assert np.array_equal(got, want)
        raw = compiled.raw_scores(layout)
        assert np.array_equal(raw.reshape(want.shape), booster.predict(layout, raw_score=True))


def test_trees_laid_out_complete_predict_what_lightgbm_predicts() -> None:
    # Without a missing-value side or a category past 63, trees up to depth 8 are walked as
    # complete trees; deeper ones by their child indexes. Both kinds are in this booster.
    values, labels = _training_data(3_000, 4)
    plain = values[:, [1, 2, 3]]  # narrow categories, numbers, zeros (not read as missing)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 16, "min_data_in_leaf": 3, "verbose": -1,
         "max_cat_to_onehot": 2, "min_data_per_group": 5, "cat_smooth": 1.0},
        lgb.Dataset(plain, labels, categorical_feature=[0]),
        num_boost_round=30,
    )  # fmt: skip
    compiled = CompiledTrees(booster)
    forest = compiled._forest
    laid_out = forest.complete.start >= 0
    assert not forest.has_special.any()
    assert laid_out.sum() >= 5 and (forest.depth[~laid_out] > trees._COMPLETE_DEPTH_MAX).any()
    assert trees._CATEGORICAL in set(forest.kind.tolist())
    rows = np.vstack([_training_data(2_000, 5)[0][:, [1, 2, 3]], probe_rows(compiled, 2_000)])
    assert np.array_equal(compiled.predict(rows), booster.predict(rows, num_threads=1))
    assert np.array_equal(
        compiled.raw_scores(rows)[:, 0], booster.predict(rows, raw_score=True, num_threads=1)
    )


def test_a_booster_gets_its_compiled_trees_once_and_they_are_checked() -> None:
    booster = _booster("binary")
    first = compiled_trees(booster)
    assert first is not None and compiled_trees(booster) is first


def test_trees_that_would_differ_from_lightgbm_are_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    booster = _booster("binary", seed=2)
    exact = CompiledTrees.predict
    monkeypatch.setattr(
        CompiledTrees, "predict", lambda self, values: np.nextafter(exact(self, values), 2.0)
    )
    with caplog.at_level(logging.WARNING, logger="training.trees"):
        assert compiled_trees(booster) is None
    assert "differ from LightGBM" in caplog.text


def test_models_the_kernel_does_not_reproduce_are_left_to_lightgbm() -> None:
    values, labels = _training_data(500, 3)
    regression = lgb.train(
        {"objective": "regression", "verbose": -1}, lgb.Dataset(values, labels.astype(float)), 5
    )
    assert compiled_trees(regression) is None
    linear = lgb.train(
        {"objective": "binary", "linear_tree": True, "verbose": -1},
        lgb.Dataset(np.nan_to_num(values), labels),
        5,
    )
    assert compiled_trees(linear) is None


def test_large_one_thread_predictions_of_a_binary_booster_use_compiled_trees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    booster = _booster("binary", seed=4)
    rows = _rows_to_predict(booster, seed=4)
    calls: list[int] = []
    exact = CompiledTrees.predict

    def counted(self: CompiledTrees, values: np.ndarray) -> np.ndarray:
        calls.append(len(values))
        return exact(self, values)

    monkeypatch.setattr(CompiledTrees, "predict", counted)
    monkeypatch.setattr(estimator, "COMPILED_FROM_ROWS", 1_000)
    want = booster.predict(rows, num_threads=1)
    assert np.array_equal(estimator._booster_predict(booster, rows, 1, compiled=True), want)
    assert len(rows) in calls
    calls.clear()
    # Not asked to (training's evaluation): LightGBM.
    assert np.array_equal(estimator._booster_predict(booster, rows, num_threads=1), want)
    assert calls == []
    calls.clear()
    # Below the threshold, on every core, or for a multiclass booster: LightGBM itself.
    assert np.array_equal(
        estimator._booster_predict(booster, rows[:999], 1, compiled=True), want[:999]
    )
    assert np.array_equal(estimator._booster_predict(booster, rows, 0, compiled=True), want)
    multiclass = _booster("multiclass", seed=4)
    estimator._booster_predict(multiclass, rows, 1, compiled=True)
    assert calls == [] or all(n == 512 for n in calls)  # only a probe check, if any


def test_a_booster_cache_builds_once_per_booster_and_keeps_none() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from training.booster_cache import BoosterCache

    built: list[lgb.Booster] = []

    def build(booster: lgb.Booster) -> None:
        built.append(booster)  # returns None: kept as an answer too

    cache: BoosterCache[None] = BoosterCache(build)
    first, second = _booster("binary", seed=5), _booster("binary", seed=6)
    with ThreadPoolExecutor(4) as pool:  # concurrent first uses
        list(pool.map(cache.get, [first, second] * 8))
    assert cache.get(first) is None
    assert sorted(map(id, built)) == sorted([id(first), id(second)])
