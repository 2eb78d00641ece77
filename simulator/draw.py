"""Draw a plausible world from a seed: payers, their rules, the practice's habits, drift.

A drawn world keeps medicine fixed (:mod:`simulator.catalog`) and redraws what differs between
practices and markets: how many payers of which kinds, their names, IDs, claim shares, filing
limits and appeal windows, which codes each wants an authorization or a referral for, what each
excludes, its visit, unit and NCCI edits, which diagnoses support which procedures, its
documentation demands and processing quirks; which denial mechanisms exist in the world and how
strong they are; how careful the practice is; one to three rule changes on drawn dates.

The ranges are chosen so that every world stays plausible (overall denial rate between about
6% and 20%, every world with eligibility and missing-information denials, no category above
about 45% of denials); ``tests/unit/test_world_family.py`` checks it on thirty seeds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from features.codes import DENIAL_CATEGORIES
from simulator.catalog import NECESSITY_RULES, PROCEDURES, UNRELATED_DIAGNOSES, NecessityRule
from simulator.spec import (
    DEFAULT_SPECIALTIES,
    DriftEvent,
    PayerSpec,
    PracticeHabits,
    Specialty,
    WorldSpec,
    codes_of,
    default_world_spec,
)

_SALT = 0x5EED_3017
"""Keeps world seeds' streams apart from claim seeds' (the same integer draws both)."""

PAYER_TYPE_MIX = {
    "commercial": 0.45,
    "medicare_advantage": 0.17,
    "medicare": 0.15,
    "medicaid": 0.18,
    "other": 0.05,
}

_PLACES = (
    "Evergreen", "Keystone", "Bayou", "Riverbend", "Northstar", "Bluebonnet", "Crescent",
    "Harbor", "Pinnacle", "Meridian", "Liberty", "Summit", "Prairie", "Cascade", "Lakeshore",
    "Redwood", "Magnolia", "Granite", "Silverline", "Sunrise", "Heartland", "Tidewater",
    "Aspen", "Coastal", "Frontier", "Juniper", "Beacon", "Willow", "Canyon", "Orchard",
    "Bridgewater", "Clearwater", "Ironwood", "Bluestem", "Copperleaf", "Highland",
)  # fmt: skip
_SUFFIX = {
    "CI": "Health Insurance",
    "BL": "Blue Cross Blue Shield",
    "HM": "Health HMO",
    "12": "Health PPO",
    "13": "Choice POS",
    "14": "Select EPO",
    "16": "Medicare Advantage",
    "MC": "Community Health Plan (Medicaid)",
    "CH": "Military Health (TRICARE)",
    "VA": "Veterans Community Care",
    "OF": "Federal Employee Health",
}
_INDICATORS = {
    "commercial": (
        ("CI", 0.3),
        ("BL", 0.25),
        ("HM", 0.15),
        ("12", 0.2),
        ("13", 0.05),
        ("14", 0.05),
    ),
    "medicare_advantage": (("16", 1.0),),
    "medicaid": (("MC", 1.0),),
    "other": (("CH", 0.6), ("VA", 0.2), ("OF", 0.2)),
}
_MAC_JURISDICTIONS = ("E", "F", "H", "J", "K", "L", "M", "N", "5", "6", "8", "15")

FILING_LIMITS = (90, 95, 120, 180, 365)
"""Real filing limits (days from the date of service)."""

_AUTH_FAMILIES = {
    # family: chance a non-Medicare payer lists it (codes are then kept one by one)
    "advanced_imaging": 0.85,
    "cardiac_imaging": 0.6,
    "sleep_study": 0.7,
    "specialty_drug": 0.7,
    "ortho_surgery": 0.75,
    "genetic": 0.7,
    "infusion": 0.35,
    "dme": 0.4,
    "physical_therapy": 0.25,
}
_AUTH_ABOVE_UNITS = (("97110", 3), ("97140", 2), ("J1745", 40), ("97530", 2))
_EXCLUDABLE = (
    # (family, CARCs the payer may send); preventive care is never excluded but by Medicare
    ("telephone_em", ("204", "96")),
    ("dme", ("96",)),
    ("genetic", ("96", "204")),
    ("sleep_study", ("204",)),
    ("infusion", ("204",)),
    ("joint_injection", ("204",)),
)
_PARTIAL = ("genetic", "sleep_study", "infusion", "telephone_em", "dme")
_MUE = {
    # code: unit limits a payer may apply (MUE-style, per line and date of service)
    "97110": (3, 4),
    "97140": (2, 3),
    "97530": (2, 3),
    "J1745": (40, 50),
    "J3301": (4, 8),
    "J1030": (2, 3),
    "J1885": (2, 4),
    "96372": (1, 2),
    "36415": (1,),
}
NCCI_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("97530", "97140"),
    ("96365", "96372"),
    ("29881", "29877"),
    ("97161", "97110"),
    ("97162", "97110"),
    ("78452", "93015"),
)
"""Plausible column-1 / column-2 edits among codes the practice bills together."""
_ATTACHMENT_CANDIDATES = ("27447", "29881", "29877", "E0601", "95810", "81162", "J1745")
"""Codes a payer may adjudicate only with records attached (operative notes, sleep logs...)."""
_REVIEW_FAMILIES = ("physical_therapy", "sleep_study", "cardiac_imaging", "infusion", "dme")
_STATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TX", ("LA", "OK", "NM", "AR")),
    ("OH", ("PA", "IN", "MI", "KY", "WV")),
    ("GA", ("FL", "AL", "SC", "TN", "NC")),
    ("AZ", ("CA", "NV", "UT", "NM")),
    ("MN", ("WI", "IA", "ND", "SD")),
    ("NY", ("NJ", "PA", "CT", "VT", "MA")),
)
"""A practice's state and its neighbours (some patients live across the line)."""
_CATEGORY_OFF = {
    # category: chance the world has no such mechanism at all
    "credentialing": 0.15,
    "documentation": 0.1,
    "coding": 0.08,
    "medical_necessity": 0.08,
    "other": 0.15,
    "authorization": 0.05,
    "non_covered": 0.05,
}


