"""X12 writer + reader: a hand-built data set survives 837P/835 export and re-ingest, and
pyx12 finds nothing wrong with the written files."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import pyx12.params
import pyx12.x12context

from features.schema import OPTIONAL_COLUMNS, ClaimsDataset, validate_table
from features.x12 import IngestResult, ingest_paths, write_835, write_837p
from features.x12.pyx12_stream import CollectingErrorHandler, Pyx12Findings
from tests.utils.factories import OTHER_VALID_NPI, VALID_NPI, claim_row, line_row

NPI_A, NPI_B, NPI_C = VALID_NPI, OTHER_VALID_NPI, "1003000126"


def make_claim(claim_id: str, **overrides: Any) -> dict[str, Any]:
    """A claim row as it reads back from X12 (upper-case names, a stated total)."""
    return claim_row(
        **{
            "claim_id": claim_id,
            "payer_name": "EXAMPLE HEALTH PLAN",
            "total_charge": 280.0,
            "service_date_to": "2025-03-04",
            **overrides,
        }
    )


make_line = line_row


def make_remit(remit_id: str, claim_id: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "remit_id": remit_id,
        "claim_id": claim_id,
        "payer_claim_number": f"PCN{claim_id}",
        "status_code": "1",
        "total_charge": 280.0,
        "paid_amount": 200.0,
        "patient_responsibility": 30.0,
        "remit_date": "2025-04-01",
        "payer_id": "60054",
        "payer_name": "EXAMPLE HEALTH PLAN",
    }
    row.update(overrides)
    return row


def make_dataset() -> ClaimsDataset:
    """Three claims covering modifiers, referrals, COB, a corrected claim and a denial."""
    claims = [
        make_claim("C1", prior_auth_number="AUTH123", referring_npi=NPI_C),
        make_claim(
            "C2",
            total_charge=1000.05,
            claim_filing_indicator="MB",
            payer_type="medicare",
            payer_id="00435",
            payer_name="MEDICARE B",
            rendering_npi=None,
            provider_taxonomy="208D00000X",
            referral_number="REF9",
            has_other_coverage=True,
            patient_sex="M",
            service_date_from="2025-02-01",
            service_date_to="2025-02-01",
        ),
        make_claim(
            "C3",
            frequency_code="7",
            original_payer_claim_number="PCNC0",
            total_charge=75.5,
            service_date_from="2025-03-05",
            service_date_to="2025-03-05",
        ),
    ]
    lines = [
        make_line("C1", 1, modifier_1="25", diagnosis_pointers="1,2"),
        make_line("C1", 2, procedure_code="93000", service_date="2025-03-04", units=2.5,
                  modifier_1="59", modifier_2="RT", modifier_3="XS", modifier_4="GT"),
        make_line("C2", 1, procedure_code="J1100", line_charge=1000.05, units=10.0,
                  service_date="2025-02-01", diagnosis_pointers="1"),
        make_line("C3", 1, procedure_code="70553", line_charge=75.5,
                  service_date="2025-03-05"),
    ]  # fmt: skip
    diagnoses = [
        {"claim_id": "C1", "position": 1, "code": "I10"},
        {"claim_id": "C1", "position": 2, "code": "E119"},
        {"claim_id": "C2", "position": 1, "code": "M5416"},
        {"claim_id": "C3", "position": 1, "code": "G4489"},
    ]
    remits = [
        make_remit("R1", "C1"),
        make_remit(
            "R2", "C2", status_code="4", total_charge=1000.05, paid_amount=0.0,
            patient_responsibility=None, payer_id="00435", payer_name="MEDICARE B",
        ),
        make_remit("R3", "C3", total_charge=75.5, paid_amount=60.4, patient_responsibility=15.1,
                   remit_date="2025-04-02"),
    ]  # fmt: skip
    remit_lines = [
        {"remit_id": "R1", "claim_id": "C1", "line_number": 1, "procedure_code": "99213",
         "line_charge": 140.0, "paid_amount": 100.0, "units": 1.0},
        {"remit_id": "R1", "claim_id": "C1", "line_number": 2, "procedure_code": "93000",
         "line_charge": 140.0, "paid_amount": 100.0, "units": 2.5},
        {"remit_id": "R2", "claim_id": "C2", "line_number": 1, "procedure_code": "J1100",
         "line_charge": 1000.05, "paid_amount": 0.0, "units": 10.0},
    ]  # fmt: skip
    adjustments = [
        {"remit_id": "R1", "claim_id": "C1", "line_number": 1, "group_code": "CO",
         "carc": "45", "amount": 10.0, "quantity": None},
        {"remit_id": "R1", "claim_id": "C1", "line_number": 1, "group_code": "PR",
         "carc": "2", "amount": 30.0, "quantity": None},
        {"remit_id": "R1", "claim_id": "C1", "line_number": 2, "group_code": "CO",
         "carc": "45", "amount": 40.0, "quantity": 1.0},
        {"remit_id": "R2", "claim_id": "C2", "line_number": None, "group_code": "CO",
         "carc": "197", "amount": 1000.05, "quantity": None},
        {"remit_id": "R3", "claim_id": "C3", "line_number": None, "group_code": "PR",
         "carc": "1", "amount": 15.1, "quantity": None},
    ]  # fmt: skip
    remarks = [
        {"remit_id": "R2", "claim_id": "C2", "line_number": None, "rarc": "N54"},
        {"remit_id": "R1", "claim_id": "C1", "line_number": 2, "rarc": "M15"},
    ]
    return validated_dataset(
        claims=claims,
        lines=lines,
        diagnoses=diagnoses,
        remittances=remits,
        remit_lines=remit_lines,
        adjustments=adjustments,
        remarks=remarks,
    )


def validated_dataset(**tables: list[dict[str, Any]]) -> ClaimsDataset:
    """A data set of these rows per table, every row valid (the test fails otherwise)."""
    valid = {}
    for name, rows in tables.items():
        good, bad = validate_table(name, pd.DataFrame(rows))
        assert bad.empty, bad
        valid[name] = good
    return ClaimsDataset(**valid)


def pyx12_findings(path: Path) -> Pyx12Findings:
    """Run pyx12's full guide validation over a file; return everything it reported."""
    logging.getLogger("pyx12").propagate = False
    findings = Pyx12Findings()
    errh = CollectingErrorHandler(findings)
    reader = pyx12.x12context.X12ContextReader(
        pyx12.params.params(), errh, io.StringIO(path.read_text())
    )
    for _ in reader.iter_segments():
        pass
    reader.src.cleanup()
    for kind, code, msg, value, line in reader.src.pop_errors():
        findings.add(kind, code, msg, value, line or 0)
    return findings


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClaimsDataset, list[Path]]:
    dataset = make_dataset()
    out = tmp_path_factory.mktemp("x12")
    paths = write_837p(dataset, out) + write_835(dataset, out)
    return dataset, paths


