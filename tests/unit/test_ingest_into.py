"""`ingest --into`: files added to a data set as a fresh ingest of every file would read them;
the same files again add nothing; later 835s change earlier outcomes; replacement and void
claims replace and remove earlier ones; the manifest says what changed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from denial_risk.cli import app
from features.schema import ClaimsDataset, read_manifest
from features.x12 import write_835, write_837p
from features.x12.ingest import (
    QUARANTINE_FILE,
    REPORT_FILE,
    IngestResult,
    ingest_into,
    ingest_paths,
    write_ingest,
)
from tests.unit.test_x12_roundtrip import make_dataset
from training.dataset import outcome_labels

KEYS = {
    "claims": ["claim_id"],
    "lines": ["claim_id", "line_number"],
    "diagnoses": ["claim_id", "position"],
    "remittances": ["remit_id"],
    "remit_lines": ["remit_id", "line_number"],
    "adjustments": ["remit_id", "line_number", "group_code", "carc", "amount"],
    "remarks": ["remit_id", "line_number", "rarc"],
    "followups": ["claim_id", "action"],
    "rejections": ["claim_id", "rejection_date", "source"],
}
PLACEHOLDER = "999999999"


def _append(paths: list[Path], folder: Path) -> IngestResult:
    result = ingest_into(paths, folder, workers=1, validation="envelope")
    write_ingest(result, folder)
    return result


def _sorted(dataset: ClaimsDataset, name: str) -> pd.DataFrame:
    frame = getattr(dataset, name)
    return frame.sort_values(KEYS[name], kind="stable").reset_index(drop=True)


def _assert_same_tables(a: ClaimsDataset, b: ClaimsDataset) -> None:
    for name in ClaimsDataset.table_names():
        pd.testing.assert_frame_equal(_sorted(a, name), _sorted(b, name), obj=name)


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """A small simulated practice's 837/835 files split at a date into an earlier folder and a
    later one (its 835s pay claims of both; one later 835 names no claim, CLP01 all 9s)."""
    from simulator import SimulationConfig, simulate

    data = simulate(SimulationConfig(n_claims=150, seed=3)).dataset
    claims, remits = data.claims, data.remittances
    cut = claims["submission_date"].sort_values().iloc[60]
    later_remits = remits[remits["remit_date"] >= cut]
    # A later remittance for an earlier claim, sent without its patient control number.
    earlier_ids = set(claims.loc[claims["submission_date"] < cut, "claim_id"])
    target = later_remits[later_remits["claim_id"].isin(earlier_ids)].iloc[0]
    blanked = {}
    for name in ("remittances", "remit_lines", "adjustments", "remarks"):
        frame = getattr(data, name).copy()
        mask = frame["remit_id"] == target["remit_id"]
        frame["claim_id"] = frame["claim_id"].astype(object).where(~mask, PLACEHOLDER)
        blanked[name] = frame
    root = tmp_path_factory.mktemp("practice")
    parts = {
        "earlier": (claims["submission_date"] < cut, blanked["remittances"]["remit_date"] < cut),
        "later": (claims["submission_date"] >= cut, blanked["remittances"]["remit_date"] >= cut),
    }
    for part, (sent, paid) in parts.items():
        ids = set(claims.loc[sent, "claim_id"])
        rids = set(blanked["remittances"].loc[paid, "remit_id"])
        write_837p(
            ClaimsDataset(
                claims=claims[sent],
                lines=data.lines[data.lines["claim_id"].isin(ids)],
                diagnoses=data.diagnoses[data.diagnoses["claim_id"].isin(ids)],
            ),
            root / part,
            claims_per_file=40,
        )
        tables = {n: f[f["remit_id"].isin(rids)] for n, f in blanked.items()}
        write_835(replace(data, **tables), root / part)  # every claim: CLP echoes its fields
    return root / "earlier", root / "later", {"claim_id": target["claim_id"], "cut": cut}


def test_appending_later_files_reads_as_a_fresh_ingest_of_all_and_again_adds_nothing(
    tmp_path: Path, practice: tuple[Path, Path, dict[str, Any]]
) -> None:
    earlier, later, blanked = practice
    fresh = ingest_paths([earlier, later], workers=1, validation="envelope")
    folder = tmp_path / "dataset"
    first = _append([earlier], folder)
    manifest_1 = read_manifest(folder)
    second = _append([later], folder)
    manifest_2 = read_manifest(folder)

    appended, rejects = ClaimsDataset.read(folder)
    assert rejects.empty
    _assert_same_tables(appended, fresh.dataset)
    # The later 835s were linked to earlier claims, the one without a CLP01 by payer, date
    # and charge; follow-ups (corrected claims, later payments) were derived over both runs.
    assert second.summary["remittances_for_earlier_claims"] > 0
    linked = appended.remittances["claim_id"]
    assert (linked == blanked["claim_id"]).sum() > (
        first.dataset.remittances["claim_id"] == blanked["claim_id"]
    ).sum()
    assert PLACEHOLDER not in set(linked)
    resolved_later = appended.followups["resolved_date"] >= blanked["cut"]
    assert resolved_later.any() and appended.followups.loc[resolved_later, "recovered"].all()
    assert not (first.dataset.followups["resolved_date"] >= blanked["cut"]).any()
    assert second.summary["claims_added"] == len(appended.claims) - len(first.dataset.claims)
    assert second.summary["remittances_added"] == (
        len(appended.remittances) - len(first.dataset.remittances)
    )

    # The manifest: counts and dates of the tables, a new version with a new fingerprint.
    assert manifest_1 is not None and manifest_2 is not None
    assert manifest_2.rows == {n: len(getattr(appended, n)) for n in appended.table_names()}
    assert manifest_2.latest_remit_date == f"{appended.remittances['remit_date'].max():%Y-%m-%d}"
    assert manifest_2.latest_submission_date == (
        f"{appended.claims['submission_date'].max():%Y-%m-%d}"
    )
    assert manifest_2.version == manifest_1.version + 1
    assert manifest_2.fingerprint != manifest_1.fingerprint

    # The same files again, and a copy of an 835 with new envelope numbers under another name:
    # nothing added, the tables and fingerprint unchanged, every claim counted as a duplicate.
    copy = tmp_path / "copy"
    copy.mkdir()
    remit = sorted(later.glob("*.835"))[0].read_text()
    (copy / "resent.835").write_text(remit.replace("*000000001*", "*000000077*"))
    again = _append([earlier, later, copy], folder)
    assert again.summary["claims_added"] == again.summary["remittances_added"] == 0
    assert again.summary["files_not_parsed_again"] == again.summary["files"] - 1
    assert again.summary["claims_duplicate"] == fresh_claims_read(fresh)
    assert read_manifest(folder) == manifest_2
    _assert_same_tables(ClaimsDataset.read(folder)[0], appended)
    # Every run's report is kept: per run, and in the cumulative report.
    report = json.loads((folder / REPORT_FILE).read_text())
    assert [run["run"] for run in report["_runs"]] == [1, 2, 3]
    assert len(list((folder / "ingest-runs").glob("run-*.json"))) == 3
    for entry in (v for k, v in report.items() if not k.startswith("_")):
        parts = ("ingested", "quarantined", "duplicate")
        assert entry["claims_read"] == sum(entry[f"claims_{p}"] for p in parts)


def fresh_claims_read(result: IngestResult) -> int:
    return sum(v["claims_read"] for k, v in result.report.items() if not k.startswith("_"))


def _first_run(tmp_path: Path, remittances: bool = False) -> tuple[ClaimsDataset, Path]:
    """Three hand-built claims (and their remittances) ingested into ``tmp_path/dataset``."""
    data = make_dataset()
    first = tmp_path / "first"
    write_837p(data, first)
    if remittances:
        write_835(data, first)
    folder = tmp_path / "dataset"
    _append([first], folder)
    return data, folder


def _remittance_files(dataset: ClaimsDataset, folder: Path, **remits: dict) -> list[Path]:
    """835s for ``dataset``'s claims holding the given remittances (id -> fields)."""
    rows = [
        {**dataset.remittances.iloc[0].to_dict(), "remit_id": rid, **fields}
        for rid, fields in remits.items()
    ]
    adjustments = [
        {"remit_id": rid, "claim_id": f["claim_id"], "line_number": None, "group_code": "CO",
         "carc": f.pop("_carc"), "amount": f["total_charge"] - f["paid_amount"],
         "quantity": None}
        for rid, f in ((r["remit_id"], r) for r in rows) if "_carc" in f
    ]  # fmt: skip
    later = replace(
        dataset,
        remittances=pd.DataFrame(rows).astype(dataset.remittances.dtypes.to_dict()),
        remit_lines=dataset.remit_lines.iloc[:0],
        adjustments=pd.DataFrame(adjustments, columns=dataset.adjustments.columns),
        remarks=dataset.remarks.iloc[:0],
    )
    return write_835(later, folder)


