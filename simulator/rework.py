"""What the billing team does after a denial, and whether money comes back.

For every denied first submission the team may work it (more often when it is worth more and the
category is 'soft'); the action follows the category (corrected claim for coding and missing
information, eligibility re-bill, peer-to-peer for medical necessity, appeal otherwise). The
chance the action recovers payment, :func:`recovery_probability`, depends only on what the tables
show: the denial's category (from its CARC), CARC, the payer, the claim's charge and the days
from the denial (remittance date) to the action, with a cliff after the payer's appeal window
(appeals) or filing limit (corrected claims and re-bills).

Truth for **unworked** denials: ``true_recovery_probability`` is what the denial *would* recover
if worked with its category's usual action :data:`TYPICAL_ACTION_LAG` days after the remittance,
so a worklist oracle can rank every denial; ``recovered`` stays empty for them.

A corrected claim is a new claim (frequency code 7, ``original_payer_claim_number`` set) with the
fixable defect repaired. Its outcome *is* the recovery draw: paid if recovered, otherwise denied
again with the original CARC. Its ``true_denial_probability`` is therefore
``1 - true_recovery_probability``, again a function of visible data only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.codes import DENIAL_CATEGORIES, code_tables
from simulator.adjudication import REASON_INDEX, Adjudication
from simulator.catalog import EM_FAMILIES, NCCI_BYPASS_MODIFIERS
from simulator.encounters import (
    ATTACHMENT_SENT,
    CODE_FAMILY,
    CODE_INDEX,
    FAMILY_INDEX,
    MEMBER_ID_OK,
    MOD,
    RENDERING_OK,
    Encounters,
    add_modifier,
)
from simulator.world import World

ACTION_FOR_CATEGORY: dict[str, str] = {
    "missing_information": "corrected_claim",
    "coding": "corrected_claim",
    "eligibility": "eligibility_rebill",
    "medical_necessity": "peer_to_peer",
}
"""Every other category is appealed (when it is worked at all)."""
TYPICAL_ACTION_LAG = 30
"""Days from remittance to action assumed for the recovery probability of unworked denials."""
RECOVERY_HALF_LIFE_DAYS = 180.0
CARC_RECOVERY_FACTOR = {"B9": 0.3, "119": 0.5, "109": 0.6, "22": 1.1, "140": 1.1, "31": 0.9}
LATE_ACTION_FACTOR = 0.05


def recovery_probability(
    category: np.ndarray,
    carc: np.ndarray,
    strictness: np.ndarray,
    charge: np.ndarray,
    days_to_action: np.ndarray,
    days_from_service: np.ndarray,
    appeal_window: np.ndarray,
    filing_limit: np.ndarray,
    action: np.ndarray,
) -> np.ndarray:
    """Chance a worked denial recovers payment (see module docstring for the inputs' meaning).

    ``category`` holds indices into DENIAL_CATEGORIES; the base rate per category is the
    ``recovery_when_worked`` column of ``features/data/reason_categories.csv``.
    """
    table = code_tables().reason_categories["recovery_when_worked"]
    base = np.array([table[c] for c in DENIAL_CATEGORIES])[category]
    carc_factor = pd.Series(carc, dtype=object).map(CARC_RECOVERY_FACTOR).fillna(1.0).to_numpy()
    payer_factor = strictness**-0.8
    ageing = np.power(0.5, days_to_action / RECOVERY_HALF_LIFE_DAYS)
    resubmits = np.isin(action, ["corrected_claim", "eligibility_rebill"])
    too_late = np.where(resubmits, days_from_service > filing_limit, days_to_action > appeal_window)
    amount_factor = np.clip(1 + 0.05 * np.log10(np.maximum(charge, 1.0) / 250.0), 0.9, 1.1)
    peer_bonus = np.where(action == "peer_to_peer", 1.1, 1.0)
    r = base * carc_factor * payer_factor * ageing * amount_factor * peer_bonus
    return np.clip(np.where(too_late, r * LATE_ACTION_FACTOR, r), 0.0, 0.97)


@dataclass
class Rework:
    """Follow-ups of denied first submissions and the corrected claims they produced."""

    followups: pd.DataFrame
    """claim (row), action, action_day, resolved_day, recovered, recovered_amount."""
    recovery_probability: np.ndarray
    """Per claim row; NaN for claims that were not denied."""
    recovered: np.ndarray
    """Per claim row: 1 / 0 for worked denials, -1 otherwise."""
    corrected: Encounters
    """Frequency-7 claims; ``claims['original']`` is the denied claim's row."""
    corrected_recovery: np.ndarray
    corrected_recovered: np.ndarray


def default_action(category: np.ndarray) -> np.ndarray:
    """The usual follow-up action per denial category index (appeal when none is specific)."""
    names = np.array(DENIAL_CATEGORIES, dtype=object)[category]
    return pd.Series(names).map(ACTION_FOR_CATEGORY).fillna("appeal").to_numpy(dtype=object)


def work_denials(
    encounters: Encounters,
    adjudication: Adjudication,
    remit_day: np.ndarray,
    claim_charge: np.ndarray,
    claim_expected_paid: np.ndarray,
    world: World,
    rng: np.random.Generator,
) -> Rework:
    """Decide which denials are worked, how and when; draw recovery; build corrected claims."""
    claims = encounters.claims
    n = len(claims)
    denied_rows = np.flatnonzero(adjudication.denied)
    category = adjudication.category[denied_rows]
    carc = adjudication.carc[denied_rows]
    payer = claims["payer"].to_numpy()[denied_rows]
    charge = claim_charge[denied_rows]
    strictness = world.payer_values("strictness")[payer]
    window = world.payer_values("appeal_window_days")[payer]
    service_day = claims["service_day"].to_numpy()[denied_rows]
    limit = world.rules.filing_limit[world.rules.period(service_day), payer]
    denial_day = remit_day[denied_rows]

    action = default_action(category)
    peer = action == "peer_to_peer"
    action[peer & (rng.random(len(denied_rows)) < 0.4)] = "appeal"
    hard = code_tables().reason_categories["hard_by_default"]
    is_hard = np.array([bool(hard[c]) for c in DENIAL_CATEGORIES])[category]
    p_work = np.where(is_hard, 0.12, 0.5) + 0.1 * np.log10(np.maximum(charge, 1.0) / 200.0)
    worked = rng.random(len(denied_rows)) < np.clip(p_work, 0.03, 0.9)
    quick = rng.lognormal(np.log(25.0), 0.8, len(denied_rows))
    slow = rng.lognormal(np.log(120.0), 0.5, len(denied_rows))
    lag = np.where(rng.random(len(denied_rows)) < 0.1, slow, quick).astype(np.int64) + 1
    lag = np.where(worked, lag, TYPICAL_ACTION_LAG)
    r = recovery_probability(
        category,
        carc,
        strictness,
        charge,
        lag,
        denial_day + lag - service_day,
        window,
        limit,
        action,
    )
    recovered = worked & (rng.random(len(denied_rows)) < r)

    probability = np.full(n, np.nan)
    probability[denied_rows] = r
    outcome = np.full(n, -1, dtype=np.int64)
    outcome[denied_rows[worked]] = recovered[worked].astype(np.int64)
    action_day = denial_day + lag
    resolve = action_day + rng.lognormal(np.log(30.0), 0.5, len(denied_rows)).astype(np.int64)
    followups = pd.DataFrame(
        {
            "claim": denied_rows,
            "action": action,
            "action_day": action_day,
            "resolved_day": resolve,
            "recovered": recovered,
            "recovered_amount": np.where(recovered, claim_expected_paid[denied_rows], 0.0),
        }
    )[worked].reset_index(drop=True)

    corrected_rows = followups.loc[followups["action"] == "corrected_claim", "claim"].to_numpy()
    corrected = _corrected_claims(encounters, adjudication, corrected_rows, world, rng)
    corrected.claims["submission_day"] = followups.loc[
        followups["action"] == "corrected_claim", "action_day"
    ].to_numpy()
    return Rework(
        followups=followups,
        recovery_probability=probability,
        recovered=outcome,
        corrected=corrected,
        corrected_recovery=probability[corrected_rows],
        corrected_recovered=outcome[corrected_rows] == 1,
    )


def _corrected_claims(
    encounters: Encounters,
    adjudication: Adjudication,
    rows: np.ndarray,
    world: World,
    rng: np.random.Generator,
) -> Encounters:
    """Copies of the denied claims with the fixable defects repaired, as frequency-7 claims."""
    copies = encounters.take(rows)
    claims, lines = copies.claims, copies.lines
    reason = adjudication.reason[rows]
    claims["frequency"] = 7
    claims["original"] = rows
    claims["is_duplicate"] = False
    claims["rejection"] = -1
    missing_referring = (reason == REASON_INDEX["ordering_provider_missing"]) & (
        claims["referring"].to_numpy() < 0
    )
    claims.loc[missing_referring, "referring"] = rng.integers(
        0, len(world.referring_npi), int(missing_referring.sum())
    )
    claims["rendering_state"] = RENDERING_OK
    claims["taxonomy_missing"] = False
    # What a registration or billing clerk fixes once the payer said what was wrong.
    claims.loc[reason == REASON_INDEX["member_not_identified"], "member_id_state"] = MEMBER_ID_OK
    claims["primary_paid_missing"] = False
    claims["accident_date_missing"] = False
    late_onset = claims["onset_day"].to_numpy() > claims["service_day"].to_numpy()
    claims.loc[late_onset, "onset_day"] = claims.loc[late_onset, "episode_start"]

    claim = lines["claim"].to_numpy()
    code = lines["code"].to_numpy().copy()
    pointers = lines["pointers"].to_numpy()
    lines["pointers"] = np.where(pointers == 0, 1, pointers)
    mods = lines[[f"modifier_{j}" for j in range(1, 5)]].to_numpy().copy()
    line_reason = lines["denial_reason"].to_numpy()
    lines["ndc"] = lines["ndc"].to_numpy() | (line_reason == REASON_INDEX["ndc_missing"])
    clia_fixed = np.bincount(
        claim[line_reason == REASON_INDEX["clia_missing"]], minlength=len(claims)
    )
    claims["clia"] = claims["clia"].to_numpy() | (clia_fixed > 0)
    records = np.isin(
        line_reason,
        [REASON_INDEX[r] for r in ("attachment_missing", "attachment_not_received")],
    )
    sent = np.bincount(claim[records], minlength=len(claims)) > 0
    claims.loc[sent, "attachment"] = ATTACHMENT_SENT
    is_em = np.isin(CODE_FAMILY[code], [FAMILY_INDEX[f] for f in EM_FAMILIES])
    without_25 = ~(mods == MOD["25"]).any(axis=1)
    add_modifier(
        mods,
        np.flatnonzero((line_reason == REASON_INDEX["modifier_25_missing"]) & is_em & without_25),
        MOD["25"],
    )
    bypass = np.isin(mods, [MOD[m] for m in NCCI_BYPASS_MODIFIERS]).any(axis=1)
    column_2 = np.isin(code, [CODE_INDEX[c2] for _, c2 in world.rules.ncci_pairs])
    takes_59 = np.array(["59" in p.ncci_modifiers for p in world.payers])
    line_payer = claims["payer"].to_numpy()[claim]
    rows = np.flatnonzero((line_reason == REASON_INDEX["ncci_unbundled"]) & column_2 & ~bypass)
    add_modifier(mods, rows, np.where(takes_59[line_payer[rows]], MOD["59"], MOD["XS"]))
    for j in range(4):
        lines[f"modifier_{j + 1}"] = mods[:, j]
    # Deleted telephone codes are replaced by their 2025 equivalents.
    replace = line_reason == REASON_INDEX["code_invalid_on_date"]
    for old, new in (("99442", "98013"), ("99443", "98014")):
        code[replace & (code == CODE_INDEX[old])] = CODE_INDEX[new]
    lines["code"] = code
    return copies
