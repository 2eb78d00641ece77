"""Payer adjudication: causal denial mechanisms with exactly known probabilities.

Each mechanism (a root-cause category of :data:`features.codes.DENIAL_CATEGORIES`) is the union
of named sub-reasons (:data:`REASONS`), each with a probability computed from

* fields on the claim (codes, modifiers, units, place of service, dates, payer, which NPIs,
  authorization, referral, NDC, CLIA and attachment fields are present, accident and other
  coverage fields, patient age and sex, the member ID as written),
* history a reader of the contract tables can rebuild at submission time: the first submissions
  (frequency code 1) that reached the payer (not rejected) before this one, in submission-date
  order with ties broken by service date,
* the payer's published rules as of the service date (including the drift), its provider
  enrolment roster,
* and two facts of the world the claim does not show: whether the patient's coverage with this
  payer had ended (the practice billed the old payer), and whether the patient has another,
  primary coverage the practice does not know of. Earlier remittances reveal them in part
  (DTM*036 coverage expiration, an earlier CARC 22), as in real data.

Adjudication runs in two phases, as payers do:

1. **Claim level** (eligibility, filing limit, duplicates, credentialing, missing claim data,
   referral, records requests, unexplained...): categories are checked in the fixed
   :data:`ADJUDICATION_ORDER` with independent draws; the first that fires denies the whole
   claim (every line $0, the CARC on the claim).
2. **Line level**, if the claim passed: each service line is checked on its own (coding, line
   authorization, exclusions, limits, necessity, NDC, CLIA, attachments...), lines
   independently given the claim; a line that fails pays $0 with the CARC in its CAS, the
   other lines are paid.

The product labels a claim denied from the 835 (:mod:`features.x12.outcomes`): CLP02 = 4, or $0
paid with a denial CARC, or denial adjustments above half the billed charge; its primary CARC is
the largest denial adjustment. The truth is the exact probability of that label, and of the
label with its primary CARC in each category: claim-level denials give it directly; for the line
phase every subset of the claim's lines that can fail is enumerated (lines that cannot fail are
left out; a claim has at most a handful of risky lines), with the chance that the lines left
paid pay $0 (a deductible can take a whole first line, see
:func:`simulator.remittance.zero_paid_probability`). No approximation is made.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.codes import DENIAL_CATEGORIES
from simulator.catalog import EM_FAMILIES, PROCEDURE_FAMILIES, PROCEDURES
from simulator.encounters import (
    ATTACHMENT_ON_REQUEST,
    ATTACHMENT_SENT,
    CODE_FAMILY,
    CODE_GROUP,
    CODE_INDEX,
    FAMILY_INDEX,
    MEMBER_ID_STALE,
    MEMBER_ID_TYPO,
    MOD,
    PLACES,
    PREVENTIVE_DIAGNOSIS,
    PREVENTIVE_FAMILIES,
    RENDERING_MISSING,
    RENDERING_OK,
    RENDERING_TYPO,
    RENDERING_UNKNOWN,
    Encounters,
)
from simulator.spec import ORDER_TAKING_SPECIALTIES, REFERRED_SPECIALTIES
from simulator.world import EXCLUSION_CARCS, NEVER, World

if TYPE_CHECKING:
    from simulator.remittance import LinePayment

ADJUDICATION_ORDER: tuple[str, ...] = (
    "duplicate",
    "timely_filing",
    "eligibility",
    "credentialing",
    "missing_information",
    "coding",
    "authorization",
    "non_covered",
    "medical_necessity",
    "documentation",
    "other",
)
"""Front-end edits first (duplicate, filing limit, eligibility), then clinical and review edits.
Every denial category once (tested)."""


@dataclass(frozen=True)
class DenialReason:
    """One way a mechanism fires, with the codes the payer reports for it."""

    name: str
    category: str
    carcs: tuple[str, ...]
    carc_weights: tuple[float, ...] = (1.0,)
    rarc: str | None = None
    line_level: bool = False
    """Checked line by line: it denies the lines it hits (CAS in their SVC loop), not the claim."""
    not_recognized_share: float = 0.0
    """Share of these denials sent as CLP02 = 4 (patient not recognized) instead of 1."""


REASONS: tuple[DenialReason, ...] = (
    DenialReason("duplicate_submission", "duplicate", ("18",)),
    DenialReason("filed_after_limit", "timely_filing", ("29",)),
    DenialReason("coverage_not_active", "eligibility", ("27", "26", "200"), (0.6, 0.25, 0.15)),
    DenialReason("coverage_terminated", "eligibility", ("27",)),
    DenialReason(
        "member_not_identified", "eligibility", ("31", "140"), (0.6, 0.4), not_recognized_share=0.7
    ),
    DenialReason("other_payer_primary", "eligibility", ("22",)),
    DenialReason("medicare_primary", "eligibility", ("22", "109"), (0.5, 0.5)),
    DenialReason("hospice_enrolled", "eligibility", ("B9",)),
    DenialReason("workers_comp_liable", "eligibility", ("19",)),
    DenialReason("liability_carrier_liable", "eligibility", ("20",)),
    DenialReason("no_fault_carrier_liable", "eligibility", ("21",)),
    DenialReason("provider_not_enrolled", "credentialing", ("185", "B7", "242"), (0.5, 0.3, 0.2)),
    DenialReason("provider_type_not_paid", "credentialing", ("170",)),
    DenialReason("ordering_provider_missing", "missing_information", ("16",), rarc="N265"),
    DenialReason("rendering_npi_missing", "missing_information", ("206",), rarc="N290"),
    DenialReason("rendering_npi_invalid", "missing_information", ("207",), rarc="N290"),
    DenialReason("rendering_npi_not_matched", "missing_information", ("208",), rarc="N290"),
    DenialReason(
        "diagnosis_pointer_missing", "missing_information", ("16",), rarc="M76", line_level=True
    ),
    DenialReason("taxonomy_missing", "missing_information", ("16",), rarc="N255"),
    DenialReason("primary_payment_missing", "missing_information", ("16",), rarc="MA04"),
    DenialReason("unprocessable_claim", "missing_information", ("16",), rarc="MA130"),
    DenialReason("ndc_missing", "missing_information", ("16",), rarc="M119", line_level=True),
    DenialReason("clia_missing", "missing_information", ("16",), rarc="MA120", line_level=True),
    DenialReason("modifier_25_missing", "coding", ("4",), line_level=True),
    DenialReason("ncci_unbundled", "coding", ("236", "97"), (0.7, 0.3), line_level=True),
    DenialReason("code_invalid_on_date", "coding", ("181",), line_level=True),
    DenialReason("age_mismatch", "coding", ("6",), line_level=True),
    DenialReason("sex_mismatch", "coding", ("7",), line_level=True),
    DenialReason("place_of_service_mismatch", "coding", ("5",), line_level=True),
    DenialReason("authorization_absent", "authorization", ("197",), line_level=True),
    DenialReason("authorization_exceeded", "authorization", ("198",), line_level=True),
    DenialReason("referral_absent", "authorization", ("288",)),
    DenialReason("routine_exam_not_covered", "non_covered", ("49",), line_level=True),
    DenialReason("plan_exclusion", "non_covered", ("96",), rarc="N130", line_level=True),
    DenialReason("benefit_exclusion", "non_covered", ("204",), line_level=True),
    DenialReason("benefit_maximum", "non_covered", ("119",), line_level=True),
    DenialReason("units_above_benefit", "non_covered", ("119",), line_level=True),
    DenialReason(
        "diagnosis_unrelated", "medical_necessity", ("11", "167"), (0.6, 0.4), line_level=True
    ),
    DenialReason("diagnosis_not_accepted", "medical_necessity", ("50",), line_level=True),
    DenialReason("too_frequent", "medical_necessity", ("151",), line_level=True),
    DenialReason("units_above_limit", "medical_necessity", ("151",), line_level=True),
    DenialReason(
        "unlisted_code_description", "documentation", ("252",), rarc="N350", line_level=True
    ),
    DenialReason(
        "increased_service_records", "documentation", ("252",), rarc="N706", line_level=True
    ),
    DenialReason("attachment_missing", "documentation", ("252",), rarc="N706", line_level=True),
    DenialReason(
        "attachment_not_received", "documentation", ("252",), rarc="M127", line_level=True
    ),
    DenialReason("high_dollar_review", "documentation", ("252", "226"), (0.6, 0.4), rarc="M127"),
    DenialReason(
        "high_level_visit_review", "documentation", ("226",), rarc="M127", line_level=True
    ),
    DenialReason("records_review", "documentation", ("252",), rarc="M127"),
    DenialReason("unexplained", "other", ("A1",), rarc="N10"),
)
REASON_INDEX = {r.name: i for i, r in enumerate(REASONS)}

# --- How payers respond to a visible defect (the world's spec scales them by category) --------
CARC_FOR_CREDENTIALING = 0.85
UNIT_LIMIT_DENIAL = 0.9
LIABILITY_PENDING = 0.4
"""Chance a payer that waits for the liable carrier denies an injury claim without one."""
MOST_SCALED = 0.97
"""A scaled-up probability stays below this (a defect is never denied for sure)."""


CLAIM_REASONS: tuple[int, ...] = tuple(i for i, r in enumerate(REASONS) if not r.line_level)
LINE_REASONS: tuple[int, ...] = tuple(i for i, r in enumerate(REASONS) if r.line_level)
LIABILITY_REASON = {
    1: "no_fault_carrier_liable",
    2: "workers_comp_liable",
    3: "liability_carrier_liable",
}
"""Accident kind on the claim (1 AA auto, 2 EM employment, 3 OA other) -> who is liable."""
_ORDER_TO_CONTRACT = np.array([DENIAL_CATEGORIES.index(c) for c in ADJUDICATION_ORDER])
_CATEGORY_OF_REASON = np.array([ADJUDICATION_ORDER.index(r.category) for r in REASONS])


@dataclass
class Adjudication:
    """Exact label probabilities and the realised outcome of every claim row and line."""

    cause_probability: np.ndarray
    """(n, K) P(labelled denied with its primary CARC in category k), K in DENIAL_CATEGORIES."""
    denial_probability: np.ndarray
    denied: np.ndarray
    """The product's label of the realised remittance."""
    category: np.ndarray
    """Category of the primary CARC (index into DENIAL_CATEGORIES), -1 when not denied."""
    reason: np.ndarray
    """Index into REASONS of the primary denial (also for lines denied on a paid claim), -1."""
    carc: np.ndarray
    """Primary CARC ('' when nothing was denied)."""
    not_recognized: np.ndarray
    """CLP02 = 4 (patient not recognized) for this denial."""
    claim_reason: np.ndarray
    """Index into REASONS when a claim-level reason denied the whole claim, else -1."""
    line_reason: np.ndarray
    """Per service line: index into REASONS of a line-level denial, else -1."""
    line_carc: np.ndarray
    """Per service line: its denial CARC ('' when paid)."""