def _pick(rng: np.random.Generator, options: tuple[tuple[str, float], ...]) -> str:
    weights = np.array([w for _, w in options])
    return options[int(rng.choice(len(options), p=weights / weights.sum()))][0]


def _subset(
    rng: np.random.Generator, items: frozenset[str] | tuple[str, ...], p: float
) -> list[str]:
    """Each item kept with probability ``p``; at least one."""
    ordered = sorted(items)
    kept = [x for x in ordered if rng.random() < p]
    return kept or [ordered[int(rng.integers(len(ordered)))]]


def draw_world_spec(world_seed: int) -> WorldSpec:
    """A plausible world drawn from ``world_seed`` (the same seed, the same world)."""
    rng = np.random.default_rng(np.random.SeedSequence([_SALT, int(world_seed)]))
    specialties = _draw_specialties(rng)
    necessity = _draw_necessity(rng)
    payers = _draw_payers(rng, necessity)
    return WorldSpec(
        payers=payers,
        specialties=specialties,
        habits=_draw_habits(rng),
        necessity=necessity,
        drift=_draw_drift(rng, payers, necessity),
        category_scale=_draw_category_scale(rng),
        **_draw_population(rng),  # type: ignore[arg-type]
        seed=int(world_seed),
    )


def _lognormal(rng: np.random.Generator, sigma: float) -> float:
    return float(np.exp(rng.normal(0.0, sigma)))


def _draw_specialties(rng: np.random.Generator) -> tuple[Specialty, ...]:
    optional = {"nurse_practitioner", "cardiology", "orthopaedics", "neurology", "radiology"}
    kept = [s for s in DEFAULT_SPECIALTIES if s.name not in optional or rng.random() > 0.15]
    shares = rng.dirichlet([12 * s.claim_share for s in kept])
    out = []
    for s, share in zip(kept, shares, strict=True):
        providers = max(1, int(round(share * 32 * rng.uniform(0.7, 1.3))))
        if s.name in ("family_medicine", "physical_therapy"):
            providers = max(providers, 2)
        out.append(dataclasses.replace(s, providers=providers, claim_share=float(share)))
    return tuple(out)