def test_a_later_reversal_and_corrected_payment_change_the_earlier_outcome(
    tmp_path: Path,
) -> None:
    data, folder = _first_run(tmp_path, remittances=True)
    before = outcome_labels(ClaimsDataset.read(folder)[0]).set_index("claim_id")
    assert not before.loc["C1", "denied"]
    paid = data.remittances.set_index("claim_id").loc["C1"]

    # The payer takes C1's payment back (CLP02 = 22) and denies the claim (CO-16) a week later.
    reversal = {"claim_id": "C1", "status_code": "22", "paid_amount": -paid["paid_amount"],
                "total_charge": -paid["total_charge"],
                "remit_date": paid["remit_date"] + pd.Timedelta(days=7)}  # fmt: skip
    denial = {"claim_id": "C1", "status_code": "1", "paid_amount": 0.0, "_carc": "16",
              "total_charge": paid["total_charge"], "payer_claim_number": "PCN-C1-2",
              "remit_date": paid["remit_date"] + pd.Timedelta(days=7)}  # fmt: skip
    files = _remittance_files(data, tmp_path / "second", RV=reversal, RD=denial)
    result = _append(files, folder)

    after = outcome_labels(ClaimsDataset.read(folder)[0]).set_index("claim_id")
    assert after.loc["C1", "denied"] and after.loc["C1", "carc"] == "16"
    assert result.summary["outcomes_changed_claim_ids"] == ["C1"]
    assert result.summary["remittances_for_earlier_claims"] == 2
    # The other claims' outcomes stand.
    pd.testing.assert_frame_equal(before.drop(index="C1"), after.drop(index="C1"))


