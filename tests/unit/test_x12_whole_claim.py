"""The whole claim through X12: every optional contract column is written into valid 5010
837P/835 files (pyx12 full validation finds nothing) and read back; 837I and multi-payer
837P inputs fill the same columns."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.schema import OPTIONAL_COLUMNS, ClaimsDataset
from features.x12 import ingest_paths, write_835, write_837p
from features.x12.reader import parse_file
from tests.unit.test_x12_roundtrip import (
    ingested_cleanly,
    make_claim,
    make_line,
    make_remit,
    pyx12_findings,
    validated_dataset,
)
from tests.utils.factories import OTHER_VALID_NPI, VALID_NPI

NPI_FACILITY, NPI_LINE_RENDERING, NPI_REFERRING = "1003000126", "1538100148", "1326046228"
TABLES_WITH_NEW_COLUMNS = ("claims", "lines", "remittances", "remit_lines", "remarks")


def whole_claim(claim_id: str, **overrides: Any) -> dict[str, Any]:
    """A claim holding a value in every optional column (the patient is the subscriber)."""
    return make_claim(
        claim_id,
        **{
            "service_date_from": "2025-03-04",
            "referring_npi": NPI_REFERRING,
            "prior_auth_number": "AUTH1",
            "referral_number": "REF1",
            "provider_taxonomy": "207R00000X",
            "has_other_coverage": True,
            "payer_responsibility": "P",
            "subscriber_group_number": "GRP-100",
            "patient_relationship": "18",
            "patient_key": "key-of-patient-one",
            "patient_state": "NY",
            "subscriber_state": "NY",
            "billing_state": "NJ",
            "billing_taxonomy": "207Q00000X",
            "rendering_taxonomy": "207R00000X",
            "service_facility_npi": NPI_FACILITY,
            "service_facility_state": "NJ",
            "delay_reason_code": "7",
            "related_causes": "AA,EM",
            "auto_accident_state": "CT",
            "epsdt_indicator": "N",
            "accident_date": "2025-02-20",
            "onset_date": "2025-02-21",
            "initial_treatment_date": "2025-02-22",
            "attachment_types": "09,OB",
            "attachment_transmission": "FX,AA",
            "claim_note": "PATIENT SEEN AFTER HOURS",
            "clia_number": "11D0668319",
            "other_payer_id": "OTHER77",
            "other_payer_responsibility": "S",
            "other_payer_filing_indicator": "MC",
            "other_payer_paid_amount": 40.55,
            "other_payer_adjudication_date": "2025-03-20",
            **overrides,
        },
    )


def whole_line(claim_id: str, number: int, **overrides: Any) -> dict[str, Any]:
    return make_line(
        claim_id,
        number,
        **{
            "service_date": "2025-03-04",
            "line_prior_auth_number": "AUTH1",
            "line_referral_number": "REF1",
            "ndc_code": "00026063512",
            "ndc_quantity": 10.0,
            "ndc_unit": "ML",
            "line_note": "DRUG WASTED 2 ML",
            "line_attachment_types": "11,CT",
            "line_attachment_transmission": "EL,AA",
            "line_rendering_npi": NPI_LINE_RENDERING,
            "line_referring_npi": NPI_REFERRING,
            "line_place_of_service": "22",
            "line_clia_number": "22D0668319",
            "unit_basis": "MJ",
            **overrides,
        },
    )


def make_whole_dataset() -> ClaimsDataset:
    """Four claims: W1 holds every optional column; W2 is a dependent (2000C loop) secondary
    claim; W3 is W1's patient under another member ID; W4 has no patient key."""
    no_cob = {
        "has_other_coverage": False,
        **{column: None for column in OPTIONAL_COLUMNS["claims"] if column.startswith("other_")},
    }
    tables: dict[str, list[dict[str, Any]]] = {}
    tables["claims"] = claims = [
        whole_claim("W1"),
        whole_claim(
            "W2",
            patient_relationship="19",
            patient_key="key-of-a-child",
            patient_state="PA",
            subscriber_state="NJ",
            payer_responsibility="S",
            patient_birth_date="2015-05-05",
            patient_sex="M",
            epsdt_indicator="Y",
            related_causes="OA",
            auto_accident_state=None,
            **no_cob,
        ),
        whole_claim("W3", patient_id="MBR0002", **no_cob),
        whole_claim("W4", patient_key=None, patient_relationship=None, **no_cob),
    ]
    tables["lines"] = [
        whole_line("W1", 1, modifier_1="25"),
        whole_line("W1", 2, procedure_code="J1100", ndc_quantity=1.0, ndc_unit="UN",
                   line_note=None, line_attachment_types=None, line_attachment_transmission=None,
                   line_place_of_service=None, unit_basis="UN", line_clia_number=None),
        whole_line("W2", 1),
        whole_line("W3", 1),
        whole_line("W4", 1),
    ]  # fmt: skip
    tables["diagnoses"] = [
        {"claim_id": c["claim_id"], "position": 1, "code": "S060X0A"} for c in claims
    ]
    tables["remittances"] = [
        make_remit(
            "R1", "W1", total_charge=280.0,
            claim_filing_indicator="12", frequency_code="1",
            patient_member_id="MBR0001", insured_member_id="SUB0001",
            corrected_member_id="MBR0001X",
            statement_from="2025-03-04", statement_to="2025-03-05",
            received_date="2025-03-12", coverage_expiration_date="2025-02-28",
        ),
        make_remit("R2", "W2", status_code="4", paid_amount=0.0, patient_responsibility=None),
    ]  # fmt: skip
    tables["remit_lines"] = [
        {"remit_id": "R1", "claim_id": "W1", "line_number": 1, "procedure_code": "99213",
         "line_charge": 140.0, "paid_amount": 100.0, "units": 1.0,
         "modifier_1": "25", "modifier_2": "59", "modifier_3": "XS", "modifier_4": "GT",
         "original_procedure_code": "99214", "service_date": "2025-03-04",
         "allowed_amount": 110.0, "line_control_number": "W1-L1"},
        {"remit_id": "R1", "claim_id": "W1", "line_number": 2, "procedure_code": "J1100",
         "line_charge": 140.0, "paid_amount": 100.0, "units": 1.0,
         "modifier_1": None, "modifier_2": None, "modifier_3": None, "modifier_4": None,
         "original_procedure_code": None, "service_date": "2025-03-04",
         "allowed_amount": 100.0, "line_control_number": "W1-L2"},
    ]  # fmt: skip
    tables["adjustments"] = [
        {"remit_id": "R1", "claim_id": "W1", "line_number": 1, "group_code": "CO",
         "carc": "45", "amount": 30.0, "quantity": None},
        {"remit_id": "R1", "claim_id": "W1", "line_number": 2, "group_code": "CO",
         "carc": "45", "amount": 40.0, "quantity": None},
        {"remit_id": "R2", "claim_id": "W2", "line_number": None, "group_code": "CO",
         "carc": "197", "amount": 280.0, "quantity": None},
    ]  # fmt: skip
    tables["remarks"] = [
        {"remit_id": "R2", "claim_id": "W2", "line_number": None, "rarc": "N54",
         "source": "MOA"},
        {"remit_id": "R2", "claim_id": "W2", "line_number": None, "rarc": "MA130",
         "source": "MIA"},
        {"remit_id": "R1", "claim_id": "W1", "line_number": 2, "rarc": "M15", "source": "LQ"},
    ]  # fmt: skip
    return validated_dataset(**tables)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClaimsDataset, list[Path]]:
    dataset = make_whole_dataset()
    out = tmp_path_factory.mktemp("whole")
    return dataset, write_837p(dataset, out) + write_835(dataset, out)


