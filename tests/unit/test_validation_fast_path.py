"""The contract's fast path for small tables gives exactly what pandera gives.

``validate_table`` checks a small, clean table without pandera and sends anything else to
pandera. Every test here runs the same input through both and compares the whole result: valid
tables (columns, dtypes, values, row order, index) and the rejects frame (rows, ``table`` and
``reason``). Tests also assert which path ran, so a comparison is never pandera against itself.

Tables built in the contract's dtypes (``contract_frame``, and so ``claims_to_frames``) are also
compared with pandera's result on the same values as pandas builds them loosely: the valid tables
exactly, the rejects by rows and reasons (a rejected row carries its values as the input held
them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.config import ValidationDepth, config_context

from features.claim_tables import ClaimTables, _validated, validated
from features.schema import (
    SCHEMAS,
    ClaimsDataset,
    _column_rules,
    _pandera_checks_data,
    _table_rules,
    _TableRules,
    _valid_if_clean,
    _validate_table_with_pandera,
    column_array,
    column_values,
    contract_frame,
    empty_table,
    validate_table,
    with_optional_columns,
)
from serving.api.scoring import claims_to_frames
from serving.schemas import ClaimIn
from simulator import SimulationConfig, SimulationResult, simulate
from tests.utils.factories import claim_row, line_row, make_claim

Frames = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
Outcome = tuple[ClaimTables, pd.DataFrame]
Rows = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]
CLAIMS, LINES, DIAGNOSES = 0, 1, 2  # positions in Rows


def _rows(n_claims: int = 1) -> Rows:
    """Contract rows for ``n_claims`` valid claims of three lines and three diagnoses each."""
    claims, lines, diagnoses = [], [], []
    for _ in range(n_claims):
        claim = claim_row(total_charge=420.0)
        claims.append(claim)
        for number, code in enumerate(["99213", "70553", "J3301"], start=1):
            lines.append(line_row(claim["claim_id"], number, procedure_code=code))
        for position, code in enumerate(["I10", "E119", "Z0000"], start=1):
            diagnoses.append({"claim_id": claim["claim_id"], "position": position, "code": code})
    return claims, lines, diagnoses


def _frames(rows: Rows) -> Frames:
    claims, lines, diagnoses = rows
    return pd.DataFrame(claims), pd.DataFrame(lines), pd.DataFrame(diagnoses)


def _set(table: int, row: int, **values: Any) -> Callable[[Rows], None]:
    def defect(rows: Rows) -> None:
        rows[table][row].update(values)

    return defect


def _append(table: int, row: Callable[[Rows], dict[str, Any]]) -> Callable[[Rows], None]:
    def defect(rows: Rows) -> None:
        rows[table].append(row(rows))

    return defect


def _numeric_claim_id(rows: Rows) -> None:
    """The first claim's ID written as a number in every table (spreadsheets do that)."""
    claim_id = rows[CLAIMS][0]["claim_id"]
    for table in rows:
        for row in table:
            if row["claim_id"] == claim_id:
                row["claim_id"] = 12345


def _lines_columns_reversed(rows: Rows) -> None:
    """The lines table's columns in reverse order (a frame takes its first row's key order)."""
    rows[LINES][0] = dict(reversed(list(rows[LINES][0].items())))


