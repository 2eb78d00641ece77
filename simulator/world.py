"""The administrative side of the simulated world: providers, patients and the payers' rules.

The payers and their rules come from a :class:`~simulator.spec.WorldSpec` (the default world or a
drawn one); here they become arrays the generator and adjudicator index by period (the rule
changes of the world's drift split the timeline into periods), payer and code. Providers and
patients are drawn from the claims seed: two practices of the same world share its payers, rules
and habits and differ in their people and claims.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.catalog import NECESSITY_RULES, PROCEDURE_FAMILIES, PROCEDURES
from simulator.spec import (
    ORDER_TAKING_SPECIALTIES,
    REFERRED_SPECIALTIES,
    PayerSpec,
    WorldSpec,
)

__all__ = [
    "ORDER_TAKING_SPECIALTIES",
    "REFERRED_SPECIALTIES",
    "RuleTables",
    "World",
    "build_world",
    "is_valid_npi",
    "rule_tables",
]

PANEL_CORRECTION = {"medicaid": 1.15, "medicare": 0.93, "medicare_advantage": 0.95}
"""Children are seen in primary care only and members drift to Medicare at 65, so the patient
panel leans a little towards Medicaid to land on the claim mix in ``PayerSpec.claim_share``."""

NEVER = 10**9
"""A day past any timeline ("never")."""

LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall",
    "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
)  # fmt: skip
FIRST_NAMES: tuple[str, ...] = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
    "Sarah", "Charles", "Karen", "Maria", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony",
    "Betty", "Mark", "Sandra", "Jose", "Ashley", "Luis", "Emily", "Kevin", "Donna", "Brian",
    "Michelle", "George", "Carol", "Ana",
)  # fmt: skip
"""Synthetic names: drawn per patient, hashed into the patient key, never written."""

RELATIONSHIPS: tuple[str, ...] = ("18", "01", "19")
"""SBR02/PAT01 codes: self, spouse, child."""
FACILITY_PLACES: tuple[str, ...] = ("21", "22", "24", "81")
"""Places of service with a service facility of their own (2310C): hospital, ASC, lab."""

EXCLUSION_CARCS: tuple[str, ...] = ("49", "96", "204")
"""CARCs of plan exclusions; ``RuleTables.excluded`` holds 1 + their index (0: covered)."""

_CODES = tuple(p.code for p in PROCEDURES)
_CODE = {c: i for i, c in enumerate(_CODES)}
_GROUPS = tuple(NECESSITY_RULES)
_FAMILY = {f: i for i, f in enumerate(PROCEDURE_FAMILIES)}


@dataclass
class RuleTables:
    """The payers' rules as arrays: [period,] payer, code / group / family / diagnosis.

    Periods: 0 before the first drift date, k after the k-th distinct drift date.
    """

    period_start: np.ndarray
    """First service day of each period (period 0 starts at -NEVER)."""
    auth_units: np.ndarray
    """[period, payer, code]: a line needs an authorization when its units reach this (inf:
    never; 1: always)."""
    auth_added_day: np.ndarray
    """[payer, code]: the day the code joined the payer's auth list (-NEVER: from the start)."""
    lenient: np.ndarray
    """[period, payer, group]: the payer accepts the group's weak diagnoses."""
    core: np.ndarray
    """[period, payer, group, diagnosis]: the diagnosis supports the group."""
    weak: np.ndarray
    excluded: np.ndarray
    """[period, payer, code]: 0 covered, else 1 + index into EXCLUSION_CARCS."""
    partial: np.ndarray
    """[payer, code]: covered by some of the payer's plans only."""
    filing_limit: np.ndarray
    """[period, payer] days."""
    visit_limit: np.ndarray
    """[payer, family] visits per calendar year (NEVER: no limit)."""
    unit_limit: np.ndarray
    """[payer, code] most units per line (inf: none)."""
    ncci_pairs: tuple[tuple[str, str], ...]
    """Every pair some payer edits, in a fixed order."""
    ncci: np.ndarray
    """[payer, pair]."""
    referral_code: np.ndarray
    """[payer, code]: the code needs a referral."""
    repeat_interval: np.ndarray
    """[group] days within which a repeat is too frequent (-1: no limit)."""

    def period(self, day: np.ndarray) -> np.ndarray:
        """The rule period of each service day."""
        return np.searchsorted(self.period_start[1:], day, side="right")


def _drift_days(spec: WorldSpec, days: int, default_drift_day: int) -> list[int]:
    return [
        default_drift_day if e.at_fraction is None else int(round(e.at_fraction * days))
        for e in spec.drift
    ]


