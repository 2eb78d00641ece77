"""A request's tables, built in the contract's dtypes, validate with exactly pandera's results.

``claims_to_frames`` builds the contract tables of a request through ``contract_frame``, in
their final dtypes; ``validated`` then checks them on its fast path. Every test here compares
the outcome (tables, dtypes, rejected rows and reasons, errors) with pandera validating the same
frames, for clean claims, claims the contract refuses, values the contract coerces, and frames
changed between building and validation.
"""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pandera.config import ValidationDepth, config_context

from features import schema
from features.claim_tables import ClaimTables, _validated, validated
from features.schema import _validate_table_with_pandera, contract_frame
from serving.api.scoring import claims_to_frames
from serving.schemas import ClaimIn
from tests.utils.factories import make_claim

Frames = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
Outcome = tuple[ClaimTables, pd.DataFrame]
NAMES = ("claims", "lines", "diagnoses")


def _claims(count: int) -> list[ClaimIn]:
    """``count`` valid request claims of varied shape (optional fields given and left out)."""
    claims = []
    for number in range(count):
        if number % 3 == 0:
            claim = make_claim()
        elif number % 3 == 1:
            claim = make_claim(
                lines=[
                    {"procedure_code": "99213", "line_charge": 180.0, "diagnosis_pointers": "1"},
                    {"procedure_code": "70553", "line_charge": 1450.0, "modifier_1": "26"},
                    {
                        "procedure_code": "J3301",
                        "revenue_code": "0450",
                        "line_charge": 50.0,
                        "units": 2.5,
                        "line_number": 7,
                    },
                ],
                diagnoses=["I10", "E11.9", "Z00.00"],
                patient_birth_date="1938-11-05",
            )
        else:
            claim = make_claim(
                claim_type="institutional",
                patient_sex=None,
                patient_birth_date=None,
                total_charge=99.99,
                service_date_to="2025-03-04",
                has_other_coverage=True,
                prior_auth_number="PA-1",
            )
        claims.append(ClaimIn.model_validate(claim))
    return claims


def _as_pandera_validates(frames: Frames) -> Outcome:
    """The reference: every table through pandera."""
    return _validated(*(frame.copy() for frame in frames), _validate_table_with_pandera)


def _assert_same(got: Outcome, expected: Outcome) -> None:
    for name in NAMES:
        pd.testing.assert_frame_equal(
            getattr(got[0], name), getattr(expected[0], name), check_index_type=True, obj=name
        )
    pd.testing.assert_frame_equal(got[1], expected[1], check_index_type=True, obj="rejects")


@pytest.mark.parametrize("count", [0, 1, 2, 20])
def test_clean_request_tables_validate_with_pandera_results(count: int) -> None:
    frames = claims_to_frames(_claims(count))
    expected = _as_pandera_validates(frames)
    got = validated(*frames)
    _assert_same(got, expected)
    assert got[1].empty
    for name, frame in zip(NAMES, frames, strict=True):
        assert getattr(got[0], name) is not frame


def test_validating_the_same_frames_again_gives_the_same_tables() -> None:
    frames = claims_to_frames(_claims(3))
    first = validated(*frames)
    again = validated(*frames)
    _assert_same(again, first)
    _assert_same(first, _as_pandera_validates(frames))


def _line(claim: ClaimIn, position: int, **values: Any) -> ClaimIn:
    lines = list(claim.lines)
    lines[position] = lines[position].model_copy(update=values)
    return claim.model_copy(update={"lines": lines})


def _claim(claim: ClaimIn, **values: Any) -> ClaimIn:
    return claim.model_copy(update=values)


