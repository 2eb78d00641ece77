"""Every public sample 837/835 file: each claim is parsed or quarantined with a reason.

The expected counts come from the samples' README (an independent plain segment scan), read
from its table so that the two never drift apart.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from features.x12 import IngestResult, ingest_paths
from features.x12.reader import parse_file

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).parents[2].parent / "shared" / "x12-samples"
NTH = "835/oopfactory-ExampleFromNth.txt"


def _samples_or_skip() -> Path:
    if not SAMPLES.is_dir():
        reason = f"X12 sample folder {SAMPLES} is not present"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (it must be present under CI)")
        pytest.skip(reason)
    return SAMPLES


def readme_counts(folder: Path) -> dict[str, tuple[int, int | None]]:
    """``{relative path: (claims, CLP02=4 count or None)}`` from the README table."""
    counts: dict[str, tuple[int, int | None]] = {}
    for line in (folder / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and re.fullmatch(r"83[57][ip]?/.+", cells[0]) and cells[2].isdigit():
            denied = int(cells[3]) if cells[3].isdigit() else None
            counts[cells[0]] = (int(cells[2]), denied)
    return counts


@pytest.fixture(scope="module")
def ingested() -> IngestResult:
    return ingest_paths([_samples_or_skip()], workers=2)


def _entry(result: IngestResult, relative: str) -> dict:
    return result.report[str(SAMPLES / relative)]


def test_readme_table_lists_every_sample_file() -> None:
    folder = _samples_or_skip()
    files = {str(p.relative_to(folder)) for p in folder.glob("83*/*") if p.is_file()}
    assert set(readme_counts(folder)) == files


def test_every_claim_is_parsed_or_quarantined_with_a_reason(ingested: IngestResult) -> None:
    for relative, (expected, _) in readme_counts(SAMPLES).items():
        entry = _entry(ingested, relative)
        read = entry["claims_read"] + entry["remittances_read"]
        assert read == expected, relative
        kept = entry["claims_ingested"] + entry["remittances_ingested"]
        quarantined = entry["claims_quarantined"] + entry["remittances_quarantined"]
        duplicate = entry["claims_duplicate"] + entry["remittances_duplicate"]
        assert kept + quarantined + duplicate == expected, relative
        if quarantined:
            assert entry["quarantine_reasons"], relative
            assert all(str(Path(relative).name) in r for r in entry["quarantine_reasons"])


def test_the_samples_sent_twice_are_read_once(ingested: IngestResult) -> None:
    # Two samples repeat another: one byte for byte, one is a transaction set of a combined file
    # under another ST02. Their claims are read once, the copies counted as duplicates.
    repeats = {
        "837p/lfh-demo.example6.837": "837p/lfh-demo.cob.2ndary.example4.837 ST02=3701",
        "837p/oopfactory-Example2_Encounter.txt": "837p/oopfactory-Example1_2_And_3_Combined.txt"
        " ST02=0022",
    }
    for relative, entry in ingested.report.items():
        if relative.startswith("_"):
            continue
        relative = str(Path(relative).relative_to(SAMPLES))
        if relative in repeats:
            assert entry["claims_duplicate"] == 1 and entry["claims_ingested"] == 0, relative
            assert f"repeats {SAMPLES / repeats[relative]}" in entry["duplicate_of"][0], relative
        else:
            assert entry["duplicate_of"] == [], relative


def test_denials_per_835_match_the_readme(ingested: IngestResult) -> None:
    remits = ingested.dataset.remittances
    files = remits["remit_id"].str.split(":").str[0]
    for relative, (claims, denied) in readme_counts(SAMPLES).items():
        if not relative.startswith("835/") or denied is None:
            continue
        entry = _entry(ingested, relative)
        stem = Path(relative).stem
        mine = remits[files == stem]
        # a remittance row the contract refused is still counted in the report
        assert len(mine) + entry["remittances_quarantined"] == claims, relative
        if not entry["remittances_quarantined"]:
            assert int((mine["status_code"] == "4").sum()) == denied, relative


def test_example_from_nth_has_the_documented_denials(ingested: IngestResult) -> None:
    data = ingested.dataset
    stem = Path(NTH).stem
    remits = data.remittances[data.remittances["remit_id"].str.startswith(stem + ":")]
    assert len(remits) == 56
    assert int((remits["status_code"] == "4").sum()) == 16
    assert remits["remit_id"].str.split(":").str[1].nunique() == 3  # three interchanges
    adj = data.adjustments[data.adjustments["remit_id"].isin(remits["remit_id"])]
    carcs = set(adj["group_code"] + "-" + adj["carc"])
    assert {"CO-45", "CO-24", "CO-23", "CO-204", "CO-16", "CO-165", "CO-29", "CO-59"} <= carcs
    rarcs = set(data.remarks.loc[data.remarks["remit_id"].isin(remits["remit_id"]), "rarc"])
    assert {"N1", "N20", "N36"} <= rarcs


def test_utf16_truncated_file_is_quarantined_with_a_reason(ingested: IngestResult) -> None:
    entry = _entry(ingested, "837p/oopfactory-UnicodeExample.txt")
    assert any("UTF-16" in n for n in entry["notes"])
    assert entry["claims_ingested"] == 0
    assert any("truncated" in r for r in entry["quarantine_reasons"])


def test_version_variants_are_read_with_a_note(ingested: IngestResult) -> None:
    for relative, version in [
        ("837p/lfh-demo.example1.837", "005010X222A2"),
        ("837i/lfh-institutional-claim.837i", "005010X223A3"),
        ("837i/oopfactory-Spec_3.1.1.txt", "005010X222"),
        ("835/oopfactory-Example1.txt", "5010"),
    ]:
        entry = _entry(ingested, relative)
        assert entry["versions_seen"] == [version]
        assert any(f"GS08 {version!r} read as" in n for n in entry["notes"]), relative
    spec = _entry(ingested, "837i/oopfactory-Spec_3.1.1.txt")
    assert spec["transaction_type"] == "837I"  # GS08 says X222, ST03 and content say X223
    bare = _entry(ingested, "835/edi835-blue_cross_nc_sample.txt")
    assert any("synthetic 5010 envelope" in n for n in bare["notes"])


# -- the rest of the claim: fields read where the samples have them --------------------------
# Most sample claims carry ICD-9 codes, so the contract quarantines them; what the reader read
# from each file is checked on its rows before validation.


def _rows(relative: str, table: str) -> list[dict]:
    parse = parse_file(_samples_or_skip() / relative, validation="envelope")
    assert parse.file_reason is None, parse.file_reason
    return parse.tables.get(table, [])


def _claim(relative: str, index: int = 0) -> dict:
    return _rows(relative, "claims")[index]


def _subset(row: dict, expected: dict) -> dict:
    return {key: row[key] for key in expected}


def test_auto_accident_claim_keeps_clm11_the_patient_loop_and_the_facility() -> None:
    claim = _claim("837p/lfh-demo.autoaccident.837")
    expected = {
        "related_causes": "AA",  # CLM11 AA:::CA
        "auto_accident_state": "CA",
        "accident_date": "20051031",  # DTP*439
        "patient_relationship": "21",  # 2000C PAT01
        "patient_state": "CA",  # 2010CA N4
        "subscriber_state": None,  # 2010BA has no address
        "billing_state": "CA",
        "rendering_taxonomy": "208D00000X",
        "provider_taxonomy": "208D00000X",
        "service_facility_npi": "1235767887",  # 2310C NM1*77
        "service_facility_state": "CA",
    }
    assert _subset(claim, expected) == expected


def test_ambulance_claim_keeps_its_cause_accident_date_taxonomy_and_line_note() -> None:
    claim = _claim("837p/lfh-demo.ambulance.example5.837")
    expected = {"related_causes": "OA", "accident_date": "20050208",
                "billing_taxonomy": "3416L0300X", "payer_responsibility": "P",
                "patient_relationship": "18"}  # fmt: skip
    assert _subset(claim, expected) == expected
    lines = _rows("837p/lfh-demo.ambulance.example5.837", "lines")
    assert [line["line_note"] for line in lines] == ["CARDIAC EMERGENCY", None, None, None]


def test_drug_claims_keep_ndc_quantity_unit_and_the_ordering_provider() -> None:
    one = _rows("837p/lfh-demo.drug.example10.1.837", "lines")
    assert [(line["ndc_code"], line["ndc_quantity"], line["ndc_unit"]) for line in one] == [
        (None, None, None),
        ("00026063512", 10.0, "ML"),
    ]
    assert {line["line_place_of_service"] for line in one} == {"11"}  # SV105
    assert _claim("837p/lfh-demo.drug.example10.1.837")["subscriber_group_number"] == (
        "GRP01020102"
    )
    two = _rows("837p/lfh-demo.drug.example10.2.837", "lines")
    assert [line["ndc_code"] for line in two] == [
        None, "00004196501", "63323024910", "00338004938", "08290033010", "08290038005",
    ]  # fmt: skip
    assert [line["ndc_quantity"] for line in two[1:]] == [7.0, 14.0, 7.0, 14.0, 7.0]
    assert {line["ndc_unit"] for line in two[1:]} == {"UN"}
    # 2420E ordering provider (NM1*DK) on every line; it does not stand in for the claim's
    # referring provider (2310A / 2420F NM1*DN).
    assert {line["line_referring_npi"] for line in two} == {"1112223338"}
    assert _claim("837p/lfh-demo.drug.example10.2.837")["referring_npi"] is None


def test_cob_claims_keep_the_other_payer_and_its_paid_amount() -> None:
    secondary = _claim("837p/lfh-demo.cob.example3.B.837")
    expected = {
        "payer_responsibility": "S",
        "patient_relationship": "19",
        "has_other_coverage": True,
        "other_payer_responsibility": "P",
        "other_payer_filing_indicator": "12",
        "other_payer_id": "999996666",  # 2330B NM1*PR
        "other_payer_paid_amount": 39.15,  # 2320 AMT*D
        "other_payer_adjudication_date": None,  # its DTP*573 are the lines' (2430)
    }
    assert _subset(secondary, expected) == expected
    medicare_second = _claim("837p/lfh-demo.cob.example4.837")
    expected = {"payer_responsibility": "S", "patient_relationship": "18",
                "other_payer_id": "59999", "other_payer_paid_amount": 80.0,
                "other_payer_responsibility": "P", "rendering_taxonomy": "207X00000X"}  # fmt: skip
    assert _subset(medicare_second, expected) == expected
    # A 2320 loop without a 2330B payer name: coverage is known, the payer is not.
    no_payer = _claim("837p/lfh-demo.cob.example3.A.837")
    assert no_payer["has_other_coverage"] and no_payer["other_payer_id"] is None
    assert _claim("837p/lfh-demo.example12.837")["other_payer_id"] == "95645"


def test_the_same_patient_under_two_subscribers_has_one_key() -> None:
    """TED SMITH (2010CA, born 1973-05-01) is claimed under JANE's and JACK's member IDs."""
    claims = [_claim(f"837p/lfh-demo.cob.example3.{x}.837") for x in "ABC"]
    assert len({c["patient_id"] for c in claims}) == 3
    assert len({c["patient_key"] for c in claims}) == 1
    subscriber_is_patient = _claim("837p/lfh-demo.example6.837")
    assert subscriber_is_patient["patient_key"] not in {c["patient_key"] for c in claims}


def test_claim_dates_notes_units_and_dependents_of_other_samples() -> None:
    assert _claim("837p/lfh-demo.example2.837")["onset_date"] == "19981003"  # DTP*431
    assert _claim("837p/lfh-demo.example6.837")["initial_treatment_date"] == "20050115"
    facility = _claim("837p/lfh-demo.example11.837")  # NM1*77 without an NPI
    assert (facility["service_facility_npi"], facility["service_facility_state"]) == (None, "IN")
    anesthesia = _rows("837p/lfh-demo.example9.837", "lines")
    assert anesthesia[0]["unit_basis"] == "MJ" and anesthesia[0]["units"] == 61.0  # minutes
    for line in _rows("837p/lfh-demo.example7.837", "lines"):  # DME certificate indicator
        assert (line["line_attachment_types"], line["line_attachment_transmission"]) == (
            "CT", "AA"
        )  # fmt: skip
        assert line["line_referring_npi"] == "5555511111"
    dependent = _claim("837p/oopfactory-ST1309-XX.txt")
    expected = {"patient_relationship": "19", "patient_state": "NJ", "subscriber_state": "CT",
                "subscriber_group_number": "NY20392", "other_payer_id": "11111"}  # fmt: skip
    assert _subset(dependent, expected) == expected
    assert [line["line_note"] for line in _rows("837p/oopfactory-ST1309-XX.txt", "lines")] == [
        "NOTE", None,
    ]  # fmt: skip


def test_institutional_claims_keep_occurrence_onset_taxonomies_and_other_payer() -> None:
    repriced = _claim("837i/lfh-ppo-repriced-claim.837i")
    expected = {"onset_date": "20050706",  # HI*BH occurrence code 11
                "patient_relationship": "19", "subscriber_group_number": "46522567AW",
                "other_payer_id": "534524", "other_payer_responsibility": "S"}  # fmt: skip
    assert _subset(repriced, expected) == expected
    first, second = _rows("837i/lfh-two-claims-single-provider.837i", "claims")
    assert first["billing_taxonomy"] == second["billing_taxonomy"] == "282N00000X"
    # The attending's PRV*AT stands in for the provider taxonomy; it is no rendering one.
    assert (second["provider_taxonomy"], second["rendering_taxonomy"]) == ("363LP0200N", None)
    lines = _rows("837i/lfh-institutional-claim.837i", "lines")
    assert [(line["revenue_code"], line["unit_basis"]) for line in lines] == [
        ("0305", "UN"), ("0730", "UN"),
    ]  # fmt: skip


def test_remittances_keep_dates_member_ids_and_line_details() -> None:
    uhc = _rows("835/edi835-united_healthcare_legacy_sample.txt", "remittances")[0]
    # Its NM1*74 corrects the name only (no NM109): no corrected member ID.
    expected = {"claim_filing_indicator": "16", "frequency_code": "1",
                "patient_member_id": "123456789", "statement_from": "20201221",
                "statement_to": "20210113", "received_date": "20210114",
                "corrected_member_id": None}  # fmt: skip
    assert _subset(uhc, expected) == expected
    lines = _rows("835/edi835-united_healthcare_legacy_sample.txt", "remit_lines")
    assert [(line["allowed_amount"], line["line_control_number"], line["service_date"])
            for line in lines[:2]] == [(88.92, "800941258001", "20201221"),
                                       (105.26, "800941258002", "20210101")]  # fmt: skip
    blue_cross = _rows("835/edi835-blue_cross_nc_sample.txt", "remit_lines")
    assert [(line["procedure_code"], line["original_procedure_code"]) for line in blue_cross] == [
        ("59430", "59410"), ("59440", "59410"), ("59426", None),
    ]  # fmt: skip
    assert _rows("835/edi835-blue_cross_nc_sample.txt", "remittances")[0]["received_date"] == (
        "20110103"
    )
    emedny = _rows("835/edi835-emedny_sample.txt", "remit_lines")
    assert [line["modifier_1"] for line in emedny[:4]] == ["RB", "RB", "RB", None]
    assert [r["statement_from"] for r in _rows("835/edi835-emedny_sample.txt", "remittances")] == [
        "20100101"
    ] * 3
    multi = _rows("835/oopfactory-Example1.txt", "remit_lines")
    assert (multi[6]["procedure_code"], multi[6]["modifier_1"], multi[6]["modifier_2"],
            multi[6]["modifier_3"]) == ("H0015", "HF", "99", "H9")  # fmt: skip
    assert _rows("835/lfh-managed-care.835", "remit_lines")[0]["service_date"] == "20020301"
    medicare = _rows("835/lfh-medicare-part-a.835", "remittances")
    assert [(r["claim_filing_indicator"], r["frequency_code"]) for r in medicare] == [
        ("MA", "1"), ("MB", "1"),
    ]  # fmt: skip
    remark_sources = {(r["rarc"], r["source"]) for r in _rows("835/lfh-medicare-part-a.835",
                                                              "remarks")}  # fmt: skip
    assert remark_sources == {("MA02", "MOA")}
    assert {r["source"] for r in _rows("835/edi835-emedny_sample.txt", "remarks")} == {"LQ"}
