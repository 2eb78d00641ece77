"""The history new claims are scored with: a practice's data set as it stands today.

A registered model brings only what it learned (category levels, boosters, calibration). The
history its features look up (each grouping's earlier denial rates and submission counts) is
built from a data set of claims and remittances, which ``denial-risk ingest --into`` keeps
current. So a remittance that arrives after training counts in the next score without a
retrain, and the model's files stay small (the history was 98% of a 60,000-claim model's
pickle).

The history state is a pure function of the data set (its smoothing and prior are fixed, not
learned), so it is built once per version of the data set and kept beside it, in
``.history/``: each ``score`` and each API start or reload then reads it in a fraction of a
second instead of rebuilding it (seconds at 60,000 claims, about a minute at a million).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from features.atomic import read_pickle, write_pickle
from features.claim_arrays import ClaimArrays
from features.claim_features import claim_feature_columns
from features.claim_tables import ClaimTables
from features.history import HistoryFeatures
from features.schema import ClaimsDataset
from training.dataset import outcome_labels

log = logging.getLogger("denial_risk.history")

CACHE_FOLDER = ".history"
"""Hidden, so ingest and the data set's readers never take it for a table."""


@dataclass(frozen=True)
class HistoryAsOf:
    """How recent a history is: what ``/v1/model`` and ``score`` report."""

    dataset: str
    last_remittance: date | None
    """The latest remittance (835) date the history holds: outcomes after it are unknown."""
    last_submission: date | None
    claims: int
    outcomes: int
    built_at: datetime

    def describe(self) -> str:
        last = f"{self.last_remittance:%Y-%m-%d}" if self.last_remittance else "none"
        return (
            f"history of {self.claims:,} claims and {self.outcomes:,} outcomes, remittances "
            f"through {last}"
        )


@dataclass(frozen=True)
class StoredHistory:
    state: HistoryFeatures
    as_of: HistoryAsOf


def load_history(dataset_dir: Path, smoothing: float, prior_rate: float) -> StoredHistory:
    """The history of the data set in ``dataset_dir``, from its cache when the data set has not
    changed since it was built; built (and cached) otherwise.

    Raises ``FileNotFoundError``/``ValueError`` (worded for the user) when the folder is not a
    readable data set.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise FileNotFoundError(
            f"history data set {dataset_dir} not found: point --history (or "
            "DENIAL_RISK_HISTORY_DATASET) at the folder `denial-risk ingest --into` keeps"
        )
    cache = dataset_dir / CACHE_FOLDER / f"{_version(dataset_dir, smoothing, prior_rate)}.pkl.zst"
    if cache.exists():
        try:
            return read_pickle(cache)  # type: ignore[no-any-return]
        except Exception as error:  # a damaged cache: any type; it is rebuilt below
            log.warning("history cache unreadable (%s); rebuilding it", type(error).__name__)
    stored = build_history(dataset_dir, smoothing, prior_rate)
    _write(stored, cache)
    return stored


def build_history(dataset_dir: Path, smoothing: float, prior_rate: float) -> StoredHistory:
    """Index every claim of the data set and every outcome its remittances say."""
    dataset, _ = ClaimsDataset.read(dataset_dir)
    tables = ClaimTables.from_dataset(dataset)
    outcomes = outcome_labels(dataset)
    arrays = ClaimArrays.from_tables(tables)
    state = HistoryFeatures(smoothing, prior_rate).fit(
        arrays, claim_feature_columns(arrays), outcomes
    )
    as_of = HistoryAsOf(
        dataset=str(dataset_dir),
        last_remittance=_day(outcomes["remit_date"].max()) if len(outcomes) else None,
        last_submission=(_day(tables.claims["submission_date"].max()) if len(tables) else None),
        claims=len(tables),
        outcomes=len(outcomes),
        built_at=datetime.now(UTC),
    )
    return StoredHistory(state, as_of)


def _version(dataset_dir: Path, smoothing: float, prior_rate: float) -> str:
    """Changes whenever a table file of the data set does (``ingest`` rewrites what it
    changes, and replaces a folder whole), or the history's fixed parameters do."""
    digest = hashlib.sha256(f"{smoothing!r} {prior_rate!r}".encode())
    for path in sorted(dataset_dir.glob("*.parquet")):
        stat = path.stat()
        digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _write(stored: StoredHistory, path: Path) -> None:
    """The cache, complete or absent; older versions' caches go. A data set folder that
    cannot be written (read-only) only costs the next load a rebuild."""
    try:
        path.parent.mkdir(exist_ok=True)
        write_pickle(stored, path)
        for old in path.parent.glob("*.pkl.zst"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as error:
        log.warning("history cache not written (%s); it is rebuilt at each load", error.strerror)


def _day(value: object) -> date | None:
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    return None if pd.isna(stamp) else stamp.date()
