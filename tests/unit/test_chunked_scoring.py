"""A large batch scored in chunks on two threads gets the one-pass path's numbers, bit for bit.

:func:`training.model.predict` splits a large batch into chunks of claims and overlaps one
chunk's features with another's LightGBM prediction. Whatever depends on the whole batch (the
claims' counts of earlier claims of the same batch) is computed once, before the chunks; the
worlds here have new claims of one patient on both sides of chunk boundaries, so a chunk that
counted only its own claims would give different numbers.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest

import features.history as history
import training.estimator as estimator_module
import training.model as model_module
from features.claim_arrays import ClaimArrays
from features.claim_features import claim_feature_columns
from features.claim_tables import ClaimTables
from features.history import HISTORY_FEATURES, HistoryFeatures
from features.pipeline import ClaimFeatureTransformer
from tests.unit.test_features import _wider_world
from tests.utils.history import service_as_of
from training.model import TOP_K, Prediction, predict, top_columns
from training.trees import CompiledTrees, compiled_trees

_COUNT_FEATURES = (
    *HistoryFeatures._COUNT_KEYS,
    *HistoryFeatures._LINE_COUNT_KEYS,
    *HistoryFeatures._LAST_SERVICE_KEYS,
)


def _fitted_on_first(n_claims: int, n_fitted: int) -> tuple[HistoryFeatures, ClaimTables]:
    """History fitted on the first claims of a world of 17 patients; the rest are new to it."""
    tables, outcomes = _wider_world(n_claims)
    fitted_ids = tables.claims["claim_id"].tolist()[:n_fitted]
    transformer = ClaimFeatureTransformer(min_level_count=1).fit(
        tables.subset(fitted_ids), outcomes[outcomes["claim_id"].isin(fitted_ids)]
    )
    return transformer.history_, tables


def _ranges(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + size)) for start in range(0, n, size)]


@pytest.mark.parametrize(
    ("sort_queries_above", "small_batch"),
    # As shipped (a few claims: plain searches; shared keys checked), and the paths of a large
    # batch (sorted searches; every batch index built).
    [(history._SORT_QUERIES_ABOVE, history._SMALL_BATCH), (2, 0)],
)
@pytest.mark.parametrize("chunk", [1, 7, 40])
def test_history_of_claim_ranges_equals_the_whole_batch(
    monkeypatch: pytest.MonkeyPatch, sort_queries_above: int, small_batch: int, chunk: int
) -> None:
    monkeypatch.setattr(history, "_SORT_QUERIES_ABOVE", sort_queries_above)
    monkeypatch.setattr(history, "_SMALL_BATCH", small_batch)
    fitted, tables = _fitted_on_first(200, n_fitted=60)  # 140 new claims, counted in the batch
    arrays = ClaimArrays.from_tables(tables)
    claim_features = claim_feature_columns(arrays)
    whole = fitted.transform(arrays, claim_features)
    batch = fitted.batch(arrays, claim_features)
    assert batch.batch_indexes  # the new claims count each other
    for start, stop in _ranges(len(tables), chunk):
        got = batch.features(start, stop, side_by_side=False)
        assert list(got) == list(HISTORY_FEATURES)
        for name in HISTORY_FEATURES:
            assert np.array_equal(got[name], whole[name][start:stop], equal_nan=True), (
                name,
                start,
            )


def test_the_test_world_counts_claims_across_chunk_boundaries() -> None:
    """Guards the tests above: a chunk scored as a batch of its own would lose counts."""
    fitted, tables = _fitted_on_first(200, n_fitted=60)
    arrays = ClaimArrays.from_tables(tables)
    whole = fitted.transform(arrays, claim_feature_columns(arrays))
    ids = tables.claims["claim_id"].tolist()
    differing = 0
    for start, stop in _ranges(len(tables), 40):
        alone = tables.subset(ids[start:stop])
        alone_arrays = ClaimArrays.from_tables(alone)
        own = fitted.transform(alone_arrays, claim_feature_columns(alone_arrays))
        differing += sum(
            int(np.sum(own[name] != whole[name][start:stop])) for name in _COUNT_FEATURES
        )
    assert differing > 0


def _assert_same_prediction(got: Prediction, want: Prediction) -> None:
    assert np.array_equal(got.claim_ids, want.claim_ids)
    assert got.denial_probability.dtype == want.denial_probability.dtype
    assert np.array_equal(got.denial_probability, want.denial_probability)
    for frame, expected in (
        (got.reason_probs, want.reason_probs),
        (got.carc_probs, want.carc_probs),
        (got.matrix, want.matrix),
    ):
        pd.testing.assert_frame_equal(frame, expected, check_exact=True)
        assert np.array_equal(frame.to_numpy(), expected.to_numpy(), equal_nan=True)
    assert got.matrix.attrs == want.matrix.attrs
    assert got.matrix.to_numpy().flags.f_contiguous  # one column-major block, as before
    # Chunks rank their own rows: as the whole batch's probabilities rank.
    assert got.reason_order is not None and got.carc_order is not None
    for order, probs in ((got.reason_order, want.reason_probs), (got.carc_order, want.carc_probs)):
        assert np.array_equal(order, top_columns(probs.to_numpy(), TOP_K))
    assert list(got.context) == list(want.context)
    for name, values in want.context.items():
        assert got.context[name].dtype == values.dtype, name
        assert got.context[name].tolist() == values.tolist() or np.array_equal(
            got.context[name], values, equal_nan=True
        ), name


def _chunked(monkeypatch: pytest.MonkeyPatch, chunk_claims: int) -> list[str]:
    """Chunk from 2 claims on, ``chunk_claims`` at a time, on two threads; returns a list that
    records the threads that scored chunks."""
    monkeypatch.setattr(model_module, "CHUNKED_FROM", 2)
    monkeypatch.setattr(model_module, "CHUNK_CLAIMS", chunk_claims)
    monkeypatch.setattr(model_module, "_chunk_workers", lambda: 2)
    threads: list[str] = []
    scores = model_module.DenialRiskEstimator.predict_reasons

    def recording(self: Any, matrix: pd.DataFrame, num_threads: int | None = None) -> Any:
        threads.append(threading.current_thread().name)
        assert num_threads == 1  # one LightGBM thread per chunk
        return scores(self, matrix, num_threads)

    monkeypatch.setattr(model_module.DenialRiskEstimator, "predict_reasons", recording)
    return threads


@pytest.fixture(scope="module")
def session_model(trained: Any) -> tuple[Any, ClaimTables]:
    # History as known on a day of the later period: the claims sent from then on are new to
    # it, so their counts of earlier submissions come from the batch itself, across chunks.
    return service_as_of(trained, 0.8)


@pytest.mark.parametrize(("chunk_claims", "compiled"), [(997, False), (5_000, False), (997, True)])
def test_chunked_prediction_equals_one_pass_end_to_end(
    monkeypatch: pytest.MonkeyPatch,
    session_model: tuple[Any, ClaimTables],
    chunk_claims: int,
    compiled: bool,
) -> None:
    """The session's model over its whole simulation: the test period's claims are new to the
    fitted history, so their counts come from the batch, across chunks. ``compiled``: the
    chunks' denial booster walks compiled trees (as a large batch's chunks do), the one pass
    LightGBM's."""
    service, tables = session_model
    pipeline = service.pipeline
    with monkeypatch.context() as one_pass:
        one_pass.setattr(model_module, "CHUNKED_FROM", len(tables) + 1)
        one_pass.setattr(estimator_module, "COMPILED_FROM_ROWS", len(tables) + 1)
        want = predict(pipeline, tables)
        want_frame = service.score_frame(tables, explain=False)
    threads = _chunked(monkeypatch, chunk_claims)
    walked: list[int] = []
    if compiled:
        monkeypatch.setattr(estimator_module, "COMPILED_FROM_ROWS", 1)
        # Built (and checked on probe rows) first, so that only the chunks are counted.
        assert compiled_trees(pipeline.named_steps["model"].denial_booster_) is not None
        exact = CompiledTrees.predict
        monkeypatch.setattr(
            CompiledTrees, "predict", lambda self, v: walked.append(len(v)) or exact(self, v)
        )
    got = predict(pipeline, tables, compiled=compiled)
    assert sum(walked) == (len(tables) if compiled else 0)  # every claim, once
    n_chunks = len(threads)
    assert n_chunks >= len(tables) // chunk_claims
    assert n_chunks % 2 == 0  # as many chunks per thread
    assert all(name.startswith("score-chunk") for name in threads)
    assert pipeline.named_steps["features"].batch(tables).history.batch_indexes
    _assert_same_prediction(got, want)
    pd.testing.assert_frame_equal(service.score_frame(tables, explain=False), want_frame)


