"""The claim features' batched paths give the plain paths' values, bit for bit, at any batch size.

:meth:`ClaimArrays.from_tables` reads a small batch's text columns in one go,
:func:`claim_feature_columns` maps a column once for several features, and the pipeline stacks
the matrix in one call with level codes looked up in one pass. The references here are the plain
paths: one :func:`text_column` / :func:`map_text` per column and feature, and the matrix filled
column by column. Claim features are row-independent, so each claim alone, in small batches and
in the whole set must give the reference's rows exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest

from features import claim_arrays
from features.claim_arrays import (
    CLAIM_TEXT,
    ClaimArrays,
    TextFactors,
    factor_codes,
    map_text,
    map_texts,
    text_column,
    text_columns,
)
from features.claim_features import claim_feature_columns
from features.claim_tables import ClaimTables
from features.pipeline import (
    CONTEXT_COLUMNS,
    MATRIX_DTYPE,
    MISSING_LEVEL,
    OTHER_LEVEL,
    ClaimFeatureTransformer,
)
from tests.unit.test_features import _wider_world


def _reference_matrix(transformer: ClaimFeatureTransformer, tables: ClaimTables) -> np.ndarray:
    """The model matrix the plain way: level codes value by value, one column written at a time."""
    arrays = ClaimArrays.from_tables(tables)
    claim_features = claim_feature_columns(arrays)
    history = transformer.history_.transform(arrays, claim_features)
    names = transformer.feature_names_out_
    values = np.empty((arrays.n_claims, len(names)), dtype=MATRIX_DTYPE)
    for i, column in enumerate(names):
        if column in transformer.level_codes_:
            codes = transformer.level_codes_[column]
            values[:, i] = [
                codes[MISSING_LEVEL] if v is None else codes.get(v, codes[OTHER_LEVEL])
                for v in claim_features[column]
            ]
        elif column in history:
            values[:, i] = history[column]
        else:
            values[:, i] = claim_features[column]
    return values


def _same(got: np.ndarray, expected: np.ndarray) -> bool:
    """Equal values: text (and ``None``) by equality, numbers bit for bit (NaN equals NaN)."""
    if expected.dtype == object:
        return got.dtype == object and got.tolist() == expected.tolist()
    return (
        np.ascontiguousarray(got, np.float64).tobytes()
        == np.ascontiguousarray(expected, np.float64).tobytes()
    )


@pytest.fixture(scope="module")
def fitted():
    tables, outcomes = _wider_world(150)
    transformer = ClaimFeatureTransformer(min_level_count=2).fit(tables, outcomes)
    return tables, transformer


def test_matrix_and_context_equal_the_reference_at_every_batch_size(fitted):
    tables, transformer = fitted
    reference = _reference_matrix(transformer, tables)
    whole, whole_context = transformer.transform_with_context(tables)
    assert whole.to_numpy().flags.f_contiguous
    assert list(whole.columns) == transformer.feature_names_out_
    assert _same(whole.to_numpy(), reference)

    ids = tables.claims["claim_id"].tolist()
    row_of = {claim_id: i for i, claim_id in enumerate(ids)}
    batches = [[claim_id] for claim_id in ids] + [ids[i : i + 20] for i in range(0, len(ids), 20)]
    batches += [ids[3:8], ids[::-1][:64], ids[:65], ids[::2]]
    for batch in batches:
        matrix, context = transformer.transform_with_context(tables.subset(batch))
        rows = [row_of[claim_id] for claim_id in tables.subset(batch).claims["claim_id"]]
        assert _same(matrix.to_numpy(), reference[rows]), batch
        assert set(context) == set(CONTEXT_COLUMNS)
        for column in CONTEXT_COLUMNS:
            assert _same(context[column], whole_context[column][rows]), (batch, column)


def test_lines_of_claims_outside_the_batch_are_dropped():
    # Lines and diagnoses find their claim by a Python lookup (up to 512 rows) or pyarrow's join
    # (more); either way the claim's features are those of its own tables.
    tables, _ = _wider_world(400)
    assert len(tables.lines) > 512
    ids = tables.claims["claim_id"].tolist()
    for batch in (ids[:1], ids[:30], ids[:100], ids[50:350]):
        alone = tables.subset(batch)
        with_strangers = ClaimTables(alone.claims, tables.lines, tables.diagnoses)
        expected = claim_feature_columns(ClaimArrays.from_tables(alone))
        got = claim_feature_columns(ClaimArrays.from_tables(with_strangers))
        for column, values in expected.items():
            assert _same(got[column], values), (len(batch), column)


def _arrays_fields(arrays: ClaimArrays) -> dict[str, np.ndarray]:
    return {
        **{f"claims.{k}": v for k, v in arrays.claims.items()},
        **{f"lines.{k}": v for k, v in arrays.lines.items()},
        **{f"diagnoses.{k}": v for k, v in arrays.diagnoses.items()},
    }


def test_rows_in_claim_order_find_their_claims_as_the_join_does(monkeypatch):
    # Lines and diagnoses written claim by claim in the claims' order are numbered by their runs
    # of equal IDs; any other order goes through pyarrow's join. Each case's arrays must equal
    # those read with the join alone, and take the path expected.
    tables, _ = _wider_world(600)
    assert len(tables.lines) > 512 and len(tables.diagnoses) > 512
    ids = tables.claims["claim_id"]
    rng = np.random.default_rng(3)
    cases = {
        "in claim order": (tables, False),
        "rows shuffled": (
            ClaimTables(
                tables.claims,
                tables.lines.sample(frac=1.0, random_state=rng).reset_index(drop=True),
                tables.diagnoses.sample(frac=1.0, random_state=rng).reset_index(drop=True),
            ),
            True,
        ),
        "a claim without diagnoses": (
            ClaimTables(
                tables.claims,
                tables.lines,
                tables.diagnoses[tables.diagnoses["claim_id"] != ids[5]].reset_index(drop=True),
            ),
            True,
        ),
        "claims listed in reverse": (
            ClaimTables(
                tables.claims.iloc[::-1].reset_index(drop=True), tables.lines, tables.diagnoses
            ),
            True,
        ),
    }
    joins: list[int] = []
    real_index_in = pc.index_in

    def counted_index_in(*args, **kwargs):
        joins.append(1)
        return real_index_in(*args, **kwargs)

    monkeypatch.setattr(pc, "index_in", counted_index_in)
    for name, (case, joined) in cases.items():
        joins.clear()
        got = _arrays_fields(ClaimArrays.from_tables(case))
        assert bool(joins) == joined, name
        with monkeypatch.context() as only_join:
            only_join.setattr(claim_arrays, "_rows_by_runs", lambda *_: None)
            expected = _arrays_fields(ClaimArrays.from_tables(case))
        assert got.keys() == expected.keys()
        for field, values in expected.items():
            assert _same(got[field], values), (name, field)


@pytest.mark.parametrize("n_claims", [1, 3, 64, 65, 150])
def test_text_columns_equal_one_text_column_each(fitted, n_claims):
    tables, _ = fitted
    frame = tables.claims.iloc[:n_claims]
    for columns in (
        [frame[c].array for c in CLAIM_TEXT],  # pyarrow strings: read together when small
        [frame[c].astype(object).to_numpy() for c in CLAIM_TEXT],  # anything else: one by one
    ):
        for got, column in zip(text_columns(columns), columns, strict=True):
            assert _same(got, text_column(column))


@pytest.mark.parametrize("length", [0, 1, 5, 64, 65, 400])
def test_map_texts_equal_one_map_text_each(length):
    rng = np.random.default_rng(length)
    pool = np.array(["99214", "70553", "", " 25 ", "medicare", None], dtype=object)
    values = pool[rng.integers(0, len(pool), length)]
    mappings = (
        (str.strip, None, object),
        (lambda v: v == "medicare", True, bool),
        (len, -1, float),
    )
    for got, (fn, missing, dtype) in zip(map_texts(values, mappings), mappings, strict=True):
        assert _same(got, map_text(values, fn, missing, dtype))


def test_distinct_procedure_counts_equal_a_plain_count(fitted):
    tables, _ = fitted
    arrays = ClaimArrays.from_tables(tables)
    counts = claim_feature_columns(arrays)["n_distinct_procedures"]
    lines = pd.DataFrame(
        {"claim": arrays.lines["claim_index"], "code": arrays.lines["procedure_code"]}
    )
    plain = lines.groupby("claim")["code"].nunique().reindex(range(arrays.n_claims))
    assert _same(counts, plain.to_numpy(dtype=np.float64))


@pytest.mark.parametrize("length", [3, 600])
def test_distinct_text_columns_read_as_any_text_column(length):
    """Claim IDs are read directly (no sharing of equal strings): the same values, ``None``
    where missing, whether or not the column really is distinct."""
    ids = pd.Series([f"PCN{i:09d}" for i in range(length)], dtype="str")
    ids[1], ids[2] = None, ids[0]
    for column in (ids.array, ids.astype(object).to_numpy()):
        want = text_column(column)
        assert _same(text_column(column, distinct=True), want)
        got = text_columns([column, column], distinct=[True])
        assert all(_same(values, want) for values in got)


def test_text_factors_found_once_give_the_features_of_factors_found_again():
    """A large batch's text is factorised once, as it is read (:class:`TextFactors`); mapping,
    hashing and counting then reuse those factors. Without them (each step factorising again)
    the claim and history features must be the same, bit for bit."""
    tables, outcomes = _wider_world(700)
    assert len(tables) > 512  # text read through pd.factorize, where factors are kept
    transformer = ClaimFeatureTransformer(min_level_count=2).fit(tables, outcomes)
    arrays = ClaimArrays.from_tables(tables)
    for table, column in (("claims", "payer_id"), ("lines", "procedure_code")):
        values = getattr(arrays, table)[column]
        assert arrays.factors.get(values) is not None, column
        assert not values.flags.writeable  # kept factors cannot go stale
        with pytest.raises(ValueError):
            values[0] = "changed"
    assert arrays.factors.get(arrays.lines["procedure_code"].copy()) is None  # by identity

    plain = dataclasses.replace(arrays, factors=TextFactors())
    got, want = claim_feature_columns(arrays), claim_feature_columns(plain)
    assert got.keys() == want.keys()
    for column, values in want.items():
        assert _same(got[column], values), column
    history = transformer.history_
    got_history, want_history = history.transform(arrays, got), history.transform(plain, want)
    for column, values in want_history.items():
        assert _same(got_history[column], values), column


def test_text_factors_follow_takes_and_puts():
    values = np.array(["a", "b", None, "a", "c"] * 30, dtype=object)
    factors = TextFactors()
    codes, uniques = pd.factorize(values)
    factors.add(values, codes, np.asarray(uniques, dtype=object))
    rows = np.arange(len(values))[::-1][:100]
    taken = factors.take(values, rows)
    at = np.arange(0, 200, 2)
    put = factors.put(200, at, values, rows)
    for array in (taken, put):
        kept_codes, kept_uniques = factors.get(array)
        rebuilt = np.append(kept_uniques, None)[kept_codes]
        assert rebuilt.tolist() == array.tolist()
    assert put[1::2].tolist() == [None] * 100
    assert map_text(put, str.upper, "-", object, factors).tolist() == [
        "-" if v is None else v.upper() for v in put
    ]


def test_text_factors_hold_only_the_arrays_of_the_batch():
    """Intermediate arrays (before lines are filtered and ordered; the revenue codes) are let go:
    their factors would hold them in memory for the batch's lifetime (a million claims' lines
    several times over)."""
    tables, _ = _wider_world(700)
    arrays = ClaimArrays.from_tables(tables)
    kept = {id(values) for values, _, _ in arrays.factors._kept.values()}
    final = {id(v) for table in (arrays.claims, arrays.lines) for v in table.values()}
    assert kept and kept <= final | {id(v) for v in claim_feature_columns(arrays).values()}


@pytest.mark.parametrize("n_distinct", [1, 126, 127, 40_000])
def test_kept_codes_are_narrow_and_give_the_plain_results(n_distinct):
    rng = np.random.default_rng(n_distinct)
    pool = np.array([f"V{i}" for i in range(n_distinct)] + [None], dtype=object)
    values = pool[rng.integers(0, len(pool), 50_000)]
    plain = values.copy()
    factors = TextFactors()
    codes, uniques = pd.factorize(values)
    factors.add(values, codes, np.asarray(uniques, dtype=object))
    kept_codes, _ = factors.get(values)
    assert kept_codes.itemsize < 8 and np.array_equal(kept_codes, codes)
    assert factor_codes(values, factors=factors).tolist() == factor_codes(plain).tolist()
    assert _same(map_text(values, len, -1, float, factors), map_text(plain, len, -1, float))
