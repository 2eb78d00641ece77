"""Each mechanism fires where its defect is and not elsewhere; the truth is the product's label.

One world built to exercise every mechanism often (the default world with more careless habits
and payers that want NDCs, CLIA numbers and attachments), simulated once for the module.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from features.codes import DENIAL_CATEGORIES, code_tables
from features.schema import OPTIONAL_COLUMNS, ClaimsDataset, validate_table
from features.x12.outcomes import first_adjudication_outcomes
from simulator import SimulationConfig, SimulationResult, default_world_spec, simulate
from simulator.catalog import NDC_OF_CODE, PROCEDURES
from simulator.world import FIRST_NAMES, LAST_NAMES

FAMILY = {p.code: p.family for p in PROCEDURES}
MBI = re.compile(r"^[1-9][ACDEFGHJKMNPQRTUVWXY][0-9ACDEFGHJKMNPQRTUVWXY][0-9]"
                 r"[ACDEFGHJKMNPQRTUVWXY][0-9ACDEFGHJKMNPQRTUVWXY][0-9]"
                 r"[ACDEFGHJKMNPQRTUVWXY]{2}[0-9]{2}$")  # fmt: skip
ATTACHMENT_CODES = frozenset({"27447", "29881", "95810", "E0601"})


def _busy_world():  # noqa: ANN202
    base = default_world_spec()
    payers = tuple(
        dataclasses.replace(
            p,
            requires_ndc=True,
            requires_clia=p.payer_type != "other",
            attachment_codes=ATTACHMENT_CODES,
            denies_pending_liability=p.payer_type == "commercial",
        )
        for p in base.payers
    )
    habits = dataclasses.replace(
        base.habits,
        member_id_typo=0.02,
        ndc_missing=0.3,
        clia_missing=0.3,
        accident_date_missing=0.2,
        onset_error=0.1,
        primary_paid_missing=0.3,
        attachment_sent=0.5,
    )
    return dataclasses.replace(base, payers=payers, habits=habits, accident_rate=0.25)


@pytest.fixture(scope="module")
def busy() -> SimulationResult:
    return simulate(SimulationConfig(n_claims=20_000, seed=8, world=_busy_world()))


@pytest.fixture(scope="module")
def frame(busy: SimulationResult) -> pd.DataFrame:
    """First submissions that reached the payer, with their truth and the product's outcome."""
    outcomes = first_adjudication_outcomes(busy.dataset)
    claims = busy.dataset.claims.merge(busy.truth, on="claim_id", suffixes=("", "_truth"))
    claims = claims.merge(outcomes, on="claim_id", how="left", suffixes=("", "_835"))
    return claims[(claims["frequency_code"] == "1") & ~claims["rejected"]].reset_index(drop=True)


def _denial_rows(busy: SimulationResult, carcs: set[str], rarc: str | None = None) -> pd.DataFrame:
    """Adjustments with these CARCs (and this RARC) on first submissions (a corrected claim
    denied again repeats its original's CARC on every line)."""
    adjustments = busy.dataset.adjustments
    first = busy.truth.loc[busy.truth["frequency_code"] == "1", "claim_id"]
    rows = adjustments[adjustments["carc"].isin(carcs) & adjustments["claim_id"].isin(first)]
    if rarc is not None:
        remarks = busy.dataset.remarks
        remarks = remarks[remarks["rarc"] == rarc]
        keys = set(zip(remarks["remit_id"], remarks["line_number"].fillna(-1), strict=True))
        rows = rows[
            [k in keys for k in zip(rows["remit_id"], rows["line_number"].fillna(-1), strict=True)]
        ]
    return rows


def _line_of(busy: SimulationResult, rows: pd.DataFrame) -> pd.DataFrame:
    lines = busy.dataset.lines.set_index(["claim_id", "line_number"])
    keys = list(zip(rows["claim_id"], rows["line_number"].astype(int), strict=True))
    return lines.loc[keys].reset_index()