def rule_tables(spec: WorldSpec, days: int, default_drift_day: int) -> RuleTables:
    """Build the rule arrays of ``spec`` for a timeline of ``days`` days."""
    from simulator.encounters import DIAGNOSES  # the vocabulary is fixed by the catalog

    payers = spec.payers
    event_days = _drift_days(spec, days, default_drift_day)
    starts = sorted(set(event_days))
    period_start = np.array([-NEVER, *starts], dtype=np.int64)
    n_periods, n_payers, n_codes = len(period_start), len(payers), len(_CODES)
    n_groups, dx_index = len(_GROUPS), {c: i for i, c in enumerate(DIAGNOSES)}

    auth = np.full((n_payers, n_codes), np.inf)
    lenient = np.zeros((n_payers, n_groups), dtype=bool)
    core = np.zeros((n_groups, len(DIAGNOSES)), dtype=bool)
    weak = np.zeros_like(core)
    for g, name in enumerate(_GROUPS):
        core[g, [dx_index[c] for c in spec.necessity[name].core]] = True
        weak[g, [dx_index[c] for c in spec.necessity[name].weak]] = True
    excluded = np.zeros((n_payers, n_codes), dtype=np.int8)
    partial = np.zeros((n_payers, n_codes), dtype=bool)
    filing = np.array([p.timely_filing_days for p in payers], dtype=np.int64)
    visit_limit = np.full((n_payers, len(PROCEDURE_FAMILIES)), NEVER, dtype=np.int64)
    unit_limit = np.full((n_payers, n_codes), np.inf)
    pairs = tuple(dict.fromkeys(pair for p in payers for pair in p.ncci_pairs))
    ncci = np.zeros((n_payers, len(pairs)), dtype=bool)
    referral = np.zeros((n_payers, n_codes), dtype=bool)
    for i, payer in enumerate(payers):
        for code, units in payer.auth_above_units:
            auth[i, _CODE[code]] = units + 1
        for code in payer.auth_codes:
            auth[i, _CODE[code]] = 1
        for group in payer.lenient_necessity:
            lenient[i, _GROUPS.index(group)] = True
        for code, carc in payer.not_covered:
            excluded[i, _CODE[code]] = 1 + EXCLUSION_CARCS.index(carc)
        for code in payer.partially_covered:
            partial[i, _CODE[code]] = True
        for family, limit in payer.visit_limits:
            visit_limit[i, _FAMILY[family]] = limit
        for code, units in payer.unit_limits:
            unit_limit[i, _CODE[code]] = units
        for pair in payer.ncci_pairs:
            ncci[i, pairs.index(pair)] = True
        for code in payer.referral_codes:
            referral[i, _CODE[code]] = True

    # Period k's rules: period k-1's with the events of its start day applied.
    auth_p = np.repeat(auth[None], n_periods, axis=0)
    lenient_p = np.repeat(lenient[None], n_periods, axis=0)
    core_p = np.broadcast_to(core, (n_periods, n_payers, *core.shape)).copy()
    weak_p = np.broadcast_to(weak, (n_periods, n_payers, *weak.shape)).copy()
    excluded_p = np.repeat(excluded[None], n_periods, axis=0)
    filing_p = np.repeat(filing[None], n_periods, axis=0)
    for event, day in zip(spec.drift, event_days, strict=True):
        later = slice(starts.index(day) + 1, None)
        p = spec.payer_index(event.payer)
        codes = [_CODE[c] for c in event.codes]
        groups = [_GROUPS.index(g) for g in event.groups]
        if event.kind == "auth_add":
            auth_p[later, p, codes] = 1
        elif event.kind == "lenient_withdraw":
            lenient_p[later, p, groups] = False
        elif event.kind == "diagnosis_withdraw":
            dx = [dx_index[c] for c in event.diagnoses]
            for g in groups:
                core_p[later, p, g, dx] = False
                weak_p[later, p, g, dx] = False
        elif event.kind == "exclusion_add":
            excluded_p[later, p, codes] = 1 + EXCLUSION_CARCS.index(event.carc)
        else:  # filing_limit
            filing_p[later, p] = event.days

    required = np.isfinite(auth_p)
    first = np.where(required.any(axis=0), required.argmax(axis=0), 0)
    added_day = np.where(first == 0, -NEVER, period_start[first])
    repeat = np.array(
        [spec.necessity[g].repeat_interval_days or -1 for g in _GROUPS], dtype=np.int64
    )
    return RuleTables(
        period_start=period_start,
        auth_units=auth_p,
        auth_added_day=added_day,
        lenient=lenient_p,
        core=core_p,
        weak=weak_p,
        excluded=excluded_p,
        partial=partial,
        filing_limit=filing_p,
        visit_limit=visit_limit,
        unit_limit=unit_limit,
        ncci_pairs=pairs,
        ncci=ncci,
        referral_code=referral,
        repeat_interval=repeat,
    )


