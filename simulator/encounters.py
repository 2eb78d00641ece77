"""Encounters and the claims the practice submits for them, as integer-coded arrays.

The generator is fully vectorised: it loops over specialties, visit templates and line slots
(a few dozen iterations), never over claims. Strings are attached only when the contract tables
are assembled (:mod:`simulator.tables`).

What the practice gets wrong here (missing referring NPI, a forgotten modifier 25, a late
submission...) is *visible* on the claim: the adjudicator (:mod:`simulator.adjudication`) reads
only these visible fields, the history of earlier claims and the payer's rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from simulator.catalog import (
    COMORBIDITIES,
    DIAGNOSIS_PROFILES,
    EM_ESTABLISHED_MIX,
    EM_FAMILIES,
    EM_NEW_MIX,
    NDC_OF_CODE,
    NECESSITY_GROUP_OF_CODE,
    NECESSITY_RULES,
    PROCEDURE_FAMILIES,
    PROCEDURES,
    SCREENING_DIAGNOSIS,
    TELEPHONE_CODES_DELETED,
    TEMPLATES,
    UNRELATED_DIAGNOSES,
)
from simulator.spec import ORDER_TAKING_SPECIALTIES, REFERRED_SPECIALTIES, PracticeHabits

if TYPE_CHECKING:
    from simulator.world import World

CODES: tuple[str, ...] = tuple(p.code for p in PROCEDURES)
CODE_INDEX = {code: i for i, code in enumerate(CODES)}
FAMILY_INDEX = {name: i for i, name in enumerate(PROCEDURE_FAMILIES)}
CODE_FAMILY = np.array([FAMILY_INDEX[p.family] for p in PROCEDURES])
GROUP_NAMES: tuple[str, ...] = tuple(NECESSITY_RULES)
CODE_GROUP = np.array(
    [
        GROUP_NAMES.index(NECESSITY_GROUP_OF_CODE[c]) if c in NECESSITY_GROUP_OF_CODE else -1
        for c in CODES
    ]
)
MODIFIERS: tuple[str, ...] = (
    "25",
    "59",
    "XE",
    "XP",
    "XS",
    "XU",
    "LT",
    "RT",
    "26",
    "95",
    "GP",
    "RR",
    "KX",
    "22",
)
MOD = {m: i for i, m in enumerate(MODIFIERS)}
PLACES: tuple[str, ...] = ("11", "02", "10", "12", "21", "22", "24", "81")
PLACE_INDEX = {p: i for i, p in enumerate(PLACES)}


def _diagnosis_vocabulary() -> tuple[str, ...]:
    codes: list[str] = []
    for rule in NECESSITY_RULES.values():
        codes += [*rule.core, *rule.weak]
    for profile in DIAGNOSIS_PROFILES.values():
        codes += [c for c, _ in profile]
    codes += [*UNRELATED_DIAGNOSES, *COMORBIDITIES, *SCREENING_DIAGNOSIS.values()]
    return tuple(dict.fromkeys(codes))


DIAGNOSES: tuple[str, ...] = _diagnosis_vocabulary()
DX_INDEX = {code: i for i, code in enumerate(DIAGNOSES)}
PREVENTIVE_DIAGNOSIS = np.array(
    [c.startswith(("Z00", "Z01", "Z12", "Z13", "Z23")) for c in DIAGNOSES]
)
"""Encounters for a check-up, screening or immunization."""
MAX_DIAGNOSES = 4

# Claim-level integer codes for what went wrong with the rendering provider's NPI.
RENDERING_OK, RENDERING_MISSING, RENDERING_TYPO, RENDERING_UNKNOWN = 0, 1, 2, 3

REJECTION_REASONS: tuple[tuple[str, str, float], ...] = (
    (
        "277CA",
        "A7:164 Entity's contract/member number: subscriber ID not found or invalid format",
        0.40,
    ),
    ("277CA", "A6:562 Entity's National Provider Identifier: billing provider NPI missing", 0.20),
    ("277CA", "A3:116 Claim submitted to incorrect payer: payer ID not found", 0.15),
    ("277CA", "A6:158 Entity's date of birth: patient birth date missing", 0.10),
    ("999", "IK5*R: transaction set rejected, IK3 SV1 segment has data element errors", 0.15),
    # Never drawn at random: the clearinghouse's own edits, in worlds that have it run them.
    ("277CA", "A7:562 Entity's National Provider Identifier: rendering provider NPI invalid", 0.0),
    ("999", "IK5*R: IK3 SV1 element 7 (diagnosis code pointer) missing on a service line", 0.0),
)
REJECT_BILLING_NPI, REJECT_PAYER_ID, REJECT_BIRTH_DATE = 1, 2, 3
"""Rejection reasons whose defect shows on the claim row itself."""
REJECT_RENDERING_NPI, REJECT_POINTER = 5, 6
"""The clearinghouse's edits, in worlds that have it run them (``clearinghouse_edits``)."""

