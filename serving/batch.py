"""Read claims for batch scoring from a data set folder, Parquet/CSV claim lines, or 837 files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.claim_tables import ClaimTables
from features.schema import CLAIM_TABLES, ClaimsDataset

X12_SUFFIXES = {".837", ".x12", ".edi", ".txt", ".837p", ".837i"}


def read_claims(source: Path) -> tuple[ClaimTables, pd.DataFrame]:
    """Claims to score and the rows quarantined on the way in (with reasons).

    Accepts a data set folder (``claims.parquet`` etc.), a flat claim-lines file (.parquet or
    .csv, one row per service line), or 837 files / a folder of them.
    """
    if source.is_dir() and (source / "claims.parquet").exists():
        # Only the claims: remittances in the folder are outcomes, not claims to score.
        dataset, rejects = ClaimsDataset.read(source, only=CLAIM_TABLES)
        return ClaimTables.from_dataset(dataset), rejects
    if source.is_file() and source.suffix.lower() == ".parquet":
        return ClaimTables.from_flat_lines(pd.read_parquet(source))
    if source.is_file() and source.suffix.lower() == ".csv":
        return ClaimTables.from_flat_lines(pd.read_csv(source, dtype=str))
    if source.exists():
        from features.x12.ingest import read_claims_837

        dataset, quarantine = read_claims_837([source])
        return ClaimTables.from_dataset(dataset), quarantine
    raise FileNotFoundError(f"input {source} not found")