def test_a_replacement_replaces_a_void_removes_and_a_repeat_is_quarantined(
    tmp_path: Path,
) -> None:
    data, folder = _first_run(tmp_path)

    claims = data.claims.set_index("claim_id")
    claims.loc["C1", ["frequency_code", "total_charge"]] = ["7", 180.0]  # corrected
    claims.loc["C2", "frequency_code"] = "8"  # void
    claims.loc["C3", "frequency_code"] = "1"  # the same CLM01 sent as a new claim
    claims["submission_date"] = claims["submission_date"] + pd.Timedelta(days=20)
    second = replace(data, claims=claims.reset_index())
    files = write_837p(second, tmp_path / "second")
    result = _append(files, folder)

    dataset = ClaimsDataset.read(folder)[0]
    kept = dataset.claims.set_index("claim_id")
    assert sorted(kept.index) == ["C1", "C3"]
    assert kept.loc["C1", "total_charge"] == 180.0 and kept.loc["C1", "frequency_code"] == "7"
    original = data.claims.set_index("claim_id")
    assert kept.loc["C3", "frequency_code"] == original.loc["C3", "frequency_code"]
    assert "C2" not in set(dataset.lines["claim_id"]) | set(dataset.diagnoses["claim_id"])
    assert len(dataset.lines[dataset.lines["claim_id"] == "C1"]) == 2  # the new version's lines
    summary = result.summary
    assert (summary["claims_replaced"], summary["claims_voided"], summary["claims_added"]) == (
        1, 1, 0,
    )  # fmt: skip
    assert {(c["claim_id"], c["action"]) for c in summary["claim_changes"]} == {
        ("C1", "replaced"),
        ("C2", "voided"),
    }
    (entry,) = (v for k, v in result.report.items() if not k.startswith("_"))
    assert (entry["claims_ingested"], entry["claims_replacing"], entry["claims_voids"]) == (
        1, 1, 1,
    )  # fmt: skip
    assert entry["claims_quarantined"] == 2  # the void applied, the repeat refused
    quarantine = pd.read_csv(folder / QUARANTINE_FILE).set_index("claim_id")["reason"]
    assert "repeats a patient control number" in quarantine["C3"]
    assert "frequency code 7" in quarantine["C3"]
    # The versions set aside say what happened to them.
    assert "was replaced by a corrected claim (CLM05-3 = 7)" in quarantine["C1"]
    voided = " | ".join(quarantine[["C2"]])
    assert "was voided by a void (8)" in voided and "is a void" in voided