NO_DAY = -(10**6)
"""A day column's 'none' (no onset date, no accident...)."""
MEMBER_ID_OK, MEMBER_ID_TYPO, MEMBER_ID_STALE = 0, 1, 2
"""The member ID on a claim: right, mistyped, or the patient's previous payer's."""
ATTACHMENT_NONE, ATTACHMENT_SENT, ATTACHMENT_ON_REQUEST = 0, 1, 2
ACCIDENT_CAUSES: tuple[str, ...] = ("", "AA", "EM", "OA")
"""CLM11 related causes by accident kind (0: none): auto, employment, other accident."""
INJURY_TEMPLATES = frozenset(
    {"visit_with_xray", "joint_injection_visit", "knee_arthroscopy", "visit_with_injection",
     "pt_evaluation", "pt_treatment", "mri_lumbar", "mri_knee", "knee_xray", "office_visit"}
)  # fmt: skip
"""Visits that may follow an accident (office visits only in orthopaedics)."""
PREVENTIVE_FAMILIES: tuple[str, ...] = ("preventive", "screening", "vaccine", "wellness_visit")
"""Preventive services plans must cover with a preventive diagnosis (ACA)."""

_SPECIAL = {
    "@em_established": -1,
    "@em_new": -2,
    "@preventive": -3,
    "@telephone": -4,
    "@screening": -5,
    "@pap": -6,
}
_PREVENTIVE_BANDS = (
    (1, "99392"),
    (5, "99393"),
    (12, "99394"),
    (18, "99395"),
    (40, "99396"),
    (65, "99397"),
)


@dataclass
class Encounters:
    """Claims, service lines and diagnoses as integer-coded frames (see module docstring).

    ``claims`` is indexed by claim row 0..n-1; ``lines`` is sorted by claim row then line number;
    ``diagnoses`` is an (n, 4) array of indices into :data:`DIAGNOSES` (-1 = empty position).
    """

    claims: pd.DataFrame
    lines: pd.DataFrame
    diagnoses: np.ndarray

    def take(self, rows: np.ndarray) -> Encounters:
        """A copy holding only ``rows`` (renumbered 0..k-1, same order)."""
        claims = self.claims.iloc[rows].reset_index(drop=True)
        remap = np.full(len(self.claims), -1, dtype=np.int64)
        remap[rows] = np.arange(len(rows))
        lines = self.lines[remap[self.lines["claim"].to_numpy()] >= 0].copy()
        lines["claim"] = remap[lines["claim"].to_numpy()]
        lines = lines.sort_values(["claim", "line_number"], kind="stable").reset_index(drop=True)
        return Encounters(claims, lines, self.diagnoses[rows].copy())

    @staticmethod
    def concat(parts: list[Encounters]) -> Encounters:
        offsets = np.cumsum([0] + [len(p.claims) for p in parts[:-1]])
        lines = []
        for part, offset in zip(parts, offsets, strict=True):
            shifted = part.lines.copy()
            shifted["claim"] = shifted["claim"] + offset
            lines.append(shifted)
        return Encounters(
            pd.concat([p.claims for p in parts], ignore_index=True),
            pd.concat(lines, ignore_index=True),
            np.concatenate([p.diagnoses for p in parts]),
        )


def _weekday_weights(start: pd.Timestamp, days: int) -> np.ndarray:
    weekday = (start.dayofweek + np.arange(days)) % 7
    weights = np.where(weekday < 5, 1.0, np.where(weekday == 5, 0.1, 0.02))
    return weights / weights.sum()


def _choose(rng: np.random.Generator, options: tuple[tuple[str, float], ...], n: int) -> np.ndarray:
    names = np.array([o for o, _ in options], dtype=object)
    weights = np.array([w for _, w in options], dtype=float)
    return names[rng.choice(len(names), size=n, p=weights / weights.sum())]