def test_the_data_set_exercises_every_optional_column() -> None:
    dataset = make_whole_dataset()
    for table in TABLES_WITH_NEW_COLUMNS:
        frame = getattr(dataset, table)
        empty = [c for c in OPTIONAL_COLUMNS[table] if not frame[c].notna().any()]
        assert not empty, (table, empty)
    assert set(OPTIONAL_COLUMNS) == set(TABLES_WITH_NEW_COLUMNS)
    assert set(dataset.remarks["source"]) == {"MOA", "MIA", "LQ"}


def test_written_files_pass_pyx12_full_validation(
    written: tuple[ClaimsDataset, list[Path]],
) -> None:
    _, paths = written
    for path in paths:
        findings = pyx12_findings(path)
        assert findings.count == 0, (path.name, findings.messages)


def _same_grouping(before: pd.Series, after: pd.Series) -> bool:
    """Whether two key columns (aligned by row) split the keyed rows into the same groups."""
    pairs = pd.DataFrame({"before": before, "after": after}).dropna()
    return bool(
        (pairs.groupby("before")["after"].nunique() == 1).all()
        and (pairs.groupby("after")["before"].nunique() == 1).all()
    )


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows in key order, columns in name order, without the surrogate ``remit_id``."""
    columns = sorted(c for c in frame.columns if c != "remit_id")
    return frame[columns].sort_values(keys).reset_index(drop=True)


@pytest.mark.parametrize("validation", ["full", "envelope"])
def test_every_column_comes_back(
    written: tuple[ClaimsDataset, list[Path]], validation: str
) -> None:
    dataset, paths = written
    got = ingested_cleanly(paths, validation).dataset
    claims_in, claims_out = _sorted(dataset.claims, ["claim_id"]), _sorted(got.claims, ["claim_id"])
    # The patient key comes back as a new key (the writer's synthetic name, hashed) grouping
    # the same claims; a claim without a key comes back without one.
    assert claims_out["patient_key"].isna().tolist() == claims_in["patient_key"].isna().tolist()
    assert _same_grouping(claims_in["patient_key"], claims_out["patient_key"])
    assert claims_out.loc[0, "patient_key"] == claims_out.loc[2, "patient_key"]  # W1, W3
    pd.testing.assert_frame_equal(
        claims_in.drop(columns="patient_key"), claims_out.drop(columns="patient_key"),
        check_dtype=False,
    )  # fmt: skip
    # A remittance without CLP06, CLP09 or a patient member ID is written with the claim's
    # (W2's filing indicator CI has no CLP06 code: ZZ).
    expected = dataset.remittances.copy()
    echoed = expected["claim_id"] == "W2"
    expected.loc[echoed, ["claim_filing_indicator", "frequency_code", "patient_member_id"]] = [
        "ZZ", "1", "MBR0001"
    ]  # fmt: skip
    pd.testing.assert_frame_equal(
        _sorted(expected, ["claim_id"]), _sorted(got.remittances, ["claim_id"]),
        check_dtype=False,
    )  # fmt: skip
    keys = {
        "lines": ["claim_id", "line_number"],
        "diagnoses": ["claim_id", "position"],
        "remit_lines": ["claim_id", "line_number"],
        "adjustments": ["claim_id", "line_number", "carc"],
        "remarks": ["claim_id", "rarc"],
    }
    for table, by in keys.items():
        pd.testing.assert_frame_equal(
            _sorted(getattr(dataset, table), by), _sorted(getattr(got, table), by),
            check_dtype=False, obj=table,
        )  # fmt: skip


def _recount(text: str) -> str:
    """The 837 text with its SE segment count made right again after an edit."""
    segments = text.split("~")
    st = next(i for i, s in enumerate(segments) if s.startswith("ST*"))
    se = next(i for i, s in enumerate(segments) if s.startswith("SE*"))
    segments[se] = re.sub(r"^SE\*\d+", f"SE*{se - st + 1}", segments[se])
    return "~".join(segments)


def test_several_other_payers_sum_their_paid_amounts_and_the_first_is_kept(
    written: tuple[ClaimsDataset, list[Path]], tmp_path: Path
) -> None:
    _, paths = written
    text = next(p for p in paths if p.suffix == ".837").read_text()
    first_cob_end = text.index("DTP*573*D8*20250320~") + len("DTP*573*D8*20250320~")
    third_payer = (
        "SBR*T*18*******CI~AMT*D*9.45~OI***Y***Y~NM1*IL*1*PATIENT*A****MI*THIRD1~"
        "NM1*PR*2*THIRD PAYER*****PI*THIRD9~DTP*573*D8*20250401~"
    )
    edited = tmp_path / "three_payers.837"
    edited.write_text(_recount(text[:first_cob_end] + third_payer + text[first_cob_end:]))
    assert pyx12_findings(edited).count == 0
    claims = ingest_paths([edited], workers=1).dataset.claims.set_index("claim_id")
    assert claims.loc["W1", "other_payer_paid_amount"] == 50.0  # 40.55 + 9.45
    assert claims.loc["W1", "other_payer_id"] == "OTHER77"
    assert claims.loc["W1", "other_payer_responsibility"] == "S"
    assert claims.loc["W1", "other_payer_filing_indicator"] == "MC"
    assert claims.loc["W1", "other_payer_adjudication_date"] == pd.Timestamp("2025-03-20")


def test_a_line_ordering_provider_is_its_referring_one_when_no_referring_is_named(
    written: tuple[ClaimsDataset, list[Path]], tmp_path: Path
) -> None:
    _, paths = written
    text = next(p for p in paths if p.suffix == ".837").read_text()
    ordering = text.replace(f"NM1*DN*1*REFERRING*A****XX*{NPI_REFERRING}~LX*2~",
                            "NM1*DK*1*ORDERING*A****XX*1245319599~LX*2~", 1)  # fmt: skip
    assert ordering != text
    path = tmp_path / "ordering.837"
    path.write_text(ordering)
    lines = ingest_paths([path], workers=1).dataset.lines.set_index(["claim_id", "line_number"])
    assert lines.loc[("W1", 1), "line_referring_npi"] == OTHER_VALID_NPI
    assert lines.loc[("W1", 2), "line_referring_npi"] == NPI_REFERRING


def _x12(segments: list[str], gs08: str) -> str:
    """An interchange around one transaction set's segments (ST..SE counted here)."""
    body = ["ST*837*0001*" + gs08, *segments]
    return (
        "ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *250310*1200*^*"
        "00501*000000001*0*P*:~"
        f"GS*HC*SENDER*RECEIVER*20250310*1200*1*X*{gs08}~"
        + "~".join(body)
        + f"~SE*{len(body) + 1}*0001~GE*1*1~IEA*1*000000001~"
    )