def _draw_necessity(rng: np.random.Generator) -> dict[str, NecessityRule]:
    """Move a diagnosis between 'core' and 'weak' in some groups, redraw repeat intervals."""
    out = {}
    for name, rule in NECESSITY_RULES.items():
        core, weak = list(rule.core), list(rule.weak)
        if len(core) >= 3 and rng.random() < 0.3:
            weak.append(core.pop(int(rng.integers(len(core)))))
        if len(weak) >= 2 and rng.random() < 0.3:
            core.append(weak.pop(int(rng.integers(len(weak)))))
        interval = rule.repeat_interval_days
        if interval is not None:
            interval = int(rng.choice([90, 180, 365])) if rng.random() < 0.4 else interval
        out[name] = NecessityRule(tuple(core), tuple(weak), interval)
    return out


def _draw_payer_types(rng: np.random.Generator) -> list[str]:
    """One Medicare contractor, at least one commercial plan and one Medicaid plan."""
    n = int(rng.integers(4, 15))
    types = ["medicare", "commercial", "medicaid"]
    others = ("commercial", "medicare_advantage", "medicaid", "other")
    weights = np.array([PAYER_TYPE_MIX[t] for t in others])
    types += list(rng.choice(others, size=n - 3, p=weights / weights.sum()))
    return types


def _draw_payers(
    rng: np.random.Generator, necessity: dict[str, NecessityRule]
) -> tuple[PayerSpec, ...]:
    types = _draw_payer_types(rng)
    type_share = rng.dirichlet([30 * PAYER_TYPE_MIX[t] for t in PAYER_TYPE_MIX])
    share_of = dict(zip(PAYER_TYPE_MIX, type_share, strict=True))
    present = set(types)
    total = sum(share_of[t] for t in present)
    names = list(rng.permutation(_PLACES))
    ids: set[str] = set()
    payers = []
    for t in sorted(present, key=list(PAYER_TYPE_MIX).index):
        members = [i for i, x in enumerate(types) if x == t]
        split = rng.dirichlet([3.0] * len(members))
        for part in split:
            share = float(share_of[t] / total * part)
            payers.append(_draw_payer(rng, t, share, names.pop(), ids, necessity))
    return tuple(payers)


def _draw_payer_id(rng: np.random.Generator, ids: set[str]) -> str:
    while True:
        payer_id = (
            f"SX{int(rng.integers(100, 1000))}"
            if rng.random() < 0.15
            else f"{int(rng.integers(10000, 100000)):05d}"
        )
        if payer_id not in ids:
            ids.add(payer_id)
            return payer_id