def generate_encounters(
    world: World,
    rng: np.random.Generator,
    n_claims: int,
    days: int,
    start: pd.Timestamp,
) -> Encounters:
    """First submissions (frequency 1) for ``n_claims`` claims, duplicates included."""
    habits = world.spec.habits
    n_duplicates = int(round(n_claims * habits.duplicate_rate))
    n_original = n_claims - n_duplicates
    claims = _draw_visits(world, rng, n_original, days, start)
    n = len(claims)
    # After a change of payer the practice bills the old one until it learns of the change.
    patient = claims["patient"].to_numpy()
    day = claims["service_day"].to_numpy()
    switched = day >= world.patient_switch_day[patient]
    learned = day >= world.patient_switch_day[patient] + world.patient_notice_lag[patient]
    moved = world.patient_next_payer[patient] != world.patient_payer[patient]
    claims["payer"] = np.where(
        switched & learned, world.patient_next_payer[patient], world.patient_payer[patient]
    )
    claims["terminated"] = switched & ~learned & moved
    template_places = [t.places for t in TEMPLATES]
    place = np.zeros(n, dtype=np.int64)
    tmpl = claims["template"].to_numpy()
    for t, places in enumerate(template_places):
        rows = np.flatnonzero(tmpl == t)
        if len(rows):
            chosen = _choose(rng, places, len(rows))
            place[rows] = [PLACE_INDEX[p] for p in chosen]
    claims["place"] = place
    lines = _draw_lines(world, rng, claims, habits, start)
    diagnoses, lines = _draw_diagnoses(world, rng, claims, lines)
    _add_modifiers(world, rng, claims, lines)
    _add_identifiers(world, rng, claims, lines, habits, days)
    _add_context(world, rng, claims, lines)
    encounters = Encounters(claims, lines, diagnoses)
    encounters = _add_duplicates(rng, encounters, n_duplicates)
    _add_rejections(rng, encounters, habits.rejection_rate, world.spec.clearinghouse_edits)
    return encounters


def _draw_visits(
    world: World, rng: np.random.Generator, n: int, days: int, start: pd.Timestamp
) -> pd.DataFrame:
    """Who was seen, by whom, when, for which kind of visit (one row per original claim)."""
    day_weights = _weekday_weights(start, days)
    specialties = world.spec.specialties
    shares = np.array([s.claim_share for s in specialties])
    counts = rng.multinomial(n, shares / shares.sum())
    age_at_start = -world.patient_birth_day / 365.25
    adult_weight = np.where(age_at_start >= 18, world.patient_weight, 0.0)
    adult_weight = adult_weight / adult_weight.sum()
    n_patients = len(world.patient_weight)
    parts = []
    for s, (specialty, count) in enumerate(zip(specialties, counts, strict=True)):
        if count == 0:
            continue
        providers = np.flatnonzero(world.provider_specialty == s)
        established = providers[world.provider_start_day[providers] == 0]
        templates = [i for i, t in enumerate(TEMPLATES) if t.specialty == specialty.templates]
        primary_care = specialty.templates == "family_medicine"
        patient_p = world.patient_weight if primary_care else adult_weight
        if specialty.name == "physical_therapy":
            part = _therapy_episodes(rng, count, days, templates, adult_weight)
        else:
            weights = np.array([TEMPLATES[i].weight for i in templates])
            part = pd.DataFrame(
                {
                    "service_day": rng.choice(days, size=count, p=day_weights),
                    "template": np.array(templates)[
                        rng.choice(len(templates), size=count, p=weights / weights.sum())
                    ],
                    "patient": rng.choice(n_patients, size=count, p=patient_p),
                }
            )
        provider = providers[rng.integers(0, len(providers), len(part))]
        not_started = part["service_day"].to_numpy() < world.provider_start_day[provider]
        provider[not_started] = established[rng.integers(0, len(established), not_started.sum())]
        part["provider"] = provider
        part["specialty"] = s
        parts.append(part)
    claims = pd.concat(parts, ignore_index=True)
    for column in ("episode_start", "onset_day"):  # therapy episodes only
        values = claims[column] if column in claims else pd.Series(np.nan, index=claims.index)
        claims[column] = values.fillna(NO_DAY).to_numpy(dtype=np.int64)
    order = np.lexsort((claims["patient"].to_numpy(), claims["service_day"].to_numpy()))
    return claims.iloc[order].reset_index(drop=True)


