"""``denial-risk score`` as a user runs it, on input it must refuse."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from denial_risk.cli import app
from features.claim_tables import ClaimTables
from features.schema import ClaimsDataset

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("dropped", [["claim_id"], ["payer_type", "units"]])
def test_claim_lines_without_required_columns_exit_non_zero_and_write_nothing(
    trained, tmp_path, dropped
):
    dataset, _ = ClaimsDataset.read(trained.sim_dir)
    tables = ClaimTables.from_dataset(dataset)
    some = tables.subset(tables.claims["claim_id"].iloc[:20])
    flat = some.to_flat_lines().drop(columns=dropped)
    source = tmp_path / "lines.csv"
    flat.to_csv(source, index=False)
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        app,
        ["score", str(source), "--out", str(out), "--no-explain",
         "--tracking-uri", trained.tracking_uri],
    )  # fmt: skip
    assert result.exit_code != 0
    message = " ".join(result.output.split())
    assert f"lack required column(s): {', '.join(dropped)};" in message
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == [source]  # no scores, no rejects file