def test_every_table_validates_and_the_optional_columns_are_filled(busy: SimulationResult) -> None:
    for name in ClaimsDataset.table_names():
        table = getattr(busy.dataset, name)
        valid, quarantined = validate_table(name, table)
        assert len(quarantined) == 0, (name, quarantined["reason"].head().tolist())
        for column in OPTIONAL_COLUMNS.get(name, ()):
            if column in {"modifier_3", "modifier_4", "line_referral_number", "line_note",
                          "line_attachment_types",
                          "line_attachment_transmission", "line_rendering_npi",
                          "line_referring_npi", "line_place_of_service",
                          "original_procedure_code"}:  # fmt: skip
                continue  # not used by this practice
            assert table[column].notna().any(), (name, column)


def test_truth_is_the_label_the_product_reads_from_the_835(frame: pd.DataFrame) -> None:
    remitted = frame[frame["remit_id"].notna()]
    assert (remitted["denied_835"].astype(bool) == remitted["denied"].astype(bool)).all()
    denied = remitted[remitted["denied"] == 1]
    assert (denied["denial_category"] == denied["true_cause"]).all()
    columns = [f"p_{c}" for c in DENIAL_CATEGORIES]
    np.testing.assert_allclose(frame[columns].sum(axis=1), frame["true_denial_probability"])


def test_truth_is_calibrated_per_decile_and_per_category(frame: pd.DataFrame) -> None:
    remitted = frame[frame["remit_id"].notna()].copy()
    p = remitted["true_denial_probability"]
    remitted["decile"] = pd.qcut(p.rank(method="first"), 10, labels=False)
    for _, group in remitted.groupby("decile"):
        q = group["true_denial_probability"]
        se = np.sqrt((q * (1 - q)).sum()) / len(q)
        assert abs(group["denied_835"].mean() - q.mean()) < 4 * se + 1e-9
    for category in DENIAL_CATEGORIES:
        q = remitted[f"p_{category}"]
        se = np.sqrt((q * (1 - q)).sum()) / len(q) + 1e-9
        realised = (remitted["denied_835"] & (remitted["denial_category"] == category)).mean()
        assert abs(realised - q.mean()) < 4.5 * se, category


def test_line_level_denials_pay_the_rest_of_the_claim(busy: SimulationResult) -> None:
    tables = code_tables()
    adjustments = busy.dataset.adjustments
    denial = adjustments[
        [
            tables.is_denial_carc(c, g)
            for c, g in zip(adjustments["carc"], adjustments["group_code"], strict=True)
        ]  # noqa: E501
    ]
    line_denials = denial[denial["line_number"].notna()]
    remits = busy.dataset.remittances.set_index("remit_id")
    partial = remits.loc[line_denials["remit_id"].unique()]
    assert (partial["paid_amount"] > 0).sum() > 50
    # Claim-level denials are whole: nothing paid, no service line reported.
    claim_level = denial[denial["line_number"].isna()]
    assert (remits.loc[claim_level["remit_id"], "paid_amount"] == 0).all()
    assert not set(claim_level["remit_id"]) & set(busy.dataset.remit_lines["remit_id"])


def test_member_ids_follow_the_payer_and_the_key_follows_the_patient(
    busy: SimulationResult, frame: pd.DataFrame
) -> None:
    claims = busy.dataset.claims
    assert claims["patient_key"].notna().all()
    medicare = claims[claims["payer_type"] == "medicare"]["patient_id"]
    assert medicare.map(lambda x: bool(MBI.match(x))).mean() > 0.97
    # A patient who changed payer has two member IDs and one key.
    per_key = frame.groupby("patient_key").agg(
        payers=("payer_id", "nunique"), ids=("patient_id", "nunique")
    )
    moved = per_key[per_key["payers"] > 1]
    assert len(moved) > 50 and (moved["ids"] >= 2).mean() > 0.9  # a few keep a stale ID
    # The name is hashed into the key and never written.
    for table in ("claims", "remittances"):
        text = getattr(busy.dataset, table).head(3_000).to_csv()
        assert not any(name in text for name in (*LAST_NAMES, *FIRST_NAMES))