def _draw_payer(
    rng: np.random.Generator,
    payer_type: str,
    share: float,
    place: str,
    ids: set[str],
    necessity: dict[str, NecessityRule],
) -> PayerSpec:
    medicare = payer_type == "medicare"
    government = payer_type in ("medicare", "medicare_advantage", "medicaid")
    if medicare:
        indicator = "MB"
        name = f"Medicare Part B (MAC Jurisdiction {rng.choice(_MAC_JURISDICTIONS)})"
    else:
        indicator = _pick(rng, _INDICATORS[payer_type])
        name = f"{place} {_SUFFIX[indicator]}"
        if indicator == "16":
            name += " HMO" if rng.random() < 0.5 else " PPO"
    key = name.lower().split(" (")[0].replace(" ", "_")
    filing = {
        "medicare": 365,
        "medicare_advantage": int(rng.choice([365, 180, 120], p=[0.6, 0.3, 0.1])),
        "medicaid": int(rng.choice([365, 180, 120, 90], p=[0.5, 0.3, 0.1, 0.1])),
        "commercial": int(rng.choice(FILING_LIMITS, p=[0.3, 0.1, 0.25, 0.2, 0.15])),
        "other": int(rng.choice([365, 180], p=[0.7, 0.3])),
    }[payer_type]
    appeal = {
        "medicare": 120,
        "medicare_advantage": 60,
        "medicaid": int(rng.choice([60, 90, 120])),
        "commercial": int(rng.choice([60, 90, 180], p=[0.2, 0.3, 0.5])),
        "other": int(rng.choice([90, 180])),
    }[payer_type]
    fee = {
        "medicare": 1.0,
        "medicare_advantage": rng.uniform(0.95, 1.05),
        "medicaid": rng.uniform(0.6, 0.8),
        "commercial": rng.uniform(1.2, 1.7),
        "other": rng.uniform(1.0, 1.15),
    }[payer_type]
    copay = {
        "medicare": 0.0,
        "medicare_advantage": float(rng.choice([0, 10, 15, 20, 25])),
        "medicaid": 0.0,
        "commercial": float(rng.choice([20, 25, 30, 35, 40, 50])),
        "other": float(rng.choice([0, 10])),
    }[payer_type]
    gatekeeper = {"HM": 0.8, "16": 0.6, "MC": 0.5, "CH": 0.6}.get(indicator, 0.08)

    auth: set[str] = set()
    if not medicare:
        for family, chance in _AUTH_FAMILIES.items():
            if rng.random() < chance:
                auth |= set(_subset(rng, codes_of(family), 0.85))
    above = tuple((c, u) for c, u in _AUTH_ABOVE_UNITS if c not in auth and rng.random() < 0.15)

    not_covered: list[tuple[str, str]] = []
    if medicare:  # routine physicals are excluded by statute (annual wellness visits are not)
        not_covered += [(c, "49") for c in sorted(codes_of("preventive"))]
    for family, carcs in _EXCLUDABLE:
        if rng.random() < (0.08 if government else 0.15):
            carc = str(rng.choice(carcs))
            not_covered += [(c, carc) for c in _subset(rng, codes_of(family), 0.8)]
    excluded = {c for c, _ in not_covered}
    partial: set[str] = set()
    for family in _PARTIAL:
        if rng.random() < 0.12:
            partial |= set(_subset(rng, codes_of(family), 0.8)) - excluded

    limits: list[tuple[str, int]] = []
    if not medicare and rng.random() < 0.8:
        limits.append(("physical_therapy", int(rng.choice([12, 15, 16, 20, 24, 30]))))
    if rng.random() < 0.15:
        limits.append(("joint_injection", int(rng.choice([3, 4]))))
    mue_share = 1.0 if medicare else 0.5
    units = tuple((c, int(rng.choice(v))) for c, v in _MUE.items() if rng.random() < mue_share)
    ncci_share = 1.0 if payer_type in ("medicare", "medicaid") else 0.7
    pairs = tuple(p for p in NCCI_CANDIDATES if rng.random() < ncci_share)
    x_only = not government and rng.random() < 0.15
    modifiers = frozenset({"XE", "XP", "XS", "XU"} | (set() if x_only else {"59"}))

    review_families = frozenset(
        f for f in _REVIEW_FAMILIES if rng.random() < (0.5 if government else 0.15)
    )
    lossy = rng.random() < 0.12
    groups = sorted(necessity)
    lenient_share = rng.uniform(0.05, 0.6)
    return PayerSpec(
        key=key,
        payer_id=_draw_payer_id(rng, ids),
        name=name,
        filing_indicator=indicator,
        claim_share=share,
        timely_filing_days=filing,
        appeal_window_days=appeal,
        strictness=float(rng.uniform(0.8, 1.3)),
        fee_factor=float(fee),
        auth_codes=frozenset(auth),
        auth_above_units=above,
        lenient_necessity=frozenset(g for g in groups if rng.random() < lenient_share),
        not_covered=tuple(not_covered),
        partially_covered=frozenset(partial),
        partial_coverage_denial=float(rng.uniform(0.15, 0.4)),
        referral_required=bool(rng.random() < gatekeeper),
        referral_codes=codes_of("physical_therapy") & {"97161", "97162"}
        if rng.random() < 0.15
        else frozenset(),
        pays_nurse_practitioners=bool(medicare or rng.random() < 0.85),
        requires_taxonomy=bool(rng.random() < (0.6 if payer_type == "medicaid" else 0.12)),
        visit_limits=tuple(limits),
        unit_limits=units,
        unit_limit_carc="151" if rng.random() < 0.7 else "119",
        ncci_pairs=pairs,
        ncci_modifiers=modifiers,
        noise_rate=float(rng.uniform(0.003, 0.014)),
        copay=copay,
        high_dollar_threshold=float(rng.choice([1000.0, 1500.0, 2000.0, 2500.0])),
        high_dollar_review=float(rng.uniform(0.03, 0.2)),
        high_level_visit_review=float(rng.uniform(0.0, 0.1)),
        records_review_families=review_families,
        records_review_rate=float(rng.uniform(0.01, 0.05)) if review_families else 0.0,
        records_request_rate=float(rng.uniform(0.001, 0.004)),
        unprocessable_rate=float(rng.uniform(0.008, 0.02) if lossy else rng.uniform(0.001, 0.003)),
        requires_ndc=bool(payer_type == "medicaid" or rng.random() < 0.3),
        requires_clia=bool(government or rng.random() < 0.4),
        attachment_codes=frozenset(
            c for c in _ATTACHMENT_CANDIDATES if rng.random() < (0.3 if government else 0.2)
        ),
        honours_delay_reason=bool(rng.random() < (0.8 if government else 0.35)),
        denies_pending_liability=bool(not government and rng.random() < 0.35),
        line_level_auth=bool(rng.random() < 0.2),
    )


