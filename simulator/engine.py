"""Run the whole simulation: world -> encounters -> adjudication -> remittances -> rework.

Each stage draws from its own random stream (spawned from the seed), so the same configuration
always produces identical tables, and changing one stage's draws leaves the others alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.codes import DENIAL_CATEGORIES
from features.schema import ClaimsDataset, ids_in
from simulator import targets
from simulator.adjudication import REASONS, Adjudication, adjudicate
from simulator.draw import draw_world_spec
from simulator.encounters import Encounters, generate_encounters
from simulator.remittance import (
    LinePayment,
    Remittances,
    build_remittances,
    price_lines,
    zero_paid_probability,
)
from simulator.rework import (
    TYPICAL_ACTION_LAG,
    Rework,
    default_action,
    recovery_probability,
    work_denials,
)
from simulator.spec import PracticeHabits, WorldSpec, default_world_spec
from simulator.tables import Identifiers, assign_identifiers, build_tables
from simulator.world import World, build_world

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate.

    ``n_claims`` counts first submissions (frequency code 1, duplicate submissions included);
    the corrected claims (frequency 7) the billing team sends after denials come on top, about
    1-2% more rows in ``claims``.

    ``seed`` draws the practice's providers, patients and claims; ``world_seed`` draws the world
    (payers, their rules, the practice's habits, drift; see :mod:`simulator.draw`), ``None``
    being the default world. Two configurations with the same world seed and different seeds
    are two practices of one world.
    """

    n_claims: int = 50_000
    seed: int = 7
    world_seed: int | None = None
    world: WorldSpec | None = None
    """A world given outright (overrides ``world_seed``)."""
    start_date: dt.date = dt.date(2024, 1, 1)
    days: int = 730
    """Timeline length; service dates spread over it (submissions and remits run past its end)."""
    drift_fraction: float = 0.6
    """When the world's drift events without a date of their own happen (fraction of the
    timeline): the default world's rule changes."""
    claims_per_patient: float = 4.0
    """Average claims per patient over the timeline (sets the size of the patient panel)."""
    habits: PracticeHabits | None = None
    """How often the practice makes each visible billing mistake (``None``: the world's)."""

    def __post_init__(self) -> None:
        if self.n_claims < 100:
            raise ValueError(f"n_claims must be at least 100, got {self.n_claims}")
        if self.days < 30:
            raise ValueError(f"days must be at least 30, got {self.days}")
        if not 0.0 < self.drift_fraction < 1.0:
            raise ValueError(f"drift_fraction must be between 0 and 1, got {self.drift_fraction}")
        if self.claims_per_patient < 1.0:
            raise ValueError("claims_per_patient must be at least 1")
        if self.world_seed is not None and self.world_seed < 0:
            raise ValueError(f"world_seed must be a non-negative integer, got {self.world_seed}")

    def world_spec(self) -> WorldSpec:
        """The world this configuration simulates (with its own habits, if it sets them)."""
        if self.world is not None:
            spec = self.world
        elif self.world_seed is not None:
            spec = draw_world_spec(self.world_seed)
        else:
            spec = default_world_spec()
        return spec if self.habits is None else dataclasses.replace(spec, habits=self.habits)

    @property
    def drift_date(self) -> dt.date:
        return self.start_date + dt.timedelta(days=int(round(self.drift_fraction * self.days)))


@dataclass
class SimulationResult:
    """The contract tables, the ground truth (kept apart from them) and realised figures."""

    dataset: ClaimsDataset
    truth: pd.DataFrame
    summary: dict


