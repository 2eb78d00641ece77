"""``denial-risk score`` as a user runs it, on input it must refuse or partly quarantine."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

from denial_risk.cli import app
from features.claim_tables import ClaimTables
from features.schema import ClaimsDataset

pytestmark = pytest.mark.integration


def _some_claim_lines(trained, n: int = 20) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    dataset, _ = ClaimsDataset.read(trained.sim_dir)
    tables = ClaimTables.from_dataset(dataset)
    return tables.subset(tables.claims["claim_id"].iloc[:n]).to_flat_lines()


def _score(trained, flat: pd.DataFrame, folder: Path) -> Result:  # type: ignore[no-untyped-def]
    source = folder / "lines.csv"
    flat.to_csv(source, index=False)
    return CliRunner().invoke(
        app,
        ["score", str(source), "--out", str(folder / "scores.csv"), "--no-explain",
         "--tracking-uri", trained.tracking_uri],
    )  # fmt: skip


@pytest.mark.parametrize("dropped", [["claim_id"], ["payer_type", "units"]])
def test_claim_lines_without_required_columns_exit_non_zero_and_write_nothing(
    trained, tmp_path, dropped
):
    result = _score(trained, _some_claim_lines(trained).drop(columns=dropped), tmp_path)
    assert result.exit_code != 0
    message = " ".join(result.output.split())
    assert f"lack required column(s): {', '.join(dropped)};" in message
    assert "Traceback" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["lines.csv"]  # no scores, no rejects


def test_a_date_out_of_range_quarantines_its_claim_not_the_file(trained, tmp_path):
    # Issue 20: one birth date of 0001-01-01 failed the whole file with a validator dump.
    flat = _some_claim_lines(trained).astype({"patient_birth_date": object})
    ids = flat["claim_id"].drop_duplicates().tolist()
    flat.loc[flat["claim_id"] == ids[3], "patient_birth_date"] = "0001-01-01"
    result = _score(trained, flat, tmp_path)
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(tmp_path / "scores.csv", dtype={"claim_id": str})
    assert sorted(scores["claim_id"]) == sorted(ids[:3] + ids[4:])
    rejects = pd.read_csv(tmp_path / "scores-rejects.csv", dtype={"claim_id": str})
    claim_rows = rejects[rejects["table"] == "claims"]
    assert claim_rows["claim_id"].tolist() == [ids[3]]
    reason = claim_rows["reason"].iloc[0]
    assert "patient_birth_date is outside the dates a claim can hold" in reason