DEFECTS: dict[str, Callable[[Rows], None]] = {
    "bad procedure code": _set(LINES, 1, procedure_code="7055"),
    "lower-case procedure code": _set(LINES, 0, procedure_code="j3301"),
    "non-ASCII procedure code": _set(LINES, 0, procedure_code="9921\uff13"),
    "ICD-9 diagnosis with dot": _set(DIAGNOSES, 0, code="250.00"),
    "ICD-9 diagnosis": _set(DIAGNOSES, 1, code="4019"),
    "units 0": _set(LINES, 0, units=0),
    "units missing": _set(LINES, 2, units=None),
    "line number 0": _set(LINES, 0, line_number=0),
    "diagnosis position 0": _set(DIAGNOSES, 2, position=0),
    "missing payer_id": _set(CLAIMS, 0, payer_id=None),
    "missing claim_id": _set(CLAIMS, 0, claim_id=np.nan),
    "claim_id too long": _set(CLAIMS, 0, claim_id="X" * 39),
    "empty claim_id": _set(CLAIMS, 0, claim_id=""),
    "duplicate claim_id": _append(CLAIMS, lambda rows: dict(rows[CLAIMS][0])),
    "duplicate line_number": _append(LINES, lambda rows: dict(rows[LINES][0])),
    "duplicate diagnosis position": _append(DIAGNOSES, lambda rows: dict(rows[DIAGNOSES][0])),
    "orphan line": _append(LINES, lambda rows: line_row("NO-SUCH-CLAIM", 1)),
    "orphan diagnosis": _append(
        DIAGNOSES, lambda rows: {"claim_id": "NO-SUCH-CLAIM", "position": 1, "code": "I10"}
    ),
    "claim without lines": _append(CLAIMS, lambda rows: claim_row(total_charge=1.0)),
    "line with neither procedure nor revenue code": _set(
        LINES, 2, procedure_code=None, revenue_code=None
    ),
    "wrong date text": _set(LINES, 0, service_date="yesterday"),
    "impossible date": _set(CLAIMS, 0, submission_date="2025-13-45"),
    "payer_type not in the list": _set(CLAIMS, 0, payer_type="tricare"),
    "patient_sex not in the list": _set(CLAIMS, 0, patient_sex="X"),
    "two-character frequency code": _set(CLAIMS, 0, frequency_code="10"),
    "charge that is not a number": _set(CLAIMS, 0, total_charge="abc"),
}

# Unusual input the contract accepts: the fast path must accept it with pandera's coercions.
ACCEPTED: dict[str, Callable[[Rows], None]] = {
    "valid": lambda rows: None,
    "revenue code only": _set(LINES, 2, procedure_code=None, revenue_code="0450"),
    "procedure code with a trailing newline": _set(LINES, 0, procedure_code="99213\n"),
    "no patient sex": _set(CLAIMS, 0, patient_sex=None),
    "no birth date": _set(CLAIMS, 0, patient_birth_date=None),
    "charge as text": _set(CLAIMS, 0, total_charge="12.5"),
    "claim_id as a number": _numeric_claim_id,
    "has_other_coverage missing": _set(CLAIMS, 0, has_other_coverage=None),
    "extra column": _set(CLAIMS, 0, not_in_the_contract="x"),
    "columns in another order": _lines_columns_reversed,
}


def _assert_same(fast: Outcome, slow: Outcome) -> None:
    for name in ("claims", "lines", "diagnoses"):
        pd.testing.assert_frame_equal(
            getattr(fast[0], name), getattr(slow[0], name), check_index_type=True, obj=name
        )
    pd.testing.assert_frame_equal(fast[1], slow[1], check_index_type=True, obj="rejects")


def _both(frames: Frames) -> tuple[Outcome, Outcome]:
    """``validated`` as it runs (fast path where it can) and with pandera for every table."""
    fast = validated(*(frame.copy() for frame in frames))
    slow = _validated(*(frame.copy() for frame in frames), _validate_table_with_pandera)
    return fast, slow


def _takes_fast_path(name: str, frame: pd.DataFrame) -> bool:
    rules = _table_rules(name)
    assert rules is not None
    # As validation does: optional columns an input lacks are added (empty) first.
    return (
        _valid_if_clean(rules, with_optional_columns(name, frame).reset_index(drop=True))
        is not None
    )


@pytest.mark.parametrize("n_claims", [1, 4])
@pytest.mark.parametrize("defect", list(DEFECTS), ids=list(DEFECTS))
def test_a_defect_gives_pandera_rejects_and_tables(defect: str, n_claims: int) -> None:
    rows = _rows(n_claims)
    DEFECTS[defect](rows)
    frames = _frames(rows)
    fast, slow = _both(frames)
    _assert_same(fast, slow)
    assert len(fast[1]) > 0, "the defect should quarantine something"