def simulate(config: SimulationConfig, progress: Progress | None = None) -> SimulationResult:
    """Simulate a practice's claims, their adjudication, remittances and follow-ups.

    ``progress(stage, fraction_done)`` is called a handful of times for a progress bar.
    """
    report: Progress = progress or (lambda stage, fraction: None)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(9)]
    start = pd.Timestamp(config.start_date)
    drift_day = (pd.Timestamp(config.drift_date) - start).days

    report("Building payers, providers and patients", 0.0)
    n_patients = max(100, int(round(config.n_claims / config.claims_per_patient)))
    world = build_world(config.world_spec(), streams[0], n_patients, config.days, drift_day)

    report("Generating encounters and claims", 0.1)
    first = generate_encounters(world, streams[1], config.n_claims, config.days, start)
    n_first = len(first.claims)
    adjudicated = first.claims["rejection"].to_numpy() < 0
    # What each line would pay comes first: whether a claim with a denied line is labelled
    # denied depends on what its other lines pay.
    payment = price_lines(first, world, start, streams[3])
    zero_paid = zero_paid_probability(first, world, start)

    report("Adjudicating claims", 0.35)
    outcome = adjudicate(first, world, start, payment, zero_paid, adjudicated, streams[2])
    first.lines["denial_reason"] = outcome.line_reason
    first.lines["denial_carc"] = outcome.line_carc

    report("Pricing and remittances", 0.5)
    rows = np.flatnonzero(adjudicated)
    remits = build_remittances(
        first,
        rows,
        outcome.claim_reason,
        outcome.carc,
        outcome.not_recognized,
        outcome.line_reason,
        outcome.line_carc,
        payment,
        streams[4],
    )
    remit_day = np.full(n_first, -1, dtype=np.int64)
    remit_day[remits.remits["claim"].to_numpy()] = remits.remits["remit_day"].to_numpy()
    line_claim = first.lines["claim"].to_numpy()
    claim_charge = np.bincount(line_claim, weights=payment.charge, minlength=n_first)
    expected_paid = np.bincount(line_claim, weights=payment.paid, minlength=n_first)

    report("Working denials", 0.65)
    rework = work_denials(first, outcome, remit_day, claim_charge, expected_paid, world, streams[5])
    corrected = rework.corrected
    n_corrected = len(corrected.claims)
    originals = corrected.claims["original"].to_numpy()
    corrected_denied = ~rework.corrected_recovered
    corrected_payment = price_lines(corrected, world, start, streams[6])
    # Denied again: for the same claim-level reason, or every line for the original's primary
    # reason (so the label holds whatever the lines would pay).
    line_original = originals[corrected.lines["claim"].to_numpy()]
    again = corrected_denied[corrected.lines["claim"].to_numpy()]
    corrected_remits = build_remittances(
        corrected,
        np.arange(n_corrected),
        np.where(corrected_denied, outcome.claim_reason[originals], -1),
        np.where(corrected_denied, outcome.carc[originals], ""),
        corrected_denied & outcome.not_recognized[originals],
        np.where(again, outcome.reason[line_original], -1),
        np.where(again, outcome.carc[line_original], ""),
        corrected_payment,
        streams[7],
    )
    followups = _settle_corrected_followups(rework.followups, corrected_remits, n_first)

    report("Assembling tables", 0.8)
    everything = Encounters.concat([first, corrected])
    all_payment = _concat_payments(payment, corrected_payment)
    all_remits = _concat_remits(remits, corrected_remits, n_first)
    ids = assign_identifiers(everything.claims, all_remits.remits, start)
    truth = _truth(everything, outcome, rework, corrected_remits, world, ids, start, n_first)
    # Drop the per-stage copies before the tables are built: at a million claims they matter.
    del first, corrected, payment, corrected_payment, remits, corrected_remits, outcome, rework
    dataset = build_tables(
        everything, all_payment, all_remits, followups, ids, world, start, streams[8]
    )
    del everything, all_payment, all_remits
    dataset, truth = snapshot(dataset, truth, start + pd.Timedelta(days=config.days))
    summary = summarise(dataset, truth, config, world)
    report("Done", 1.0)
    return SimulationResult(dataset=dataset, truth=truth, summary=summary)