INSTITUTIONAL = [
    "BHT*0019*00*1*20250310*1200*CH",
    "NM1*41*2*SUBMITTER*****46*S1",
    "PER*IC*BILLING*TE*8005550100",
    "NM1*40*2*RECEIVER*****46*R1",
    "HL*1**20*1",
    "PRV*BI*PXC*282N00000X",
    f"NM1*85*2*HOSPITAL*****XX*{VALID_NPI}",
    "N3*1 MAIN ST",
    "N4*ANYTOWN*OH*432150000",
    "REF*EI*999999999",
    "HL*2*1*22*1",
    "SBR*S**GRP9******CI",
    "NM1*IL*1*DOE*JANE****MI*SUB123",
    "N3*2 ELM ST",
    "N4*ANYTOWN*OH*43215",
    "DMG*D8*19700101*F",
    "NM1*PR*2*PLAN*****PI*60054",
    "HL*3*2*23*0",
    "PAT*19",
    "NM1*QC*1*DOE*JOY",
    "N3*2 ELM ST",
    "N4*ANYTOWN*KY*43215",
    "DMG*D8*20100505*F",
    "CLM*I1*300***13:A:1**A*Y*Y***********7",
    "DTP*434*RD8*20250301-20250301",
    "CL1*1*1*01",
    "PWK*09*FX***AC*I1A1",
    "REF*G1*IAUTH",
    "REF*LU*OH",
    "NTE*ALG*NO KNOWN ALLERGIES",
    "NTE*DCP*FOLLOW UP IN TWO WEEKS",
    "CRC*ZZ*N*NU",
    "HI*ABK:S060X0A",
    "HI*BH:02:D8:20250228*BH:11:D8:20250227*BH:04:D8:20250226",
    f"NM1*71*1*ATTENDING*A****XX*{OTHER_VALID_NPI}",
    "PRV*AT*PXC*207P00000X",
    f"NM1*77*2*CLINIC*****XX*{NPI_FACILITY}",
    "N3*3 OAK ST",
    "N4*ANYTOWN*IN*43215",
    "SBR*P*18*******MC",
    "AMT*D*100",
    "OI***Y***Y",
    "NM1*IL*1*DOE*JANE****MI*OTHER1",
    "NM1*PR*2*MEDICAID*****PI*MCD1",
    "DTP*573*D8*20250305",
    "LX*1",
    "SV2*0300*HC:85025*300*UN*2",
    "DTP*472*D8*20250301",
    "NTE*TPO*REPRICED",
    "LIN**N4*00004196501",
    "CTP****7*UN",
    f"NM1*82*1*RENDERING*A****XX*{NPI_LINE_RENDERING}",
    f"NM1*DN*1*REFERRING*A****XX*{NPI_REFERRING}",
]