def test_written_files_pass_pyx12_validation(written: tuple[ClaimsDataset, list[Path]]) -> None:
    _, paths = written
    assert {p.suffix for p in paths} == {".837", ".835"}
    for path in paths:
        findings = pyx12_findings(path)
        assert findings.count == 0, (path.name, findings.messages)


def _compare(left: pd.DataFrame, right: pd.DataFrame, keys: list[str]) -> None:
    """The contract's first-version columns; the optional ones (empty in this data set) get
    the writer's documented defaults, pinned below and in test_x12_whole_claim."""
    optional = {c for table in OPTIONAL_COLUMNS.values() for c in table}
    columns = [c for c in left.columns if c != "remit_id" and c not in optional]
    a = left[columns].sort_values(keys).reset_index(drop=True)
    b = right[columns].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def ingested_cleanly(paths: list[Path], validation: str) -> IngestResult:
    """The files ingested in this process, nothing quarantined (the test fails otherwise)."""
    result = ingest_paths(paths, workers=1, validation=validation)  # type: ignore[arg-type]
    assert result.quarantine.empty, result.quarantine.to_dict("records")
    return result


@pytest.mark.parametrize("validation", ["full", "envelope"])
def test_round_trip_keeps_every_contract_column(
    written: tuple[ClaimsDataset, list[Path]], validation: str
) -> None:
    dataset, paths = written
    result = ingested_cleanly(paths, validation)
    got = result.dataset
    _compare(dataset.claims, got.claims, ["claim_id"])
    _compare(dataset.lines, got.lines, ["claim_id", "line_number"])
    _compare(dataset.diagnoses, got.diagnoses, ["claim_id", "position"])
    _compare(dataset.remittances, got.remittances, ["claim_id"])
    _compare(dataset.remit_lines, got.remit_lines, ["claim_id", "line_number"])
    _compare(
        dataset.adjustments, got.adjustments, ["claim_id", "line_number", "group_code", "carc"]
    )
    _compare(dataset.remarks, got.remarks, ["claim_id", "rarc"])
    # remit_id is a surrogate key: regenerated, but consistent across the remittance tables
    assert set(got.adjustments["remit_id"]) <= set(got.remittances["remit_id"])
    for entry in (e for k, e in result.report.items() if not k.startswith("_")):
        assert entry["pyx12_warnings"] == 0


