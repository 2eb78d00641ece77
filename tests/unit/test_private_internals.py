"""The private pandas internals the code still relies on behave as it assumes.

Request tables are built as pandas blocks (``pandas.api.internals.create_dataframe_from_blocks``)
and their columns read back through the block manager (``DataFrame._mgr.iget_values``): together
a third of a one-claim API request's CPU (BENCHMARKS.md, private internals). Each has a public
fallback that gives the same values, so a pandas release that changed one would only make the
API slower, silently. These tests make it loud, naming the internal and the installed pandas,
for whoever runs ``make test`` after ``make lock-upgrade``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from features import schema
from features.schema import column_array
from serving.api.scoring import claims_to_frames
from serving.schemas import ClaimIn
from tests.utils.factories import make_claim

PANDAS = f"pandas {pd.__version__}"
SLOWER = "a third more CPU per one-claim API request (BENCHMARKS.md, private internals)"


def _request_frames() -> tuple[pd.DataFrame, ...]:
    """Request tables as the API builds them: text (pyarrow), numbers, integers, flags, dates."""
    claims = [make_claim(), make_claim(claim_id="C2", patient_sex=None)]
    return claims_to_frames([ClaimIn.model_validate(claim) for claim in claims])


def _same_column(got: Any, frame: pd.DataFrame, name: str, internal: str) -> None:
    try:
        pd.testing.assert_series_equal(pd.Series(got, name=name), frame[name])
    except AssertionError as error:
        raise AssertionError(
            f"{PANDAS}: {internal} gives other values for column {name!r} than the frame "
            f"holds: {error}"
        ) from None


def test_request_tables_are_built_from_blocks_as_pandas_builds_them() -> None:
    internal = "pandas.api.internals.create_dataframe_from_blocks"
    assert schema.create_dataframe_from_blocks is not None, (
        f"{PANDAS} has no {internal}: features.schema.contract_frame builds request tables "
        f"with pd.DataFrame instead, {SLOWER}; adapt it to this pandas, or drop the internal"
    )
    for built in _request_frames():
        public = pd.DataFrame({name: built[name].array for name in built.columns})
        try:
            pd.testing.assert_frame_equal(built, public, check_index_type=True)
        except AssertionError as error:
            raise AssertionError(f"{PANDAS}: {internal} built another frame: {error}") from None


def test_the_block_manager_reads_each_column_as_the_frame_holds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    internal = "DataFrame._mgr.iget_values"
    frames = _request_frames()
    for frame in frames:
        read = getattr(getattr(frame, "_mgr", None), "iget_values", None)
        assert read is not None, (
            f"{PANDAS} has no {internal}: features.schema.column_array reads columns through "
            f"frame[name].array instead, {SLOWER}; adapt it to this pandas, or drop the internal"
        )
        for position, name in enumerate(frame.columns):
            got = read(position)
            assert getattr(got, "ndim", None) == 1 and len(got) == len(frame), (
                f"{PANDAS}: {internal}({position}) no longer gives column {name!r} as one 1-D "
                f"array (got {type(got).__name__}), so column_array reads it the slow way"
            )
            _same_column(got, frame, name, f"{internal}({position})")

    def no_series(frame: pd.DataFrame, key: Any) -> Any:
        raise AssertionError(f"column_array read {key!r} through a Series, not {internal}")

    monkeypatch.setattr(pd.DataFrame, "__getitem__", no_series)
    for frame in frames:
        for name in frame.columns:
            column_array(frame, name)