def _draw_habits(rng: np.random.Generator) -> PracticeHabits:
    base = PracticeHabits()

    def rate(value: float, sigma: float = 0.4, most: float = 0.2) -> float:
        return float(min(value * _lognormal(rng, sigma), most))

    core = rng.uniform(0.92, 0.965)
    weak = rng.uniform(0.025, 0.06)
    return dataclasses.replace(
        base,
        duplicate_rate=rate(base.duplicate_rate),
        rejection_rate=rate(base.rejection_rate, 0.25),
        late_submission_share=rate(base.late_submission_share, 0.35),
        referring_missing=rate(base.referring_missing),
        rendering_missing=rate(base.rendering_missing),
        rendering_typo=rate(base.rendering_typo),
        rendering_unknown=rate(base.rendering_unknown),
        taxonomy_missing=rate(base.taxonomy_missing),
        pointer_missing=rate(base.pointer_missing),
        auth_attach=float(rng.uniform(0.86, 0.97)),
        auth_attach_unneeded=float(rng.uniform(0.1, 0.4)),
        referral_attach=float(rng.uniform(0.85, 0.97)),
        preventive_miscoded=rate(base.preventive_miscoded),
        screening_wrong_sex=rate(base.screening_wrong_sex),
        auth_learning_days=int(rng.integers(60, 240)),
        diagnosis_mix=(
            ("core", float(core)),
            ("weak", float(weak)),
            ("unrelated", float(max(1.0 - core - weak, 0.004))),
        ),
        modifier_compliance=(float(rng.uniform(0.8, 0.9)), float(rng.uniform(0.95, 0.99))),
        member_id_typo=rate(base.member_id_typo),
        stale_member_id=rate(base.stale_member_id, most=0.2),
        coverage_notice_immediate=float(rng.uniform(0.4, 0.8)),
        coverage_notice_days=float(rng.uniform(15, 60)),
        other_coverage_known=float(rng.uniform(0.55, 0.9)),
        primary_paid_missing=rate(base.primary_paid_missing),
        accident_date_missing=rate(base.accident_date_missing),
        ndc_missing=rate(base.ndc_missing),
        clia_missing=rate(base.clia_missing),
        clia_on_line=float(rng.uniform(0.0, 0.5)),
        attachment_sent=float(rng.uniform(0.6, 0.95)),
        attachment_on_request=float(rng.uniform(0.05, 0.3)),
        delay_reason_share=float(rng.uniform(0.2, 0.7)),
        onset_error=rate(base.onset_error),
        units_overbilled=rate(base.units_overbilled),
        claim_note_share=float(rng.uniform(0.0, 0.08)),
    )


def _draw_category_scale(rng: np.random.Generator) -> dict[str, float]:
    scale = {}
    for category in DENIAL_CATEGORIES:
        if rng.random() < _CATEGORY_OFF.get(category, 0.0):
            scale[category] = 0.0
        else:
            floor = 0.7 if category in ("eligibility", "missing_information") else 0.3
            ceiling = 1.3 if category == "eligibility" else 2.0
            scale[category] = round(float(np.clip(_lognormal(rng, 0.35), floor, ceiling)), 3)
    return scale