@dataclass
class ClaimFacts:
    """Everything the mechanisms may look at, derived from the claim, history and the world."""

    n: int
    start: pd.Timestamp
    payer: np.ndarray
    payer_type: np.ndarray
    strictness: np.ndarray
    service_day: np.ndarray
    lag: np.ndarray
    age: np.ndarray
    sex: np.ndarray
    place: np.ndarray
    specialty: np.ndarray
    total_charge: np.ndarray
    family: np.ndarray
    """(n, n_families) claim has a line in this procedure family."""
    period: np.ndarray
    """Rule period of the service date (see ``simulator.world.RuleTables``)."""
    first_with_payer: np.ndarray
    gap_days: np.ndarray
    over_visit_limit: np.ndarray
    """(n, n_families): a visit of a family the payer limits per calendar year, past the limit."""
    earlier_identical: np.ndarray
    enrolled: np.ndarray


def claim_facts(
    encounters: Encounters,
    world: World,
    start: pd.Timestamp,
    seen: np.ndarray,
    line_charge: np.ndarray,
) -> ClaimFacts:
    """Visible facts and history for every claim. ``seen``: rows that reached the payer."""
    claims, lines = encounters.claims, encounters.lines
    n = len(claims)
    payer = claims["payer"].to_numpy()
    day = claims["service_day"].to_numpy()
    submitted = claims["submission_day"].to_numpy()
    patient = claims["patient"].to_numpy()
    provider = claims["provider"].to_numpy()
    claim = lines["claim"].to_numpy()
    family = np.zeros((n, len(PROCEDURE_FAMILIES)), dtype=bool)
    family[claim, CODE_FAMILY[lines["code"].to_numpy()]] = True
    birth_missing = claims["rejection"].to_numpy() == 3
    age = np.where(birth_missing, np.nan, (day - world.patient_birth_day[patient]) / 365.25)

    # History: the claims the payer saw, in submission order (ties: service date, then row).
    history = pd.DataFrame(
        {
            "patient": patient,
            "payer": payer,
            "day": day,
            "submitted": submitted,
            "signature": procedure_signature(lines, n),
            "year": _year_of_day(start, day),
        }
    )[seen]
    history = history.iloc[
        np.lexsort(
            (history.index.to_numpy(), history["day"].to_numpy(), history["submitted"].to_numpy())
        )
    ]
    first_with_payer = np.zeros(n, dtype=bool)
    first_with_payer[history.index] = history.groupby(["patient", "payer"]).cumcount().eq(0)
    # Gap: days from the latest service date among the patient's earlier claims (0 if later).
    latest = history.groupby("patient")["day"].cummax()
    previous_latest = latest.groupby(history["patient"]).shift(1).to_numpy()
    gap = np.full(n, np.nan)
    gap[history.index] = np.maximum(history["day"].to_numpy() - previous_latest, 0)
    # Visits of a limited family, counted per patient, payer and calendar year.
    over_limit = np.zeros((n, len(PROCEDURE_FAMILIES)), dtype=bool)
    limits = world.rules.visit_limit
    for f in np.flatnonzero((limits < NEVER).any(axis=0)):
        visits = history[family[history.index.to_numpy(), f]]
        number = visits.groupby(["patient", "payer", "year"]).cumcount().to_numpy() + 1
        rows = visits.index.to_numpy()
        over_limit[rows, f] = number > limits[payer[rows], f]
    identical = np.zeros(n, dtype=bool)
    identical[history.index] = (
        history.groupby(["patient", "day", "signature"]).cumcount().to_numpy() > 0
    )

    known_provider = claims["rendering_state"].to_numpy() == RENDERING_OK
    enrolled = ~known_provider | (world.enrollment_day[provider, payer] <= day)
    return ClaimFacts(
        n=n,
        start=start,
        payer=payer,
        payer_type=world.payer_types[payer],
        strictness=world.payer_values("strictness")[payer],
        service_day=day,
        lag=submitted - day,
        age=age,
        sex=world.patient_sex[patient],
        place=np.array(PLACES)[claims["place"].to_numpy()],
        specialty=world.specialty_names[claims["specialty"].to_numpy()],
        total_charge=np.bincount(claim, weights=line_charge, minlength=n),
        family=family,
        period=world.rules.period(day),
        first_with_payer=first_with_payer,
        gap_days=gap,
        over_visit_limit=over_limit,
        earlier_identical=identical,
        enrolled=enrolled,
    )