def test_an_837i_fills_the_same_columns(tmp_path: Path) -> None:
    path = tmp_path / "claim.837i"
    path.write_text(_x12(INSTITUTIONAL, "005010X223A2"))
    parse = parse_file(path, validation="envelope")
    assert parse.file_reason is None and parse.pyx12_warnings == 0, parse.pyx12_messages
    claim = parse.tables["claims"][0]
    expected_claim = {
        "claim_type": "institutional",
        "payer_responsibility": "S",
        "subscriber_group_number": "GRP9",
        "patient_relationship": "19",
        "patient_state": "KY",
        "subscriber_state": "OH",
        "billing_state": "OH",
        "billing_taxonomy": "282N00000X",
        "rendering_taxonomy": None,
        "provider_taxonomy": "207P00000X",  # the attending's
        "service_facility_npi": NPI_FACILITY,
        "service_facility_state": "IN",
        "delay_reason_code": "7",
        "related_causes": "AA,EM",  # occurrence codes 02 and 04
        "auto_accident_state": "OH",  # REF*LU
        "accident_date": "20250228",
        "onset_date": "20250227",
        "epsdt_indicator": "N",
        "attachment_types": "09",
        "attachment_transmission": "FX",
        "claim_note": "NO KNOWN ALLERGIES | FOLLOW UP IN TWO WEEKS",
        "prior_auth_number": "IAUTH",
        "other_payer_id": "MCD1",
        "other_payer_responsibility": "P",
        "other_payer_filing_indicator": "MC",
        "other_payer_paid_amount": 100.0,
        "other_payer_adjudication_date": "20250305",
        "has_other_coverage": True,
        "patient_birth_date": "20100505",
    }
    assert {k: claim[k] for k in expected_claim} == expected_claim
    assert claim["patient_key"] is not None
    line = parse.tables["lines"][0]
    expected_line = {
        "revenue_code": "0300",
        "unit_basis": "UN",
        "units": 2.0,
        "line_note": "REPRICED",
        "ndc_code": "00004196501",
        "ndc_quantity": 7.0,
        "ndc_unit": "UN",
        "line_rendering_npi": NPI_LINE_RENDERING,
        "line_referring_npi": NPI_REFERRING,
        "line_place_of_service": None,
    }
    assert {k: line[k] for k in expected_line} == expected_line