def snapshot(
    dataset: ClaimsDataset, truth: pd.DataFrame, extract_date: pd.Timestamp
) -> tuple[ClaimsDataset, pd.DataFrame]:
    """The data as a practice would export them on ``extract_date``.

    Claims not yet sent are not in it; remittances, follow-ups and rejections that had not
    arrived yet are held back (the claim is pending, the appeal unresolved). Without this the
    long tail of late submissions would put events years after the timeline's end.

    The tables of ``dataset`` are replaced one at a time (at a million claims a second copy of
    every table at once would be the simulation's memory peak): it holds the snapshot after.
    """
    sent = dataset.claims["submission_date"] <= extract_date
    # Membership by hash index: far faster than Series.isin(set) on a million string ids.
    keep_claims = pd.Index(dataset.claims.loc[sent, "claim_id"])
    remits = dataset.remittances
    arrived = (remits["remit_date"] <= extract_date).to_numpy() & (
        keep_claims.get_indexer(remits["claim_id"]) >= 0
    )
    keep_remits = pd.Index(remits.loc[arrived, "remit_id"])
    del remits

    def kept(frame: pd.DataFrame, key: str, index: pd.Index) -> pd.DataFrame:
        mask = ids_in(frame[key], pd.Series(index, dtype=frame[key].dtype))
        return frame if mask.all() else frame[mask].reset_index(drop=True)

    def by_claim(frame: pd.DataFrame) -> pd.DataFrame:
        return kept(frame, "claim_id", keep_claims)

    def by_remit(frame: pd.DataFrame) -> pd.DataFrame:
        return kept(frame, "remit_id", keep_remits)

    followups = by_claim(dataset.followups)
    followups = followups[followups["action_date"] <= extract_date].copy()
    # Worked but not yet answered: open (no resolved date, nothing recovered yet).
    open_ = followups["resolved_date"] > extract_date
    followups.loc[open_, "resolved_date"] = pd.NaT
    followups.loc[open_, "recovered"] = False
    followups.loc[open_, "recovered_amount"] = 0.0
    rejections = by_claim(dataset.rejections)
    dataset.followups = followups.reset_index(drop=True)
    dataset.rejections = rejections[rejections["rejection_date"] <= extract_date].reset_index(
        drop=True
    )
    for name in ("claims", "lines", "diagnoses"):
        setattr(dataset, name, by_claim(getattr(dataset, name)))
    for name in ("remittances", "remit_lines", "adjustments", "remarks"):
        setattr(dataset, name, by_remit(getattr(dataset, name)))
    return dataset, by_claim(truth)


def _settle_corrected_followups(
    followups: pd.DataFrame, corrected_remits: Remittances, n_first: int
) -> pd.DataFrame:
    """A corrected claim's follow-up resolves when its own remittance arrives, for what it paid."""
    followups = followups.copy()
    is_corrected = (followups["action"] == "corrected_claim").to_numpy()
    remits = corrected_remits.remits.sort_values("claim")
    followups.loc[is_corrected, "resolved_day"] = remits["remit_day"].to_numpy()
    followups.loc[is_corrected, "recovered_amount"] = remits["paid"].to_numpy()
    return followups


def _concat_payments(a: LinePayment, b: LinePayment) -> LinePayment:
    return LinePayment(
        *(
            np.concatenate([getattr(a, f), getattr(b, f)])
            for f in ("charge", "allowed", "deductible", "coinsurance", "copay", "sequestration")
        )
    )