def _draw_population(rng: np.random.Generator) -> dict[str, object]:
    base = default_world_spec()

    def scaled(table: dict[str, float], sigma: float) -> dict[str, float]:
        return {k: float(v * _lognormal(rng, sigma)) for k, v in table.items()}

    return {
        "coverage_base": scaled(base.coverage_base, 0.3),
        "identity_base": float(base.identity_base * _lognormal(rng, 0.3)),
        "other_coverage_base": {
            k: min(v, 0.95) for k, v in scaled(base.other_coverage_base, 0.2).items()
        },
        "medicare_age_on_commercial": float(rng.uniform(0.03, 0.1)),
        "other_coverage_rate": scaled(base.other_coverage_rate, 0.3),
        "churn_rate": {k: float(min(v, 0.3)) for k, v in scaled(base.churn_rate, 0.3).items()},
        "secondary_share": {
            k: 1.0 if k == "medicaid" else float(np.clip(v * _lognormal(rng, 0.3), 0.1, 0.9))
            for k, v in base.secondary_share.items()
        },
        "accident_rate": float(rng.uniform(0.03, 0.1)),
        "clearinghouse_edits": bool(rng.random() < 0.5),
        **dict(
            zip(
                ("practice_state", "neighbour_states"),
                _STATES[int(rng.integers(len(_STATES)))],
                strict=True,
            )
        ),
    }


def _draw_drift(
    rng: np.random.Generator, payers: tuple[PayerSpec, ...], necessity: dict[str, NecessityRule]
) -> tuple[DriftEvent, ...]:
    events = []
    kinds = ("auth_add", "lenient_withdraw", "diagnosis_withdraw", "exclusion_add", "filing_limit")
    for _ in range(int(rng.integers(1, 4))):
        at = round(float(rng.uniform(0.3, 0.8)), 3)
        for _attempt in range(10):
            payer = payers[int(rng.integers(len(payers)))]
            kind = str(rng.choice(kinds, p=[0.35, 0.2, 0.15, 0.15, 0.15]))
            event = _drift_event(rng, kind, payer, at, necessity)
            if event is not None:
                events.append(event)
                break
    return tuple(events)


def _drift_event(
    rng: np.random.Generator,
    kind: str,
    payer: PayerSpec,
    at: float,
    necessity: dict[str, NecessityRule],
) -> DriftEvent | None:
    """One rule change of ``payer``, or ``None`` when it has nothing of the kind to change."""
    if kind == "auth_add":
        candidates = sorted(set().union(*(codes_of(f) for f in _AUTH_FAMILIES)) - payer.auth_codes)
        if payer.payer_type == "medicare" or not candidates:
            return None
        chosen = str(rng.choice(candidates))
        family = next(p.family for p in PROCEDURES if p.code == chosen)
        codes = tuple(sorted(codes_of(family) - payer.auth_codes))
        return DriftEvent(kind, payer.key, at, codes=codes)
    if kind == "lenient_withdraw":
        if not payer.lenient_necessity:
            return None
        groups = _subset(rng, payer.lenient_necessity, 0.5)
        return DriftEvent(kind, payer.key, at, groups=tuple(groups))
    if kind == "diagnosis_withdraw":
        group = str(rng.choice(sorted(g for g, r in necessity.items() if len(r.core) >= 3)))
        dx = str(rng.choice(necessity[group].core))
        if dx in UNRELATED_DIAGNOSES:  # withdrawn, it would be no different from unrelated
            raise ValueError(
                f"diagnosis {dx} is both a core diagnosis of necessity group {group} and an "
                "unrelated diagnosis (simulator/catalog.py): it can be one or the other"
            )
        return DriftEvent(kind, payer.key, at, groups=(group,), diagnoses=(dx,))
    if kind == "exclusion_add":
        if payer.payer_type != "commercial":
            return None
        family, carcs = _EXCLUDABLE[int(rng.integers(len(_EXCLUDABLE)))]
        codes = tuple(sorted(codes_of(family) - {c for c, _ in payer.not_covered}))
        if not codes:
            return None
        return DriftEvent(kind, payer.key, at, codes=codes, carc=str(rng.choice(carcs)))
    shorter = [d for d in FILING_LIMITS if d < payer.timely_filing_days]
    if payer.payer_type == "medicare" or not shorter:
        return None
    return DriftEvent(kind, payer.key, at, days=int(rng.choice(shorter)))
