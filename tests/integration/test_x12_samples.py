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
        assert kept + quarantined == expected, relative
        if quarantined:
            assert entry["quarantine_reasons"], relative
            assert all(str(Path(relative).name) in r for r in entry["quarantine_reasons"])


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
