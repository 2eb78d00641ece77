"""Simulated tables and the same claims round-tripped through 837P/835 files train alike.

If the labels and the feature matrix of the ingested data equal those of the simulator's own
tables, training and scoring (deterministic given their inputs) give the same results on both.
"""

from __future__ import annotations

import pandas as pd
import pytest

from features.claim_tables import ClaimTables
from features.pipeline import ClaimFeatureTransformer
from features.x12.ingest import ingest_paths
from features.x12.writer import write_835, write_837p
from simulator import SimulationConfig, simulate
from training.dataset import labels_for, outcome_labels

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    result = simulate(SimulationConfig(n_claims=2_500, seed=5, days=240))
    # SBR01 is required in X12: the writer writes an empty payer responsibility as P (primary).
    # The comparison starts from the data set as X12 can carry it.
    claims = result.dataset.claims
    claims["payer_responsibility"] = claims["payer_responsibility"].fillna("P")
    folder = tmp_path_factory.mktemp("x12")
    write_837p(result.dataset, folder / "837", claims_per_file=400, faithful_defects=True)
    write_835(result.dataset, folder / "835", claims_per_file=400)
    ingested = ingest_paths([folder], workers=2, validation="envelope")
    return result.dataset, ingested


def test_every_simulated_claim_and_remittance_comes_back(both):
    original, ingested = both
    assert ingested.quarantine.empty, ingested.quarantine["reason"].head().tolist()
    assert set(ingested.dataset.claims["claim_id"]) == set(original.claims["claim_id"])
    assert len(ingested.dataset.remittances) == len(original.remittances)
    assert len(ingested.dataset.adjustments) == len(original.adjustments)


def test_claim_fields_survive_the_round_trip(both):
    original, ingested = both
    columns = [
        "claim_id",
        "submission_date",
        "payer_id",
        "payer_type",
        "frequency_code",
        "prior_auth_number",
        "referral_number",
        "rendering_npi",
        "referring_npi",
        "total_charge",
        "service_date_from",
        "has_other_coverage",
    ]
    a = original.claims[columns].sort_values("claim_id").reset_index(drop=True)
    b = ingested.dataset.claims[columns].sort_values("claim_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_labels_and_feature_matrix_are_identical(both):
    original, ingested = both
    labels_a = outcome_labels(original).sort_values("claim_id").reset_index(drop=True)
    labels_b = outcome_labels(ingested.dataset).sort_values("claim_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(labels_a, labels_b, check_dtype=False)

    tables_a = ClaimTables.from_dataset(original)
    tables_b = ClaimTables.from_dataset(ingested.dataset)
    known = labels_a["claim_id"]
    tables_a, tables_b = tables_a.subset(known), tables_b.subset(known)
    fitted = ClaimFeatureTransformer(min_level_count=5).fit(
        tables_a, labels_for(tables_a, labels_a)
    )
    order = tables_a.claims["claim_id"]
    claims_b = tables_b.claims.set_index("claim_id").loc[order].reset_index()
    # The patient key is a hash of the name, which X12 carries and the contract does not: the
    # writer names each patient after their key, so ingesting gives the same persons new keys.
    # Same grouping, one to one; the original keys stand in for the new ones below.
    keys_a, keys_b = tables_a.claims["patient_key"], claims_b["patient_key"]
    pairs = pd.DataFrame({"a": keys_a.to_numpy(), "b": keys_b.to_numpy()}).dropna()
    assert keys_a.isna().equals(keys_b.isna()) and len(pairs) > 0
    assert pairs.drop_duplicates()["a"].is_unique and pairs.drop_duplicates()["b"].is_unique
    claims_b["patient_key"] = keys_a.to_numpy()
    tables_b = ClaimTables(claims_b, tables_b.lines, tables_b.diagnoses)
    pd.testing.assert_frame_equal(fitted.transform(tables_a), fitted.transform(tables_b))