def _too_frequent(encounters: Encounters, world: World, seen: np.ndarray) -> np.ndarray:
    """Lines repeating a frequency-limited procedure group too soon.

    Compares each claim with the patient's previously submitted claim in the same group; every
    line of the group on the later claim is too frequent.
    """
    claims, lines = encounters.claims, encounters.lines
    repeat_interval = world.rules.repeat_interval
    group = CODE_GROUP[lines["code"].to_numpy()]
    line_claim = lines["claim"].to_numpy()
    limited = (group >= 0) & (repeat_interval[np.maximum(group, 0)] > 0)
    frame = pd.DataFrame({"claim": line_claim[limited], "group": group[limited]}).drop_duplicates()
    frame = frame[seen[frame["claim"].to_numpy()]]
    rows = frame["claim"].to_numpy()
    frame["patient"] = claims["patient"].to_numpy()[rows]
    frame["day"] = claims["service_day"].to_numpy()[rows]
    frame["submitted"] = claims["submission_day"].to_numpy()[rows]
    frame = frame.sort_values(["patient", "group", "submitted", "day", "claim"], kind="stable")
    since = np.abs(frame.groupby(["patient", "group"])["day"].diff().to_numpy())
    too_soon = since < repeat_interval[frame["group"].to_numpy()]
    n_groups = len(repeat_interval)
    flagged = np.zeros(len(claims) * n_groups, dtype=bool)
    soon = frame[too_soon]
    flagged[soon["claim"].to_numpy() * n_groups + soon["group"].to_numpy()] = True
    return limited & flagged[line_claim * n_groups + np.maximum(group, 0)]


