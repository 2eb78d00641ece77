"""No patient identifier leaves ingest: a file with a distinctive patient name, member ID, birth
date and note, and defects right on them, is ingested with the CLI; neither
``ingest-report.json``, ``quarantine.csv``, the console nor the logs carry them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from denial_risk.cli import app
from features.x12 import write_835, write_837p
from features.x12.pyx12_stream import redact
from tests.unit.test_x12_whole_claim import make_whole_dataset

LAST, FIRST = "ZANZIBARQUUX", "XYLOPHONIA"
MEMBER, OTHER_MEMBER = "QMEMBER8675309", "QM-INSURED-4242"
BORN, BAD_BIRTH_DATE = "19510317", "19511340"
NOTE = "PATIENT ZANZIBARQUUX CALLED ABOUT HER BILL"
PLANTED = (LAST, FIRST, MEMBER, OTHER_MEMBER, BORN, BAD_BIRTH_DATE, "8675309", "ZANZIBAR")


def _plant(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def planted_files(folder: Path) -> list[Path]:
    """837P and 835 files with identifiers planted where defects make pyx12 and the contract
    speak: an overlong name, an invalid birth date, an unknown segment quoting the member ID,
    an overlong note, a claim without a payer ID, a remittance without amounts."""
    dataset = make_whole_dataset()
    claims = write_837p(dataset, folder / "src")[0].read_text()
    claims = _plant(
        claims,
        "NM1*IL*1*PATIENT*K04933CD46ABC9667B25A8924****MI*MBR0001~",
        f"NM1*IL*1*{LAST * 6}*{FIRST}****MI*{MEMBER}~ZZZ*{MEMBER}*{LAST} {FIRST}~",
    )
    claims = _plant(claims, "DMG*D8*19700601*F~", f"DMG*D8*{BAD_BIRTH_DATE}*F~")
    claims = _plant(claims, "PI*60054~", "PI*~")  # the first claim loses its payer ID
    claims = _plant(claims, "NTE*ADD*PATIENT SEEN AFTER HOURS~", f"NTE*ADD*{NOTE * 3}~")
    claims = _plant(
        claims,
        "NM1*QC*1*PATIENT*K3C7E7B77E480F60E8FDC59DE~",
        f"NM1*QC*1*{LAST}*{FIRST}****MI*{MEMBER}~",
    )
    claims = _plant(claims, "DMG*D8*20150505*M~", f"DMG*D8*{BORN}*M~")
    remits = write_835(dataset, folder / "src")[0].read_text()
    remits = _plant(remits, "NM1*QC*1*PATIENT*A****MI*MBR0001~",
                    f"NM1*QC*1*{LAST}*{FIRST}****MI*{MEMBER}*{BAD_BIRTH_DATE}~")  # fmt: skip
    remits = _plant(remits, "NM1*IL*1*INSURED*A****MI*SUB0001~",
                    f"NM1*IL*1*{LAST}*{FIRST}****MI*{OTHER_MEMBER}~")  # fmt: skip
    remits = _plant(remits, "CLP*W2*4*280*0*", "CLP*W2*4***")
    out = folder / "in"
    out.mkdir()
    (out / "planted.837").write_text(claims)
    (out / "planted.835").write_text(remits)
    return [out / "planted.837", out / "planted.835"]


@pytest.mark.parametrize("validation", ["full", "envelope"])
def test_ingest_outputs_carry_no_patient_identifier(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, validation: str
) -> None:
    files = planted_files(tmp_path)
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG):
        result = CliRunner().invoke(
            app,
            ["ingest", *map(str, files), "--out", str(out), "--workers", "1",
             "--validation", validation],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = (out / "ingest-report.json").read_text()
    quarantine = (out / "quarantine.csv").read_text()
    # The defects were seen: pyx12 findings (full mode) and quarantined rows with reasons.
    assert "W1" in quarantine and "has no payer identifier" in quarantine
    assert "remittance for claim 'W2'" in quarantine
    if validation == "full":
        assert "is too long" in report and "invalid date" in report
        assert "Segment ZZZ not found" in report
    for name, text in [("ingest-report.json", report), ("quarantine.csv", quarantine),
                       ("console", result.output), ("logs", caplog.text)]:  # fmt: skip
        leaked = [value for value in PLANTED if value in text]
        assert not leaked, (name, leaked)


def test_redact_drops_quoted_values_segments_and_long_numbers() -> None:
    assert redact(f"Segment ZZZ*{MEMBER} not found.  Started at /2010BA") == (
        "Segment ZZZ not found.  Started at /2010BA"
    )
    assert redact(f'"Patient Last Name" is too long: len("{LAST}")', LAST) == (
        '"Patient Last Name" is too long: len("...")'
    )
    assert redact(f"cannot read (NM1*IL*1*{LAST} {FIRST}****MI*{MEMBER})") == (
        "cannot read (NM1 ..."
    )
    assert redact(f"member {BORN} unknown") == "member ... unknown"