@pytest.mark.parametrize("n_claims", [1, 4])
@pytest.mark.parametrize("case", list(ACCEPTED), ids=list(ACCEPTED))
def test_accepted_input_takes_the_fast_path_with_pandera_results(case: str, n_claims: int) -> None:
    rows = _rows(n_claims)
    ACCEPTED[case](rows)
    frames = _frames(rows)
    for name, frame in zip(("claims", "lines", "diagnoses"), frames, strict=True):
        assert _takes_fast_path(name, frame), name
    fast, slow = _both(frames)
    _assert_same(fast, slow)
    assert fast[1].empty


def test_several_defects_in_one_batch_give_pandera_results() -> None:
    rows = _rows(6)  # claim k has lines 3k..3k+2 and diagnoses 3k..3k+2
    for defect in (
        _set(LINES, 4, procedure_code="7055"),
        _set(DIAGNOSES, 9, code="4019"),
        _set(LINES, 15, units=0),
        _append(CLAIMS, lambda rows: dict(rows[CLAIMS][5])),
        _append(LINES, lambda rows: line_row("NO-SUCH-CLAIM", 1)),
    ):
        defect(rows)
    fast, slow = _both(_frames(rows))
    _assert_same(fast, slow)
    assert list(fast[0].claims["claim_id"]) == [rows[CLAIMS][k]["claim_id"] for k in (0, 2, 4)]


@pytest.mark.parametrize(
    "defect",
    [
        "bad procedure code",
        "ICD-9 diagnosis",
        "units 0",
        "missing payer_id",
        "duplicate claim_id",
        "duplicate line_number",
        "line with neither procedure nor revenue code",
        "wrong date text",
        "payer_type not in the list",
    ],
)
def test_a_failing_row_is_left_to_pandera(defect: str) -> None:
    rows = _rows(2)
    DEFECTS[defect](rows)
    names = ("claims", "lines", "diagnoses")
    declined = [n for n, f in zip(names, _frames(rows), strict=True) if not _takes_fast_path(n, f)]
    assert len(declined) == 1


@pytest.mark.parametrize("as_datetime", [False, True], ids=["as text", "as datetime64[s]"])
def test_a_date_past_2262_quarantines_its_claim_on_both_paths(as_datetime: bool) -> None:
    # pandera fails such a date's whole column without naming a row: before validation the
    # claim holding it is quarantined (issue 20: it failed the whole table, so the batch).
    rows = _rows(2)
    rows[CLAIMS][1]["submission_date"] = "3000-01-01"
    frames = _frames(rows)
    if as_datetime:  # as the API builds it: the fast path converts units itself
        frames[0]["submission_date"] = frames[0]["submission_date"].astype("datetime64[s]")
    fast_tables, fast_rejects = validated(*frames)
    slow_tables, slow_rejects = _validated(*frames, _validate_table_with_pandera)
    claim_ids = [r["claim_id"] for r in rows[CLAIMS]]
    assert fast_tables.claims["claim_id"].tolist() == [claim_ids[0]]
    for name in ("claims", "lines", "diagnoses"):
        pd.testing.assert_frame_equal(getattr(fast_tables, name), getattr(slow_tables, name))
    pd.testing.assert_frame_equal(fast_rejects, slow_rejects)
    refused = fast_rejects[fast_rejects["table"] == "claims"]
    assert refused["claim_id"].tolist() == [claim_ids[1]]
    assert refused["reason"].iloc[0].startswith("submission_date is outside the dates")


def test_api_frames_take_the_fast_path_with_pandera_results() -> None:
    requests = [
        make_claim(
            lines=[
                {"procedure_code": "99213", "line_charge": 180.0, "diagnosis_pointers": "1"},
                {"procedure_code": "70553", "line_charge": 1450.0, "modifier_1": "26"},
                {"procedure_code": "J3301", "line_charge": 50.0, "units": 2, "line_number": 3},
            ],
            diagnoses=["I10", "E11.9", "Z00.00"],
        ),
        make_claim(patient_birth_date=None, patient_sex=None, claim_type="institutional"),
    ]
    frames = claims_to_frames([ClaimIn.model_validate(claim) for claim in requests])
    for name, frame in zip(("claims", "lines", "diagnoses"), frames, strict=True):
        assert _takes_fast_path(name, frame), name
    fast, slow = _both(frames)
    _assert_same(fast, slow)