def _therapy_episodes(
    rng: np.random.Generator, count: int, days: int, templates: list[int], patient_p: np.ndarray
) -> pd.DataFrame:
    """Physical therapy comes in episodes: an evaluation then treatment visits 2-5 days apart."""
    sizes = 1 + rng.poisson(10, size=count // 5 + 10)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), count)) + 1]
    sizes[-1] -= sizes.sum() - count
    sizes = sizes[sizes > 0]
    episode = np.repeat(np.arange(len(sizes)), sizes)
    visit = np.arange(count) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    gaps = np.where(visit == 0, 0, rng.integers(2, 6, count))
    offset = np.cumsum(gaps) - np.repeat((np.cumsum(gaps))[np.cumsum(sizes) - sizes], sizes)
    span = np.maximum.reduceat(offset, np.cumsum(sizes) - sizes)
    first_day = rng.integers(0, np.maximum(1, days - span))
    evaluation = next(t for t in templates if TEMPLATES[t].name == "pt_evaluation")
    treatment = next(t for t in templates if TEMPLATES[t].name == "pt_treatment")
    patients = rng.choice(len(patient_p), size=len(sizes), p=patient_p)
    # The episode's onset of symptoms: days to weeks before its evaluation.
    onset = first_day - rng.integers(3, 120, len(sizes))
    return pd.DataFrame(
        {
            "service_day": np.minimum(first_day[episode] + offset, days - 1),
            "template": np.where(visit == 0, evaluation, treatment),
            "patient": patients[episode],
            "episode_start": first_day[episode],
            "onset_day": onset[episode],
        }
    )


def _draw_lines(
    world: World,
    rng: np.random.Generator,
    claims: pd.DataFrame,
    habits: PracticeHabits,
    start: pd.Timestamp,
) -> pd.DataFrame:
    """Service lines from each claim's template, then resolve the patient-dependent codes."""
    tmpl = claims["template"].to_numpy()
    claim_parts, slot_parts, code_parts, unit_parts = [], [], [], []
    for t, template in enumerate(TEMPLATES):
        rows = np.flatnonzero(tmpl == t)
        if len(rows) == 0:
            continue
        for slot, spec in enumerate(template.lines):
            present = rows[rng.random(len(rows)) < spec.probability]
            if len(present) == 0:
                continue
            options = np.array([_SPECIAL.get(c, CODE_INDEX.get(c, -99)) for c in spec.codes])
            weights = np.array(spec.weights or [1.0] * len(options), dtype=float)
            code = options[rng.choice(len(options), size=len(present), p=weights / weights.sum())]
            claim_parts.append(present)
            slot_parts.append(np.full(len(present), slot))
            code_parts.append(code)
            unit_parts.append(rng.integers(spec.units[0], spec.units[1] + 1, len(present)))
    lines = pd.DataFrame(
        {
            "claim": np.concatenate(claim_parts),
            "slot": np.concatenate(slot_parts),
            "code": np.concatenate(code_parts),
            "units": np.concatenate(unit_parts).astype(float),
        }
    )
    # A few lines billed with more units than the visit had (MUE edits catch them).
    over = rng.random(len(lines)) < habits.units_overbilled
    lines.loc[over, "units"] += rng.integers(1, 3, int(over.sum()))
    _resolve_special_codes(world, rng, claims, lines, habits, start)
    lines = lines[lines["code"] >= 0]
    lines = lines.sort_values(["claim", "slot"], kind="stable").reset_index(drop=True)
    lines["line_number"] = lines.groupby("claim").cumcount().to_numpy() + 1
    return lines.drop(columns="slot")


def _resolve_special_codes(
    world: World,
    rng: np.random.Generator,
    claims: pd.DataFrame,
    lines: pd.DataFrame,
    habits: PracticeHabits,
    start: pd.Timestamp,
) -> None:
    """E/M level, preventive age band, telephone code by date, screening code by sex."""
    code = lines["code"].to_numpy().copy()
    claim = lines["claim"].to_numpy()
    day = claims["service_day"].to_numpy()[claim]
    patient = claims["patient"].to_numpy()[claim]
    payer_type = world.payer_types[claims["payer"].to_numpy()[claim]]

    def codes_of(options: tuple[tuple[str, float], ...], size: int) -> np.ndarray:
        return np.array([CODE_INDEX[c] for c in _choose(rng, options, size)], dtype=np.int64)

    rows = code == _SPECIAL["@em_established"]
    code[rows] = codes_of(EM_ESTABLISHED_MIX, int(rows.sum()))
    rows = code == _SPECIAL["@em_new"]
    code[rows] = codes_of(EM_NEW_MIX, int(rows.sum()))

    rows = np.flatnonzero(code == _SPECIAL["@preventive"])
    age = (day[rows] - world.patient_birth_day[patient[rows]]) / 365.25
    band = np.searchsorted([b for b, _ in _PREVENTIVE_BANDS], age, side="right") - 1
    miscoded = rng.random(len(rows)) < habits.preventive_miscoded
    band = np.where(miscoded, band + rng.choice([-1, 1], len(rows)), band)
    band = np.clip(band, 0, len(_PREVENTIVE_BANDS) - 1)
    band_codes = np.array([CODE_INDEX[c] for _, c in _PREVENTIVE_BANDS])
    medicare_like = np.isin(payer_type[rows], ["medicare", "medicare_advantage"])
    awv = medicare_like & (rng.random(len(rows)) < habits.medicare_preventive_as_awv)
    code[rows] = np.where(awv, CODE_INDEX["G0439"], band_codes[band])

    rows = np.flatnonzero(code == _SPECIAL["@telephone"])
    deleted_day = (pd.Timestamp(TELEPHONE_CODES_DELETED) - start).days
    since = day[rows] - deleted_day
    # Old habits die slowly: some telephone visits keep the deleted codes for a while.
    stale = (since < 0) | (rng.random(len(rows)) < 0.35 * np.exp(-np.maximum(since, 0) / 60.0))
    high = rng.random(len(rows)) < 0.4
    old = np.where(high, CODE_INDEX["99443"], CODE_INDEX["99442"])
    new = np.where(high, CODE_INDEX["98014"], CODE_INDEX["98013"])
    code[rows] = np.where(stale, old, new)

    # Screening: one code per claim chosen from the patient's recorded sex, rarely the wrong one.
    screen_claims = np.unique(claim[code == _SPECIAL["@screening"]])
    male = world.patient_sex[claims["patient"].to_numpy()[screen_claims]] == "M"
    male ^= rng.random(len(screen_claims)) < habits.screening_wrong_sex
    screen_code = np.full(len(claims), -1, dtype=np.int64)
    screen_code[screen_claims] = np.where(male, CODE_INDEX["G0102"], CODE_INDEX["G0101"])
    rows = code == _SPECIAL["@screening"]
    code[rows] = screen_code[claim[rows]]
    rows = code == _SPECIAL["@pap"]
    code[rows] = np.where(screen_code[claim[rows]] == CODE_INDEX["G0101"], CODE_INDEX["Q0091"], -1)
    lines["code"] = code


def _draw_diagnoses(
    world: World, rng: np.random.Generator, claims: pd.DataFrame, lines: pd.DataFrame
) -> tuple[np.ndarray, pd.DataFrame]:
    """Principal diagnosis from the template's profile, up to three comorbidities, pointers."""
    n = len(claims)
    tmpl = claims["template"].to_numpy()
    principal = np.zeros(n, dtype=np.int64)
    for profile in dict.fromkeys(t.diagnosis for t in TEMPLATES):  # ordered: same draws
        rows = np.flatnonzero(
            np.isin(tmpl, [i for i, t in enumerate(TEMPLATES) if t.diagnosis == profile])
        )
        if len(rows) == 0:
            continue
        if profile in NECESSITY_RULES:
            rule = world.spec.necessity[profile]
            kinds = {"core": rule.core, "weak": rule.weak, "unrelated": UNRELATED_DIAGNOSES}
            kind = _choose(rng, world.spec.habits.diagnosis_mix, len(rows))
            for name, options in kinds.items():
                sel = rows[kind == name]
                principal[sel] = [DX_INDEX[c] for c in rng.choice(options, len(sel))]
        elif profile == "screening":
            first_code = lines.groupby("claim")["code"].first()
            codes = np.array(CODES, dtype=object)[first_code.reindex(rows).to_numpy()]
            principal[rows] = [DX_INDEX[SCREENING_DIAGNOSIS[c]] for c in codes]
        else:
            principal[rows] = [
                DX_INDEX[c] for c in _choose(rng, DIAGNOSIS_PROFILES[profile], len(rows))
            ]
    extra = np.array([DX_INDEX[c] for c in COMORBIDITIES])[
        rng.integers(0, len(COMORBIDITIES), (n, MAX_DIAGNOSES - 1))
    ]
    n_extra = rng.choice(4, size=n, p=[0.35, 0.35, 0.2, 0.1])
    extra = np.where(np.arange(MAX_DIAGNOSES - 1) < n_extra[:, None], extra, -1)
    dx = np.column_stack([principal, extra])
    # Drop repeats of an earlier position, then pack the remaining codes to the left.
    for j in range(1, MAX_DIAGNOSES):
        repeat = (dx[:, :j] == dx[:, j : j + 1]).any(axis=1)
        dx[repeat, j] = -1
    packed = np.sort(np.where(dx >= 0, np.arange(MAX_DIAGNOSES), MAX_DIAGNOSES), axis=1)
    dx = np.where(
        packed < MAX_DIAGNOSES,
        np.take_along_axis(dx, np.minimum(packed, MAX_DIAGNOSES - 1), axis=1),
        -1,
    )
    n_dx = (dx >= 0).sum(axis=1)

    claim = lines["claim"].to_numpy()
    is_em = np.isin(CODE_FAMILY[lines["code"].to_numpy()], [FAMILY_INDEX[f] for f in EM_FAMILIES])
    all_pointed = (1 << n_dx[claim]) - 1
    second = (n_dx[claim] >= 2) & (rng.random(len(lines)) < 0.3)
    lines["pointers"] = np.where(is_em, all_pointed, np.where(second, 3, 1))
    return dx, lines


def per_claim_max(values: np.ndarray, claim: np.ndarray, n: int) -> np.ndarray:
    """Largest of each claim's line values (lines sorted by claim; 0 for a claim without)."""
    out = np.zeros(n)
    if len(claim):
        starts = np.r_[0, np.flatnonzero(np.diff(claim)) + 1]
        out[claim[starts]] = np.maximum.reduceat(values, starts)
    return out


def _first_free_slot(mods: np.ndarray) -> np.ndarray:
    free = mods < 0
    return np.where(free.any(axis=1), free.argmax(axis=1), -1)


def add_modifier(mods: np.ndarray, rows: np.ndarray, modifier: np.ndarray | int) -> None:
    """Add a modifier to the first free slot of each row in ``rows`` (a fifth one is dropped)."""
    values = np.broadcast_to(np.asarray(modifier), rows.shape)
    slot = _first_free_slot(mods[rows])
    ok = slot >= 0
    mods[rows[ok], slot[ok]] = values[ok]


def _add_modifiers(
    world: World, rng: np.random.Generator, claims: pd.DataFrame, lines: pd.DataFrame
) -> None:
    """Modifiers 26, 25, 59/X{S,U}, LT/RT, 95, GP, RR/KX and 22, as a coder would add them."""
    n_lines = len(lines)
    claim = lines["claim"].to_numpy()
    code = lines["code"].to_numpy()
    family = CODE_FAMILY[code]
    place = np.array(PLACES)[claims["place"].to_numpy()[claim]]
    compliance = world.provider_compliance[claims["provider"].to_numpy()[claim]]
    mods = np.full((n_lines, 4), -1, dtype=np.int64)

    imaging = np.isin(
        family, [FAMILY_INDEX[f] for f in ("advanced_imaging", "basic_imaging", "cardiac_imaging")]
    )
    add_modifier(mods, np.flatnonzero(imaging & (place == "22")), MOD["26"])

    needs_25 = np.array([p.needs_em_modifier_25 for p in PROCEDURES])[code]
    claim_needs_25 = np.bincount(claim[needs_25], minlength=len(claims)) > 0
    is_em = np.isin(family, [FAMILY_INDEX[f] for f in EM_FAMILIES])
    rows = np.flatnonzero(is_em & claim_needs_25[claim] & (rng.random(n_lines) < compliance))
    add_modifier(mods, rows, MOD["25"])

    # The coder knows which pairs the claim's payer edits.
    line_payer = claims["payer"].to_numpy()[claim]
    for k, (column_1, column_2) in enumerate(world.rules.ncci_pairs):
        has_1 = np.bincount(claim[code == CODE_INDEX[column_1]], minlength=len(claims)) > 0
        rows = np.flatnonzero(
            (code == CODE_INDEX[column_2])
            & has_1[claim]
            & (rng.random(n_lines) < compliance)
            & world.rules.ncci[line_payer, k]
        )
        choice = np.array([MOD["59"], MOD["XS"], MOD["XU"]])[
            rng.choice(3, size=len(rows), p=[0.6, 0.3, 0.1])
        ]
        add_modifier(mods, rows, choice)

    lateral = np.array([p.lateral for p in PROCEDURES])[code]
    side = np.where(rng.random(len(claims)) < 0.5, MOD["LT"], MOD["RT"])
    rows = np.flatnonzero(lateral)
    add_modifier(mods, rows, side[claim[rows]])

    telehealth = is_em & np.isin(place, ["02", "10"]) & (rng.random(n_lines) < 0.8)
    add_modifier(mods, np.flatnonzero(telehealth), MOD["95"])
    add_modifier(mods, np.flatnonzero(family == FAMILY_INDEX["physical_therapy"]), MOD["GP"])
    rows = np.flatnonzero(family == FAMILY_INDEX["dme"])
    add_modifier(mods, rows, MOD["RR"])
    add_modifier(mods, rows, MOD["KX"])
    surgery = (family == FAMILY_INDEX["ortho_surgery"]) & (rng.random(n_lines) < 0.04)
    add_modifier(mods, np.flatnonzero(surgery), MOD["22"])
    for j in range(4):
        lines[f"modifier_{j + 1}"] = mods[:, j]


def _add_identifiers(
    world: World,
    rng: np.random.Generator,
    claims: pd.DataFrame,
    lines: pd.DataFrame,
    habits: PracticeHabits,
    days: int,
) -> None:
    """Referring NPI, prior auth and referral numbers, NPI defects, pointers, submission lag."""
    n = len(claims)
    claim = lines["claim"].to_numpy()
    code = lines["code"].to_numpy()
    specialty = world.specialty_names[claims["specialty"].to_numpy()]
    ordered_line = np.array([p.ordered for p in PROCEDURES])[code]
    ordered = np.bincount(claim[ordered_line], minlength=n) > 0
    needs_referring = np.isin(specialty, list(ORDER_TAKING_SPECIALTIES)) | ordered
    specialist = np.isin(specialty, list(REFERRED_SPECIALTIES))
    has_referring = np.where(
        needs_referring,
        rng.random(n) >= habits.referring_missing,
        rng.random(n) < np.where(specialist, 0.5, 0.03),
    )
    pool = world.referring_npi
    claims["referring"] = np.where(has_referring, rng.integers(0, len(pool), n), -1)

    # Prior authorization: the practice knows the payer's list (it learns a new entry slowly).
    payer = claims["payer"].to_numpy()
    day = claims["service_day"].to_numpy()
    rules = world.rules
    line_payer = payer[claim]
    line_day = day[claim]
    period = rules.period(day)
    units = lines["units"].to_numpy()
    line_required = units >= rules.auth_units[period[claim], line_payer, code]
    required = np.bincount(claim[line_required], minlength=n) > 0
    # A code on the list from the start is known; one added by drift is learned over time.
    since_added = line_day - rules.auth_added_day[line_payer, code]
    line_learned = np.where(
        line_required, np.clip(since_added / habits.auth_learning_days, 0.05, 1.0), 0.0
    )
    line_learned = np.where(rules.auth_added_day[line_payer, code] < 0, 1.0, line_learned)
    learned = per_claim_max(line_learned, claim, n)
    attach = np.where(required, habits.auth_attach * learned, 0.0)
    ever_listed = np.isfinite(rules.auth_units).any(axis=(0, 1))
    commonly = np.bincount(claim[ever_listed[code]], minlength=n) > 0
    attach = np.where(required, attach, np.where(commonly, habits.auth_attach_unneeded, 0.005))
    claims["has_auth"] = rng.random(n) < attach

    referral_payer = world.payer_values("referral_required")[payer]
    needs_referral = (referral_payer & specialist) | (
        np.bincount(claim[rules.referral_code[line_payer, code]], minlength=n) > 0
    )
    attach = np.where(needs_referral, habits.referral_attach, 0.03)
    claims["has_referral"] = rng.random(n) < attach

    draw = rng.random(n)
    cuts = np.cumsum([habits.rendering_missing, habits.rendering_typo, habits.rendering_unknown])
    band = np.searchsorted(cuts, draw, side="right")  # 0 missing, 1 typo, 2 unknown, 3 fine
    claims["rendering_state"] = np.where(band < 3, band + RENDERING_MISSING, RENDERING_OK)
    claims["taxonomy_missing"] = rng.random(n) < habits.taxonomy_missing

    # One line of a few claims loses its diagnosis pointer.
    last_line = np.r_[np.flatnonzero(np.diff(claim)), len(claim) - 1]
    drop = last_line[rng.random(n) < habits.pointer_missing]
    pointers = lines["pointers"].to_numpy().copy()
    pointers[drop] = 0
    lines["pointers"] = pointers

    # Submission lag: most claims go out within days; a few sit in a work queue for months.
    late = rng.random(n) < habits.late_submission_share
    lag = np.where(late, rng.lognormal(np.log(100.0), 0.7, n), rng.lognormal(np.log(3.5), 0.8, n))
    claims["submission_day"] = day + np.floor(lag).astype(np.int64)
    claims["frequency"] = 1
    claims["original"] = -1
    claims["is_duplicate"] = False


def _add_context(
    world: World, rng: np.random.Generator, claims: pd.DataFrame, lines: pd.DataFrame
) -> None:
    """The rest of the claim: member ID, other coverage, accident, delay reason, attachments,
    NDC and CLIA numbers, onset dates, notes. Each may carry a visible defect."""
    spec, habits = world.spec, world.spec.habits
    n = len(claims)
    claim = lines["claim"].to_numpy()
    code = lines["code"].to_numpy()
    family = CODE_FAMILY[code]
    patient = claims["patient"].to_numpy()
    payer = claims["payer"].to_numpy()
    day = claims["service_day"].to_numpy()

    # Member ID: a typo, or the previous payer's ID still on file for a while after a change.
    moved = world.patient_next_payer[patient] != world.patient_payer[patient]
    recent = day < world.patient_switch_day[patient] + world.patient_notice_lag[patient] + 60
    new_payer = moved & (payer == world.patient_next_payer[patient]) & recent
    stale = new_payer & (rng.random(n) < habits.stale_member_id)
    typo = rng.random(n) < habits.member_id_typo
    claims["member_id_state"] = np.select(
        [stale, typo], [MEMBER_ID_STALE, MEMBER_ID_TYPO], MEMBER_ID_OK
    )

    # Other coverage: known (on the claim) or not; the payer on file may not be the primary.
    # (A patient who moved to the payer of their other coverage has no other coverage left.)
    other = world.patient_other_coverage[patient] & (world.patient_other_payer[patient] != payer)
    known = other & world.patient_other_known[patient]
    secondary = other & world.patient_secondary[patient]
    claims["other_known"] = known
    claims["other_unknown_primary"] = other & ~known & secondary
    as_secondary = known & secondary
    claims["as_secondary"] = as_secondary
    claims["primary_paid_missing"] = as_secondary & (rng.random(n) < habits.primary_paid_missing)
    # A secondary claim waits for the primary payer's remittance.
    primary_lag = rng.integers(14, 45, n)
    claims["primary_paid_day"] = np.where(as_secondary, day + primary_lag, NO_DAY)
    claims["submission_day"] = np.where(
        as_secondary,
        np.maximum(claims["submission_day"].to_numpy(), day + primary_lag + rng.integers(1, 6, n)),
        claims["submission_day"].to_numpy(),
    )

    # Accidents: injuries seen in orthopaedics, therapy and imaging of joints and spine.
    names = np.array([t.name for t in TEMPLATES])[claims["template"].to_numpy()]
    specialty = world.specialty_names[claims["specialty"].to_numpy()]
    prone = np.isin(names, list(INJURY_TEMPLATES)) & (
        (names != "office_visit") | (specialty == "orthopaedics")
    )
    injured = prone & (rng.random(n) < spec.accident_rate)
    kind = rng.choice(np.array([1, 2, 3]), size=n, p=[0.35, 0.3, 0.35])
    claims["accident"] = np.where(injured, kind, 0)
    onset = claims["onset_day"].to_numpy()
    accident_day = np.where(onset > NO_DAY, onset, day - rng.integers(1, 60, n))
    claims["accident_day"] = np.where(injured, accident_day, NO_DAY)
    claims["accident_date_missing"] = injured & (rng.random(n) < habits.accident_date_missing)

    # Late claims may say why (CLM20); therapy claims carry onset dates, a few wrong ones.
    lag = claims["submission_day"].to_numpy() - day
    claims["delay_reason"] = (lag > 90) & (rng.random(n) < habits.delay_reason_share)
    wrong_onset = (onset > NO_DAY) & (rng.random(n) < habits.onset_error)
    claims["onset_day"] = np.where(wrong_onset, day + rng.integers(1, 30, n), onset)

    # Records the practice knows a payer wants: unlisted codes, modifier 22, the payer's list.
    mods = lines[[f"modifier_{j}" for j in range(1, 5)]].to_numpy()
    wants = np.array([p.unlisted for p in PROCEDURES])[code] | (mods == MOD["22"]).any(axis=1)
    for i, p in enumerate(world.payers):
        listed = np.isin(code, [CODE_INDEX[c] for c in p.attachment_codes])
        wants |= listed & (payer[claim] == i)
    needs = np.bincount(claim[wants], minlength=n) > 0
    attach = np.where(needs, habits.attachment_sent, 0.003)
    sent = rng.random(n) < attach
    on_request = sent & (rng.random(n) < habits.attachment_on_request)
    claims["attachment"] = np.where(
        on_request, ATTACHMENT_ON_REQUEST, np.where(sent, ATTACHMENT_SENT, ATTACHMENT_NONE)
    )
    claims["note"] = rng.random(n) < habits.claim_note_share

    # Drug lines carry their NDC, lab claims the lab's CLIA number (some on the lines).
    drug = np.isin(code, [CODE_INDEX[c] for c in NDC_OF_CODE])
    lines["ndc"] = drug & (rng.random(len(lines)) >= habits.ndc_missing)
    lab = np.bincount(claim[family == FAMILY_INDEX["lab"]], minlength=n) > 0
    claims["clia"] = lab & (rng.random(n) >= habits.clia_missing)
    claims["clia_on_line"] = claims["clia"].to_numpy() & (rng.random(n) < habits.clia_on_line)


def _add_duplicates(rng: np.random.Generator, encounters: Encounters, count: int) -> Encounters:
    """Resubmit some claims unchanged while the first is still in process (frequency 1 again)."""
    if count == 0:
        return encounters
    rows = np.sort(rng.choice(len(encounters.claims), size=count, replace=False))
    copies = encounters.take(rows)
    copies.claims["submission_day"] += rng.integers(7, 30, count)
    copies.claims["is_duplicate"] = True
    return Encounters.concat([encounters, copies])


def _add_rejections(
    rng: np.random.Generator, encounters: Encounters, rate: float, clearinghouse_edits: bool
) -> None:
    """Front-end rejections (clearinghouse / 277CA / 999) of first submissions, not duplicates.

    Where the clearinghouse runs its own edits, a rendering NPI failing its check digit and a
    line without a diagnosis pointer are rejected there (the payer never sees the claim).
    """
    claims, lines = encounters.claims, encounters.lines
    n = len(claims)
    original = ~claims["is_duplicate"].to_numpy()
    rejected = (rng.random(n) < rate) & original
    weights = np.array([w for _, _, w in REJECTION_REASONS])
    reason = rng.choice(len(REJECTION_REASONS), size=n, p=weights / weights.sum())
    reason = np.where(rejected, reason, -1)
    if clearinghouse_edits:
        no_pointer = (
            np.bincount(lines["claim"].to_numpy()[lines["pointers"].to_numpy() == 0], minlength=n)
            > 0
        )
        bad_npi = claims["rendering_state"].to_numpy() == RENDERING_TYPO
        reason = np.where((reason < 0) & no_pointer, REJECT_POINTER, reason)
        reason = np.where((reason < 0) & bad_npi, REJECT_RENDERING_NPI, reason)
    claims["rejection"] = reason