def test_empty_optional_columns_come_back_empty_or_as_the_documented_defaults(
    written: tuple[ClaimsDataset, list[Path]],
) -> None:
    dataset, paths = written
    got = ingest_paths(paths, workers=1, validation="envelope").dataset
    claims = got.claims.set_index("claim_id").loc[["C1", "C2", "C3"]]
    # Required elements: SBR01 P (2320: S), SBR09 ZZ; SV103 UN.
    assert set(claims["payer_responsibility"]) == {"P"}
    other_payer = claims.loc["C2", ["other_payer_responsibility", "other_payer_filing_indicator"]]
    assert other_payer.tolist() == ["S", "ZZ"]
    assert set(got.lines["unit_basis"]) == {"UN"}
    # The one taxonomy is written where the reader finds it again as provider_taxonomy.
    assert claims["rendering_taxonomy"].fillna("").tolist() == ["207Q00000X", "", "207Q00000X"]
    assert claims["billing_taxonomy"].fillna("").tolist() == ["", "208D00000X", ""]
    # The stand-ins for a required value the data set lacks read back as empty: the patient
    # name of a claim without a key (no key, rather than one per birth date and sex) and the
    # other payer's ID.
    assert claims["patient_key"].isna().all()
    assert pd.isna(claims.loc["C2", "other_payer_id"])
    # The 835 echoes the claim: CLP06 (a CLP06 code, else ZZ), CLP09, the member ID; REF*6R
    # carries the line number.
    remits = got.remittances.set_index("claim_id").sort_index()
    assert remits["claim_filing_indicator"].to_dict() == {"C1": "ZZ", "C2": "MB", "C3": "ZZ"}
    assert remits["frequency_code"].to_dict() == {"C1": "1", "C2": "1", "C3": "7"}
    assert set(remits["patient_member_id"]) == {"MBR0001"}
    remit_lines = got.remit_lines.sort_values(["claim_id", "line_number"])
    assert remit_lines["line_control_number"].tolist() == ["1", "2", "1"]
    assert set(got.remarks["source"]) == {"MOA", "LQ"}
    # Nothing else is invented: no states, relationship, dates, notes or line details.
    invented = {
        "claims": ["patient_relationship", "patient_state", "subscriber_state", "billing_state",
                   "service_facility_npi", "delay_reason_code", "related_causes",
                   "accident_date", "claim_note", "clia_number", "other_payer_paid_amount",
                   "other_payer_adjudication_date", "subscriber_group_number"],
        "lines": ["line_prior_auth_number", "ndc_code", "line_note", "line_attachment_types",
                  "line_rendering_npi", "line_referring_npi", "line_place_of_service"],
        "remittances": ["insured_member_id", "corrected_member_id", "statement_from",
                        "received_date", "coverage_expiration_date"],
        "remit_lines": ["modifier_1", "original_procedure_code", "service_date",
                        "allowed_amount"],
    }  # fmt: skip
    for table, columns in invented.items():
        frame = getattr(got, table)
        assert frame[columns].isna().all().all(), (table, frame[columns].notna().any())
    assert len(dataset.claims) == len(got.claims)


def test_write_splits_files_by_claims_per_file(tmp_path: Path) -> None:
    dataset = make_dataset()
    paths = write_837p(dataset, tmp_path, claims_per_file=2)
    assert len(paths) == 2
    result = ingest_paths(paths, workers=2)
    assert sorted(result.dataset.claims["claim_id"]) == ["C1", "C2", "C3"]


def test_missing_pointer_is_repaired_unless_faithful(tmp_path: Path) -> None:
    dataset = make_dataset()
    dataset.lines.loc[dataset.lines["claim_id"] == "C2", "diagnosis_pointers"] = None
    repaired = ingest_paths(write_837p(dataset, tmp_path / "a"), workers=1).dataset.lines
    faithful = ingest_paths(write_837p(dataset, tmp_path / "b", faithful_defects=True), workers=1)
    assert repaired.set_index("claim_id").loc["C2", "diagnosis_pointers"] == "1"
    lines = faithful.dataset.lines.set_index("claim_id")
    assert pd.isna(lines.loc["C2", "diagnosis_pointers"])
    report = next(e for k, e in faithful.report.items() if not k.startswith("_"))
    assert report["pyx12_warnings"] == 1