def _concat_remits(a: Remittances, b: Remittances, offset: int) -> Remittances:
    def shift(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame["claim"] = frame["claim"] + offset
        return frame

    return Remittances(
        *(
            pd.concat([getattr(a, f), shift(getattr(b, f))], ignore_index=True)
            for f in ("remits", "lines", "adjustments", "remarks")
        )
    )


def _truth(
    everything: Encounters,
    outcome: Adjudication,
    rework: Rework,
    corrected_remits: Remittances,
    world: World,
    ids: Identifiers,
    start: pd.Timestamp,
    n_first: int,
) -> pd.DataFrame:
    """One row per claim: denial probability, per-cause probabilities, outcome, recovery."""
    claims = everything.claims
    n = len(claims)
    n_corrected = n - n_first
    originals = claims["original"].to_numpy()[n_first:]
    original_category = outcome.category[originals]
    r = rework.corrected_recovery
    corrected_denied = ~rework.corrected_recovered

    cause = np.zeros((n, len(DENIAL_CATEGORIES)))
    cause[:n_first] = outcome.cause_probability
    cause[n_first + np.arange(n_corrected), original_category] = 1.0 - r
    category = np.concatenate([outcome.category, np.where(corrected_denied, original_category, -1)])
    reason = np.concatenate(
        [outcome.reason, np.where(corrected_denied, outcome.reason[originals], -1)]
    )
    denied = np.concatenate([outcome.denied, corrected_denied])

    # Recovery: realised for worked first submissions; hypothetical for the other denials.
    recovery = np.concatenate([rework.recovery_probability, np.full(n_corrected, np.nan)])
    if corrected_denied.any():
        rows = np.flatnonzero(corrected_denied)
        payer = claims["payer"].to_numpy()[n_first + rows]
        charge = corrected_remits.remits.sort_values("claim")["total_charge"].to_numpy()[rows]
        denial_day = corrected_remits.remits.sort_values("claim")["remit_day"].to_numpy()[rows]
        service_day = claims["service_day"].to_numpy()[n_first + rows]
        recovery[n_first + rows] = recovery_probability(
            original_category[rows],
            outcome.carc[originals[rows]],
            world.payer_values("strictness")[payer],
            charge,
            np.full(len(rows), TYPICAL_ACTION_LAG),
            denial_day + TYPICAL_ACTION_LAG - service_day,
            world.payer_values("appeal_window_days")[payer],
            world.rules.filing_limit[world.rules.period(service_day), payer],
            default_action(original_category[rows]),
        )
    worked = np.concatenate([rework.recovered, np.full(n_corrected, -1)])
    recovered = pd.arrays.BooleanArray(worked == 1, worked < 0)

    names = np.array([*DENIAL_CATEGORIES, ""], dtype=object)
    reason_names = np.array([*(r.name for r in REASONS), ""], dtype=object)
    truth = pd.DataFrame(
        {
            "claim_id": pd.Series(ids.claim_id, dtype="str"),
            "submission_date": (
                np.datetime64(start.date(), "D")
                + claims["submission_day"].to_numpy().astype("timedelta64[D]")
            ).astype("datetime64[ns]"),
            "frequency_code": pd.Series(claims["frequency"].astype(str).to_numpy(), dtype="str"),
            "true_denial_probability": cause.sum(axis=1),
            "denied": denied.astype(np.int8),
            "true_cause": pd.Series(names[category], dtype="str"),
            "true_reason": pd.Series(reason_names[reason], dtype="str"),
            **{f"p_{c}": cause[:, k] for k, c in enumerate(DENIAL_CATEGORIES)},
            "rejected": claims["rejection"].to_numpy() >= 0,
            "true_recovery_probability": recovery,
            "recovered": recovered,
        }
    )
    return truth.iloc[ids.claim_number_order].reset_index(drop=True)


def summarise(
    dataset: ClaimsDataset, truth: pd.DataFrame, config: SimulationConfig, world: World
) -> dict:
    """Realised figures next to their targets, and the world described for people
    (JSON-serialisable; the product never reads it)."""
    claims = dataset.claims
    first = truth["frequency_code"] == "1"
    adjudicated = first & ~truth["rejected"]
    denied = adjudicated & (truth["denied"] == 1)
    n_denied = int(denied.sum())
    mix = truth.loc[denied, "true_cause"].value_counts(normalize=True)
    payer_type = (
        pd.Series(claims["payer_type"].to_numpy(), index=claims["claim_id"].to_numpy())
        .reindex(truth["claim_id"].to_numpy())
        .to_numpy()
    )
    by_type = (
        pd.Series(
            truth["denied"].to_numpy()[adjudicated.to_numpy()],
            index=payer_type[adjudicated.to_numpy()],
        )
        .groupby(level=0)
        .mean()
    )
    payer_mix = pd.Series(payer_type[first.to_numpy()]).value_counts(normalize=True)
    denied_first = truth[denied]
    worked = denied_first["recovered"].notna()
    return {
        "n_claims": int(len(truth)),
        "n_first_submissions": int(first.sum()),
        "n_corrected_claims": int((~first).sum()),
        "n_adjudicated": int(adjudicated.sum()),
        "n_rejected": int(truth["rejected"].sum()),
        "n_denied": n_denied,
        "rejection_rate": float(truth.loc[first, "rejected"].mean()),
        "target_rejection_rate": targets.REJECTION_RATE,
        "denial_rate": float(n_denied / max(int(adjudicated.sum()), 1)),
        "mean_true_denial_probability": float(
            truth.loc[adjudicated, "true_denial_probability"].mean()
        ),
        "target_denial_rate": list(targets.DENIAL_RATE_RANGE),
        "cause_mix": {c: round(float(mix.get(c, 0.0)), 4) for c in DENIAL_CATEGORIES},
        "target_cause_mix": targets.CAUSE_MIX,
        "denial_rate_by_payer_type": {k: round(float(v), 4) for k, v in by_type.items()},
        "target_denial_rate_by_payer_type": targets.DENIAL_RATE_BY_PAYER_TYPE,
        "payer_mix": {k: round(float(v), 4) for k, v in payer_mix.items()},
        "target_payer_mix": targets.PAYER_MIX,
        "never_reworked_share": float(1.0 - worked.mean()) if n_denied else 0.0,
        "target_never_reworked_share": list(targets.NEVER_REWORKED_RANGE),
        "recovered_share_of_worked": float(
            denied_first.loc[worked, "recovered"].astype(bool).mean()
        )
        if worked.any()
        else 0.0,
        "drift": describe_drift(world, config),
        "world": describe_world(world),
        "config": {
            "n_claims": config.n_claims,
            "seed": config.seed,
            "start_date": config.start_date.isoformat(),
            "days": config.days,
            "drift_fraction": config.drift_fraction,
            "world_seed": config.world_seed,
        },
    }


def describe_world(world: World) -> dict:
    """The world's payers, rules in brief, mechanisms and habits, for a person reading it."""
    spec = world.spec
    return {
        "world_seed": spec.seed,
        "payers": [
            {
                "payer_id": p.payer_id,
                "name": p.name,
                "payer_type": p.payer_type,
                "claim_filing_indicator": p.filing_indicator,
                "claim_share": round(p.claim_share, 4),
                "timely_filing_days": p.timely_filing_days,
                "appeal_window_days": p.appeal_window_days,
                "strictness": round(p.strictness, 3),
                "prior_auth_codes": sorted(p.auth_codes),
                "prior_auth_above_units": dict(p.auth_above_units),
                "not_covered": dict(p.not_covered),
                "partially_covered": sorted(p.partially_covered),
                "referral_required": p.referral_required,
                "visit_limits": dict(p.visit_limits),
                "unit_limits": dict(p.unit_limits),
                "ncci_pairs": ["/".join(pair) for pair in p.ncci_pairs],
                "ncci_modifiers": sorted(p.ncci_modifiers),
                "lenient_necessity": sorted(p.lenient_necessity),
                "requires_taxonomy": p.requires_taxonomy,
                "pays_nurse_practitioners": p.pays_nurse_practitioners,
            }
            for p in spec.payers
        ],
        "mechanism_scale": {c: spec.scale(c) for c in DENIAL_CATEGORIES},
        "mechanisms_off": [c for c in DENIAL_CATEGORIES if spec.scale(c) == 0.0],
        "specialties": {s.name: round(s.claim_share, 4) for s in spec.specialties},
        "habits": dataclasses.asdict(spec.habits),
    }


def describe_drift(world: World, config: SimulationConfig) -> dict:
    """When the world's rules change and how (``date``: the first change)."""
    start = pd.Timestamp(config.start_date)
    events = []
    for event in world.spec.drift:
        fraction = config.drift_fraction if event.at_fraction is None else event.at_fraction
        payer = world.spec.payers[world.spec.payer_index(event.payer)]
        events.append(
            {
                "date": (start + pd.Timedelta(days=int(round(fraction * config.days))))
                .date()
                .isoformat(),
                "kind": event.kind,
                "payer_id": payer.payer_id,
                "payer_name": payer.name,
                **{
                    k: list(v) for k in ("codes", "groups", "diagnoses") if (v := getattr(event, k))
                },
                **({"carc": event.carc} if event.carc else {}),
                **({"days": event.days} if event.days else {}),
            }
        )
    dates = sorted(e["date"] for e in events)
    return {"date": dates[0] if dates else None, "events": events}
