"""CARC probabilities: each claim's reason probabilities times its payer type's table.

Chunked scoring computes them chunk by chunk; they must equal the whole batch's bit for bit,
whatever rows a chunk holds, and be the product they stand for.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.estimator import DenialRiskEstimator


def _estimator(n_reasons: int, n_carcs: int, rng: np.random.Generator) -> DenialRiskEstimator:
    estimator = DenialRiskEstimator()
    estimator.reason_classes_ = np.array([f"reason_{i}" for i in range(n_reasons)])
    estimator.carc_classes_ = np.array([f"carc_{i}" for i in range(n_carcs)])
    estimator.carc_given_reason_ = {
        name: rng.dirichlet(np.ones(n_carcs), size=n_reasons)
        for name in ("", "commercial", "medicare", "medicaid")
    }
    return estimator


def test_carc_values_of_any_rows_equal_the_whole_batch_and_the_product() -> None:
    rng = np.random.default_rng(3)
    estimator = _estimator(11, 39, rng)
    n = 2_000
    reasons = rng.dirichlet(np.ones(11), size=n)
    # Known payer types, one the model never saw (the overall table) and a missing one.
    payer_types = rng.choice(
        np.array(["commercial", "medicare", "medicaid", "tricare", None], dtype=object), size=n
    )
    whole = estimator.carc_values(reasons, payer_types)

    written = np.full_like(whole, np.nan)
    for start in range(0, n, 7):  # chunks of 7 rows, written into the batch's array
        stop = min(n, start + 7)
        estimator.carc_values(reasons[start:stop], payer_types[start:stop], written[start:stop])
    assert np.array_equal(written, whole)
    for row in rng.choice(n, size=50, replace=False):  # and each row alone
        alone = estimator.carc_values(reasons[row : row + 1], payer_types[row : row + 1])
        assert np.array_equal(alone[0], whole[row])

    tables = estimator.carc_given_reason_
    expected = np.stack(
        [reasons[i] @ tables.get(str(payer), tables[""]) for i, payer in enumerate(payer_types)]
    )
    np.testing.assert_allclose(whole, expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, rtol=1e-12)


def test_predict_carcs_reads_reasons_by_class_name() -> None:
    rng = np.random.default_rng(4)
    estimator = _estimator(5, 8, rng)
    values = rng.dirichlet(np.ones(5), size=30)
    in_order = pd.DataFrame(values, columns=estimator.reason_classes_)
    shuffled = in_order[list(estimator.reason_classes_[::-1])]
    payer_types = np.array(["medicare"] * 30, dtype=object)
    got = estimator.predict_carcs(shuffled, payer_types)
    assert list(got.columns) == list(estimator.carc_classes_)
    assert np.array_equal(got.to_numpy(), estimator.predict_carcs(in_order, payer_types).to_numpy())