def _latest_claims(session_model: tuple[Any, ClaimTables], n: int) -> tuple[Any, Any, ClaimTables]:
    """The session's service, its pipeline and the simulation's last ``n`` claims."""
    service, tables = session_model
    return service, service.pipeline, tables.subset(tables.claims["claim_id"].iloc[-n:].tolist())


def test_chunked_prediction_equals_one_pass_on_a_small_world(
    monkeypatch: pytest.MonkeyPatch, session_model: tuple[Any, ClaimTables]
) -> None:
    """Chunks smaller than every small-batch path, including chunks of one claim."""
    _, pipeline, tables = _latest_claims(session_model, 150)
    want = predict(pipeline, tables)  # 150 claims: one pass
    for chunk_claims in (1, 13, 64):
        _chunked(monkeypatch, chunk_claims)
        _assert_same_prediction(predict(pipeline, tables), want)


def test_chunks_without_the_matrix_give_the_same_scores(
    monkeypatch: pytest.MonkeyPatch, session_model: tuple[Any, ClaimTables]
) -> None:
    """Scores without explanations let the chunks' matrix go; nothing else changes."""
    service, pipeline, tables = _latest_claims(session_model, 150)
    _chunked(monkeypatch, 40)
    kept = predict(pipeline, tables)
    dropped = predict(pipeline, tables, keep_matrix=False)
    assert kept.matrix is not None and dropped.matrix is None
    with pytest.raises(ValueError, match="without keeping its model matrix"):
        dropped.model_matrix()
    assert np.array_equal(dropped.denial_probability, kept.denial_probability)
    pd.testing.assert_frame_equal(dropped.reason_probs, kept.reason_probs, check_exact=True)
    pd.testing.assert_frame_equal(dropped.carc_probs, kept.carc_probs, check_exact=True)
    assert dropped.context.keys() == kept.context.keys()
    # Explaining still gets its matrix: score() keeps it when asked to explain.
    assert all(score.factors for score in service.score(tables, explain=True, top_k=3)[:5])