@dataclass
class World:
    """Providers, patients and the payers' rules as arrays the generator and adjudicator index."""

    spec: WorldSpec
    rules: RuleTables = field(repr=False)
    # Providers (index = provider number).
    provider_npi: np.ndarray
    provider_specialty: np.ndarray
    provider_start_day: np.ndarray
    """First day the provider sees patients (0 for the established ones)."""
    enrollment_day: np.ndarray
    """(provider, payer): first day the payer has the provider enrolled."""
    provider_compliance: np.ndarray
    """How reliably the provider's coder adds modifiers 25 and 59 when needed."""
    billing_npi: str
    referring_npi: np.ndarray
    """Pool of ordering/referring NPIs: the practice's physicians first, then outside ones."""
    # Patients.
    patient_birth_day: np.ndarray
    """Birth date as a day offset from the start date (negative)."""
    patient_sex: np.ndarray
    patient_weight: np.ndarray
    patient_payer: np.ndarray
    patient_next_payer: np.ndarray
    patient_switch_day: np.ndarray
    """Day the patient's coverage moves to ``patient_next_payer`` (a huge number if never)."""
    patient_other_coverage: np.ndarray
    patient_notice_lag: np.ndarray
    """Days after a change of payer before the practice learns of it (bills the old payer)."""
    patient_other_known: np.ndarray
    """The practice knows of the other coverage."""
    patient_secondary: np.ndarray
    """With another coverage: the payer on file is not the primary one."""
    patient_other_payer: np.ndarray
    """The other coverage's payer (index into the world's payers)."""
    patient_state: np.ndarray
    """Index into (practice state, *neighbour states)."""
    patient_name: np.ndarray
    """(n, 2) indices into the name lists (never written; only their hash, the patient key)."""
    patient_relationship: np.ndarray
    """The patient to the subscriber: index into RELATIONSHIPS (self, spouse, child)."""
    patient_group: np.ndarray
    """Employer group number of commercial members (0: none)."""
    clia_number: str
    """The practice's laboratory CLIA certificate."""
    facility_npi: np.ndarray
    """Service facility NPI by place of service index (empty for the office and home)."""

    @property
    def payers(self) -> tuple[PayerSpec, ...]:
        return self.spec.payers

    @property
    def payer_types(self) -> np.ndarray:
        return np.array([p.payer_type for p in self.payers])

    @property
    def specialty_names(self) -> np.ndarray:
        return np.array([s.name for s in self.spec.specialties])

    def payer_values(self, attribute: str) -> np.ndarray:
        """One attribute of every payer, as an array indexed by payer."""
        return np.array([getattr(p, attribute) for p in self.payers])


def npi_check_digit(base: np.ndarray) -> np.ndarray:
    """Luhn check digit of 9-digit NPI bases (rows of digits), using the 80840 card prefix.

    The NPI standard computes the Luhn digit over ``80840`` + the 9 digits; the prefix always adds
    24 to the sum, so only the nine digits need doubling (every other one, from the left).
    """
    doubled = base[:, 0::2] * 2
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    total = 24 + doubled.sum(axis=1) + base[:, 1::2].sum(axis=1)
    return (10 - total % 10) % 10


def is_valid_npi(npi: str) -> bool:
    """Whether a 10-digit NPI's last digit is its Luhn check digit."""
    if len(npi) != 10 or not npi.isdigit():
        return False
    digits = np.array([[int(c) for c in npi[:9]]])
    return int(npi_check_digit(digits)[0]) == int(npi[9])


