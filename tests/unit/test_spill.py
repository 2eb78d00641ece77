"""The training rows set aside for the final refit come back exactly as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.spill import SpilledMatrix


def _frame(rows: int, seed: int) -> pd.DataFrame:
    values = np.random.default_rng(seed).normal(size=(rows, 5)).astype(np.float32)
    values[::7, 2] = np.nan  # missing values survive the round trip
    frame = pd.DataFrame(values, columns=[f"f{i}" for i in range(5)])
    frame.attrs["categorical_features"] = ["f1"]
    return frame


def test_spilled_rows_stack_on_later_ones_as_a_concatenation_would(tmp_path: Path) -> None:
    earlier, later = _frame(1_000, 1), _frame(300, 2)
    spilled = SpilledMatrix(earlier, tmp_path)
    assert list(tmp_path.iterdir()) == []  # an unnamed file: nothing to clean up after a kill
    stacked = spilled.stacked_on(later)
    pd.testing.assert_frame_equal(stacked, pd.concat([earlier, later], ignore_index=True))
    assert stacked.attrs == earlier.attrs
    assert stacked.to_numpy().flags["F_CONTIGUOUS"]  # LightGBM reads it without a copy


def test_only_the_rows_kept_come_back_before_the_later_ones(tmp_path: Path) -> None:
    earlier, later = _frame(1_000, 1), _frame(300, 2)
    keep = np.array([3, 10, 11, 500, 999])
    stacked = SpilledMatrix(earlier, tmp_path).stacked_on(later, keep)
    expected = pd.concat([earlier.iloc[keep], later], ignore_index=True)
    pd.testing.assert_frame_equal(stacked, expected)
    assert stacked.to_numpy().flags["F_CONTIGUOUS"]


def test_later_rows_spilled_too_stack_as_a_frame_would(tmp_path: Path) -> None:
    earlier, later = _frame(1_000, 1), _frame(300, 2)
    keep = np.arange(100, 1_000, 3)
    stacked = SpilledMatrix(earlier, tmp_path).stacked_on(SpilledMatrix(later, tmp_path), keep)
    pd.testing.assert_frame_equal(
        stacked, pd.concat([earlier.iloc[keep], later], ignore_index=True)
    )


def test_later_rows_with_other_columns_are_refused(tmp_path: Path) -> None:
    spilled = SpilledMatrix(_frame(10, 1), tmp_path)
    with pytest.raises(ValueError, match="other columns"):
        spilled.stacked_on(_frame(5, 2).rename(columns={"f0": "g0"}))