def _line_any(claim: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(claim[mask], minlength=n) > 0


def mechanism_probabilities(
    encounters: Encounters, world: World, facts: ClaimFacts, too_soon: np.ndarray
) -> dict[str, np.ndarray]:
    """Probability of every sub-reason in :data:`REASONS`: per claim row for claim-level
    reasons, per service line for line-level ones."""
    claims, lines = encounters.claims, encounters.lines
    n = facts.n
    s = facts.strictness
    spec, rules = world.spec, world.rules
    claim = lines["claim"].to_numpy()
    code = lines["code"].to_numpy()
    fam = CODE_FAMILY[code]
    units = lines["units"].to_numpy()
    mods = lines[[f"modifier_{j}" for j in range(1, 5)]].to_numpy()

    def has_mod(names: list[str] | frozenset[str]) -> np.ndarray:
        return np.asarray(np.isin(mods, [MOD[m] for m in names]).any(axis=1))

    def column(name: str) -> np.ndarray:
        return claims[name].to_numpy()

    ptype = facts.payer_type
    line_payer = facts.payer[claim]
    line_period = facts.period[claim]
    ls = s[claim]

    def payer_value(attribute: str) -> np.ndarray:
        return world.payer_values(attribute)[facts.payer]

    p: dict[str, np.ndarray] = {}

    # -- claim level ---------------------------------------------------------------------------
    p["duplicate_submission"] = np.where(facts.earlier_identical, 0.95, 0.0)
    filing_limit = rules.filing_limit[facts.period, facts.payer]
    excused = column("delay_reason") & payer_value("honours_delay_reason")
    p["filed_after_limit"] = np.where(facts.lag > filing_limit, np.where(excused, 0.1, 0.95), 0.0)

    # Eligibility: risk rises with visible signs that coverage may have changed.
    gap = facts.gap_days
    gap_factor = np.where(gap > 365, 2.5, np.where(gap > 90, 1.6, 1.0))
    new_member = facts.first_with_payer
    by_type = np.vectorize(spec.coverage_base.get)(ptype)
    p["coverage_not_active"] = by_type * s * (1 + 2.0 * new_member) * gap_factor
    p["coverage_terminated"] = np.where(column("terminated"), 0.95, 0.0)
    member_id = column("member_id_state")
    defect = np.select(
        [member_id == MEMBER_ID_TYPO, member_id == MEMBER_ID_STALE], [0.85, 0.9], 0.0
    )
    hidden = spec.identity_base * s * (1 + 3.0 * new_member)
    p["member_not_identified"] = 1 - (1 - hidden) * (1 - defect)
    p["other_payer_primary"] = np.where(
        column("other_unknown_primary"), np.vectorize(spec.other_coverage_base.get)(ptype), 0.0
    )
    senior = np.nan_to_num(facts.age, nan=0.0) >= 65
    p["medicare_primary"] = np.where(
        (ptype == "commercial") & senior & ~column("other_known"),
        spec.medicare_age_on_commercial,
        0.0,
    )
    medicare_like = np.isin(ptype, ["medicare", "medicare_advantage"])
    p["hospice_enrolled"] = np.where(medicare_like & (np.nan_to_num(facts.age) >= 80), 0.004, 0.0)
    accident = column("accident")
    pending = payer_value("denies_pending_liability") & ~column("other_known")
    for kind, name in LIABILITY_REASON.items():
        p[name] = np.where(pending & (accident == kind), LIABILITY_PENDING, 0.0)

    p["provider_not_enrolled"] = np.where(facts.enrolled, 0.0, CARC_FOR_CREDENTIALING)
    pays_np = payer_value("pays_nurse_practitioners")
    p["provider_type_not_paid"] = np.where(
        (facts.specialty == "nurse_practitioner")
        & ~pays_np
        & (column("rendering_state") == RENDERING_OK),
        0.15,
        0.0,
    )

    ordered = _line_any(claim, np.array([x.ordered for x in PROCEDURES])[code], n)
    needs_referring = np.isin(facts.specialty, list(ORDER_TAKING_SPECIALTIES)) | ordered
    no_referring = column("referring") < 0
    p["ordering_provider_missing"] = np.where(
        needs_referring & no_referring, np.minimum(0.75 * s, 0.95), 0.0
    )
    state = column("rendering_state")
    p["rendering_npi_missing"] = np.where(state == RENDERING_MISSING, 0.85, 0.0)
    p["rendering_npi_invalid"] = np.where(state == RENDERING_TYPO, 0.9, 0.0)
    p["rendering_npi_not_matched"] = np.where(state == RENDERING_UNKNOWN, 0.8, 0.0)
    wants_taxonomy = payer_value("requires_taxonomy")
    p["taxonomy_missing"] = np.where(
        column("taxonomy_missing"), np.where(wants_taxonomy, 0.5, 0.02), 0.0
    )
    p["primary_payment_missing"] = np.where(column("primary_paid_missing"), 0.85, 0.0)
    onset = column("onset_day")
    visible_defect = ((onset >= 0) & (onset > facts.service_day)) | column("accident_date_missing")
    p["unprocessable_claim"] = 1 - (1 - payer_value("unprocessable_rate") * s) * (
        1 - np.where(visible_defect, 0.5, 0.0)
    )

    gatekeeper = payer_value("referral_required")
    specialist = np.isin(facts.specialty, list(REFERRED_SPECIALTIES))
    referred_code = _line_any(claim, rules.referral_code[line_payer, code], n)
    p["referral_absent"] = np.where(
        ((gatekeeper & specialist) | referred_code) & ~column("has_referral"), 0.6, 0.0
    )
    p["high_dollar_review"] = np.where(
        facts.total_charge > payer_value("high_dollar_threshold"),
        payer_value("high_dollar_review") * s,
        0.0,
    )
    reviewed = np.zeros(n, dtype=bool)
    for i, payer in enumerate(world.payers):
        families = [FAMILY_INDEX[f] for f in payer.records_review_families]
        mine = facts.payer == i
        reviewed[mine] = facts.family[mine][:, families].any(axis=1)
    p["records_review"] = payer_value("records_request_rate") * s + np.where(
        reviewed, payer_value("records_review_rate") * s, 0.0
    )
    noise = payer_value("noise_rate")
    p["unexplained"] = 1.1 * noise * np.where(facts.total_charge > 1000, 1.5, 1.0)

    # -- line level ----------------------------------------------------------------------------
    p["diagnosis_pointer_missing"] = np.where(
        lines["pointers"].to_numpy() == 0, np.minimum(0.6 * ls, 0.95), 0.0
    )
    drug = np.isin(fam, [FAMILY_INDEX["drug"], FAMILY_INDEX["specialty_drug"]])
    wants_ndc = world.payer_values("requires_ndc")[line_payer]
    p["ndc_missing"] = np.where(drug & ~lines["ndc"].to_numpy() & wants_ndc, 0.8, 0.0)
    lab = fam == FAMILY_INDEX["lab"]
    wants_clia = world.payer_values("requires_clia")[line_payer]
    p["clia_missing"] = np.where(lab & ~column("clia")[claim] & wants_clia, 0.8, 0.0)

    is_em = np.isin(fam, [FAMILY_INDEX[f] for f in EM_FAMILIES])
    needs_25 = np.array([x.needs_em_modifier_25 for x in PROCEDURES])[code]
    claim_needs_25 = _line_any(claim, needs_25, n)
    p["modifier_25_missing"] = np.where(is_em & ~has_mod(["25"]) & claim_needs_25[claim], 0.85, 0.0)
    honoured = np.zeros(len(code), dtype=bool)
    for i, payer in enumerate(world.payers):
        mine = line_payer == i
        honoured[mine] = has_mod(payer.ncci_modifiers)[mine]
    unbundled = np.zeros(len(code), dtype=bool)
    for k, (column_1, column_2) in enumerate(rules.ncci_pairs):
        has_1 = _line_any(claim, code == CODE_INDEX[column_1], n)
        unbundled |= (
            (code == CODE_INDEX[column_2]) & ~honoured & rules.ncci[line_payer, k] & has_1[claim]
        )
    p["ncci_unbundled"] = np.where(unbundled, 0.9, 0.0)
    line_day = facts.service_day[claim]
    valid_from, valid_until = code_validity_days(facts.start)
    invalid = (line_day < valid_from[code]) | (line_day >= valid_until[code])
    p["code_invalid_on_date"] = np.where(invalid, 0.95, 0.0)
    line_age = facts.age[claim]
    min_age = np.array([x.min_age if x.min_age is not None else -1 for x in PROCEDURES])[code]
    max_age = np.array([x.max_age if x.max_age is not None else 999 for x in PROCEDURES])[code]
    wrong_age = (line_age < min_age) | (np.floor(line_age) > max_age)
    p["age_mismatch"] = np.where(wrong_age, 0.9, 0.0)
    code_sex = np.array([x.sex or "" for x in PROCEDURES])[code]
    line_sex = facts.sex[claim]
    wrong_sex = (code_sex != "") & np.isin(line_sex, ["F", "M"]) & (code_sex != line_sex)
    p["sex_mismatch"] = np.where(wrong_sex, 0.9, 0.0)
    telephone_in_office = (fam == FAMILY_INDEX["telephone_em"]) & (facts.place[claim] == "11")
    p["place_of_service_mismatch"] = np.where(telephone_in_office, 0.7, 0.0)

    needs_auth = units >= rules.auth_units[line_period, line_payer, code]
    has_auth = column("has_auth")[claim]
    p["authorization_absent"] = np.where(needs_auth & ~has_auth, np.minimum(0.65 * ls, 0.95), 0.0)
    p["authorization_exceeded"] = np.where(needs_auth & has_auth, 0.008 * ls, 0.0)

    # Plans must cover preventive care with a preventive diagnosis (ACA); Medicare need not.
    preventive = np.isin(fam, [FAMILY_INDEX[f] for f in PREVENTIVE_FAMILIES])
    preventive_dx = PREVENTIVE_DIAGNOSIS[np.maximum(encounters.diagnoses[claim, 0], 0)]
    must_cover = preventive & preventive_dx & (facts.payer_type[claim] != "medicare")
    excluded = np.where(must_cover, 0, rules.excluded[line_period, line_payer, code])
    for reason, carc in (
        ("routine_exam_not_covered", "49"),
        ("plan_exclusion", "96"),
        ("benefit_exclusion", "204"),
    ):
        p[reason] = np.where(excluded == 1 + EXCLUSION_CARCS.index(carc), 0.9, 0.0)
    partly = rules.partial[line_payer, code] & ~must_cover
    partial_rate = np.where(partly, world.payer_values("partial_coverage_denial")[line_payer], 0.0)
    p["benefit_exclusion"] = 1 - (1 - p["benefit_exclusion"]) * (1 - partial_rate)
    p["benefit_maximum"] = np.where(facts.over_visit_limit[claim, fam], 0.85, 0.0)
    over_units = units > rules.unit_limit[line_payer, code]
    as_benefit = world.payer_values("unit_limit_carc")[line_payer] == "119"
    p["units_above_benefit"] = np.where(over_units & as_benefit, UNIT_LIMIT_DENIAL, 0.0)
    p["units_above_limit"] = np.where(over_units & ~as_benefit, UNIT_LIMIT_DENIAL, 0.0)

    unrelated, weak_only = _necessity_failures(encounters, world, facts)
    p["diagnosis_unrelated"] = np.where(unrelated, np.minimum(0.75 * ls, 0.95), 0.0)
    p["diagnosis_not_accepted"] = np.where(weak_only, np.minimum(0.45 * ls, 0.95), 0.0)
    p["too_frequent"] = np.where(too_soon, np.minimum(0.3 * ls, 0.95), 0.0)

    # Documentation: records the payer wants, less often when the practice attached them.
    attachment = column("attachment")[claim]
    sent, on_request = attachment == ATTACHMENT_SENT, attachment == ATTACHMENT_ON_REQUEST
    unlisted = np.array([x.unlisted for x in PROCEDURES])[code]
    records_factor = np.where(sent, 0.25, np.where(on_request, 0.6, 1.0))
    p["unlisted_code_description"] = np.where(unlisted, 0.55 * records_factor, 0.0)
    p["increased_service_records"] = np.where(has_mod(["22"]), 0.5 * records_factor, 0.0)
    wants_records = np.zeros(len(code), dtype=bool)
    for i, payer in enumerate(world.payers):
        mine = line_payer == i
        wants_records[mine] = np.isin(code[mine], [CODE_INDEX[c] for c in payer.attachment_codes])
    p["attachment_missing"] = np.where(wants_records & (attachment == 0), 0.7, 0.0)
    p["attachment_not_received"] = np.where(wants_records & on_request, 0.25, 0.0)
    high_level = np.isin(code, [CODE_INDEX["99215"], CODE_INDEX["99205"]])
    review = world.payer_values("high_level_visit_review")[line_payer]
    p["high_level_visit_review"] = np.where(high_level, review * ls, 0.0)

    # The world's strength of each category (0 switches its mechanisms off).
    for denial_reason in REASONS:
        factor = spec.scale(denial_reason.category)
        if factor != 1.0:
            p[denial_reason.name] = np.minimum(p[denial_reason.name] * factor, MOST_SCALED)
    return p


def _year_of_day(start: pd.Timestamp, day: np.ndarray) -> np.ndarray:
    span = int(day.max()) + 1 if len(day) else 1
    years = pd.DatetimeIndex(start + pd.to_timedelta(np.arange(span), unit="D")).year.to_numpy()
    return years[day]


_SIGNATURE_WEIGHTS = np.array([pow(7919, k, 2**31 - 1) for k in range(8)], dtype=np.int64)


def procedure_signature(lines: pd.DataFrame, n_claims: int) -> np.ndarray:
    """An order-free fingerprint of each claim's set of procedure codes (for duplicate edits)."""
    codes = lines[["claim", "code"]].sort_values(["claim", "code"], kind="stable")
    claim = codes["claim"].to_numpy()
    position = codes.groupby("claim").cumcount().to_numpy()
    values = (codes["code"].to_numpy().astype(np.int64) + 1) * _SIGNATURE_WEIGHTS[position % 8]
    return np.bincount(claim, weights=values.astype(float), minlength=n_claims)


def code_validity_days(start: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """Per catalog code, first valid day and first invalid day as offsets from ``start``."""

    def offset(date: dt.date | None, absent: float) -> float:
        return absent if date is None else float((pd.Timestamp(date) - start).days)

    valid_from = np.array([offset(x.valid_from, -np.inf) for x in PROCEDURES])
    valid_until = np.array([offset(x.valid_until, np.inf) for x in PROCEDURES])
    return valid_from, valid_until


def _necessity_failures(
    encounters: Encounters, world: World, facts: ClaimFacts
) -> tuple[np.ndarray, np.ndarray]:
    """Ruled lines whose pointed diagnoses are unrelated / only 'weak' (per service line)."""
    lines = encounters.lines
    line_claim = lines["claim"].to_numpy()
    group = CODE_GROUP[lines["code"].to_numpy()]
    ruled = np.flatnonzero(group >= 0)
    claim, group = line_claim[ruled], group[ruled]
    pointers = lines["pointers"].to_numpy()[ruled]
    pointers = np.where(pointers == 0, 0b1111, pointers)  # no pointer: the payer reads them all
    rules = world.rules
    payer, period = facts.payer[claim], facts.period[claim]
    dx = encounters.diagnoses[claim]
    pointed = (pointers[:, None] >> np.arange(dx.shape[1])) & 1 == 1
    pointed &= dx >= 0
    safe_dx = np.maximum(dx, 0)
    where = (period[:, None], payer[:, None], group[:, None], safe_dx)
    has_core = (pointed & rules.core[where]).any(axis=1)
    has_weak = (pointed & rules.weak[where]).any(axis=1)
    lenient = rules.lenient[period, payer, group]
    unrelated = np.zeros(len(line_claim), dtype=bool)
    weak_only = np.zeros(len(line_claim), dtype=bool)
    unrelated[ruled] = ~has_core & ~has_weak
    weak_only[ruled] = ~has_core & has_weak & ~lenient
    return unrelated, weak_only


def category_probabilities(
    p: dict[str, np.ndarray], reasons: tuple[int, ...], size: int
) -> np.ndarray:
    """(size, K) firing probability of each category (K in ADJUDICATION_ORDER) from the
    sub-reasons ``reasons`` (claim-level or line-level): ``1 - prod(1 - p_sub)``."""
    survive = np.ones((size, len(ADJUDICATION_ORDER)))
    for i in reasons:
        survive[:, _CATEGORY_OF_REASON[i]] *= 1.0 - np.clip(p[REASONS[i].name], 0.0, 1.0)
    return 1.0 - survive


def first_firing(fire: np.ndarray) -> np.ndarray:
    """(size, K) probability that category k is the first to fire, in ADJUDICATION_ORDER."""
    before = np.cumprod(np.column_stack([np.ones(len(fire)), 1.0 - fire[:, :-1]]), axis=1)
    return fire * before


def line_phase_probabilities(
    claim: np.ndarray,
    reported: np.ndarray,
    charge: np.ndarray,
    zero_paid: np.ndarray,
    n: int,
) -> np.ndarray:
    """(n, K) P(the claim is labelled denied with its primary CARC in category k) when no
    claim-level reason fired, exactly.

    ``reported[i, k]``: P(line i is denied in category k); lines are independent given the
    claim. ``zero_paid[i]``: P(line i pays $0 if it is not denied). Every subset of a claim's
    risky lines (those that can be denied) is enumerated: the subset is labelled denied when its
    charges exceed half the claim's or every other line pays $0; its primary CARC is that of its
    largest line (the first of equal ones, as the 835's CAS order has them).
    """
    K = reported.shape[1]
    out = np.zeros((n, K))
    q = reported.sum(axis=1)
    total = np.bincount(claim, weights=charge, minlength=n)
    risky = q > 0
    # The chance that every safe line pays nothing (a product of 0s, 1s and deductible odds).
    safe = ~risky
    any_paying = np.bincount(claim[safe & (zero_paid == 0)], minlength=n) > 0
    fractional = safe & (zero_paid > 0)
    log_zero = np.bincount(claim[fractional], weights=np.log(zero_paid[fractional]), minlength=n)
    zero_safe = np.where(any_paying, 0.0, np.exp(log_zero))
    idx = np.flatnonzero(risky)
    count = np.bincount(claim[idx], minlength=n)
    for size in np.unique(count[count > 0]):
        lines = idx[count[claim[idx]] == size].reshape(-1, size)
        rows = claim[lines[:, 0]]
        qm, cm, zm = q[lines], charge[lines], zero_paid[lines]
        share = reported[lines] / qm[:, :, None]  # (m, size, K): category of a denied line
        half = 0.5 * total[rows]
        m = np.arange(len(rows))
        for mask in range(1, 2**size):
            bits = (mask >> np.arange(size)) & 1 == 1
            p_subset = np.prod(np.where(bits, qm, 1.0 - qm), axis=1)
            over = cm[:, bits].sum(axis=1) > half
            rest_zero = zero_safe[rows] * np.prod(zm[:, ~bits], axis=1)
            labelled = np.where(over, 1.0, rest_zero)
            primary = np.flatnonzero(bits)[np.argmax(cm[:, bits], axis=1)]
            out[rows] += (p_subset * labelled)[:, None] * share[m, primary]
    return out


def label_outcome(
    claim: np.ndarray,
    line_denied: np.ndarray,
    charge: np.ndarray,
    paid: np.ndarray,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The product's label of a claim whose denied lines are ``line_denied`` (no claim-level
    denial), and the line of its primary CARC (-1): the realised side of
    :func:`line_phase_probabilities`."""
    total = np.bincount(claim, weights=charge, minlength=n)
    denied_charge = np.bincount(claim[line_denied], weights=charge[line_denied], minlength=n)
    any_denied = np.bincount(claim[line_denied], minlength=n) > 0
    paying = np.bincount(claim[~line_denied & (np.round(paid, 2) > 0)], minlength=n) > 0
    label = any_denied & ((denied_charge > 0.5 * total) | ~paying)
    # Primary: the largest denied line, the first of equal ones.
    order = np.lexsort((np.arange(len(claim)), -charge, ~line_denied, claim))
    first = order[np.r_[True, claim[order][1:] != claim[order][:-1]]]
    primary = np.full(n, -1, dtype=np.int64)
    primary[claim[first]] = np.where(line_denied[first], first, -1)
    return label, primary


def adjudicate(
    encounters: Encounters,
    world: World,
    start: pd.Timestamp,
    payment: LinePayment,
    zero_paid: np.ndarray,
    adjudicated: np.ndarray,
    rng: np.random.Generator,
) -> Adjudication:
    """Compute every mechanism's probability and draw the outcome of the ``adjudicated`` rows.

    ``payment``: what each line pays if it is not denied; ``zero_paid``: the probability that
    it pays $0 over the pricing draws (see :func:`simulator.remittance.zero_paid_probability`).
    """
    claims, lines = encounters.claims, encounters.lines
    n, n_lines = len(claims), len(lines)
    claim = lines["claim"].to_numpy()
    facts = claim_facts(encounters, world, start, adjudicated, payment.charge)
    too_soon = _too_frequent(encounters, world, adjudicated)
    reasons = mechanism_probabilities(encounters, world, facts, too_soon)

    claim_fire = category_probabilities(reasons, CLAIM_REASONS, n)
    claim_fire[~adjudicated] = 0.0
    line_fire = category_probabilities(reasons, LINE_REASONS, n_lines)
    line_fire[~adjudicated[claim]] = 0.0
    claim_reported = first_firing(claim_fire)
    line_reported = first_firing(line_fire)
    passes = 1.0 - claim_reported.sum(axis=1)
    line_phase = line_phase_probabilities(claim, line_reported, payment.charge, zero_paid, n)
    exact = claim_reported + passes[:, None] * line_phase
    cause_probability = np.zeros_like(exact)
    cause_probability[:, _ORDER_TO_CONTRACT] = exact

    # The draws: one uniform per claim for the claim phase, one per line for the line phase.
    claim_category = _draw_category(rng.random(n), claim_reported)
    line_category = _draw_category(rng.random(n_lines), line_reported)
    claim_reason = _draw_reason(rng, reasons, claim_category, CLAIM_REASONS)
    line_reason = _draw_reason(rng, reasons, line_category, LINE_REASONS)
    whole = claim_reason >= 0
    line_reason[whole[claim]] = -1
    label, primary = label_outcome(claim, line_reason >= 0, payment.charge, payment.paid, n)

    claim_carc = _draw_carc(rng, claim_reason)
    line_carc = _draw_carc(rng, line_reason)
    denied = whole | label
    reason = np.where(
        whole, claim_reason, np.where(primary >= 0, line_reason[np.maximum(primary, 0)], -1)
    )
    carc = np.where(
        whole, claim_carc, np.where(primary >= 0, line_carc[np.maximum(primary, 0)], "")
    )
    share = np.array([r.not_recognized_share for r in REASONS] + [0.0])
    not_recognized = whole & (rng.random(n) < share[claim_reason])
    category = np.where(denied, _ORDER_TO_CONTRACT[_CATEGORY_OF_REASON[np.maximum(reason, 0)]], -1)
    return Adjudication(
        cause_probability=cause_probability,
        denial_probability=exact.sum(axis=1),
        denied=denied,
        category=category,
        reason=np.where(denied, reason, -1),
        carc=np.where(denied, carc, ""),
        not_recognized=not_recognized,
        claim_reason=claim_reason,
        line_reason=line_reason,
        line_carc=np.where(line_reason >= 0, line_carc, ""),
    )


def _draw_category(u: np.ndarray, reported: np.ndarray) -> np.ndarray:
    """The first category to fire given one uniform per row (-1: none fires)."""
    cumulative = np.cumsum(reported, axis=1)
    k = (cumulative <= u[:, None]).sum(axis=1)
    return np.where(k < reported.shape[1], k, -1)


def _draw_reason(
    rng: np.random.Generator,
    p: dict[str, np.ndarray],
    category: np.ndarray,
    candidates: tuple[int, ...],
) -> np.ndarray:
    """Within the category that fired, a sub-reason in proportion to its probability."""
    reason = np.full(len(category), -1, dtype=np.int64)
    pick = rng.random(len(category))
    for k in range(len(ADJUDICATION_ORDER)):
        rows = np.flatnonzero(category == k)
        members = [i for i in candidates if _CATEGORY_OF_REASON[i] == k]
        if len(rows) == 0 or not members:
            continue
        weights = np.column_stack([np.clip(p[REASONS[i].name][rows], 0, 1) for i in members])
        cumulative = np.cumsum(weights, axis=1)
        chosen = (cumulative < (pick[rows] * cumulative[:, -1])[:, None]).sum(axis=1)
        reason[rows] = np.array(members)[np.minimum(chosen, len(members) - 1)]
    return reason


def _draw_carc(rng: np.random.Generator, reason: np.ndarray) -> np.ndarray:
    carc = np.full(len(reason), "", dtype=object)
    draw = rng.random(len(reason))
    for i, r in enumerate(REASONS):
        rows = np.flatnonzero(reason == i)
        if len(rows) == 0:
            continue
        weights = np.cumsum(r.carc_weights) / np.sum(r.carc_weights)
        pick = np.minimum(np.searchsorted(weights, draw[rows], side="right"), len(r.carcs) - 1)
        carc[rows] = np.array(r.carcs, dtype=object)[pick]
    return carc
