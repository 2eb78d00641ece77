"""The session's model as it was on a day of its later period."""

from __future__ import annotations

from typing import Any

from features.claim_tables import ClaimTables
from features.schema import ClaimsDataset


def service_as_of(trained: Any, quantile: float) -> tuple[Any, ClaimTables]:
    """The session's registered model with its history as known on the day ``quantile`` of the
    way through the world's submission dates, and all of the world's claims.

    The registered model's history runs to the last remittance, so every claim of the world is
    in it; tests that score the latest claims as new ones (changed, or counted across chunks of
    their own batch) need a history that stops before them.
    """
    from serving.loading import load_service
    from training.dataset import outcome_labels
    from training.model import with_history

    service = load_service(trained.model_uri, trained.tracking_uri)
    dataset, _ = ClaimsDataset.read(trained.sim_dir)
    tables = ClaimTables.from_dataset(dataset)
    day = tables.claims["submission_date"].quantile(quantile).normalize()
    outcomes = outcome_labels(dataset)
    service.pipeline = with_history(
        service.pipeline,
        tables.subset(tables.claims.loc[tables.claims["submission_date"] < day, "claim_id"]),
        outcomes[outcomes["remit_date"] < day],
    )
    return service, tables
