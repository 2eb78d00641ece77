"""Tests of the claims simulator: contract, calibration, exact causal truth, drift, atomic writes.

One 30k-claim simulation is shared by the module; determinism and writing use small ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.codes import DENIAL_CATEGORIES, code_tables
from features.schema import ClaimsDataset, validate_table
from features.x12.outcomes import first_adjudication_outcomes
from simulator import (
    SimulationConfig,
    SimulationResult,
    format_summary,
    simulate,
    targets,
    write_simulation,
)
from simulator.adjudication import ADJUDICATION_ORDER
from simulator.catalog import NECESSITY_RULES
from simulator.spec import default_world_spec
from simulator.world import is_valid_npi, rule_tables

N_CLAIMS = 30_000
WORLD = default_world_spec()
PAYER_BY_ID = {p.payer_id: p for p in WORLD.payers}
AUTH_DRIFT = next(e for e in WORLD.drift if e.kind == "auth_add")
LENIENT_DRIFT = next(e for e in WORLD.drift if e.kind == "lenient_withdraw")


@pytest.fixture(scope="module")
def result() -> SimulationResult:
    return simulate(SimulationConfig(n_claims=N_CLAIMS, seed=2024))


@pytest.fixture(scope="module")
def small() -> SimulationResult:
    return simulate(SimulationConfig(n_claims=2_000, seed=5))


@pytest.fixture(scope="module")
def claims(result: SimulationResult) -> pd.DataFrame:
    """Claims joined with their ground truth."""
    return result.dataset.claims.merge(
        result.truth, on="claim_id", validate="one_to_one", suffixes=("", "_truth")
    )


@pytest.fixture(scope="module")
def adjudicated(claims: pd.DataFrame) -> pd.DataFrame:
    """First submissions that reached the payer (the population the denial rate is about)."""
    return claims[(claims["frequency_code"] == "1") & ~claims["rejected"]]


def test_every_table_is_valid_under_the_contract(result: SimulationResult) -> None:
    for name in ClaimsDataset.table_names():
        table = getattr(result.dataset, name)
        valid, quarantined = validate_table(name, table)
        assert len(quarantined) == 0, f"{name}: {quarantined['reason'].head().tolist()}"
        assert len(valid) == len(table)
        assert len(table) > 0, f"{name} is empty"


def test_adjudication_order_holds_every_denial_category_once() -> None:
    assert sorted(ADJUDICATION_ORDER) == sorted(DENIAL_CATEGORIES)


def test_claims_look_like_professional_claims(result: SimulationResult) -> None:
    claims, lines = result.dataset.claims, result.dataset.lines
    assert claims["claim_id"].is_unique
    assert claims["claim_id"].str.len().max() <= 20  # usable as CLM01
    assert 1.5 <= len(lines) / len(claims) <= 2.5
    assert set(claims["claim_id"]) == set(lines["claim_id"])
    em = lines[lines["procedure_code"].isin(["99211", "99212", "99213", "99214", "99215"])]
    level_mix = em["procedure_code"].value_counts(normalize=True)
    assert level_mix["99214"] > level_mix["99213"] > 0.35
    assert (claims["place_of_service"] == "11").mean() > 0.6
    mix = claims["payer_type"].value_counts(normalize=True)
    for payer_type, share in targets.PAYER_MIX.items():
        assert mix[payer_type] == pytest.approx(share, abs=0.04), payer_type


def test_same_seed_gives_identical_tables(small: SimulationResult) -> None:
    again = simulate(SimulationConfig(n_claims=2_000, seed=5))
    for name in ClaimsDataset.table_names():
        pd.testing.assert_frame_equal(getattr(small.dataset, name), getattr(again.dataset, name))
    pd.testing.assert_frame_equal(small.truth, again.truth)
    other = simulate(SimulationConfig(n_claims=2_000, seed=6))
    assert not small.truth["denied"].equals(other.truth["denied"])


def test_progress_is_reported_up_to_done() -> None:
    calls: list[tuple[str, float]] = []
    simulate(SimulationConfig(n_claims=500, seed=1), progress=lambda s, f: calls.append((s, f)))
    fractions = [f for _, f in calls]
    assert len(calls) >= 4
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0


def test_denial_rate_is_calibrated(adjudicated: pd.DataFrame, result: SimulationResult) -> None:
    rate = adjudicated["denied"].mean()
    low, high = targets.DENIAL_RATE_RANGE
    assert low <= rate <= high
    assert result.summary["denial_rate"] == pytest.approx(rate)


def test_cause_mix_matches_published_shares(adjudicated: pd.DataFrame) -> None:
    mix = adjudicated.loc[adjudicated["denied"] == 1, "true_cause"].value_counts(normalize=True)
    for category, target in targets.CAUSE_MIX.items():
        tolerance = 0.035 if target >= 0.05 else 0.015
        assert mix.get(category, 0.0) == pytest.approx(target, abs=tolerance), category


def test_payer_type_denial_rates_keep_published_order(adjudicated: pd.DataFrame) -> None:
    expected = adjudicated.groupby("payer_type")["true_denial_probability"].mean()
    order = ["medicaid", "medicare_advantage", "commercial", "medicare"]
    assert list(expected[order].sort_values(ascending=False).index) == order
    realised = adjudicated.groupby("payer_type")["denied"].mean()
    assert realised["medicaid"] > realised["commercial"] > realised["medicare"]


def test_cause_probabilities_sum_to_denial_probability(claims: pd.DataFrame) -> None:
    columns = [f"p_{c}" for c in DENIAL_CATEGORIES]
    total = claims[columns].sum(axis=1)
    np.testing.assert_allclose(total, claims["true_denial_probability"], atol=1e-12)
    assert claims[columns].min().min() >= 0.0
    assert claims["true_denial_probability"].max() < 1.0


def test_mean_true_probability_matches_realised_rate(adjudicated: pd.DataFrame) -> None:
    p = adjudicated["true_denial_probability"]
    standard_error = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(adjudicated["denied"].mean() - p.mean()) < 4 * standard_error
    # Per cause as well: realised share of claims denied for k vs. its exact probability.
    for category in DENIAL_CATEGORIES:
        q = adjudicated[f"p_{category}"]
        se = np.sqrt((q * (1 - q)).sum()) / len(q) + 1e-9
        realised = (adjudicated["true_cause"] == category).mean()
        assert abs(realised - q.mean()) < 4.5 * se, category


def test_denied_claims_carry_a_denial_carc_of_their_cause(
    result: SimulationResult, claims: pd.DataFrame
) -> None:
    tables = code_tables()
    adjustments = result.dataset.adjustments
    is_denial = [
        tables.is_denial_carc(c, g)
        for c, g in zip(adjustments["carc"], adjustments["group_code"], strict=True)
    ]
    denials = adjustments[is_denial]
    # The product's label and primary CARC, read from the 835 tables, are the truth's.
    outcomes = first_adjudication_outcomes(result.dataset).set_index("claim_id")
    truth = claims.set_index("claim_id").loc[outcomes.index]
    assert (outcomes["denied"] == truth["denied"].astype(bool)).all()
    denied = outcomes[outcomes["denied"]]
    assert (denied["denial_category"] == truth.loc[denied.index, "true_cause"]).all()
    # A paid claim may have lines denied (partial payment): each such line is paid $0.
    paid = set(outcomes.index[~outcomes["denied"]])
    partial = denials[denials["claim_id"].isin(paid)]
    assert len(partial) and partial["line_number"].notna().all()
    lines = result.dataset.remit_lines.set_index(["remit_id", "line_number"])
    keys = list(zip(partial["remit_id"], partial["line_number"].astype(int), strict=True))
    assert (lines.loc[keys, "paid_amount"] == 0).all()
    # CARCs that need a remark code have one on the same remittance.
    needs_rarc = denials[denials["carc"].map(lambda c: tables.carc_info(c).rarc_required)]
    assert set(needs_rarc["remit_id"]) <= set(result.dataset.remarks["remit_id"])


def test_paid_claims_balance(result: SimulationResult) -> None:
    remits = result.dataset.remittances.set_index("remit_id")
    adjusted = result.dataset.adjustments.groupby("remit_id")["amount"].sum()
    balance = remits["total_charge"] - remits["paid_amount"] - adjusted.reindex(remits.index)
    assert balance.abs().max() < 0.02
    assert (remits["paid_amount"] >= 0).all()


def test_rejected_claims_are_never_adjudicated(
    result: SimulationResult, claims: pd.DataFrame
) -> None:
    rejected = claims[claims["rejected"]]
    share = len(rejected) / (claims["frequency_code"] == "1").sum()
    assert share == pytest.approx(targets.REJECTION_RATE, abs=0.005)
    # Every rejection is of a rejected claim; one sent days before the extract date may not
    # have its 277CA yet.
    assert set(result.dataset.rejections["claim_id"]) <= set(rejected["claim_id"])
    assert len(result.dataset.rejections) >= 0.98 * len(rejected)
    assert not set(rejected["claim_id"]) & set(result.dataset.remittances["claim_id"])
    assert (rejected["denied"] == 0).all()
    assert (rejected["true_denial_probability"] == 0).all()
    assert set(result.dataset.rejections["source"]) <= {"277CA", "999"}


def test_npis_pass_the_luhn_check(claims: pd.DataFrame) -> None:
    assert is_valid_npi("1234567893") and not is_valid_npi("1234567890")
    for column in ("billing_npi", "referring_npi"):
        npis = claims[column].dropna().unique()
        assert len(npis) and all(is_valid_npi(n) for n in npis), column
    rendering = claims.dropna(subset=["rendering_npi"])
    valid = rendering["rendering_npi"].map(is_valid_npi)
    assert valid.mean() > 0.99
    # A typo'd rendering NPI is a visible defect the payer rejects (CARC 207).
    typo = rendering[~valid & (rendering["frequency_code"] == "1") & ~rendering["rejected"]]
    assert len(typo) and (typo["true_denial_probability"] >= 0.9).all()
    assert typo["p_missing_information"].median() > 0.8  # unless an earlier edit fires first


def test_timely_filing_denials_only_after_the_payer_limit(adjudicated: pd.DataFrame) -> None:
    limit = adjudicated["payer_id"].map(lambda i: PAYER_BY_ID[i].timely_filing_days).to_numpy()
    lag = (adjudicated["submission_date"] - adjudicated["service_date_from"]).dt.days.to_numpy()
    late = lag > limit
    assert late.any()
    filed_late = (adjudicated["true_cause"] == "timely_filing").to_numpy()
    assert (lag[filed_late] > limit[filed_late]).all()
    assert (adjudicated.loc[~late, "p_timely_filing"] == 0).all()
    # Only the duplicate edit runs before the filing-limit edit, which fires with p = 0.95,
    # or 0.1 when the claim gives a delay reason (CLM20) its payer honours.
    p_late = adjudicated["p_timely_filing"] / (1 - adjudicated["p_duplicate"])
    honours = adjudicated["payer_id"].map(lambda i: PAYER_BY_ID[i].honours_delay_reason)
    excused = (adjudicated["delay_reason_code"].notna() & honours).to_numpy()
    assert (late & excused).any() and (late & ~excused).any()
    np.testing.assert_allclose(p_late[late & ~excused], 0.95)
    np.testing.assert_allclose(p_late[late & excused], 0.1)


def test_duplicates_repeat_an_earlier_submission(
    result: SimulationResult, adjudicated: pd.DataFrame
) -> None:
    codes = result.dataset.lines.groupby("claim_id")["procedure_code"].agg(
        lambda c: ",".join(sorted(c))
    )
    frame = adjudicated.assign(codes=adjudicated["claim_id"].map(codes))
    frame = frame.sort_values(["submission_date", "service_date_from", "claim_id"])
    repeat = frame.duplicated(["patient_id", "service_date_from", "codes"])
    assert (
        frame.loc[frame["true_cause"] == "duplicate", "claim_id"]
        .isin(frame.loc[repeat, "claim_id"])
        .all()
    )
    assert (frame.loc[repeat, "p_duplicate"] > 0.5).all()
    assert (frame.loc[~repeat, "p_duplicate"] == 0).all()


def test_authorization_drift_raises_denials_for_the_drifted_family(
    result: SimulationResult, adjudicated: pd.DataFrame
) -> None:
    payer_id = next(p.payer_id for p in WORLD.payers if p.key == AUTH_DRIFT.payer)
    lines = result.dataset.lines
    drifted = set(lines.loc[lines["procedure_code"].isin(AUTH_DRIFT.codes), "claim_id"])
    scope = adjudicated[
        (adjudicated["payer_id"] == payer_id) & adjudicated["claim_id"].isin(drifted)
    ]
    drift_date = pd.Timestamp(result.summary["drift"]["date"])
    before = scope[scope["service_date_from"] < drift_date]
    after = scope[scope["service_date_from"] >= drift_date]
    assert len(before) > 100 and len(after) > 100
    auth_rate_before = (before["true_cause"] == "authorization").mean()
    auth_rate_after = (after["true_cause"] == "authorization").mean()
    assert auth_rate_before < 0.01
    assert auth_rate_after > auth_rate_before + 0.05
    assert after["p_authorization"].mean() > before["p_authorization"].mean() + 0.05


def test_necessity_drift_withdraws_weak_diagnoses() -> None:
    lenient = rule_tables(WORLD, days=730, default_drift_day=438).lenient
    payer = WORLD.payer_index(LENIENT_DRIFT.payer)
    groups = list(NECESSITY_RULES)
    for group in LENIENT_DRIFT.groups:
        assert lenient[0, payer, groups.index(group)]
        assert not lenient[1, payer, groups.index(group)]
    untouched = [i for i, p in enumerate(WORLD.payers) if p.key != LENIENT_DRIFT.payer]
    assert (lenient[0, untouched] == lenient[1, untouched]).all()


def test_corrected_claims_follow_worked_denials(
    result: SimulationResult, claims: pd.DataFrame
) -> None:
    corrected = claims[claims["frequency_code"] == "7"]
    assert len(corrected) > 0
    remits = result.dataset.remittances.set_index("payer_claim_number")
    originals = remits.loc[corrected["original_payer_claim_number"], "claim_id"]
    truth = claims.set_index("claim_id")
    assert (truth.loc[originals, "denied"] == 1).all()
    followups = result.dataset.followups
    assert set(originals) <= set(
        followups.loc[followups["action"] == "corrected_claim", "claim_id"]
    )
    # A corrected claim is paid exactly when its original's follow-up recovered money.
    recovered = truth.loc[originals, "recovered"].to_numpy(dtype=bool)
    assert ((corrected["denied"].to_numpy() == 0) == recovered).all()


def test_followups_and_recovery_truth(result: SimulationResult, claims: pd.DataFrame) -> None:
    first = claims[claims["frequency_code"] == "1"]
    denied = first[first["denied"] == 1]
    assert denied["true_recovery_probability"].between(0, 1).all()
    assert first.loc[first["denied"] == 0, "true_recovery_probability"].isna().all()
    assert first.loc[first["denied"] == 0, "recovered"].isna().all()
    never = denied["recovered"].isna().mean()
    low, high = targets.NEVER_REWORKED_RANGE
    assert low <= never <= high
    followups = result.dataset.followups
    worked = set(denied.loc[denied["recovered"].notna(), "claim_id"])
    # Work that starts after the extract date is not in the data yet.
    assert set(followups["claim_id"]) <= worked
    assert len(followups) >= 0.9 * len(worked)
    assert (
        followups["action_date"]
        > claims.set_index("claim_id").loc[followups["claim_id"], "submission_date"].to_numpy()
    ).all()
    # Recovery falls with the category's difficulty (duplicates and late filings rarely recover).
    by_cause = denied.groupby("true_cause")["true_recovery_probability"].mean()
    assert by_cause["coding"] > by_cause["authorization"] > by_cause["timely_filing"]
    assert by_cause["duplicate"] < 0.05


def test_write_simulation_writes_a_readable_data_set(small: SimulationResult, tmp_path) -> None:
    out = tmp_path / "sim"
    write_simulation(small, out)
    dataset, quarantined = ClaimsDataset.read(out)
    assert len(quarantined) == 0
    assert len(dataset.claims) == len(small.dataset.claims)
    assert len(pd.read_parquet(out / "truth.parquet")) == len(small.truth)
    assert (out / "summary.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]


def test_write_simulation_refuses_a_non_empty_folder(small: SimulationResult, tmp_path) -> None:
    out = tmp_path / "sim"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        write_simulation(small, out)
    assert (out / "notes.txt").read_text() == "keep me"
    write_simulation(small, out, overwrite=True)
    assert not (out / "notes.txt").exists()
    assert (out / "claims.parquet").exists()


def test_write_simulation_leaves_nothing_behind_on_failure(
    small: SimulationResult, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_to_parquet = pd.DataFrame.to_parquet
    written: list[str] = []

    def fail_on_third_table(self: pd.DataFrame, path, *args, **kwargs):  # noqa: ANN001
        written.append(str(path))
        if len(written) == 3:
            raise OSError("disk full")
        return real_to_parquet(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail_on_third_table)
    out = tmp_path / "sim"
    with pytest.raises(OSError, match="disk full"):
        write_simulation(small, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_format_summary_shows_every_target(result: SimulationResult) -> None:
    text = format_summary(result.summary)
    for category in DENIAL_CATEGORIES:
        assert category in text
    assert "initial denial rate" in text


@pytest.mark.parametrize("overrides", [{"n_claims": 10}, {"drift_fraction": 1.5}, {"days": 5}])
def test_config_rejects_unusable_values(overrides: dict) -> None:
    with pytest.raises(ValueError):
        SimulationConfig(**overrides)
