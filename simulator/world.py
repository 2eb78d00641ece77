"""The administrative side of the simulated world: payers, the practice's providers, patients.

Payers are written out below as readable rules (filing limit, appeal window, prior-authorization
list, which diagnoses they accept for which procedures, what they never cover). Their names are
invented and their payer IDs merely look real, so nothing here describes an actual insurer.
Providers and patients are drawn from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from features.codes import code_tables
from simulator.catalog import NECESSITY_RULES, PROCEDURE_FAMILIES


@dataclass(frozen=True)
class Specialty:
    """A specialty of the practice: its NUCC taxonomy code and share of the claim volume."""

    name: str
    taxonomy: str
    providers: int
    claim_share: float
    templates: str
    """Whose visit templates its providers use (nurse practitioners see primary care)."""


SPECIALTIES: tuple[Specialty, ...] = (
    Specialty("family_medicine", "207Q00000X", 7, 0.24, "family_medicine"),
    Specialty("nurse_practitioner", "363LF0000X", 2, 0.04, "family_medicine"),
    Specialty("internal_medicine", "207R00000X", 5, 0.19, "internal_medicine"),
    Specialty("cardiology", "207RC0000X", 3, 0.09, "cardiology"),
    Specialty("orthopaedics", "207X00000X", 3, 0.09, "orthopaedics"),
    Specialty("neurology", "2084N0400X", 2, 0.06, "neurology"),
    Specialty("radiology", "2085R0202X", 2, 0.12, "radiology"),
    Specialty("physical_therapy", "225100000X", 4, 0.17, "physical_therapy"),
)

ORDER_TAKING_SPECIALTIES = frozenset({"radiology", "physical_therapy"})
"""Specialties that only perform services another provider ordered: their claims need NM1*DN."""
REFERRED_SPECIALTIES = frozenset({"cardiology", "orthopaedics", "neurology"})
"""Specialist visits that gatekeeper (HMO-style) plans want a PCP referral for."""
LATE_JOINER_SPECIALTIES = ("family_medicine", "physical_therapy", "cardiology")
"""One provider of each joins the practice during the timeline and is credentialed late."""

_ALL_GROUPS = frozenset(NECESSITY_RULES)

PANEL_CORRECTION = {"medicaid": 1.15, "medicare": 0.93, "medicare_advantage": 0.95}
"""Children are seen in primary care only and members drift to Medicare at 65, so the patient
panel leans a little towards Medicaid to land on the claim mix in ``Payer.claim_share``."""


@dataclass(frozen=True)
class Payer:
    """One payer's rules. Family and group names refer to :mod:`simulator.catalog`."""

    key: str
    payer_id: str
    name: str
    filing_indicator: str
    """SBR09 claim filing indicator; the payer type follows from it (features/data)."""
    claim_share: float
    timely_filing_days: int
    appeal_window_days: int
    strictness: float
    """Scales the payer's discretionary edits (eligibility, documentation, necessity...)."""
    fee_factor: float
    """Allowed amount over the Medicare rate."""
    auth_families: frozenset[str]
    lenient_necessity: frozenset[str] = frozenset()
    """Necessity groups where the payer also accepts the 'weak' diagnoses."""
    not_covered: dict[str, str] = field(default_factory=dict)
    """Procedure family -> CARC for services the plan never covers."""
    partially_covered: frozenset[str] = frozenset()
    """Families covered by some of the payer's plans only (plan not visible): CARC 204 at times."""
    referral_required: bool = False
    pays_nurse_practitioners: bool = True
    requires_taxonomy: bool = False
    therapy_visit_limit: int | None = None
    """Physical therapy visits per calendar year; visits beyond it get CARC 119."""
    noise_rate: float = 0.005
    """Denials for reasons the payer never explains (CARC A1)."""
    copay: float = 0.0

    @property
    def payer_type(self) -> str:
        return code_tables().payer_type_for_indicator(self.filing_indicator)


_IMAGING_AND_SPECIALTY = frozenset(
    {
        "advanced_imaging",
        "cardiac_imaging",
        "sleep_study",
        "specialty_drug",
        "ortho_surgery",
        "genetic",
    }
)