def make_npis(rng: np.random.Generator, count: int) -> np.ndarray:
    """Distinct valid NPIs (they start with 1, like most individual and group NPIs)."""
    bases = rng.choice(10**8, size=count * 2, replace=False)[:count] + 10**8
    digits = (bases[:, None] // 10 ** np.arange(8, -1, -1)) % 10
    check = npi_check_digit(digits)
    return np.array([f"{b}{c}" for b, c in zip(bases, check, strict=True)], dtype=object)


def corrupt_npis(npis: np.ndarray) -> np.ndarray:
    """Typo'd NPIs that fail the Luhn check (the check digit is off by one)."""
    out = []
    for npi in npis:
        last = (int(npi[-1]) + 1) % 10
        out.append(f"{npi[:-1]}{last}")
    return np.array(out, dtype=object)


def build_world(
    spec: WorldSpec, rng: np.random.Generator, n_patients: int, days: int, drift_day: int
) -> World:
    """Draw the practice's providers and the patient panel; attach the payers' rule tables.

    ``drift_day`` is the day of the drift events without a date of their own.
    """
    payers = spec.payers
    n_payers = len(payers)
    specialties = spec.specialties
    specialty_names = [s.name for s in specialties]
    provider_specialty = np.repeat(np.arange(len(specialties)), [s.providers for s in specialties])
    n_providers = len(provider_specialty)
    npis = make_npis(rng, n_providers + 1 + 150)
    provider_npi, billing_npi, outside_npi = npis[:n_providers], npis[n_providers], npis[-150:]

    # Late joiners: the last provider of some specialties starts part-way through the timeline;
    # each payer enrols them after a credentialing delay (often none: retroactive enrolment).
    start_day = np.zeros(n_providers, dtype=np.int64)
    enrollment = np.full((n_providers, n_payers), -(10**6), dtype=np.int64)
    for name in spec.habits.late_joiners:
        if name not in specialty_names:
            continue
        members = np.flatnonzero(provider_specialty == specialty_names.index(name))
        if len(members) < 2:  # a specialty's only provider is there from the start
            continue
        provider = int(members[-1])
        start_day[provider] = int(rng.integers(int(0.1 * days), int(0.7 * days)))
        delay = np.where(rng.random(n_payers) < 0.75, 0, rng.integers(20, 45, n_payers))
        enrollment[provider] = start_day[provider] + delay
    compliance = rng.uniform(*spec.habits.modifier_compliance, n_providers)

    physicians = np.flatnonzero(
        np.isin(
            provider_specialty,
            [
                specialty_names.index(name)
                for name in ("family_medicine", "internal_medicine")
                if name in specialty_names
            ],
        )
    )
    referring = np.concatenate([provider_npi[physicians], outside_npi])

    # Patients: payer by claim share, age by payer type, a few coverage changes.
    shares = np.array([p.claim_share * PANEL_CORRECTION.get(p.payer_type, 1.0) for p in payers])
    payer = rng.choice(n_payers, size=n_patients, p=shares / shares.sum())
    types = np.array([p.payer_type for p in payers])[payer]
    age = _draw_ages(rng, types)
    birth_day = -(age * 365.25).astype(np.int64) - rng.integers(0, 365, n_patients)
    sex = rng.choice(np.array(["F", "M", "U"]), size=n_patients, p=[0.55, 0.448, 0.002])
    weight = rng.gamma(0.8, 1.0, n_patients)  # visit intensity; independent of payer by design
    next_payer, switch_day = _coverage_changes(rng, spec, payer, types, birth_day, days)
    other_coverage = rng.random(n_patients) < np.vectorize(spec.other_coverage_rate.get)(types)
    habits = spec.habits
    late = rng.exponential(habits.coverage_notice_days, n_patients).astype(np.int64) + 1
    notice = np.where(rng.random(n_patients) < habits.coverage_notice_immediate, 0, late)
    other_known = other_coverage & (rng.random(n_patients) < habits.other_coverage_known)
    share = np.vectorize(spec.secondary_share.get)(types)
    secondary = other_coverage & (rng.random(n_patients) < share)
    out_of_state = rng.random(n_patients) < spec.out_of_state_share
    state = np.where(out_of_state, rng.integers(1, 1 + len(spec.neighbour_states), n_patients), 0)
    names = np.column_stack(
        [
            rng.integers(0, len(LAST_NAMES), n_patients),
            rng.integers(0, len(FIRST_NAMES), n_patients),
        ]
    )
    minor = age < 18
    spouse = ~minor & (types == "commercial") & (rng.random(n_patients) < 0.2)
    relationship = np.where(minor, 2, np.where(spouse, 1, 0))
    group = np.where(types == "commercial", rng.integers(1, 600, n_patients), 0)
    clia = f"{int(rng.integers(10, 99))}D{int(rng.integers(10**6, 10**7))}"
    facilities = make_npis(rng, len(FACILITY_PLACES))
    return World(
        spec=spec,
        rules=rule_tables(spec, days, drift_day),
        provider_npi=provider_npi,
        provider_specialty=provider_specialty,
        provider_start_day=start_day,
        enrollment_day=enrollment,
        provider_compliance=compliance,
        billing_npi=str(billing_npi),
        referring_npi=referring,
        patient_birth_day=birth_day,
        patient_sex=sex,
        patient_weight=weight / weight.sum(),
        patient_payer=payer,
        patient_next_payer=next_payer,
        patient_switch_day=switch_day,
        patient_other_coverage=other_coverage,
        patient_notice_lag=notice,
        patient_other_known=other_known,
        patient_secondary=secondary,
        patient_other_payer=_other_payers(rng, spec, payer, secondary),
        patient_state=state,
        patient_name=names,
        patient_relationship=relationship,
        patient_group=group,
        clia_number=clia,
        facility_npi=facilities,
    )


def _other_payers(
    rng: np.random.Generator, spec: WorldSpec, payer: np.ndarray, secondary: np.ndarray
) -> np.ndarray:
    """The patient's other coverage: a primary payer other than Medicaid when the one on file
    is secondary, any other payer when it is primary."""
    types = np.array([p.payer_type for p in spec.payers])
    shares = np.array([p.claim_share for p in spec.payers])
    n_payers = len(types)
    weight = np.broadcast_to(shares, (len(payer), n_payers)).copy()
    weight[np.arange(len(payer)), payer] = 0.0
    weight[secondary[:, None] & (types == "medicaid")[None, :]] = 0.0
    total = weight.sum(axis=1)
    weight = np.where(total[:, None] > 0, weight, 1.0)  # a one-type world: any payer
    cumulative = np.cumsum(weight, axis=1)
    u = rng.random(len(payer)) * cumulative[:, -1]
    return np.minimum((cumulative <= u[:, None]).sum(axis=1), n_payers - 1)


def _draw_ages(rng: np.random.Generator, types: np.ndarray) -> np.ndarray:
    """Age at the start of the timeline, by payer type (Medicare mostly 65+, Medicaid younger)."""
    n = len(types)
    senior = 65 + np.minimum(rng.gamma(2.0, 5.5, n), 32)
    adult = rng.uniform(18, 64.9, n)
    child = rng.uniform(1, 17.9, n)
    disabled = rng.uniform(30, 64.9, n)
    draw = rng.random(n)
    working_senior = rng.uniform(65, 73, n)
    age = np.where(
        types == "commercial",
        np.where(draw < 0.08, child, np.where(draw < 0.94, adult, working_senior)),
        adult,
    )
    age = np.where(types == "medicare", np.where(draw < 0.12, disabled, senior), age)
    age = np.where(types == "medicare_advantage", senior, age)
    age = np.where(types == "medicaid", np.where(draw < 0.15, child, adult), age)
    return np.asarray(age)


def _coverage_changes(
    rng: np.random.Generator,
    spec: WorldSpec,
    payer: np.ndarray,
    types: np.ndarray,
    birth_day: np.ndarray,
    days: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Next payer and switch day per patient: churn, and commercial members turning 65."""
    n = len(payer)
    never = np.int64(10**9)
    switch_day = np.full(n, never, dtype=np.int64)
    next_payer = payer.copy()
    type_of = np.array([p.payer_type for p in spec.payers])
    shares = np.array([p.claim_share for p in spec.payers])

    def pick(kinds: tuple[str, ...], size: int) -> np.ndarray:
        allowed = np.flatnonzero(np.isin(type_of, kinds))
        if len(allowed) == 0:  # a world without such a payer: any payer of the world
            allowed = np.arange(len(type_of))
        w = shares[allowed] / shares[allowed].sum()
        return allowed[rng.choice(len(allowed), size=size, p=w)]

    moves = rng.random(n) < np.vectorize(spec.churn_rate.get)(types)
    destinations = {
        "commercial": ("commercial", "medicaid"),
        "medicaid": ("medicaid", "commercial"),
        "medicare_advantage": ("medicare", "medicare_advantage"),
        "medicare": ("medicare_advantage",),
        "other": ("commercial",),
    }
    for kind, targets in destinations.items():
        rows = np.flatnonzero(moves & (types == kind))
        if len(rows) == 0:
            continue
        candidate = pick(targets, len(rows))
        same = candidate == payer[rows]
        candidate[same] = pick(targets, int(same.sum()))  # one redraw; a rare repeat is harmless
        next_payer[rows] = candidate
        switch_day[rows] = rng.integers(30, max(31, days - 30), len(rows))

    # Commercial members who turn 65 during the timeline mostly move to Medicare or MA then.
    turns_65 = birth_day + int(65 * 365.25)
    ageing = (types == "commercial") & (turns_65 > 0) & (turns_65 < days)
    ageing &= rng.random(n) < 0.7
    rows = np.flatnonzero(ageing)
    next_payer[rows] = pick(("medicare", "medicare_advantage"), len(rows))
    switch_day[rows] = turns_65[rows]
    next_payer[switch_day == never] = payer[switch_day == never]
    return next_payer, switch_day
