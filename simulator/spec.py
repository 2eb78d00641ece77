"""A world's description: its payers and their rules, the practice's habits, drift.

Everything the simulator treats as *the world* lives in one frozen :class:`WorldSpec`; the rest of
the simulator reads rules from it, never from module constants. :func:`default_world_spec` is the
world the simulator was calibrated on (denial-facts.md); :func:`simulator.draw.draw_world_spec`
draws other plausible worlds from a seed, so that a product can be measured on many worlds and
no feature can hard-code one world's rules.

What stays fixed across worlds is medicine and coding, not payer policy: the procedure and
diagnosis catalog, visit templates, the code sets' validity dates (:mod:`simulator.catalog`).

Payer rules are written at *code* level (a payer may want authorization for 72148 and not for
72141); :func:`codes_of` expands catalog families for readability.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from features.codes import DENIAL_CATEGORIES, code_tables
from simulator.catalog import NECESSITY_RULES, PROCEDURES, NecessityRule

# -- the practice --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Specialty:
    """A specialty of the practice: its NUCC taxonomy code and share of the claim volume."""

    name: str
    taxonomy: str
    providers: int
    claim_share: float
    templates: str
    """Whose visit templates its providers use (nurse practitioners see primary care)."""


SPECIALTY_TAXONOMY: dict[str, str] = {
    "family_medicine": "207Q00000X",
    "nurse_practitioner": "363LF0000X",
    "internal_medicine": "207R00000X",
    "cardiology": "207RC0000X",
    "orthopaedics": "207X00000X",
    "neurology": "2084N0400X",
    "radiology": "2085R0202X",
    "physical_therapy": "225100000X",
}
"""The specialties the catalog has visit templates for (nurse practitioners use primary care's)."""

ORDER_TAKING_SPECIALTIES = frozenset({"radiology", "physical_therapy"})
"""Specialties that only perform services another provider ordered: their claims need NM1*DN."""
REFERRED_SPECIALTIES = frozenset({"cardiology", "orthopaedics", "neurology"})
"""Specialist visits that gatekeeper (HMO-style) plans want a PCP referral for."""


@dataclass(frozen=True)
class PracticeHabits:
    """How carefully the practice bills; each rate is a visible defect when it happens."""

    duplicate_rate: float = 0.0035
    rejection_rate: float = 0.0175
    late_submission_share: float = 0.035
    referring_missing: float = 0.035
    rendering_missing: float = 0.0025
    rendering_typo: float = 0.001
    rendering_unknown: float = 0.001
    taxonomy_missing: float = 0.025
    pointer_missing: float = 0.006
    auth_attach: float = 0.93
    auth_attach_unneeded: float = 0.15
    referral_attach: float = 0.92
    preventive_miscoded: float = 0.03
    screening_wrong_sex: float = 0.01
    medicare_preventive_as_awv: float = 0.9
    auth_learning_days: int = 150
    """After a payer adds a code to its auth list, the practice takes this long to catch up."""
    diagnosis_mix: tuple[tuple[str, float], ...] = (
        ("core", 0.943),
        ("weak", 0.045),
        ("unrelated", 0.012),
    )
    """How often the principal diagnosis of a ruled procedure is core / weak / unrelated."""
    modifier_compliance: tuple[float, float] = (0.85, 0.96)
    """Range of the providers' coders' reliability in adding modifiers 25 and 59 when needed."""
    late_joiners: tuple[str, ...] = ("family_medicine", "physical_therapy", "cardiology")
    """One provider of each joins during the timeline and is credentialed late."""
    member_id_typo: float = 0.002
    """A character of the member ID mistyped (CARC 31/140)."""
    stale_member_id: float = 0.03
    """Claims to a patient's new payer in the first 60 days that still carry the old ID."""
    coverage_notice_immediate: float = 0.75
    """Share of payer changes the practice knows of on the day; the rest it learns later."""
    coverage_notice_days: float = 35.0
    """Mean days it goes on billing the old payer (CARC 27) when it learns late."""
    other_coverage_known: float = 0.8
    """Share of patients with another coverage whose other coverage the practice knows."""
    primary_paid_missing: float = 0.04
    """Secondary claims sent without the primary payer's paid amount (CARC 16 + MA04)."""
    accident_date_missing: float = 0.04
    ndc_missing: float = 0.05
    clia_missing: float = 0.04
    clia_on_line: float = 0.2
    """Share of lab claims whose CLIA number goes on the lines (2400 REF*X4)."""
    attachment_sent: float = 0.8
    """Share of claims the practice knows need records that carry a PWK attachment."""
    attachment_on_request: float = 0.15
    """Share of those sent as 'AA' (available on request) instead of faxed or mailed."""
    delay_reason_share: float = 0.45
    """Share of claims sent past 90 days that carry a delay reason code (CLM20)."""
    onset_error: float = 0.01
    """Therapy claims whose onset date is after the service date (a visible defect)."""
    units_overbilled: float = 0.004
    """Lines billed with more units than the visit template allows (a typo or a habit)."""
    claim_note_share: float = 0.03


# -- payers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PayerSpec:
    """One payer's rules. Codes are CPT/HCPCS codes of :data:`simulator.catalog.PROCEDURES`,
    groups are keys of the world's necessity rules, families are catalog families."""

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
    auth_codes: frozenset[str] = frozenset()
    """Codes that need a prior authorization whatever the units."""
    auth_above_units: tuple[tuple[str, int], ...] = ()
    """(code, N): the code needs an authorization only when a line bills more than N units."""
    lenient_necessity: frozenset[str] = frozenset()
    """Necessity groups where the payer also accepts the 'weak' diagnoses."""
    not_covered: tuple[tuple[str, str], ...] = ()
    """(code, CARC) for services the plan never covers (CARC 49, 96 or 204)."""
    partially_covered: frozenset[str] = frozenset()
    """Codes covered by some of the payer's plans only (plan not visible): CARC 204 at times."""
    partial_coverage_denial: float = 0.3
    referral_required: bool = False
    """Gatekeeper plan: specialist visits need a PCP referral (CARC 288 without one)."""
    referral_codes: frozenset[str] = frozenset()
    """Codes that need a referral whoever renders them (on top of specialist visits)."""
    pays_nurse_practitioners: bool = True
    requires_taxonomy: bool = False
    visit_limits: tuple[tuple[str, int], ...] = ()
    """(family, visits per calendar year); visits beyond it get CARC 119."""
    unit_limits: tuple[tuple[str, int], ...] = ()
    """(code, most units per line and date of service), MUE-style."""
    unit_limit_carc: str = "151"
    """What the payer sends past a unit limit: 151 (frequency, necessity) or 119 (benefit max)."""
    ncci_pairs: tuple[tuple[str, str], ...] = ()
    """(column 1, column 2) edits the payer applies: the column-2 line needs 59/X{EPSU}."""
    ncci_modifiers: frozenset[str] = frozenset({"59", "XE", "XP", "XS", "XU"})
    """Modifiers the payer honours to pay a column-2 line (some take the X modifiers only)."""
    noise_rate: float = 0.005
    """Denials for reasons the payer never explains (CARC A1)."""
    copay: float = 0.0
    high_dollar_threshold: float = 1500.0
    high_dollar_review: float = 0.12
    """Chance (times strictness) the payer asks for records on a claim above the threshold."""
    high_level_visit_review: float = 0.06
    """Chance (times strictness) it asks for records on a 99215 / 99205."""
    records_review_families: frozenset[str] = frozenset()
    """Families whose claims the payer reviews for records at ``records_review_rate``."""
    records_review_rate: float = 0.0
    records_request_rate: float = 0.0025
    """Chance (times strictness) of a records request on any claim."""
    unprocessable_rate: float = 0.002
    """Claims returned unprocessable (CARC 16 + MA130), times strictness: lost, garbled."""
    requires_ndc: bool = False
    """Drug (J-code) lines need an NDC (2410 LIN), else CARC 16 + M119."""
    requires_clia: bool = False
    """Lab lines need the lab's CLIA number, else CARC 16 + MA120."""
    attachment_codes: frozenset[str] = frozenset()
    """Codes the payer adjudicates only with records attached (PWK), else CARC 252."""
    honours_delay_reason: bool = True
    """A claim past the filing limit with a delay reason code (CLM20) is still considered."""
    denies_pending_liability: bool = False
    """Injury claims without other coverage are denied pending the liable carrier (19/20/21)."""
    line_level_auth: bool = False
    """The practice puts authorization numbers on the lines (2400 REF*G1) for this payer."""

    @property
    def payer_type(self) -> str:
        return code_tables().payer_type_for_indicator(self.filing_indicator)


DRIFT_KINDS = (
    "auth_add",
    "lenient_withdraw",
    "diagnosis_withdraw",
    "exclusion_add",
    "filing_limit",
)


@dataclass(frozen=True)
class DriftEvent:
    """One payer rule change, in force for services on or after its date.

    ``kind``: ``auth_add`` (``codes`` join the auth list), ``lenient_withdraw`` (weak diagnoses
    no longer accepted for ``groups``), ``diagnosis_withdraw`` (``diagnoses`` stop supporting
    ``groups`` at all), ``exclusion_add`` (``codes`` become non-covered with ``carc``),
    ``filing_limit`` (the filing limit becomes ``days``).
    """

    kind: str
    payer: str
    """The payer's ``key``."""
    at_fraction: float | None = None
    """How far into the timeline; ``None``: the configuration's ``drift_fraction``."""
    codes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    diagnoses: tuple[str, ...] = ()
    carc: str = ""
    days: int = 0

    def __post_init__(self) -> None:
        if self.kind not in DRIFT_KINDS:
            raise ValueError(f"drift kind must be one of {DRIFT_KINDS}, got {self.kind!r}")


# -- the world -----------------------------------------------------------------------------------


def _by_type(commercial: float, medicare: float, ma: float, medicaid: float, other: float):  # noqa: ANN202
    return {
        "commercial": commercial,
        "medicare": medicare,
        "medicare_advantage": ma,
        "medicaid": medicaid,
        "other": other,
    }


@dataclass(frozen=True)
class WorldSpec:
    """Everything that makes one world: payers and rules, the practice, mechanisms, drift."""

    payers: tuple[PayerSpec, ...]
    specialties: tuple[Specialty, ...]
    habits: PracticeHabits = field(default_factory=PracticeHabits)
    necessity: dict[str, NecessityRule] = field(default_factory=lambda: dict(NECESSITY_RULES))
    """Which diagnoses support which procedure group, in this world."""
    drift: tuple[DriftEvent, ...] = ()
    category_scale: dict[str, float] = field(default_factory=dict)
    """Denial category -> factor on its sub-reasons' probabilities (absent: 1; 0: switched off)."""
    coverage_base: dict[str, float] = field(
        default_factory=lambda: _by_type(0.0075, 0.0065, 0.018, 0.014, 0.008)
    )
    """Chance a claim meets inactive coverage, by payer type, before visible-risk multipliers."""
    identity_base: float = 0.003
    other_coverage_base: dict[str, float] = field(
        default_factory=lambda: _by_type(0.25, 0.2, 0.25, 0.3, 0.25)
    )
    """Chance the payer's coordination-of-benefits check finds the other, primary coverage the
    practice did not know of, and denies (CARC 22)."""
    medicare_age_on_commercial: float = 0.07
    other_coverage_rate: dict[str, float] = field(
        default_factory=lambda: _by_type(0.05, 0.12, 0.04, 0.08, 0.10)
    )
    """Share of patients with another coverage, by payer type."""
    churn_rate: dict[str, float] = field(
        default_factory=lambda: _by_type(0.08, 0.03, 0.06, 0.2, 0.08)
    )
    """Share of patients who change payer during the timeline, by payer type."""
    secondary_share: dict[str, float] = field(
        default_factory=lambda: _by_type(0.35, 0.4, 0.3, 1.0, 0.5)
    )
    """Of the patients with another coverage, the share for whom the payer on file is not the
    primary one (Medicaid always pays last)."""
    accident_rate: float = 0.06
    """Share of injury-prone visits (orthopaedics, therapy, acute pain) due to an accident."""
    clearinghouse_edits: bool = False
    """The clearinghouse rejects a rendering NPI failing its check digit and a line without a
    diagnosis pointer before the payer sees them; otherwise the payer denies them."""
    practice_state: str = "TX"
    neighbour_states: tuple[str, ...] = ("LA", "OK", "NM", "AR")
    out_of_state_share: float = 0.03
    seed: int | None = None
    """The world seed it was drawn from (``None``: the default world)."""

    def __post_init__(self) -> None:
        keys = [p.key for p in self.payers]
        if len(set(keys)) != len(keys) or len({p.payer_id for p in self.payers}) != len(keys):
            raise ValueError("payer keys and payer IDs must be unique")
        known_codes = {p.code for p in PROCEDURES}
        for payer in self.payers:
            used = {
                *payer.auth_codes,
                *(c for c, _ in payer.auth_above_units),
                *(c for c, _ in payer.not_covered),
                *payer.partially_covered,
                *payer.referral_codes,
                *(c for c, _ in payer.unit_limits),
                *(c for pair in payer.ncci_pairs for c in pair),
            }
            if used - known_codes:
                raise ValueError(f"payer {payer.key}: unknown codes {sorted(used - known_codes)}")
            if set(payer.lenient_necessity) - set(self.necessity):
                raise ValueError(f"payer {payer.key}: unknown necessity groups")
        for event in self.drift:
            if event.payer not in keys:
                raise ValueError(f"drift event names unknown payer {event.payer!r}")
        if set(self.category_scale) - set(DENIAL_CATEGORIES):
            raise ValueError(
                f"unknown categories {set(self.category_scale) - set(DENIAL_CATEGORIES)}"
            )

    def scale(self, category: str) -> float:
        return float(self.category_scale.get(category, 1.0))

    def payer_index(self, key: str) -> int:
        return next(i for i, p in enumerate(self.payers) if p.key == key)


def codes_of(*families: str) -> frozenset[str]:
    """The catalog's codes in these families."""
    return frozenset(p.code for p in PROCEDURES if p.family in families)


def _excluded(carc: str, *families: str) -> tuple[tuple[str, str], ...]:
    return tuple((p.code, carc) for p in PROCEDURES if p.family in families)


DEFAULT_SPECIALTIES: tuple[Specialty, ...] = tuple(
    Specialty(name, SPECIALTY_TAXONOMY[name], providers, share, templates)
    for name, providers, share, templates in (
        ("family_medicine", 7, 0.24, "family_medicine"),
        ("nurse_practitioner", 2, 0.04, "family_medicine"),
        ("internal_medicine", 5, 0.19, "internal_medicine"),
        ("cardiology", 3, 0.09, "cardiology"),
        ("orthopaedics", 3, 0.09, "orthopaedics"),
        ("neurology", 2, 0.06, "neurology"),
        ("radiology", 2, 0.12, "radiology"),
        ("physical_therapy", 4, 0.17, "physical_therapy"),
    )
)

DEFAULT_NCCI_PAIRS: tuple[tuple[str, str], ...] = (
    ("97530", "97140"),  # therapeutic activities vs manual therapy, modifier indicator 1
    ("96365", "96372"),  # IV infusion vs IM/SC injection on the same day
    ("29881", "29877"),  # meniscectomy includes cartilage shaving of the same knee
)

_IMAGING_AND_SPECIALTY = codes_of(
    "advanced_imaging",
    "cardiac_imaging",
    "sleep_study",
    "specialty_drug",
    "ortho_surgery",
    "genetic",
)
_ALL_GROUPS = frozenset(NECESSITY_RULES)
_GOVERNMENT_REVIEW = frozenset({"physical_therapy", "sleep_study", "cardiac_imaging"})


def _payer(
    key: str,
    payer_id: str,
    name: str,
    indicator: str,
    share: float,
    filing: int,
    appeal: int,
    strictness: float,
    fee: float,
    auth: frozenset[str],
    **rules: object,
) -> PayerSpec:
    """A default-world payer: every payer applies the three NCCI pairs; government payers
    review therapy, sleep and cardiac imaging records, want the lab's CLIA number and accept a
    delay reason past the filing limit; Medicaid wants NDCs on drug lines."""
    payer_type = code_tables().payer_type_for_indicator(indicator)
    government = payer_type in {"medicare", "medicare_advantage", "medicaid"}
    defaults: dict[str, object] = {
        "ncci_pairs": DEFAULT_NCCI_PAIRS,
        "records_review_families": _GOVERNMENT_REVIEW if government else frozenset(),
        "records_review_rate": 0.03 if government else 0.0,
        "requires_clia": government,
        "requires_ndc": payer_type == "medicaid",
        "honours_delay_reason": government,
    }
    return PayerSpec(
        key, payer_id, name, indicator, share, filing, appeal, strictness, fee, auth,
        **{**defaults, **rules},  # type: ignore[arg-type]
    )  # fmt: skip


def _default_payers() -> tuple[PayerSpec, ...]:
    limit = "physical_therapy"
    # fmt: off
    return (
        _payer(
            "medicare", "04412", "Medicare Part B (MAC Jurisdiction H)", "MB", 0.15, 365, 120,
            0.9, 1.0, frozenset(),
            lenient_necessity=frozenset({"mri_knee", "physical_therapy", "joint_injection"}),
            not_covered=_excluded("49", "preventive"),
            partially_covered=codes_of("genetic"),
            noise_rate=0.005,
        ),
        _payer(
            "evergreen_ma", "61115", "Evergreen Medicare Advantage HMO", "16", 0.10, 365, 60,
            1.3, 1.0, _IMAGING_AND_SPECIALTY | codes_of("infusion", "dme", "physical_therapy"),
            lenient_necessity=frozenset({"physical_therapy"}),
            referral_required=True, visit_limits=((limit, 16),), noise_rate=0.008, copay=15.0,
        ),
        _payer(
            "keystone_ma", "SX141", "Keystone Senior Advantage PPO", "16", 0.07, 365, 60,
            1.3, 1.0, _IMAGING_AND_SPECIALTY,
            lenient_necessity=frozenset({"mri_knee", "physical_therapy", "joint_injection"}),
            partially_covered=codes_of("telephone_em"), line_level_auth=True,
            unit_limits=(("J1745", 40), ("97110", 3)), noise_rate=0.009, copay=20.0,
        ),
        _payer(
            "bayou_medicaid", "68071", "Bayou Community Health Plan (Medicaid)", "MC", 0.10, 180,
            90, 1.05, 0.72,
            _IMAGING_AND_SPECIALTY | codes_of("infusion", "dme", "physical_therapy"),
            not_covered=_excluded("204", "telephone_em") + _excluded("96", "vaccine"),
            referral_required=True, requires_taxonomy=True, visit_limits=((limit, 12),),
            noise_rate=0.010,
        ),
        _payer(
            "riverbend_medicaid", "77034", "Riverbend Health Partners (Medicaid)", "MC", 0.08,
            365, 60, 1.1, 0.70, _IMAGING_AND_SPECIALTY | codes_of("infusion", "dme"),
            lenient_necessity=frozenset({"physical_therapy"}),
            partially_covered=codes_of("vaccine"), requires_taxonomy=True,
            visit_limits=((limit, 15),), noise_rate=0.009,
        ),
        _payer(
            "northstar", "87716", "Northstar Health Insurance", "CI", 0.13, 90, 180, 1.0, 1.45,
            _IMAGING_AND_SPECIALTY,
            lenient_necessity=frozenset({"mri_knee", "joint_injection", "physical_therapy",
                                         "ct_chest"}),
            not_covered=_excluded("204", "screening") + _excluded("204", "telephone_em"),
            visit_limits=((limit, 16), ("joint_injection", 3)), unit_limits=(("J1745", 40),),
            unit_limit_carc="119", denies_pending_liability=True, noise_rate=0.006, copay=30.0,
        ),
        _payer(
            "bluebonnet", "84981", "Bluebonnet Blue Cross Blue Shield", "BL", 0.11, 180, 180,
            0.9, 1.40,
            codes_of("advanced_imaging", "genetic", "sleep_study", "ortho_surgery",
                     "specialty_drug"),
            lenient_necessity=frozenset({"mri_brain", "mri_lumbar", "mri_knee",
                                         "physical_therapy", "joint_injection", "ct_abdomen"}),
            partially_covered=codes_of("genetic"), requires_ndc=True,
            visit_limits=((limit, 20), ("joint_injection", 4)), noise_rate=0.005, copay=25.0,
        ),
        _payer(
            "crescent", "60045", "Crescent Health PPO", "12", 0.07, 120, 180, 1.05, 1.50,
            _IMAGING_AND_SPECIALTY | codes_of("dme", "physical_therapy"),
            lenient_necessity=frozenset({"physical_therapy", "joint_injection"}),
            not_covered=_excluded("96", "dme") + _excluded("204", "screening"),
            partially_covered=codes_of("sleep_study"), visit_limits=((limit, 15),),
            denies_pending_liability=True, noise_rate=0.007, copay=35.0,
        ),
        _payer(
            "harbor_hmo", "62318", "Harbor Health HMO", "HM", 0.06, 90, 60, 1.2, 1.35,
            _IMAGING_AND_SPECIALTY | codes_of("infusion", "dme", "physical_therapy"),
            not_covered=_excluded("204", "screening") + _excluded("204", "telephone_em"),
            referral_required=True, pays_nurse_practitioners=False,
            visit_limits=((limit, 12),), attachment_codes=frozenset({"27447", "29881"}),
            denies_pending_liability=True, noise_rate=0.008, copay=20.0,
        ),
        _payer(
            "pinnacle_tpa", "SX123", "Pinnacle Benefit Administrators", "CI", 0.04, 365, 180,
            0.85, 1.55, codes_of("ortho_surgery"),
            lenient_necessity=_ALL_GROUPS, not_covered=_excluded("96", "genetic"),
            noise_rate=0.015, copay=40.0,
        ),
        _payer(
            "meridian", "39026", "Meridian Choice Plans", "12", 0.04, 180, 120, 1.1, 1.38,
            codes_of("advanced_imaging", "sleep_study", "specialty_drug"),
            lenient_necessity=frozenset({"mri_knee", "physical_therapy"}),
            not_covered=_excluded("96", "genetic", "dme") + _excluded("204", "screening"),
            partially_covered=codes_of("infusion"), visit_limits=((limit, 20),),
            noise_rate=0.007, copay=30.0,
        ),
        _payer(
            "liberty_military", "99726", "Liberty Military Health (TRICARE)", "CH", 0.05, 365,
            90, 1.0, 1.05,
            codes_of("advanced_imaging", "sleep_study", "genetic", "ortho_surgery"),
            lenient_necessity=frozenset({"mri_knee", "physical_therapy", "joint_injection"}),
            not_covered=_excluded("96", "telephone_em"), referral_required=True,
            noise_rate=0.006,
        ),
    )
    # fmt: on


def default_world_spec() -> WorldSpec:
    """The world the simulator was calibrated on (BENCHMARKS.md "Simulator")."""
    return WorldSpec(
        payers=_default_payers(),
        specialties=DEFAULT_SPECIALTIES,
        drift=(
            DriftEvent("auth_add", "northstar", codes=tuple(sorted(codes_of("physical_therapy")))),
            DriftEvent("lenient_withdraw", "bluebonnet", groups=("mri_brain", "mri_lumbar")),
        ),
    )