def test_a_wrong_member_id_is_an_eligibility_denial(frame: pd.DataFrame) -> None:
    usual = frame.groupby(["patient_key", "payer_id"])["patient_id"].agg(
        lambda ids: ids.value_counts().index[0]
    )
    expected = usual.loc[list(zip(frame["patient_key"], frame["payer_id"], strict=True))]
    odd = frame["patient_id"].to_numpy() != expected.to_numpy()
    assert odd.sum() > 100
    # Within the payer's first check (duplicates and late filings go first).
    p = frame["p_eligibility"] / (1 - frame["p_duplicate"] - frame["p_timely_filing"])
    assert (p[odd] > 0.8).mean() > 0.95
    assert (p[~odd] < 0.5).mean() > 0.99


def test_the_835_names_the_right_member_id_and_the_end_of_coverage(
    busy: SimulationResult, frame: pd.DataFrame
) -> None:
    remits = busy.dataset.remittances
    corrected = remits[remits["corrected_member_id"].notna()]
    assert len(corrected) > 20
    assert (corrected["corrected_member_id"] != corrected["patient_member_id"]).all()
    adjustments = busy.dataset.adjustments
    carcs = adjustments[adjustments["remit_id"].isin(corrected["remit_id"])]["carc"]
    assert set(carcs) <= {"31", "140"}
    expiring = remits[remits["coverage_expiration_date"].notna()]
    assert len(expiring) > 20
    # Claims of that member with that payer after the date are denied for coverage (CARC 27).
    keyed = frame.merge(
        expiring[["claim_id", "coverage_expiration_date"]].rename(
            columns={"coverage_expiration_date": "ends"}
        ),
        on="claim_id",
    )
    ends = keyed.groupby(["patient_key", "payer_id"])["ends"].min()
    after = frame.join(ends, on=["patient_key", "payer_id"], how="inner")
    after = after[after["service_date_from"] >= after["ends"]]
    assert len(after) > 5 and (after["p_eligibility"] > 0.85).mean() > 0.9


def test_coordination_of_benefits_goes_the_right_way(
    busy: SimulationResult, frame: pd.DataFrame
) -> None:
    secondary = frame[frame["payer_responsibility"] == "S"]
    assert len(secondary) > 100
    assert secondary["has_other_coverage"].all()
    assert (secondary["other_payer_id"] != secondary["payer_id"]).all()
    assert (secondary["other_payer_responsibility"] == "P").all()
    with_amount = secondary["other_payer_paid_amount"].notna()
    assert (secondary.loc[with_amount, "other_payer_adjudication_date"].notna()).all()
    # Sent as secondary without the primary's payment: CARC 16 + MA04.
    assert (secondary.loc[~with_amount, "p_missing_information"] > 0.8).mean() > 0.9
    assert (secondary.loc[with_amount, "p_missing_information"] < 0.5).mean() > 0.95
    ma04 = _denial_rows(busy, {"16"}, "MA04")
    assert set(ma04["claim_id"]) <= set(secondary.loc[~with_amount, "claim_id"]) | set(
        busy.truth.loc[busy.truth["frequency_code"] == "7", "claim_id"]
    )
    # Other payer primary (CARC 22) only where the claim does not name the other coverage.
    cob = _denial_rows(busy, {"22"})
    claims = busy.dataset.claims.set_index("claim_id")
    first = claims.loc[cob["claim_id"]]
    assert len(first) > 10 and not first["has_other_coverage"].any()