def test_the_patient_key_follows_the_patient_not_the_subscriber(tmp_path: Path) -> None:
    """Two dependents of one subscriber get two keys; the same person under two member IDs
    (and two payers) gets one."""
    child_two = [s.replace("DOE*JOY", "DOE*JIM").replace("D8*20100505*F", "D8*20120707*M")
                 .replace("CLM*I1", "CLM*I2").replace("HL*3*2*23*0", "HL*4*2*23*0")
                 for s in INSTITUTIONAL[17:]]  # fmt: skip
    same_child_elsewhere = [
        s.replace("HL*2*1*22*1", "HL*5*1*22*1").replace("MI*SUB123", "MI*OTHER9")
        .replace("PI*60054", "PI*77027").replace("HL*3*2*23*0", "HL*6*5*23*0")
        .replace("CLM*I1", "CLM*I3")
        for s in INSTITUTIONAL[10:]
    ]  # fmt: skip
    path = tmp_path / "family.837i"
    path.write_text(_x12(INSTITUTIONAL + child_two + same_child_elsewhere, "005010X223A2"))
    parse = parse_file(path, validation="envelope")
    keys = {c["claim_id"]: c["patient_key"] for c in parse.tables["claims"]}
    members = {c["claim_id"]: c["patient_id"] for c in parse.tables["claims"]}
    assert members == {"I1": "SUB123", "I2": "SUB123", "I3": "OTHER9"}
    assert keys["I1"] != keys["I2"]
    assert keys["I1"] == keys["I3"]
