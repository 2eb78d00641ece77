"""Scoring's input: a data set folder's claim tables only, with the same claims and rejects as a
full read (remittances in the folder are outcomes, not claims to score), and flat claim lines
(CSV or Parquet) carrying every contract column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.claim_tables import FLAT_REQUIRED_COLUMNS, ClaimTables, MissingColumnsError
from features.schema import CLAIM_TABLES, OPTIONAL_COLUMNS, ClaimsDataset
from serving.batch import read_claims
from tests.utils.factories import make_claim, make_whole_claim, tables_from


def test_scoring_reads_the_claim_tables_as_a_full_read_does(sim_dir: Path) -> None:
    full, full_rejects = ClaimsDataset.read(sim_dir)
    assert len(full.remittances) > 0  # the folder has outcomes, which scoring leaves unread
    tables, rejects = read_claims(sim_dir)
    for name in CLAIM_TABLES:
        pd.testing.assert_frame_equal(getattr(tables, name), getattr(full, name))
    claim_rejects = full_rejects[full_rejects["table"].isin(CLAIM_TABLES)]
    assert len(rejects) == len(claim_rejects)
    only_claims, _ = ClaimsDataset.read(sim_dir, only=())
    assert len(only_claims.remittances) == 0 and len(only_claims.claims) == len(full.claims)


# -- flat claim lines (one row per service line, claim fields repeated) ----------------------
def _assert_same_tables(got: ClaimTables, expected: ClaimTables) -> None:
    for name in CLAIM_TABLES:
        pd.testing.assert_frame_equal(getattr(got, name), getattr(expected, name), obj=name)


def _write(flat: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        flat.to_csv(path, index=False)
    else:
        flat.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_flat_claim_lines_carry_every_optional_column(tmp_path: Path, suffix: str) -> None:
    tables = tables_from([make_whole_claim(), make_claim(), make_whole_claim(claim_note=None)])
    flat = tables.to_flat_lines()
    assert {*OPTIONAL_COLUMNS["claims"], *OPTIONAL_COLUMNS["lines"]} <= set(flat.columns)
    again, rejects = read_claims(_write(flat, tmp_path / f"lines{suffix}"))
    assert rejects.empty
    _assert_same_tables(again, tables)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_flat_claim_lines_without_the_optional_columns_read_them_as_empty(
    tmp_path: Path, suffix: str
) -> None:
    tables = tables_from([make_claim(), make_claim(has_other_coverage=True)])
    optional = [*OPTIONAL_COLUMNS["claims"], *OPTIONAL_COLUMNS["lines"]]
    older = tables.to_flat_lines().drop(columns=optional)
    again, rejects = read_claims(_write(older, tmp_path / f"older{suffix}"))
    assert rejects.empty
    _assert_same_tables(again, tables)
    assert again.claims[list(OPTIONAL_COLUMNS["claims"])].isna().all().all()


def test_other_coverage_written_as_text_is_read_as_yes_or_no(tmp_path: Path) -> None:
    claims = [make_claim(claim_id=f"COB-{n}") for n in range(6)]
    flat = tables_from(claims).to_flat_lines().astype({"has_other_coverage": object})
    flat["has_other_coverage"] = ["False", "TRUE", "y", "0", None, "maybe"]
    flat.to_csv(tmp_path / "lines.csv", index=False)
    tables, rejects = read_claims(tmp_path / "lines.csv")
    flags = dict(zip(tables.claims["claim_id"], tables.claims["has_other_coverage"], strict=True))
    assert flags == {"COB-0": False, "COB-1": True, "COB-2": True, "COB-3": False, "COB-4": False}
    refused = rejects[rejects["table"] == "claims"]
    assert refused["claim_id"].tolist() == ["COB-5"]
    assert "has_other_coverage 'maybe' is not true or false" in refused["reason"].iloc[0]
    assert rejects[rejects["table"] == "lines"]["claim_id"].tolist() == ["COB-5"]


@pytest.mark.parametrize(
    "dropped", [["claim_id"], ["submission_date", "total_charge"], ["service_date"]]
)
def test_flat_claim_lines_without_a_required_column_are_refused_by_name(
    tmp_path: Path, dropped: list[str]
) -> None:
    # Without one, every claim would be quarantined (or, for claim_id, a KeyError): the user
    # is told which columns to add instead.
    flat = tables_from([make_claim(), make_claim()]).to_flat_lines().drop(columns=dropped)
    with pytest.raises(MissingColumnsError) as refused:
        read_claims(_write(flat, tmp_path / "lines.csv"))
    assert f"lack required column(s): {', '.join(dropped)};" in str(refused.value)
    assert set(FLAT_REQUIRED_COLUMNS) <= set(tables_from([make_claim()]).to_flat_lines().columns)


def test_readme_lists_the_required_claim_lines_columns() -> None:
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert ", ".join(FLAT_REQUIRED_COLUMNS) in readme


def test_blank_or_control_character_ids_are_quarantined(tmp_path: Path) -> None:
    # Issue 20: "   " or an ID with a NUL was accepted as a claim, payer or member ID.
    claims = [make_claim(claim_id=f"K-{n}") for n in range(4)]
    flat = tables_from(claims).to_flat_lines()
    flat.loc[flat["claim_id"] == "K-1", "patient_id"] = "   "
    flat.loc[flat["claim_id"] == "K-2", "payer_id"] = "P\x01X"
    flat.to_csv(tmp_path / "lines.csv", index=False)
    tables, rejects = read_claims(tmp_path / "lines.csv")
    assert tables.claims["claim_id"].tolist() == ["K-0", "K-3"]
    refused = rejects[rejects["table"] == "claims"].set_index("claim_id")["reason"]
    assert "member ID with a visible character" in refused["K-1"]
    assert "payer ID with a visible character" in refused["K-2"]
