"""Top classes per claim: the ranking every surface (API, batch, pyfunc) shows."""

from __future__ import annotations

import numpy as np
import pytest

from training.model import top_columns


@pytest.mark.parametrize(("n_columns", "k"), [(11, 3), (40, 3), (5, 5), (2, 3), (7, 0)])
def test_top_columns_rank_as_a_stable_descending_sort(n_columns: int, k: int) -> None:
    rng = np.random.default_rng(n_columns)
    values = rng.dirichlet(np.ones(n_columns), size=500)
    # Ties, including at the k-th place: the leftmost column of equal values ranks first.
    values[:50, : min(4, n_columns)] = 0.25
    values[50:60] = 0.0
    expected = np.argsort(-values, axis=1, kind="stable")[:, :k]
    ranked = top_columns(values, k)
    np.testing.assert_array_equal(ranked, expected)
    assert ranked.shape == (500, min(k, n_columns))


def test_top_columns_leave_the_values_alone_and_take_no_rows() -> None:
    values = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    before = values.copy()
    np.testing.assert_array_equal(top_columns(values, 2), [[1, 2], [0, 2]])
    np.testing.assert_array_equal(values, before)
    assert top_columns(np.empty((0, 3)), 3).shape == (0, 3)