def test_a_frame_with_an_index_of_its_own_is_reset_like_pandera_does() -> None:
    claims, lines, diagnoses = _frames(_rows(3))
    frames = (claims.set_axis([7, 3, 5]), lines.iloc[::-1], diagnoses.rename_axis("row"))
    fast, slow = _both(frames)
    _assert_same(fast, slow)


@pytest.fixture(scope="module")
def simulated() -> SimulationResult:
    return simulate(SimulationConfig(n_claims=300, seed=3))


@pytest.mark.parametrize("name", ClaimsDataset.table_names())
def test_every_contract_table_gives_pandera_results(simulated: SimulationResult, name: str) -> None:
    table = getattr(simulated.dataset, name)
    # As read from Parquet (already the contract's dtypes) and as loose objects to be coerced.
    for frame in (table, table.astype(object)):
        assert _takes_fast_path(name, frame)
        fast, fast_rejects = validate_table(name, frame)
        slow, slow_rejects = _validate_table_with_pandera(name, frame)
        pd.testing.assert_frame_equal(fast, slow, check_index_type=True)
        pd.testing.assert_frame_equal(fast_rejects, slow_rejects, check_index_type=True)


def test_the_fast_path_covers_every_contract_table() -> None:
    # A rule the fast path cannot read would silently send the table to pandera (slow again).
    assert all(_table_rules(name) is not None for name in SCHEMAS)


def test_a_check_without_a_per_value_form_runs_as_pandera_runs_it() -> None:
    # No contract column has one today; a new rule must still be honoured, not skipped.
    column = pa.Column(float, checks=pa.Check.le(10), coerce=True)
    rules = _column_rules(column, coerce=True)
    assert rules is not None and len(rules.series_checks) == 1
    table = _TableRules(
        columns={"x": rules}, refuse_other_columns=False, unique_keys=(), one_of_columns=()
    )
    schema = pa.DataFrameSchema({"x": column}, strict="filter")
    within = pd.DataFrame({"x": [1, 10], "y": ["a", "b"]})
    pd.testing.assert_frame_equal(_valid_if_clean(table, within), schema.validate(within))
    assert _valid_if_clean(table, pd.DataFrame({"x": [1, 11]})) is None


def test_schema_only_validation_is_left_to_pandera() -> None:
    assert _pandera_checks_data()
    with config_context(validation_depth=ValidationDepth.SCHEMA_ONLY):
        assert not _pandera_checks_data()


def test_the_fast_path_leaves_its_input_alone() -> None:
    claims = _frames(_rows(2))[0]
    before = claims.copy()
    valid, _ = validate_table("claims", claims)
    assert valid is not claims
    pd.testing.assert_frame_equal(claims, before)


def test_empty_tables_are_fresh_copies() -> None:
    first = empty_table("remittances")
    first["scribble"] = 1
    first.index.name = "scribble"
    again = empty_table("remittances")
    assert "scribble" not in again.columns and again.index.name is None
    assert list(again.columns) == list(SCHEMAS["remittances"].columns)


