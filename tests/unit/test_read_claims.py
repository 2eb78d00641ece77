"""Scoring reads a data set folder's claim tables only, with the same claims and rejects as a
full read: remittances in the folder are outcomes, not claims to score."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.schema import CLAIM_TABLES, ClaimsDataset
from serving.batch import read_claims


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