PAYERS: tuple[Payer, ...] = (
    Payer(
        "medicare",
        "04412",
        "Medicare Part B (MAC Jurisdiction H)",
        "MB",
        0.15,
        365,
        120,
        0.9,
        1.0,
        frozenset(),
        lenient_necessity=frozenset({"mri_knee", "physical_therapy", "joint_injection"}),
        not_covered={"preventive": "49"},
        partially_covered=frozenset({"genetic"}),
        noise_rate=0.005,
    ),
    Payer(
        "evergreen_ma",
        "61115",
        "Evergreen Medicare Advantage HMO",
        "16",
        0.10,
        365,
        60,
        1.3,
        1.0,
        _IMAGING_AND_SPECIALTY | {"infusion", "dme", "physical_therapy"},
        lenient_necessity=frozenset({"physical_therapy"}),
        referral_required=True,
        therapy_visit_limit=16,
        noise_rate=0.008,
        copay=15.0,
    ),
    Payer(
        "keystone_ma",
        "SX141",
        "Keystone Senior Advantage PPO",
        "16",
        0.07,
        365,
        60,
        1.3,
        1.0,
        _IMAGING_AND_SPECIALTY,
        lenient_necessity=frozenset({"mri_knee", "physical_therapy", "joint_injection"}),
        partially_covered=frozenset({"telephone_em"}),
        noise_rate=0.009,
        copay=20.0,
    ),
    Payer(
        "bayou_medicaid",
        "68071",
        "Bayou Community Health Plan (Medicaid)",
        "MC",
        0.10,
        180,
        90,
        1.05,
        0.72,
        _IMAGING_AND_SPECIALTY | {"infusion", "dme", "physical_therapy"},
        not_covered={"telephone_em": "204", "vaccine": "96"},
        referral_required=True,
        requires_taxonomy=True,
        therapy_visit_limit=12,
        noise_rate=0.010,
    ),
    Payer(
        "riverbend_medicaid",
        "77034",
        "Riverbend Health Partners (Medicaid)",
        "MC",
        0.08,
        365,
        60,
        1.1,
        0.70,
        _IMAGING_AND_SPECIALTY | {"infusion", "dme"},
        lenient_necessity=frozenset({"physical_therapy"}),
        partially_covered=frozenset({"vaccine"}),
        requires_taxonomy=True,
        therapy_visit_limit=15,
        noise_rate=0.009,
    ),
    Payer(
        "northstar",
        "87716",
        "Northstar Health Insurance",
        "CI",
        0.13,
        90,
        180,
        1.0,
        1.45,
        _IMAGING_AND_SPECIALTY,
        lenient_necessity=frozenset(
            {"mri_knee", "joint_injection", "physical_therapy", "ct_chest"}
        ),
        not_covered={"screening": "204"},
        therapy_visit_limit=16,
        noise_rate=0.006,
        copay=30.0,
    ),
    Payer(
        "bluebonnet",
        "84981",
        "Bluebonnet Blue Cross Blue Shield",
        "BL",
        0.11,
        180,
        180,
        0.9,
        1.40,
        frozenset(
            {"advanced_imaging", "genetic", "sleep_study", "ortho_surgery", "specialty_drug"}
        ),
        lenient_necessity=frozenset(
            {
                "mri_brain",
                "mri_lumbar",
                "mri_knee",
                "physical_therapy",
                "joint_injection",
                "ct_abdomen",
            }
        ),
        therapy_visit_limit=20,
        noise_rate=0.005,
        copay=25.0,
    ),
    Payer(
        "crescent",
        "60045",
        "Crescent Health PPO",
        "12",
        0.07,
        120,
        180,
        1.05,
        1.50,
        _IMAGING_AND_SPECIALTY | {"dme", "physical_therapy"},
        lenient_necessity=frozenset({"physical_therapy", "joint_injection"}),
        not_covered={"dme": "96", "screening": "204"},
        partially_covered=frozenset({"sleep_study"}),
        therapy_visit_limit=15,
        noise_rate=0.007,
        copay=35.0,
    ),
    Payer(
        "harbor_hmo",
        "62318",
        "Harbor Health HMO",
        "HM",
        0.06,
        90,
        60,
        1.2,
        1.35,
        _IMAGING_AND_SPECIALTY | {"infusion", "dme", "physical_therapy"},
        not_covered={"screening": "204"},
        referral_required=True,
        pays_nurse_practitioners=False,
        therapy_visit_limit=12,
        noise_rate=0.008,
        copay=20.0,
    ),
    Payer(
        "pinnacle_tpa",
        "SX123",
        "Pinnacle Benefit Administrators",
        "CI",
        0.04,
        365,
        180,
        0.85,
        1.55,
        frozenset({"ortho_surgery"}),
        lenient_necessity=_ALL_GROUPS,
        not_covered={"genetic": "96"},
        noise_rate=0.015,
        copay=40.0,
    ),
    Payer(
        "meridian",
        "39026",
        "Meridian Choice Plans",
        "12",
        0.04,
        180,
        120,
        1.1,
        1.38,
        frozenset({"advanced_imaging", "sleep_study", "specialty_drug"}),
        lenient_necessity=frozenset({"mri_knee", "physical_therapy"}),
        not_covered={"genetic": "96", "screening": "204"},
        partially_covered=frozenset({"infusion"}),
        therapy_visit_limit=20,
        noise_rate=0.007,
        copay=30.0,
    ),
    Payer(
        "liberty_military",
        "99726",
        "Liberty Military Health (TRICARE)",
        "CH",
        0.05,
        365,
        90,
        1.0,
        1.05,
        frozenset({"advanced_imaging", "sleep_study", "genetic", "ortho_surgery"}),
        lenient_necessity=frozenset({"mri_knee", "physical_therapy", "joint_injection"}),
        not_covered={"telephone_em": "96"},
        referral_required=True,
        noise_rate=0.006,
    ),
)