def _claims_to_frames_row_by_row(claims: list[ClaimIn]) -> Frames:
    """The straightforward construction (row dicts, then ``pd.to_datetime``): the reference."""
    claim_rows, line_rows, dx_rows = [], [], []
    for claim in claims:
        row = claim.model_dump(exclude={"lines", "diagnoses"}, mode="python")
        row["claim_type"] = claim.claim_type.value
        row["frequency_code"] = claim.frequency_code.value
        row["payer_type"] = str(claim.payer_type.value)
        row["patient_sex"] = claim.patient_sex.value if claim.patient_sex else None
        row["service_date_to"] = claim.service_date_to or claim.service_date_from
        if row["total_charge"] is None:
            row["total_charge"] = round(sum(line.line_charge for line in claim.lines), 2)
        claim_rows.append(row)
        for position, line in enumerate(claim.lines, start=1):
            values = line.model_dump(mode="python")
            values["claim_id"] = claim.claim_id
            values["line_number"] = line.line_number or position
            values["service_date"] = line.service_date or claim.service_date_from
            line_rows.append(values)
        for position, code in enumerate(claim.diagnoses, start=1):
            dx_rows.append({"claim_id": claim.claim_id, "position": position, "code": code})
    claims_frame = pd.DataFrame(claim_rows, columns=list(SCHEMAS["claims"].columns))
    lines_frame = pd.DataFrame(line_rows, columns=list(SCHEMAS["lines"].columns))
    dx_frame = pd.DataFrame(dx_rows, columns=list(SCHEMAS["diagnoses"].columns))
    for column in ("submission_date", "service_date_from", "service_date_to", "patient_birth_date"):
        claims_frame[column] = pd.to_datetime(claims_frame[column])
    lines_frame["service_date"] = pd.to_datetime(lines_frame["service_date"])
    return claims_frame, lines_frame, dx_frame


CLAIM_VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "born before 1970": {"patient_birth_date": "1938-11-05"},
    "everything given": {
        "total_charge": 99.99,
        "service_date_to": "2025-03-04",
        "patient_birth_date": None,
        "patient_sex": None,
        "prior_auth_number": "PA-1",
        "frequency_code": "7",
        "original_payer_claim_number": "PCN-9",
        "payer_type": "medicaid",
        "claim_type": "institutional",
        "has_other_coverage": True,
        "billing_npi": None,
        "lines": [
            {
                "line_number": 5,
                "procedure_code": "j3301",
                "modifier_1": "25",
                "modifier_4": "lt",
                "units": 2.5,
                "line_charge": 10.0,
                "service_date": "2025-03-04",
                "diagnosis_pointers": "1,2",
                "revenue_code": "0450",
            },
            {"procedure_code": "99213", "line_charge": 0.0},
        ],
        "diagnoses": ["E11.9", "Z00.00"],
    },
}


def _loosely(rejects: pd.DataFrame) -> pd.DataFrame:
    """Rejects compared by their rows' values and reasons: a rejected row keeps its columns as
    the input held them, and a request's tables now hold the contract's dtypes (text NaN where
    loosely built rows had None, nanosecond dates where they had seconds)."""
    values = rejects.astype(object)
    return values.where(rejects.notna(), None)


def _assert_same_loosely(built: Outcome, reference: Outcome, only_keys: bool = False) -> None:
    """The same tables, and rejects with the same rows and reasons (with ``only_keys``, compared
    on the table, key and reason columns alone: other values are carried as the input held
    them, text dates as text)."""
    for name in ("claims", "lines", "diagnoses"):
        pd.testing.assert_frame_equal(
            getattr(built[0], name), getattr(reference[0], name), check_index_type=True, obj=name
        )
    rejects = [built[1], reference[1]]
    if only_keys:
        keys = ["table", "claim_id", "line_number", "position", "reason"]
        rejects = [frame[[key for key in keys if key in frame.columns]] for frame in rejects]
    pd.testing.assert_frame_equal(
        _loosely(rejects[0]), _loosely(rejects[1]), check_index_type=True, obj="rejects"
    )


@pytest.mark.parametrize(
    "variants",
    [[], ["defaults"], ["everything given"], ["defaults", "everything given", "born before 1970"]],
    ids=["no claims", "one claim", "one full claim", "three claims"],
)
def test_claims_to_frames_builds_what_pandera_makes_of_the_rows(variants: list[str]) -> None:
    claims = [ClaimIn.model_validate(make_claim(**CLAIM_VARIANTS[v])) for v in variants]
    built = claims_to_frames(claims)
    reference = _claims_to_frames_row_by_row(claims)
    for name, frame, rows in zip(("claims", "lines", "diagnoses"), built, reference, strict=True):
        # Already in the contract's dtypes: validation has nothing left to convert.
        expected, rejects = _validate_table_with_pandera(name, rows)
        assert rejects.empty
        pd.testing.assert_frame_equal(frame, expected, check_index_type=True, obj=name)
        assert _takes_fast_path(name, frame), name
    _assert_same(validated(*built), _validated(*reference, _validate_table_with_pandera))