# Claims the request schema refuses, made without it (model_copy does not validate) as if it had
# let them through: the contract must quarantine them with pandera's reasons.
INVALID: dict[str, Callable[[list[ClaimIn]], list[ClaimIn]]] = {
    "bad procedure code": lambda c: [_line(c[1], 1, procedure_code="7055"), c[0], c[2]],
    "lower-case procedure code": lambda c: [c[0], _line(c[1], 0, procedure_code="j3301")],
    "no procedure or revenue code": lambda c: [c[0], _line(c[1], 0, procedure_code=None)],
    "units 0": lambda c: [_line(c[0], 0, units=0.0), c[1]],
    "negative line number": lambda c: [c[0], _line(c[2], 0, line_number=-1)],
    "duplicate line number": lambda c: [c[0], _line(c[1], 1, line_number=1)],
    "ICD-9 diagnosis": lambda c: [c[0], _claim(c[1], diagnoses=["I10", "4019"])],
    "duplicate claim_id": lambda c: [c[0], _claim(c[1], claim_id=c[0].claim_id)],
    "empty claim_id": lambda c: [_claim(c[0], claim_id=""), c[1]],
    "claim_id too long": lambda c: [c[0], _claim(c[1], claim_id="X" * 39)],
    "no patient_id": lambda c: [_claim(c[0], patient_id=None), c[1], c[2]],
    "payer_type not in the list": lambda c: [
        c[0],
        _claim(c[2], payer_type=types.SimpleNamespace(value="tricare")),
    ],
    "claim without lines": lambda c: [c[0], _claim(c[1], lines=[])],
}

# Values of another type that the contract coerces: built as pandas builds them.
LOOSE: dict[str, Callable[[list[ClaimIn]], list[ClaimIn]]] = {
    "charge as text": lambda c: [_claim(c[0], total_charge="12.5"), c[1]],
    "line number as text": lambda c: [c[0], _line(c[1], 2, line_number="3")],
    "units as an int": lambda c: [_line(c[0], 0, units=2), c[1]],
}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_request_tables_the_contract_refuses_get_pandera_rows_and_reasons(case: str) -> None:
    frames = claims_to_frames(INVALID[case](_claims(3)))
    expected = _as_pandera_validates(frames)
    got = validated(*frames)
    _assert_same(got, expected)
    assert len(got[1]) > 0, "the defect should quarantine something"
    assert set(got[1]["table"]) >= {"claims"}  # a claim is refused whole


@pytest.mark.parametrize("case", list(LOOSE), ids=list(LOOSE))
def test_request_values_the_contract_coerces_are_validated_as_pandera_does(case: str) -> None:
    frames = claims_to_frames(LOOSE[case](_claims(3)))
    expected = _as_pandera_validates(frames)
    got = validated(*frames)
    _assert_same(got, expected)
    assert got[1].empty


def _set(table: int, column: str, value: Any) -> Callable[[Frames], None]:
    def change(frames: Frames) -> None:
        frames[table].loc[0, column] = value

    return change


def _replace_column(table: int, column: str, value: Any) -> Callable[[Frames], None]:
    def change(frames: Frames) -> None:
        frames[table][column] = value

    return change


def _append_duplicate_diagnosis(frames: Frames) -> None:
    diagnoses = frames[2]
    diagnoses.loc[len(diagnoses)] = diagnoses.iloc[0].tolist()


def _call(table: int, method: str, *args: Any, **kwargs: Any) -> Callable[[Frames], None]:
    def change(frames: Frames) -> None:
        getattr(frames[table], method)(*args, **kwargs)

    return change


def _set_attribute(table: int, path: str, value: Any) -> Callable[[Frames], None]:
    def change(frames: Frames) -> None:
        *owners, attribute = path.split(".")
        target: Any = frames[table]
        for owner in owners:
            target = getattr(target, owner)
        setattr(target, attribute, value)

    return change