def test_small_batches_and_one_cpu_keep_the_one_pass_path(
    monkeypatch: pytest.MonkeyPatch, session_model: tuple[Any, ClaimTables]
) -> None:
    service, tables = session_model
    tables = tables.subset(tables.claims["claim_id"].iloc[:300].tolist())
    calls: list[int] = []
    monkeypatch.setattr(
        model_module, "_scores_in_chunks", lambda *args: calls.append(1) or pytest.fail()
    )
    predict(service.pipeline, tables)  # 300 claims, below CHUNKED_FROM
    monkeypatch.setattr(model_module, "CHUNKED_FROM", 2)
    monkeypatch.setattr(model_module.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert model_module._chunk_workers() == 1
    predict(service.pipeline, tables)  # one usable CPU: nothing to overlap
    assert calls == []


def _written_state(table: history.KeyColumns) -> tuple[frozenset[Any], ...]:
    """What a table has computed and kept (its columns, hashes, keys, orders)."""
    return tuple(
        frozenset(kept) for kept in (table.columns, table._hashes, table._keys, table._orders)
    )


def test_batch_indexes_built_in_a_pool_thread_equal_and_write_nothing_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunked scoring builds the batch's own submission indexes in a pool thread while the
    first chunks look history up: the same indexes, and neither that thread nor the chunks
    write to the batch's tables that the others read."""
    monkeypatch.setattr(history, "_SORT_QUERIES_ABOVE", 2)  # large batches' paths
    monkeypatch.setattr(history, "_SMALL_BATCH", 0)
    fitted, tables = _fitted_on_first(200, n_fitted=60)
    arrays = ClaimArrays.from_tables(tables)
    claim_features = claim_feature_columns(arrays)
    whole = fitted.transform(arrays, claim_features)
    want = fitted.batch(arrays, claim_features).batch_indexes

    snapshot_taken = threading.Event()
    built_in: list[str] = []
    build = HistoryFeatures._batch_indexes

    def building(self: HistoryFeatures, claims: Any, lines: Any) -> Any:
        built_in.append(threading.current_thread().name)
        assert snapshot_taken.wait(10)  # starts only once the tables' state is recorded
        return build(self, claims, lines)

    monkeypatch.setattr(HistoryFeatures, "_batch_indexes", building)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pool") as pool:
        batch = fitted.batch(arrays, claim_features, pool)
        before = _written_state(batch.claims), _written_state(batch.lines)
        snapshot_taken.set()
        ranges = _ranges(len(tables), 40)
        parts = list(pool.map(lambda r: batch.features(*r, side_by_side=False), ranges))
    assert built_in and built_in[0].startswith("pool")
    assert (_written_state(batch.claims), _written_state(batch.lines)) == before
    assert batch.batch_indexes.keys() == want.keys() and want
    for (start, stop), got in zip(ranges, parts, strict=True):
        for name in HISTORY_FEATURES:
            assert np.array_equal(got[name], whole[name][start:stop], equal_nan=True), name