def test_request_tables_the_contract_refuses_get_pandera_rows_and_reasons() -> None:
    claims = [ClaimIn.model_validate(make_claim(**CLAIM_VARIANTS[v])) for v in CLAIM_VARIANTS]
    built, reference = claims_to_frames(claims), _claims_to_frames_row_by_row(claims)
    for claims_frame, lines, diagnoses in (built, reference):
        # As if the request schema had let these through.
        lines.loc[0, "procedure_code"] = "7055"
        diagnoses.loc[1, "code"] = "4019"
        claims_frame.loc[2, "payer_type"] = "tricare"
    fast, slow = _both(built)
    _assert_same(fast, slow)
    _assert_same_loosely(fast, _validated(*reference, _validate_table_with_pandera))
    assert set(fast[1]["table"]) == {"claims", "lines", "diagnoses"}
    assert fast[0].claims.empty


def test_editing_a_request_table_leaves_its_other_columns_alone() -> None:
    # Text columns are slices of one Arrow array: a write must touch its own column only.
    claims = [ClaimIn.model_validate(make_claim(**CLAIM_VARIANTS["everything given"]))]
    _, lines, _ = claims_to_frames(claims)
    before = lines.copy()
    lines.loc[0, "procedure_code"] = "70553"
    changed = lines.compare(before)
    assert list(changed.columns.get_level_values(0).unique()) == ["procedure_code"]


def test_a_request_date_past_2262_quarantines_its_claim_as_the_reference_does() -> None:
    # Valid for the request schema, but no nanosecond timestamp holds it: the claims table is
    # built as before (second resolution) and the claim quarantined, on both paths alike.
    claims = [
        ClaimIn.model_validate(make_claim(claim_id="LATE", submission_date="3000-01-01")),
        ClaimIn.model_validate(make_claim(claim_id="FINE")),
    ]
    built = claims_to_frames(claims)
    assert built[0]["submission_date"].dtype == np.dtype("datetime64[s]")
    fast_tables, fast_rejects = validated(*built)
    slow_tables, slow_rejects = _validated(
        *_claims_to_frames_row_by_row(claims), _validate_table_with_pandera
    )
    assert fast_tables.claims["claim_id"].tolist() == ["FINE"]
    pd.testing.assert_frame_equal(fast_tables.claims, slow_tables.claims)
    assert fast_rejects["claim_id"].tolist() == slow_rejects["claim_id"].tolist()
    assert fast_rejects["reason"].tolist() == slow_rejects["reason"].tolist()
    assert set(fast_rejects["claim_id"]) == {"LATE"}


def _contract_frames(rows: Rows) -> Frames:
    """The tables through :func:`contract_frame`, with ISO dates as ``datetime.date`` as in a
    request, and every other value as the rows hold it (loose ones included)."""

    def value(name: str, column: str, item: Any) -> Any:
        schema_column = SCHEMAS[name].columns.get(column)
        is_date = schema_column is not None and str(schema_column.dtype) == "datetime64[ns]"
        if isinstance(item, str) and is_date:
            try:
                return dt.date.fromisoformat(item)
            except ValueError:  # a defect: "yesterday", "2025-13-45"
                return item
        return item

    frames = []
    for name, table in zip(("claims", "lines", "diagnoses"), rows, strict=True):
        labels = list(dict.fromkeys(label for row in table for label in row))
        columns = {label: [value(name, label, row.get(label)) for row in table] for label in labels}
        frames.append(contract_frame(name, columns))
    return frames[0], frames[1], frames[2]


