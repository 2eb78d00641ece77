"""Payer adjudication: causal denial mechanisms with exactly known probabilities.

Each mechanism (a root-cause category of :data:`features.codes.DENIAL_CATEGORIES`) gives every
claim a probability computed **only** from

* fields on the claim (codes, modifiers, units, place of service, dates, payer, which NPIs and
  authorization/referral numbers are present, patient age and sex, the other-coverage flag),
* history a reader of the contract tables can rebuild at submission time: the first submissions
  (frequency code 1) that reached the payer (not rejected) before this one, in submission-date
  order with ties broken by service date,
* the payer's published rules as of the service date (including the drift), and the payer's
  provider enrolment roster (a provider's claims before enrolment are visible as that provider's
  first claims with the payer).

No hidden per-claim state enters; the only randomness is the draw itself. A mechanism is the
union of named sub-reasons (e.g. eligibility = coverage not active | member not identified | other
payer primary ...), ``p_k = 1 - prod(1 - p_sub)``. Mechanisms are checked in the fixed
:data:`ADJUDICATION_ORDER` with independent draws and the first that fires is reported, so

    P(cause k reported) = p_k * prod_{j before k} (1 - p_j),
    P(denied) = 1 - prod_k (1 - p_k),

which the truth table records exactly. Within the reported category the sub-reason (and so the
CARC) is picked in proportion to the sub-reasons' probabilities.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.codes import DENIAL_CATEGORIES
from simulator.catalog import EM_FAMILIES, PROCEDURE_FAMILIES, PROCEDURES
from simulator.encounters import (
    CODE_FAMILY,
    CODE_GROUP,
    CODE_INDEX,
    FAMILY_INDEX,
    MOD,
    PLACES,
    RENDERING_MISSING,
    RENDERING_OK,
    RENDERING_TYPO,
    RENDERING_UNKNOWN,
    Encounters,
)
from simulator.spec import ORDER_TAKING_SPECIALTIES, REFERRED_SPECIALTIES
from simulator.world import EXCLUSION_CARCS, World

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
"""Front-end edits first (duplicate, filing limit, eligibility), then clinical and review edits."""
assert sorted(ADJUDICATION_ORDER) == sorted(DENIAL_CATEGORIES)


@dataclass(frozen=True)
class DenialReason:
    """One way a mechanism fires, with the codes the payer reports for it."""

    name: str
    category: str
    carcs: tuple[str, ...]
    carc_weights: tuple[float, ...] = (1.0,)
    rarc: str | None = None
    line_level: bool = False
    """Reported on every service line (CAS in the SVC loop) rather than on the claim."""
    not_recognized_share: float = 0.0
    """Share of these denials sent as CLP02 = 4 (patient not recognized) instead of 1."""


REASONS: tuple[DenialReason, ...] = (
    DenialReason("duplicate_submission", "duplicate", ("18",)),
    DenialReason("filed_after_limit", "timely_filing", ("29",)),
    DenialReason("coverage_not_active", "eligibility", ("27", "26", "200"), (0.6, 0.25, 0.15)),
    DenialReason(
        "member_not_identified", "eligibility", ("31", "140"), (0.6, 0.4), not_recognized_share=0.7
    ),
    DenialReason("other_payer_primary", "eligibility", ("22",)),
    DenialReason("medicare_primary", "eligibility", ("22", "109"), (0.5, 0.5)),
    DenialReason("hospice_enrolled", "eligibility", ("B9",)),
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
    DenialReason("billing_error", "missing_information", ("16",), rarc="MA130"),
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
    DenialReason("unlisted_code_description", "documentation", ("252",), rarc="N350"),
    DenialReason("increased_service_records", "documentation", ("252",), rarc="N706"),
    DenialReason("high_dollar_review", "documentation", ("252", "226"), (0.6, 0.4), rarc="M127"),
    DenialReason("high_level_visit_review", "documentation", ("226",), rarc="M127"),
    DenialReason("records_review", "documentation", ("252",), rarc="M127"),
    DenialReason("unexplained", "other", ("A1",), rarc="N10"),
)
REASON_INDEX = {r.name: i for i, r in enumerate(REASONS)}

# --- How payers respond to a visible defect (the world's spec scales them by category) --------
CARC_FOR_CREDENTIALING = 0.85
UNIT_LIMIT_DENIAL = 0.9
MOST_SCALED = 0.97
"""A scaled-up probability stays below this (a defect is never denied for sure)."""


@dataclass
class Adjudication:
    """Mechanism probabilities and the realised outcome for every claim row."""

    cause_probability: np.ndarray
    """(n, K) P(category k is the reported cause), K in DENIAL_CATEGORIES order."""
    denial_probability: np.ndarray
    denied: np.ndarray
    category: np.ndarray
    """Reported category index into DENIAL_CATEGORIES, -1 when paid or not adjudicated."""
    reason: np.ndarray
    """Index into REASONS, -1 when paid or not adjudicated."""
    carc: np.ndarray
    not_recognized: np.ndarray
    """CLP02 = 4 (patient not recognized) for this denial."""


@dataclass
class ClaimFacts:
    """Everything the mechanisms may look at, derived from visible fields and history."""

    n: int
    start: pd.Timestamp
    payer: np.ndarray
    payer_type: np.ndarray
    strictness: np.ndarray
    service_day: np.ndarray
    lag: np.ndarray
    age: np.ndarray
    sex: np.ndarray
    other_coverage: np.ndarray
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
    """A visit of a family the payer limits per calendar year, past the limit."""
    earlier_identical: np.ndarray
    enrolled: np.ndarray


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
    year = _year_of_day(start, day)
    history = pd.DataFrame(
        {
            "patient": patient,
            "payer": payer,
            "day": day,
            "submitted": submitted,
            "signature": procedure_signature(lines, n),
            "year": year,
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
    over_limit = np.zeros(n, dtype=bool)
    limits = world.rules.visit_limit
    for f in np.flatnonzero((limits < 10**9).any(axis=0)):
        visits = history[family[history.index.to_numpy(), f]]
        number = visits.groupby(["patient", "payer", "year"]).cumcount().to_numpy() + 1
        rows = visits.index.to_numpy()
        over_limit[rows] |= number > limits[payer[rows], f]
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
        other_coverage=world.patient_other_coverage[patient],
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
    """Claims repeating a frequency-limited procedure group too soon.

    Compares each claim with the patient's previously submitted claim in the same group.
    """
    claims, lines = encounters.claims, encounters.lines
    repeat_interval = world.rules.repeat_interval
    group = CODE_GROUP[lines["code"].to_numpy()]
    limited = (group >= 0) & (repeat_interval[np.maximum(group, 0)] > 0)
    claim = lines["claim"].to_numpy()[limited]
    frame = pd.DataFrame({"claim": claim, "group": group[limited]}).drop_duplicates()
    frame = frame[seen[frame["claim"].to_numpy()]]
    rows = frame["claim"].to_numpy()
    frame["patient"] = claims["patient"].to_numpy()[rows]
    frame["day"] = claims["service_day"].to_numpy()[rows]
    frame["submitted"] = claims["submission_day"].to_numpy()[rows]
    frame = frame.sort_values(["patient", "group", "submitted", "day", "claim"], kind="stable")
    since = np.abs(frame.groupby(["patient", "group"])["day"].diff().to_numpy())
    too_soon = since < repeat_interval[frame["group"].to_numpy()]
    out = np.zeros(len(claims), dtype=bool)
    out[frame["claim"].to_numpy()[too_soon]] = True
    return out


def _line_any(claim: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(claim[mask], minlength=n) > 0


def mechanism_probabilities(
    encounters: Encounters, world: World, facts: ClaimFacts, too_soon: np.ndarray
) -> dict[str, np.ndarray]:
    """Probability of every sub-reason in :data:`REASONS` for every claim row."""
    claims, lines = encounters.claims, encounters.lines
    n = facts.n
    s = facts.strictness
    spec, rules = world.spec, world.rules
    claim = lines["claim"].to_numpy()
    code = lines["code"].to_numpy()
    fam = CODE_FAMILY[code]
    mods = lines[[f"modifier_{j}" for j in range(1, 5)]].to_numpy()

    def has_mod(names: list[str] | frozenset[str]) -> np.ndarray:
        return np.asarray(np.isin(mods, [MOD[m] for m in names]).any(axis=1))

    ptype = facts.payer_type
    line_payer = facts.payer[claim]
    line_period = facts.period[claim]

    def payer_value(attribute: str) -> np.ndarray:
        return world.payer_values(attribute)[facts.payer]

    p: dict[str, np.ndarray] = {}

    p["duplicate_submission"] = np.where(facts.earlier_identical, 0.95, 0.0)
    filing_limit = rules.filing_limit[facts.period, facts.payer]
    p["filed_after_limit"] = np.where(facts.lag > filing_limit, 0.95, 0.0)

    # Eligibility: risk rises with visible signs that coverage may have changed.
    gap = facts.gap_days
    gap_factor = np.where(gap > 365, 2.5, np.where(gap > 90, 1.6, 1.0))
    new_member = facts.first_with_payer
    by_type = np.vectorize(spec.coverage_base.get)(ptype)
    coverage = by_type * s * (1 + 2.0 * new_member) * gap_factor
    p["coverage_not_active"] = coverage
    p["member_not_identified"] = spec.identity_base * s * (1 + 3.0 * new_member)
    p["other_payer_primary"] = np.where(
        facts.other_coverage, np.vectorize(spec.other_coverage_base.get)(ptype), 0.0
    )
    senior = np.nan_to_num(facts.age, nan=0.0) >= 65
    p["medicare_primary"] = np.where(
        (ptype == "commercial") & senior, spec.medicare_age_on_commercial, 0.0
    )
    medicare_like = np.isin(ptype, ["medicare", "medicare_advantage"])
    p["hospice_enrolled"] = np.where(medicare_like & (np.nan_to_num(facts.age) >= 80), 0.004, 0.0)

    p["provider_not_enrolled"] = np.where(facts.enrolled, 0.0, CARC_FOR_CREDENTIALING)
    pays_np = payer_value("pays_nurse_practitioners")
    p["provider_type_not_paid"] = np.where(
        (facts.specialty == "nurse_practitioner")
        & ~pays_np
        & (claims["rendering_state"].to_numpy() == RENDERING_OK),
        0.15,
        0.0,
    )

    # Missing or invalid claim data.
    ordered = _line_any(claim, np.array([x.ordered for x in PROCEDURES])[code], n)
    needs_referring = np.isin(facts.specialty, list(ORDER_TAKING_SPECIALTIES)) | ordered
    no_referring = claims["referring"].to_numpy() < 0
    p["ordering_provider_missing"] = np.where(
        needs_referring & no_referring, np.minimum(0.75 * s, 0.95), 0.0
    )
    state = claims["rendering_state"].to_numpy()
    p["rendering_npi_missing"] = np.where(state == RENDERING_MISSING, 0.85, 0.0)
    p["rendering_npi_invalid"] = np.where(state == RENDERING_TYPO, 0.9, 0.0)
    p["rendering_npi_not_matched"] = np.where(state == RENDERING_UNKNOWN, 0.8, 0.0)
    pointer_missing = _line_any(claim, lines["pointers"].to_numpy() == 0, n)
    p["diagnosis_pointer_missing"] = np.where(pointer_missing, np.minimum(0.6 * s, 0.95), 0.0)
    wants_taxonomy = payer_value("requires_taxonomy")
    p["taxonomy_missing"] = np.where(
        claims["taxonomy_missing"].to_numpy(), np.where(wants_taxonomy, 0.5, 0.02), 0.0
    )
    p["primary_payment_missing"] = np.where(facts.other_coverage & (ptype == "medicaid"), 0.15, 0.0)
    p["billing_error"] = payer_value("unprocessable_rate") * s

    # Coding edits.
    is_em = np.isin(fam, [FAMILY_INDEX[f] for f in EM_FAMILIES])
    needs_25 = np.array([x.needs_em_modifier_25 for x in PROCEDURES])[code]
    em_without_25 = _line_any(claim, is_em & ~has_mod(["25"]), n)
    p["modifier_25_missing"] = np.where(em_without_25 & _line_any(claim, needs_25, n), 0.85, 0.0)
    unbundled = np.zeros(n, dtype=bool)
    honoured = np.zeros(len(code), dtype=bool)
    for i, payer in enumerate(world.payers):
        mine = line_payer == i
        honoured[mine] = has_mod(payer.ncci_modifiers)[mine]
    for k, (column_1, column_2) in enumerate(rules.ncci_pairs):
        has_1 = _line_any(claim, code == CODE_INDEX[column_1], n)
        bare_2 = _line_any(
            claim, (code == CODE_INDEX[column_2]) & ~honoured & rules.ncci[line_payer, k], n
        )
        unbundled |= has_1 & bare_2
    p["ncci_unbundled"] = np.where(unbundled, 0.9, 0.0)
    line_day = facts.service_day[claim]
    valid_from, valid_until = code_validity_days(facts.start)
    invalid = _line_any(claim, (line_day < valid_from[code]) | (line_day >= valid_until[code]), n)
    p["code_invalid_on_date"] = np.where(invalid, 0.95, 0.0)
    line_age = facts.age[claim]
    min_age = np.array([x.min_age if x.min_age is not None else -1 for x in PROCEDURES])[code]
    max_age = np.array([x.max_age if x.max_age is not None else 999 for x in PROCEDURES])[code]
    wrong_age = (line_age < min_age) | (np.floor(line_age) > max_age)
    p["age_mismatch"] = np.where(_line_any(claim, wrong_age, n), 0.9, 0.0)
    code_sex = np.array([x.sex or "" for x in PROCEDURES])[code]
    line_sex = facts.sex[claim]
    wrong_sex = (code_sex != "") & np.isin(line_sex, ["F", "M"]) & (code_sex != line_sex)
    p["sex_mismatch"] = np.where(_line_any(claim, wrong_sex, n), 0.9, 0.0)
    telephone_in_office = (fam == FAMILY_INDEX["telephone_em"]) & (facts.place[claim] == "11")
    p["place_of_service_mismatch"] = np.where(_line_any(claim, telephone_in_office, n), 0.7, 0.0)

    # Authorization and referral.
    units = lines["units"].to_numpy()
    needs_auth = _line_any(claim, units >= rules.auth_units[line_period, line_payer, code], n)
    has_auth = claims["has_auth"].to_numpy()
    p["authorization_absent"] = np.where(needs_auth & ~has_auth, np.minimum(0.65 * s, 0.95), 0.0)
    p["authorization_exceeded"] = np.where(needs_auth & has_auth, 0.008 * s, 0.0)
    gatekeeper = payer_value("referral_required")
    specialist = np.isin(facts.specialty, list(REFERRED_SPECIALTIES))
    referred_code = _line_any(claim, rules.referral_code[line_payer, code], n)
    p["referral_absent"] = np.where(
        ((gatekeeper & specialist) | referred_code) & ~claims["has_referral"].to_numpy(), 0.6, 0.0
    )

    # Coverage exclusions and benefit limits.
    excluded = rules.excluded[line_period, line_payer, code]
    for reason, carc in (
        ("routine_exam_not_covered", "49"),
        ("plan_exclusion", "96"),
        ("benefit_exclusion", "204"),
    ):
        hit = _line_any(claim, excluded == 1 + EXCLUSION_CARCS.index(carc), n)
        p[reason] = np.where(hit, 0.9, 0.0)
    partly = _line_any(claim, rules.partial[line_payer, code], n)
    partial_rate = np.where(partly, payer_value("partial_coverage_denial"), 0.0)
    p["benefit_exclusion"] = 1 - (1 - p["benefit_exclusion"]) * (1 - partial_rate)
    p["benefit_maximum"] = np.where(facts.over_visit_limit, 0.85, 0.0)
    over_units = _line_any(claim, units > rules.unit_limit[line_payer, code], n)
    as_benefit = payer_value("unit_limit_carc") == "119"
    p["units_above_benefit"] = np.where(over_units & as_benefit, UNIT_LIMIT_DENIAL, 0.0)
    p["units_above_limit"] = np.where(over_units & ~as_benefit, UNIT_LIMIT_DENIAL, 0.0)

    # Medical necessity: the pointed diagnoses must support each ruled procedure.
    unrelated, weak_only = _necessity_failures(encounters, world, facts)
    p["diagnosis_unrelated"] = np.where(unrelated, np.minimum(0.75 * s, 0.95), 0.0)
    p["diagnosis_not_accepted"] = np.where(weak_only, np.minimum(0.45 * s, 0.95), 0.0)
    p["too_frequent"] = np.where(too_soon, np.minimum(0.3 * s, 0.95), 0.0)

    # Documentation requests.
    unlisted = _line_any(claim, np.array([x.unlisted for x in PROCEDURES])[code], n)
    p["unlisted_code_description"] = np.where(unlisted, 0.55, 0.0)
    p["increased_service_records"] = np.where(_line_any(claim, has_mod(["22"]), n), 0.5, 0.0)
    p["high_dollar_review"] = np.where(
        facts.total_charge > payer_value("high_dollar_threshold"),
        payer_value("high_dollar_review") * s,
        0.0,
    )
    high_level = _line_any(claim, np.isin(code, [CODE_INDEX["99215"], CODE_INDEX["99205"]]), n)
    p["high_level_visit_review"] = np.where(
        high_level, payer_value("high_level_visit_review") * s, 0.0
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

    # The world's strength of each category (0 switches its mechanisms off).
    for denial_reason in REASONS:
        factor = spec.scale(denial_reason.category)
        if factor != 1.0:
            p[denial_reason.name] = np.minimum(p[denial_reason.name] * factor, MOST_SCALED)
    return p


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
    """Claims with a ruled line whose pointed diagnoses are unrelated / only 'weak'."""
    lines = encounters.lines
    n = facts.n
    claim = lines["claim"].to_numpy()
    group = CODE_GROUP[lines["code"].to_numpy()]
    ruled = group >= 0
    claim, group = claim[ruled], group[ruled]
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
    unrelated = ~has_core & ~has_weak
    weak_only = ~has_core & has_weak & ~lenient
    return _line_any(claim, unrelated, n), _line_any(claim, weak_only, n)


def category_probabilities(p: dict[str, np.ndarray], n: int) -> np.ndarray:
    """(n, K) per-category firing probability p_k, K in ADJUDICATION_ORDER."""
    out = np.zeros((n, len(ADJUDICATION_ORDER)))
    for k, category in enumerate(ADJUDICATION_ORDER):
        survive = np.ones(n)
        for reason in REASONS:
            if reason.category == category:
                survive *= 1.0 - np.clip(p[reason.name], 0.0, 1.0)
        out[:, k] = 1.0 - survive
    return out


def adjudicate(
    encounters: Encounters,
    world: World,
    start: pd.Timestamp,
    line_charge: np.ndarray,
    adjudicated: np.ndarray,
    rng: np.random.Generator,
) -> Adjudication:
    """Compute every mechanism's probability and draw the outcome of the ``adjudicated`` rows."""
    facts = claim_facts(encounters, world, start, adjudicated, line_charge)
    too_soon = _too_frequent(encounters, world, adjudicated)
    reasons = mechanism_probabilities(encounters, world, facts, too_soon)
    n = facts.n
    fire = category_probabilities(reasons, n)
    fire[~adjudicated] = 0.0

    survive_before = np.cumprod(np.column_stack([np.ones(n), 1.0 - fire[:, :-1]]), axis=1)
    reported = fire * survive_before
    draws = rng.random((n, len(ADJUDICATION_ORDER)))
    fired = draws < fire
    denied = np.asarray(fired.any(axis=1))
    first = np.where(denied, fired.argmax(axis=1), -1)

    order_to_contract = np.array([DENIAL_CATEGORIES.index(c) for c in ADJUDICATION_ORDER])
    cause_probability = np.zeros_like(reported)
    cause_probability[:, order_to_contract] = reported
    category = np.where(denied, order_to_contract[np.maximum(first, 0)], -1)

    # Pick the sub-reason within the reported category, in proportion to its probability.
    reason = np.full(n, -1, dtype=np.int64)
    pick = rng.random(n)
    for k, name in enumerate(ADJUDICATION_ORDER):
        rows = np.flatnonzero(first == k)
        if len(rows) == 0:
            continue
        members = [i for i, r in enumerate(REASONS) if r.category == name]
        weights = np.column_stack([np.clip(reasons[REASONS[i].name][rows], 0, 1) for i in members])
        cumulative = np.cumsum(weights, axis=1)
        chosen = (cumulative < (pick[rows] * cumulative[:, -1])[:, None]).sum(axis=1)
        reason[rows] = np.array(members)[np.minimum(chosen, len(members) - 1)]

    carc = np.full(n, "", dtype=object)
    not_recognized = np.zeros(n, dtype=bool)
    carc_draw = rng.random(n)
    status_draw = rng.random(n)
    for i, r in enumerate(REASONS):
        rows = np.flatnonzero(reason == i)
        if len(rows) == 0:
            continue
        weights = np.cumsum(r.carc_weights) / np.sum(r.carc_weights)
        carc[rows] = np.array(r.carcs, dtype=object)[
            np.minimum(np.searchsorted(weights, carc_draw[rows], side="right"), len(r.carcs) - 1)
        ]
        not_recognized[rows] = status_draw[rows] < r.not_recognized_share
    return Adjudication(
        cause_probability=cause_probability,
        denial_probability=1.0 - np.prod(1.0 - fire, axis=1),
        denied=denied,
        category=category,
        reason=reason,
        carc=carc,
        not_recognized=not_recognized,
    )