@dataclass(frozen=True)
class Drift:
    """Payer rule changes on the drift date (the data the model sees after it shifts)."""

    auth_payer: str = "northstar"
    auth_family: str = "physical_therapy"
    necessity_payer: str = "bluebonnet"
    necessity_groups: tuple[str, ...] = ("mri_brain", "mri_lumbar")
    """Groups the payer stops being lenient for: symptom-only diagnoses no longer support them."""


DRIFT = Drift()


@dataclass
class World:
    """Providers, patients and the payers' rules as arrays the generator and adjudicator index."""

    payers: tuple[Payer, ...]
    drift_day: int
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
    # Payer rule tables: [before drift, after drift] x payer x family / group.
    auth_required: np.ndarray = field(repr=False)
    lenient: np.ndarray = field(repr=False)

    @property
    def payer_types(self) -> np.ndarray:
        return np.array([p.payer_type for p in self.payers])


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


def payer_rule_tables(payers: tuple[Payer, ...], drift: Drift) -> tuple[np.ndarray, np.ndarray]:
    """Boolean rule tables indexed [period (0 before drift, 1 after), payer, family / group]."""
    families = {name: i for i, name in enumerate(PROCEDURE_FAMILIES)}
    groups = {name: i for i, name in enumerate(NECESSITY_RULES)}
    auth = np.zeros((2, len(payers), len(families)), dtype=bool)
    lenient = np.zeros((2, len(payers), len(groups)), dtype=bool)
    for p, payer in enumerate(payers):
        for fam in payer.auth_families:
            auth[:, p, families[fam]] = True
        for group in payer.lenient_necessity:
            lenient[:, p, groups[group]] = True
        if payer.key == drift.auth_payer:
            auth[1, p, families[drift.auth_family]] = True
        if payer.key == drift.necessity_payer:
            for group in drift.necessity_groups:
                lenient[1, p, groups[group]] = False
    return auth, lenient


def build_world(rng: np.random.Generator, n_patients: int, days: int, drift_day: int) -> World:
    """Draw the practice's providers and the patient panel; attach the payers' rule tables."""
    payers = PAYERS
    n_payers = len(payers)
    specialty_names = [s.name for s in SPECIALTIES]
    provider_specialty = np.repeat(np.arange(len(SPECIALTIES)), [s.providers for s in SPECIALTIES])
    n_providers = len(provider_specialty)
    npis = make_npis(rng, n_providers + 1 + 150)
    provider_npi, billing_npi, outside_npi = npis[:n_providers], npis[n_providers], npis[-150:]

    # Late joiners: the last provider of some specialties starts part-way through the timeline;
    # each payer enrols them after a credentialing delay (often none: retroactive enrolment).
    start_day = np.zeros(n_providers, dtype=np.int64)
    enrollment = np.full((n_providers, n_payers), -(10**6), dtype=np.int64)
    for name in LATE_JOINER_SPECIALTIES:
        provider = int(np.flatnonzero(provider_specialty == specialty_names.index(name))[-1])
        start_day[provider] = int(rng.integers(int(0.1 * days), int(0.7 * days)))
        delay = np.where(rng.random(n_payers) < 0.75, 0, rng.integers(20, 45, n_payers))
        enrollment[provider] = start_day[provider] + delay
    compliance = rng.uniform(0.93, 0.99, n_providers)

    physicians = np.flatnonzero(
        np.isin(
            provider_specialty,
            [specialty_names.index("family_medicine"), specialty_names.index("internal_medicine")],
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
    next_payer, switch_day = _coverage_changes(rng, payer, types, birth_day, days, payers)
    other_rate = {
        "commercial": 0.05,
        "medicare": 0.12,
        "medicare_advantage": 0.04,
        "medicaid": 0.08,
        "other": 0.10,
    }
    other_coverage = rng.random(n_patients) < np.vectorize(other_rate.get)(types)
    auth, lenient = payer_rule_tables(payers, DRIFT)
    return World(
        payers=payers,
        drift_day=drift_day,
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
        auth_required=auth,
        lenient=lenient,
    )


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
    payer: np.ndarray,
    types: np.ndarray,
    birth_day: np.ndarray,
    days: int,
    payers: tuple[Payer, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Next payer and switch day per patient: churn, and commercial members turning 65."""
    n = len(payer)
    never = np.int64(10**9)
    switch_day = np.full(n, never, dtype=np.int64)
    next_payer = payer.copy()
    type_of = np.array([p.payer_type for p in payers])
    shares = np.array([p.claim_share for p in payers])

    def pick(kinds: tuple[str, ...], size: int) -> np.ndarray:
        allowed = np.flatnonzero(np.isin(type_of, kinds))
        w = shares[allowed] / shares[allowed].sum()
        return allowed[rng.choice(len(allowed), size=size, p=w)]

    churn = {
        "commercial": 0.08,
        "medicaid": 0.2,
        "medicare_advantage": 0.06,
        "medicare": 0.03,
        "other": 0.08,
    }
    moves = rng.random(n) < np.vectorize(churn.get)(types)
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