# Changes between building and validating: the outcome is pandera's on what the frame then
# holds.
CHANGES: dict[str, Callable[[Frames], None]] = {
    "text set to a bad code": _set(1, "procedure_code", "7055"),
    "text set to a good code": _set(1, "procedure_code", "70553"),
    "number set in place to 0": _set(1, "units", 0.0),
    "number set in place to another valid value": _set(1, "units", 4.0),
    "int set in place to 0": _set(2, "position", 0),
    "required date emptied": _set(0, "submission_date", pd.NaT),
    "date changed": _set(0, "service_date_from", pd.Timestamp("2025-01-02")),
    "bool changed": _set(0, "has_other_coverage", True),
    "diagnosis set to ICD-9": _set(2, "code", "4019"),
    "column replaced": _replace_column(1, "units", 0.0),
    "extra column": _replace_column(0, "not_in_the_contract", "x"),
    "duplicate row appended": _append_duplicate_diagnosis,
    "column renamed": _call(0, "rename", columns={"payer_name": "payer"}, inplace=True),
    "column dropped": _call(1, "drop", columns=["modifier_4"], inplace=True),
    "rows reordered": _call(1, "sort_values", "line_charge", ascending=False, inplace=True),
    "values filled": _call(1, "fillna", {"modifier_2": "XX"}, inplace=True),
    "index of its own": _set_attribute(0, "index", pd.Index([7, 3, 5])),
    "index named": _set_attribute(1, "index.name", "row"),
    "columns named": _set_attribute(0, "columns.name", "field"),
    "attrs set": lambda frames: frames[0].attrs.update(source="test"),
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_a_frame_changed_after_it_was_built_validates_as_pandera_validates_it(
    change: str,
) -> None:
    frames = claims_to_frames(_claims(3))
    CHANGES[change](frames)
    try:
        expected = _as_pandera_validates(frames)
    except ValueError as error:  # a missing column: the whole table is refused
        with pytest.raises(ValueError) as refused:
            validated(*frames)
        assert str(refused.value) == str(error)
        return
    got = validated(*frames)
    _assert_same(got, expected)
    assert got[0].claims.attrs == frames[0].attrs  # what a copy of the frame would carry
    assert got[0].claims.columns.name == frames[0].columns.name


def test_the_validated_tables_and_the_request_frames_stay_apart() -> None:
    # As with any validation, changing one afterwards leaves the other alone.
    frames = claims_to_frames(_claims(2))
    before = [frame.copy() for frame in frames]
    tables, _ = validated(*frames)
    expected = [table.copy() for table in (tables.claims, tables.lines, tables.diagnoses)]
    tables.lines.loc[0, "units"] = 9.0
    tables.claims.loc[0, "payer_id"] = "CHANGED"
    for frame, original in zip(frames, before, strict=True):
        pd.testing.assert_frame_equal(frame, original)
    frames[2].loc[0, "code"] = "Z0000"
    pd.testing.assert_frame_equal(tables.diagnoses, expected[2])


def test_schema_only_validation_gives_pandera_results() -> None:
    frames = claims_to_frames(INVALID["bad procedure code"](_claims(3)))
    clean = claims_to_frames(_claims(2))
    with config_context(validation_depth=ValidationDepth.SCHEMA_ONLY):
        for request in (frames, clean):
            expected = _as_pandera_validates(request)
            _assert_same(validated(*request), expected)


def test_a_table_longer_than_the_fast_path_takes_is_left_to_pandera(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(schema, "_FAST_PATH_MAX_ROWS", 2)
    frames = claims_to_frames(_claims(3))  # 3 claims, 5 lines, 5 diagnoses
    _assert_same(validated(*frames), _as_pandera_validates(frames))


def test_contract_frame_refuses_columns_of_unequal_lengths_as_pandas_does() -> None:
    columns = {"claim_id": ["A", "B"], "line_number": [1]}
    with pytest.raises(ValueError) as built:
        contract_frame("lines", columns)
    with pytest.raises(ValueError) as pandas:
        pd.DataFrame(columns)
    assert str(built.value) == str(pandas.value)


def test_a_date_column_out_of_range_is_built_as_pandas_builds_it() -> None:
    # One date column past 2262: that column as second-resolution dates, the others as usual.
    columns: dict[str, list[Any]] = {
        "claim_id": ["A", "B"],
        "submission_date": [dt.date(2025, 3, 10), dt.date(3000, 1, 1)],
        "service_date_from": [dt.date(2025, 3, 3), None],
    }
    built = contract_frame("claims", columns)
    assert built["submission_date"].dtype == np.dtype("datetime64[s]")
    assert built["service_date_from"].dtype == np.dtype("datetime64[ns]")
    expected = pd.DataFrame(
        {
            "claim_id": pd.array(["A", "B"], dtype="str"),
            "submission_date": pd.to_datetime(columns["submission_date"]).as_unit("s"),
            "service_date_from": pd.to_datetime(columns["service_date_from"]).as_unit("ns"),
        }
    )
    pd.testing.assert_frame_equal(built, expected)
