"""The scoring API carries the whole claim: every optional contract column is a request field,
reaches the contract tables as the batch path builds them, and is refused with the field named
and what to do when the value cannot be right.

Most tests need no model: they build the request models and the contract tables directly, or go
through :func:`serving.api.scoring.prepare_request` for the per-claim problems; the last ones go
through the app with the session's model. (Scoring whole claims through the API equals scoring
their tables in process: ``test_api.test_api_score_equals_the_service_score``.)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from denial_risk.settings import Settings
from features.claim_tables import ClaimTables, validated
from features.schema import CLAIMS, LINES, OPTIONAL_COLUMNS
from serving.api.scoring import (
    NothingScored,
    claims_payload,
    claims_to_frames,
    prepare_request,
)
from serving.app import create_app
from serving.schemas import ClaimIn, FieldProblem, ScoreRequest, ServiceLineIn
from tests.utils.factories import (
    make_claim,
    make_whole_claim,
    tables_from,
    whole_claim_fields,
    whole_line_fields,
)

KEY = "unit-test-api-key-0123456789"
AUTH = {"X-API-Key": KEY}
TABLES = ("claims", "lines", "diagnoses")


def _frames_of(claims: list[dict[str, Any]]) -> ClaimTables:
    """The validated contract tables the API builds for these request claims."""
    tables, rejects = validated(*claims_to_frames([ClaimIn.model_validate(c) for c in claims]))
    assert rejects.empty, rejects.to_string()
    return tables


def _assert_tables_equal(got: ClaimTables, expected: ClaimTables) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(got, name), getattr(expected, name), obj=name)


def _problems(claim: dict[str, Any]) -> list[FieldProblem]:
    """The problems the API answers for a claim sent alone (it must be refused)."""
    request = ScoreRequest.model_validate({"claims": [claim]})
    with pytest.raises(NothingScored) as refused:
        prepare_request(request, max_batch_claims=10)
    return [problem for error in refused.value.errors for problem in error.problems]


# -- every contract column is a request field ------------------------------------------------
def test_the_request_models_carry_every_contract_column() -> None:
    claim_fields = set(ClaimIn.model_fields) - {"lines", "diagnoses"}
    assert claim_fields == set(CLAIMS.columns)
    assert set(ServiceLineIn.model_fields) == set(LINES.columns) - {"claim_id"}


def test_the_factories_fill_every_optional_column() -> None:
    assert set(whole_claim_fields()) - {"has_other_coverage"} == set(OPTIONAL_COLUMNS["claims"])
    assert set(whole_line_fields()) == set(OPTIONAL_COLUMNS["lines"])


# Fields a value needs beside it (the contract cannot hold it alone, see the refusals below).
_PARTNERS: dict[str, dict[str, Any]] = {
    "auto_accident_state": {"related_causes": "AA"},
    "attachment_types": {"attachment_transmission": "FX,AA"},
    "attachment_transmission": {"attachment_types": "09,OB"},
    "line_attachment_types": {"line_attachment_transmission": "AD"},
    "line_attachment_transmission": {"line_attachment_types": "CT"},
    "ndc_quantity": {"ndc_code": "00409488802", "ndc_unit": "ML"},
    "ndc_unit": {"ndc_code": "00409488802", "ndc_quantity": 2.0},
    **{
        name: {"has_other_coverage": True}
        for name in OPTIONAL_COLUMNS["claims"]
        if name.startswith("other_payer_")
    },
}


def _with_one(table: str, name: str) -> dict[str, Any]:
    """A factory claim that has only ``name`` (and what it needs) of the optional columns."""
    value = (whole_claim_fields() if table == "claims" else whole_line_fields())[name]
    fields = {name: value, **_PARTNERS.get(name, {})}
    if table == "claims":
        return make_claim(**fields)
    line = {"procedure_code": "J1100", "line_charge": 35.0, "diagnosis_pointers": "1", **fields}
    return make_claim(lines=[line])


@pytest.mark.parametrize(
    ("table", "name"),
    [(table, name) for table in ("claims", "lines") for name in OPTIONAL_COLUMNS[table]],
)
def test_each_optional_field_reaches_the_contract_tables(table: str, name: str) -> None:
    claim = _with_one(table, name)
    got = _frames_of([claim])
    expected = tables_from([claim])  # the same claim as contract rows, the batch path's input
    assert getattr(got, table)[name].notna().all()
    _assert_tables_equal(got, expected)


def test_a_whole_claim_round_trips_through_the_payload() -> None:
    """Contract tables with every optional column filled -> request JSON -> the same tables."""
    tables = tables_from([make_whole_claim(), make_claim()])
    assert tables.claims.loc[0, list(OPTIONAL_COLUMNS["claims"])].notna().all()
    assert tables.lines.loc[0, list(OPTIONAL_COLUMNS["lines"])].notna().all()
    payload = claims_payload(tables)
    assert set(OPTIONAL_COLUMNS["claims"]) <= set(payload[0])
    assert set(OPTIONAL_COLUMNS["lines"]) <= set(payload[0]["lines"][0])
    assert not set(OPTIONAL_COLUMNS["claims"]) & set(payload[1]), "empty fields are left out"
    again = _frames_of(json.loads(json.dumps(payload)))
    _assert_tables_equal(again, tables)


def test_codes_are_accepted_as_billers_write_them_and_stored_as_the_contract_holds_them() -> None:
    claim = make_claim(
        patient_state=" oh ",
        payer_responsibility="s",
        delay_reason_code=7,
        related_causes=["aa", "oa"],
        auto_accident_state="ky",
        attachment_types="09, ob",
        attachment_transmission="fx:aa",
        clia_number="05d0123456",
        epsdt_indicator="n",
        subscriber_group_number="  ",  # blank: not given
        lines=[
            {
                "procedure_code": "J1100",
                "line_charge": 35.0,
                "ndc_code": "0409-4888-02",
                "ndc_quantity": 2,
                "ndc_unit": "ml",
                "unit_basis": "un",
            },
            {"procedure_code": "J3301", "line_charge": 20.0, "ndc_code": "12345-678-90"},
        ],
    )
    claims, lines = (getattr(_frames_of([claim]), name) for name in ("claims", "lines"))
    row = claims.iloc[0]
    assert (row["patient_state"], row["payer_responsibility"], row["delay_reason_code"]) == (
        "OH",
        "S",
        "7",
    )
    assert (row["related_causes"], row["auto_accident_state"]) == ("AA,OA", "KY")
    assert (row["attachment_types"], row["attachment_transmission"]) == ("09,OB", "FX,AA")
    assert (row["clia_number"], row["epsdt_indicator"]) == ("05D0123456", "N")
    assert pd.isna(row["subscriber_group_number"])
    assert lines["ndc_code"].tolist() == ["00409488802", "12345067890"]  # 5-4-2 and 5-3-2
    assert lines["ndc_quantity"].tolist()[0] == 2.0 and lines["ndc_unit"].tolist()[0] == "ML"
    assert lines["unit_basis"].tolist()[0] == "UN"


def test_other_coverage_follows_the_other_payer_when_left_out() -> None:
    claim = make_claim(other_payer_id="87726", other_payer_paid_amount=10.0)
    del claim["has_other_coverage"]
    assert bool(_frames_of([claim]).claims["has_other_coverage"].iloc[0]) is True


@pytest.mark.parametrize(
    "change",
    [
        {"onset_date": "2025-03-20"},  # after the service: a risk to score, not a refusal
        {"accident_date": "2025-04-01", "related_causes": "OA"},
        {"related_causes": "AA"},  # no accident date: payers return it, the model scores it
        {"payer_responsibility": "S"},  # secondary without the primary's payment
        {"delay_reason_code": "11", "submission_date": "2025-03-10"},  # on time anyway
    ],
)
def test_denial_risks_are_scored_not_refused(change: dict[str, Any]) -> None:
    claim = make_claim(**change)
    claim["lines"][0].update(ndc_code="00409488802")  # an NDC without a quantity is fine too
    assert len(_frames_of([claim]).claims) == 1


# -- refusals name the field and say what to do ----------------------------------------------
def _line_with(**values: Any) -> list[dict[str, Any]]:
    return [{"procedure_code": "J1100", "line_charge": 35.0, "diagnosis_pointers": "1", **values}]


# A value outside its code set or format: the field's path, and its hint.
BAD_VALUES: list[tuple[dict[str, Any], str, list[str]]] = [
    (
        {"patient_state": "XYZ"},
        "claims[0].patient_state",
        ["`patient_state` 'XYZ' is not an accepted code", "2-letter US state code"],
    ),
    ({"billing_state": "ON"}, "claims[0].billing_state", ["`billing_state` 'ON'"]),
    (
        {"payer_responsibility": "Q"},
        "claims[0].payer_responsibility",
        ["`payer_responsibility` 'Q' is not one of 'P', 'S', 'T'"],
    ),
    (
        {"patient_relationship": "02"},
        "claims[0].patient_relationship",
        ["`patient_relationship` '02' is not one of '18', '01'"],
    ),
    (
        {"delay_reason_code": "12"},
        "claims[0].delay_reason_code",
        ["`delay_reason_code` '12' is not one of", "'15'"],
    ),
    (
        {"related_causes": "AA,XX"},
        "claims[0].related_causes",
        ["`related_causes` 'AA,XX' has the wrong format", "AA (auto accident)"],
    ),
    (
        {"related_causes": "EM,EM"},
        "claims[0].related_causes",
        ["related_causes lists EM more than once"],
    ),
    ({"epsdt_indicator": "maybe"}, "claims[0].epsdt_indicator", ["is not one of 'Y' or 'N'"]),
    (
        {"clia_number": "05D01234"},
        "claims[0].clia_number",
        ["`clia_number` '05D01234' has the wrong format", "10-character CLIA"],
    ),
    (
        {"rendering_taxonomy": "207Q0000"},
        "claims[0].rendering_taxonomy",
        ["has the wrong format", "NUCC taxonomy"],
    ),
    (
        {"attachment_types": "09,ZZ", "attachment_transmission": "FX,FX"},
        "claims[0].attachment_types",
        ["has the wrong format", "PWK01 report type codes"],
    ),
    (
        {"accident_date": "20/02/2025"},
        "claims[0].accident_date",
        ["`accident_date` should be a date", "YYYY-MM-DD"],
    ),
    (
        {"other_payer_paid_amount": -5, "has_other_coverage": True},
        "claims[0].other_payer_paid_amount",
        ["`other_payer_paid_amount`", "amount in dollars"],
    ),
    (
        {"lines": _line_with(ndc_code="0409488802")},
        "claims[0].lines[0].ndc_code",
        ["`ndc_code` '0409488802' has the wrong format", "11-digit NDC", "ambiguous"],
    ),
    (
        {"lines": _line_with(ndc_code="00409488802", ndc_quantity=2, ndc_unit="KG")},
        "claims[0].lines[0].ndc_unit",
        ["`ndc_unit` 'KG' is not one of 'F2', 'GR', 'ME', 'ML' or 'UN'"],
    ),
    (
        {"lines": _line_with(unit_basis="HR")},
        "claims[0].lines[0].unit_basis",
        ["`unit_basis` 'HR' is not one of"],
    ),
    (
        {"lines": _line_with(line_attachment_types="OB", line_attachment_transmission="ZZ")},
        "claims[0].lines[0].line_attachment_transmission",
        ["has the wrong format", "one PWK02 code per report type"],
    ),
    (
        {"lines": _line_with(line_place_of_service="1")},
        "claims[0].lines[0].line_place_of_service",
        ["has the wrong format", "2-digit CMS place of service"],
    ),
]

# Fields no 837 could carry together: the claim's or line's path, the fix in the message.
CANNOT_HOLD: list[tuple[dict[str, Any], str, list[str]]] = [
    (
        {"auto_accident_state": "KY"},
        "claims[0]",
        ["auto_accident_state is given but related_causes has no AA", "add AA"],
    ),
    (
        {"attachment_types": "09,OB", "attachment_transmission": "FX"},
        "claims[0]",
        ["attachment_types lists 2 report type(s) but attachment_transmission 1"],
    ),
    (
        {"attachment_types": "09"},
        "claims[0]",
        ["attachment_transmission 0 transmission code(s)", "needs both"],
    ),
    (
        {"other_payer_id": "87726"},  # the factory says has_other_coverage: false
        "claims[0]",
        ["has_other_coverage is false but other_payer_id is given", "set has_other_coverage"],
    ),
    (
        {"lines": _line_with(ndc_quantity=2.0, ndc_unit="ML")},
        "claims[0].lines[0]",
        ["ndc_quantity is given without ndc_code", "add the line's ndc_code"],
    ),
    (
        {"lines": _line_with(ndc_code="00409488802", ndc_quantity=2.0)},
        "claims[0].lines[0]",
        ["ndc_unit is missing", "give both"],
    ),
    (
        {"lines": _line_with(line_attachment_transmission="FX")},
        "claims[0].lines[0]",
        ["line_attachment_types lists 0 report type(s)"],
    ),
]


@pytest.mark.parametrize(("change", "field", "words"), BAD_VALUES + CANNOT_HOLD)
def test_a_refusal_names_the_field_and_the_fix(
    change: dict[str, Any], field: str, words: list[str]
) -> None:
    (problem,) = _problems(make_claim(**change))
    assert problem.field == field
    for text in words:
        assert text in problem.message


NOTE = "PRIVATE-NOTE-7731 patient says"


@pytest.mark.parametrize(
    ("change", "field", "hint"),
    [
        ({"claim_note": NOTE + "x" * 80}, "claims[0].claim_note", "an NTE segment holds 80"),
        (
            {"claim_note": " | ".join([NOTE] * 11)},
            "claims[0].claim_note",
            "at most 10 (NTE segments)",
        ),
        ({"lines": _line_with(line_note=NOTE * 3)}, "claims[0].lines[0].line_note", "holds 80"),
        ({"claim_note": 7731}, "claims[0].claim_note", "should be text"),
        ({"patient_key": "PRIVATE-NOTE-7731" * 6}, "claims[0].patient_key", "1 to 80 characters"),
    ],
)
def test_notes_and_patient_keys_are_never_quoted_in_errors(
    change: dict[str, Any], field: str, hint: str
) -> None:
    (problem,) = _problems(make_claim(**change))
    assert problem.field == field
    assert hint in problem.message
    assert "7731" not in problem.message


# -- through the API, with the session's model -----------------------------------------------
@pytest.fixture(scope="module")
def client(trained: Any) -> Iterator[TestClient]:
    settings = Settings(
        model_uri=trained.model_uri,
        tracking_uri=trained.tracking_uri,
        local_copy_dir=trained.local_copies,
        api_keys=[KEY],
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_bad_state_is_422_naming_the_field(client: TestClient) -> None:
    answer = client.post(
        "/v1/claims/score", json={"claims": [make_claim(patient_state="XYZ")]}, headers=AUTH
    )
    assert answer.status_code == 422
    (problem,) = answer.json()["errors"]
    assert problem["field"] == "claims[0].patient_state"
    assert "`patient_state` 'XYZ' is not an accepted code" in problem["message"]


def test_notes_and_patient_keys_never_reach_the_logs(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    scored = make_whole_claim(claim_note=NOTE, patient_key="PATIENT-KEY-7731")
    refused = make_whole_claim(claim_note=NOTE + "x" * 80, patient_key="PATIENT-KEY-7731")
    with caplog.at_level(logging.DEBUG):
        answer = client.post("/v1/claims/score", json={"claims": [scored, refused]}, headers=AUTH)
    assert answer.status_code == 200 and answer.json()["rejected"] == 1
    assert "7731" not in json.dumps(answer.json()["errors"])
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    assert "7731" not in logged


def test_the_openapi_example_shows_and_carries_the_new_fields(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ClaimIn"]
    (example,) = schema["examples"]
    shown = set(example) | set(example["lines"][0])
    new = set(OPTIONAL_COLUMNS["claims"]) | set(OPTIONAL_COLUMNS["lines"])
    assert len(shown & new) >= 5
    tables = _frames_of([example])
    for name in shown & new:
        table = tables.claims if name in OPTIONAL_COLUMNS["claims"] else tables.lines
        assert table[name].notna().any(), name
    properties = schema["properties"]
    assert "CLM20" in properties["delay_reason_code"]["description"]
    assert "never logged" in properties["patient_key"]["description"]