def test_accidents_wait_for_the_liable_carrier(busy: SimulationResult) -> None:
    claims = busy.dataset.claims.set_index("claim_id")
    injured = claims[claims["related_causes"].notna()]
    assert len(injured) > 200
    assert injured["accident_date"].notna().mean() > 0.7
    assert (injured.loc[injured["related_causes"] == "AA", "auto_accident_state"].notna()).all()
    liable = _denial_rows(busy, {"19", "20", "21"})
    assert len(liable) > 10
    hit = claims.loc[liable["claim_id"]]
    assert hit["related_causes"].notna().all() and (hit["payer_type"] == "commercial").all()
    expected = hit["related_causes"].map({"EM": "19", "OA": "20", "AA": "21"}).to_numpy()
    first = (hit["frequency_code"] == "1").to_numpy()
    assert (liable["carc"].to_numpy()[first] == expected[first]).all()


def test_missing_ndc_clia_and_attachments_deny_their_lines_only(busy: SimulationResult) -> None:
    ndc = _line_of(busy, _denial_rows(busy, {"16"}, "M119"))
    assert len(ndc) > 20
    assert ndc["procedure_code"].isin(list(NDC_OF_CODE)).all() and ndc["ndc_code"].isna().all()
    clia = _denial_rows(busy, {"16"}, "MA120")
    clia_lines = _line_of(busy, clia)
    assert len(clia) > 20 and (clia_lines["procedure_code"].map(FAMILY) == "lab").all()
    claims = busy.dataset.claims.set_index("claim_id")
    assert claims.loc[clia["claim_id"], "clia_number"].isna().all()
    assert clia_lines["line_clia_number"].isna().all()
    records = _line_of(busy, _denial_rows(busy, {"252"}, "N706"))
    listed = records["procedure_code"].isin(ATTACHMENT_CODES)
    assert listed.sum() > 5
    attached = claims.loc[records.loc[listed, "claim_id"], "attachment_transmission"]
    assert attached.isna().all() | (attached == "AA").all()


def test_visible_defects_make_a_claim_unprocessable(frame: pd.DataFrame) -> None:
    onset_after = frame["onset_date"] > frame["service_date_from"]
    no_accident_date = frame["related_causes"].notna() & frame["accident_date"].isna()
    defect = (onset_after | no_accident_date).to_numpy()
    assert defect.sum() > 50
    unprocessable = frame["true_reason"] == "unprocessable_claim"
    share_with_defect = unprocessable[defect].mean()
    share_without = unprocessable[~defect].mean()
    assert share_with_defect > 10 * share_without


def test_plans_cover_preventive_care_but_medicare_not_routine_physicals(
    busy: SimulationResult,
) -> None:
    lines = busy.dataset.lines
    preventive = lines[lines["procedure_code"].map(FAMILY).isin(["preventive", "screening"])]
    denied = _denial_rows(busy, {"49", "96", "204"})
    hit = denied.merge(preventive, on=["claim_id", "line_number"])
    payer_type = busy.dataset.claims.set_index("claim_id")["payer_type"]
    assert len(hit) > 5 and (payer_type.loc[hit["claim_id"]] == "medicare").all()
    assert set(hit["carc"]) == {"49"}


def test_clearinghouse_rejects_what_it_checks_and_the_payer_never_sees_it() -> None:
    spec = dataclasses.replace(default_world_spec(), clearinghouse_edits=True)
    result = simulate(SimulationConfig(n_claims=8_000, seed=4, world=spec))
    rejections = result.dataset.rejections
    checked = rejections[rejections["reason"].str.contains("rendering provider NPI|pointer")]
    assert len(checked) > 10
    assert not set(rejections["claim_id"]) & set(result.dataset.remittances["claim_id"])
    truth = result.truth.set_index("claim_id")
    assert (truth.loc[rejections["claim_id"], "true_denial_probability"] == 0).all()
    carcs = result.dataset.adjustments["carc"]
    remarks = result.dataset.remarks["rarc"]
    first = result.truth.loc[result.truth["frequency_code"] == "1", "claim_id"]
    adjusted = result.dataset.adjustments[result.dataset.adjustments["claim_id"].isin(first)]
    assert "207" not in set(adjusted["carc"])
    assert "M76" not in set(
        result.dataset.remarks.loc[result.dataset.remarks["claim_id"].isin(first), "rarc"]
    )
    assert len(carcs) and len(remarks)
