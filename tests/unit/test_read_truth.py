"""Training reads only the ground truth the Bayes-optimal figures need, for the test claims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.codes import DENIAL_CATEGORIES
from training.train import read_truth


def test_truth_is_read_for_the_test_claims_with_the_columns_the_figures_use(tmp_path: Path):
    rng = np.random.default_rng(5)
    n = 500
    truth = pd.DataFrame(
        {
            "claim_id": [f"C{i:04d}" for i in range(n)],
            "true_denial_probability": rng.random(n),
            **{f"p_{c}": rng.random(n) for c in DENIAL_CATEGORIES},
            "true_cause": rng.choice(["coding", "eligibility"], n),
            "recovered": rng.random(n) < 0.5,
        }
    )
    path = tmp_path / "truth.parquet"
    truth.to_parquet(path)
    test_ids = pd.Series([f"C{i:04d}" for i in range(n - 1, 0, -7)] + ["not-in-truth"])

    got = read_truth(path, test_ids)

    assert list(got.columns) == [
        "claim_id",
        "true_denial_probability",
        *[f"p_{c}" for c in DENIAL_CATEGORIES],
    ]
    assert sorted(got["claim_id"]) == sorted(test_ids[:-1])
    # As training uses it: merged onto the test claims, the values of the full truth.
    merged = test_ids.to_frame("claim_id").merge(got, on="claim_id", how="left")
    expected = test_ids.to_frame("claim_id").merge(truth[got.columns], on="claim_id", how="left")
    pd.testing.assert_frame_equal(merged, expected)