def test_a_replacement_that_fails_the_contract_leaves_the_earlier_claim(tmp_path: Path) -> None:
    data, folder = _first_run(tmp_path)
    claims = data.claims[data.claims["claim_id"] == "C1"].assign(frequency_code="7")
    lines = data.lines[data.lines["claim_id"] == "C1"].assign(procedure_code="7055")
    bad = ClaimsDataset(claims=claims, lines=lines, diagnoses=data.diagnoses)
    result = _append(write_837p(bad, tmp_path / "second"), folder)

    kept = ClaimsDataset.read(folder)[0]
    assert kept.lines.loc[kept.lines["claim_id"] == "C1", "procedure_code"].tolist() == (
        data.lines.loc[data.lines["claim_id"] == "C1", "procedure_code"].tolist()
    )
    assert result.summary["claims_replaced"] == 0
    assert result.quarantine["reason"].str.contains("'7055'").any()


def test_the_command_refuses_what_it_cannot_append_to(tmp_path: Path) -> None:
    data = make_dataset()
    files = write_837p(data, tmp_path / "in")
    runner = CliRunner()

    def ingest(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["ingest", str(files[0]), "--validation", "envelope",
                                     "--workers", "1", *args])  # fmt: skip
        return result.exit_code, " ".join(result.output.split())

    code, output = ingest("--out", str(tmp_path / "a"), "--into", str(tmp_path / "b"))
    assert code == 2 and "not both" in output
    foreign = tmp_path / "simulated"
    data.write(foreign)  # a data set ingest did not write: its transaction sets are unknown
    code, output = ingest("--into", str(foreign))
    assert code == 2 and "ingest-state.json is missing" in output
    # A run stopped between the two renames that put the new folder in place.
    (tmp_path / ".gone.1234abcd.replaced").mkdir()
    code, output = ingest("--into", str(tmp_path / "gone"))
    assert code == 2 and "Rename .gone.1234abcd.replaced back to gone" in output
    code, output = ingest("--into", str(tmp_path / "new"))
    assert code == 0, output
    assert read_manifest(tmp_path / "new") is not None


def test_a_run_stopped_while_writing_leaves_the_data_set_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, folder = _first_run(tmp_path)
    before = read_manifest(folder)

    def stopped(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("features.x12.ingest.write_manifest", stopped)
    with pytest.raises(KeyboardInterrupt):
        _append(write_835(data, tmp_path / "remits"), folder)
    assert read_manifest(folder) == before
    assert ClaimsDataset.read(folder)[0].remittances.empty
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "first", "remits"]