@pytest.mark.parametrize("case", [*DEFECTS, *ACCEPTED])
def test_contract_frames_of_any_values_validate_as_the_rows_do(case: str) -> None:
    # Loose values (text dates, numbers as text, NaN IDs, ...) are left for validation to coerce
    # or quarantine: the outcome is pandera's on the rows as pandas builds them.
    rows = _rows(3)
    {**DEFECTS, **ACCEPTED}[case](rows)
    frames = _contract_frames(rows)
    fast, slow = _both(frames)
    _assert_same(fast, slow)
    reference = _validated(*_frames(rows), _validate_table_with_pandera)
    _assert_same_loosely(fast, reference, only_keys=True)


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("claim_id", ["A", 12345]),
        ("total_charge", [1.5, 2]),
        ("has_other_coverage", [True, 0]),
        ("submission_date", [dt.date(2025, 3, 10), dt.datetime(2025, 3, 10, 12)]),
        ("submission_date", [dt.date(2025, 3, 10), "2025-03-10"]),
    ],
)
def test_contract_frame_builds_a_loose_column_as_pandas_would(column: str, values: list) -> None:
    columns: dict[str, list[Any]] = {"claim_id": ["A", "B"], column: values}
    loose = pd.DataFrame(columns)
    pd.testing.assert_frame_equal(contract_frame("claims", columns), loose)


def test_contract_frame_holds_what_validation_coerces_to() -> None:
    columns = {
        "claim_id": ["A", None],
        "line_number": [1, 2],
        "units": [1.0, None],
        "service_date": [dt.date(1938, 11, 5), None],
    }
    built = contract_frame("lines", columns)
    rules = _table_rules("lines")
    assert rules is not None
    assert {name: built[name].dtype for name in columns} == {
        name: rules.columns[name].dtype for name in columns
    }
    pd.testing.assert_frame_equal(
        built,
        pd.DataFrame(
            {
                "claim_id": pd.array(["A", None], dtype="str"),
                "line_number": [1, 2],
                "units": [1.0, np.nan],
                "service_date": pd.to_datetime([dt.date(1938, 11, 5), None]).as_unit("ns"),
            }
        ),
    )


def test_request_tables_are_checked_without_a_series_per_column(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Series per column read costs most of validating one claim: the fast path reads the
    # columns through pandas' block manager. If a pandas upgrade breaks that, the reads fall
    # back to frame[name] (same results, slower) and this test says so.
    claims = [ClaimIn.model_validate(make_claim(**CLAIM_VARIANTS[v])) for v in CLAIM_VARIANTS]
    frames = claims_to_frames(claims)
    expected = _validated(*frames, _validate_table_with_pandera)

    def no_series(frame: pd.DataFrame, key: Any) -> Any:
        raise AssertionError(f"frame[{key!r}] built a Series")

    monkeypatch.setattr(pd.DataFrame, "__getitem__", no_series)
    for name, frame in zip(("claims", "lines", "diagnoses"), frames, strict=True):
        rules = _table_rules(name)
        assert rules is not None and _valid_if_clean(rules, frame) is not None, name
    _assert_same(validated(*frames), expected)


def test_column_reads_without_the_block_manager_give_the_same_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claims = [ClaimIn.model_validate(make_claim(**CLAIM_VARIANTS[v])) for v in CLAIM_VARIANTS]
    frames = claims_to_frames(claims)
    for frame in frames:
        for name in frame.columns:
            read = pd.Series(column_array(frame, name), name=name)
            pd.testing.assert_series_equal(read, frame[name], check_index_type=True)
    expected = validated(*frames)
    monkeypatch.delattr(type(frames[0]._mgr), "iget_values")
    names = ("claims", "lines", "diagnoses")
    assert all(_takes_fast_path(n, f) for n, f in zip(names, frames, strict=True))
    _assert_same(validated(*frames), expected)


@pytest.mark.parametrize("name", ["claims", "lines", "diagnoses"])
def test_column_values_are_the_column_read_in_one_call(
    simulated: SimulationResult, name: str
) -> None:
    table = getattr(simulated.dataset, name)
    for column in table.columns:
        series = table[column]
        values = column_values(table, column)
        if series.dtype.kind == "M":  # nanosecond counts, NaT as None
            expected = [None if pd.isna(v) else v.value for v in series]
        elif series.dtype.kind == "f":  # numbers as floats, NaN as NaN
            assert np.array_equal(np.array(values), series.to_numpy(), equal_nan=True), column
            continue
        else:  # missing text as None
            expected = [None if pd.isna(v) else v for v in series.tolist()]
        assert values == expected, column
