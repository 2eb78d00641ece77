"""Training sets: claims joined to their first-adjudication outcome, split by time.

Label = denied on first adjudication (never a front-end rejection, never a patient-share or
contractual adjustment); reason = root-cause category of the primary denial CARC; carc = that
CARC. The split is by submission date: train on the earlier period, report on the later one.
A training claim counts only if its outcome had arrived by the training cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from features.claim_tables import ClaimTables
from features.schema import ClaimsDataset
from features.x12.outcomes import first_adjudication_outcomes


class TrainingDataError(ValueError):
    """The data cannot train a model (too few valid claims, no denials...)."""


@dataclass(frozen=True)
class TimeSplit:
    train_until: pd.Timestamp
    test_from: pd.Timestamp

    def describe(self) -> str:
        return (
            f"train: submitted before {self.train_until:%Y-%m-%d}; "
            f"test: submitted from {self.test_from:%Y-%m-%d}"
        )


def default_split(
    claims: pd.DataFrame,
    train_until: pd.Timestamp | None = None,
    test_from: pd.Timestamp | None = None,
    test_fraction: float = 0.2,
) -> TimeSplit:
    """Defaults: the last ``test_fraction`` of claims by submission date form the test period."""
    dates = pd.to_datetime(claims["submission_date"])
    if test_from is None:
        test_from = (
            pd.Timestamp(train_until)
            if train_until is not None
            else pd.Timestamp(dates.quantile(1.0 - test_fraction)).normalize()
        )
    if train_until is None:
        train_until = pd.Timestamp(test_from)
    split = TimeSplit(pd.Timestamp(train_until), pd.Timestamp(test_from))
    if split.test_from < split.train_until:
        raise TrainingDataError(
            f"--test-from {split.test_from:%Y-%m-%d} is before --train-until "
            f"{split.train_until:%Y-%m-%d}: the test period must come after training"
        )
    return split


@dataclass
class TrainingData:
    split: TimeSplit
    train_tables: ClaimTables
    train_labels: pd.DataFrame
    test_tables: ClaimTables
    test_labels: pd.DataFrame
    all_tables: ClaimTables
    all_outcomes: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)

    def release_training_tables(self) -> None:
        """Let the training period's tables go (a copy of up to ``max_training_claims`` claims'
        rows) once nothing reads them again; ``train_labels`` stay."""
        self.train_tables = self.train_tables.subset([])

    def history_before(self, day: pd.Timestamp) -> tuple[ClaimTables, pd.DataFrame]:
        """:func:`history_before` of the whole data set."""
        return history_before(self.all_tables, self.all_outcomes, day)


def history_before(
    tables: ClaimTables, outcomes: pd.DataFrame, day: pd.Timestamp
) -> tuple[ClaimTables, pd.DataFrame]:
    """What a practice knew on ``day``: every claim sent before it (rejected and unanswered
    ones included) and the outcomes whose remittance had arrived by then (dated before it)."""
    claims = tables.claims
    sent = claims.loc[claims["submission_date"] < day, "claim_id"]
    known = outcomes[pd.to_datetime(outcomes["remit_date"]) < day]
    return tables.subset(sent), known.reset_index(drop=True)


def training_claims(
    claims: pd.DataFrame, labels: pd.DataFrame, until: pd.Timestamp, max_claims: int | None
) -> tuple[pd.Series, int]:
    """The training rows a fit at ``until`` may learn from: claims sent before it whose outcome
    had arrived before it, the latest ``max_claims`` of them at most; with how many more were
    left to history only. ``labels`` is :func:`outcome_labels`."""
    dated = claims[["claim_id", "submission_date"]].merge(
        labels[["claim_id", "remit_date"]], on="claim_id", how="left"
    )
    submitted = dated["submission_date"]
    mask = dated["remit_date"].notna() & (submitted < until) & (dated["remit_date"] < until)
    history_only = 0
    if max_claims is not None and int(mask.sum()) > max_claims:
        latest = submitted[mask].sort_values(kind="stable").index[-max_claims:]
        history_only = int(mask.sum()) - max_claims
        mask = pd.Series(False, index=dated.index)
        mask[latest] = True
    return dated.loc[mask, "claim_id"], history_only


def outcome_labels(dataset: ClaimsDataset) -> pd.DataFrame:
    """Per-claim labels from the remittances: claim_id, remit_date, denied, category, carc."""
    outcomes = first_adjudication_outcomes(dataset)
    labels = outcomes.rename(columns={"primary_carc": "carc", "denial_category": "category"})[
        ["claim_id", "remit_date", "denied", "category", "carc"]
    ].copy()
    labels["denied"] = labels["denied"].astype(bool)
    labels["category"] = labels["category"].where(labels["denied"], "").fillna("other")
    labels["carc"] = labels["carc"].where(labels["denied"], "").fillna("other").astype(str)
    # What the same 835 said beyond the outcome (history signals, never labels).
    said = dataset.remittances.set_index("remit_id")
    for column in ("coverage_expiration_date", "corrected_member_id"):
        if column in said.columns:
            labels[column] = outcomes["remit_id"].map(said[column]).to_numpy()
    return labels


def labels_for(tables: ClaimTables, labels: pd.DataFrame) -> pd.DataFrame:
    """Labels aligned row-for-row with ``tables.claims`` (with submission dates)."""
    aligned = tables.claims[["claim_id", "submission_date", "payer_type"]].merge(
        labels, on="claim_id", how="left", validate="one_to_one"
    )
    return aligned


def make_training_data(
    dataset: ClaimsDataset,
    split: TimeSplit,
    min_training_claims: int = 500,
    max_training_claims: int | None = None,
) -> TrainingData:
    """Split claims with a known outcome into training and test periods.

    ``max_training_claims`` keeps only the latest claims of the training period as the
    booster's rows; the older ones still count in the history every row's rates are read from
    (:meth:`TrainingData.history_before` is all claims sent before a day, whatever the cap).
    """
    labels = outcome_labels(dataset)
    tables = ClaimTables.from_dataset(dataset)
    rejected_ids = set(dataset.rejections["claim_id"]) - set(labels["claim_id"])
    claims = tables.claims.merge(labels[["claim_id", "remit_date"]], on="claim_id", how="left")
    known = claims["remit_date"].notna()
    train_ids, history_only = training_claims(
        tables.claims, labels, split.train_until, max_training_claims
    )
    test_mask = known & (claims["submission_date"] >= split.test_from)
    train_tables = tables.subset(train_ids)
    test_tables = tables.subset(claims.loc[test_mask, "claim_id"])
    train_labels = labels_for(train_tables, labels)
    test_labels = labels_for(test_tables, labels)
    counts = {
        "claims": len(claims),
        "front_end_rejections": len(rejected_ids),
        "no_outcome_yet": int((~known).sum()) - len(rejected_ids & set(claims["claim_id"])),
        "train_claims": len(train_tables),
        "train_claims_history_only": history_only,
        "train_denials": int(train_labels["denied"].sum()),
        "test_claims": len(test_tables),
        "test_denials": int(test_labels["denied"].sum()),
    }
    if counts["train_claims"] < min_training_claims:
        raise TrainingDataError(
            f"only {counts['train_claims']} claims with a known outcome were submitted before "
            f"{split.train_until:%Y-%m-%d}; at least {min_training_claims} are needed to train "
            "(move --train-until later or add data)"
        )
    if counts["train_denials"] == 0:
        raise TrainingDataError(
            "no denied claims in the training period: a denial model cannot be trained "
            "(check that the 835 remittances were ingested with their CAS adjustments)"
        )
    if counts["test_claims"] == 0:
        raise TrainingDataError(
            f"no claims with a known outcome submitted from {split.test_from:%Y-%m-%d}: "
            "nothing to evaluate on (move --test-from earlier)"
        )
    return TrainingData(
        split=split,
        train_tables=train_tables,
        train_labels=train_labels,
        test_tables=test_tables,
        test_labels=test_labels,
        all_tables=tables,
        all_outcomes=labels,
        counts=counts,
    )
