"""Turn the integer-coded simulation into the contract tables of :mod:`features.schema`.

This is the only place strings are made (identifiers, codes, dates), all vectorised. The result
is validated against the pandera schemas; a quarantined row here is a simulator bug, so it raises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import ClaimsDataset, validate_table
from simulator.adjudication import REASON_INDEX
from simulator.catalog import NDC_OF_CODE
from simulator.encounters import (
    ACCIDENT_CAUSES,
    ATTACHMENT_NONE,
    ATTACHMENT_ON_REQUEST,
    ATTACHMENT_SENT,
    CODE_FAMILY,
    CODES,
    DIAGNOSES,
    FAMILY_INDEX,
    MEMBER_ID_OK,
    MEMBER_ID_STALE,
    MEMBER_ID_TYPO,
    MODIFIERS,
    NO_DAY,
    PLACES,
    PREVENTIVE_FAMILIES,
    REJECT_BILLING_NPI,
    REJECT_BIRTH_DATE,
    REJECT_PAYER_ID,
    REJECTION_REASONS,
    RENDERING_MISSING,
    RENDERING_TYPO,
    RENDERING_UNKNOWN,
    Encounters,
)
from simulator.members import member_ids, patient_keys
from simulator.remittance import (
    CARC_VOCABULARY,
    GROUP_VOCABULARY,
    RARC_VOCABULARY,
    STATUS_VOCABULARY,
    LinePayment,
    Remittances,
)
from simulator.world import FACILITY_PLACES, RELATIONSHIPS, World, corrupt_npis

UNKNOWN_RENDERING_POOL = 40
"""Outside physicians whose NPI sometimes lands in the rendering box (CARC 208, not matched)."""

# Strings are built with Arrow kernels: far faster and smaller than Python string objects.


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded ``numbers`` (e.g. PCN000000042)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, type=pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _column(values: pa.Array, index: np.ndarray | None = None) -> pd.Series:
    """A text column from an Arrow array, optionally gathered by ``index`` (-1 -> missing)."""
    if index is not None:
        values = pc.take(values, pa.array(index, type=pa.int64(), mask=index < 0))
    return pd.Series(values, dtype="str")


def _vocab(vocabulary: tuple[str, ...] | list[str] | np.ndarray, index: np.ndarray) -> pd.Series:
    """Text for integer codes into ``vocabulary``; -1 becomes missing."""
    return _column(pa.array(list(vocabulary), type=pa.string()), np.asarray(index))


def _dates(start: pd.Timestamp, days: np.ndarray) -> np.ndarray:
    return (np.datetime64(start.date(), "D") + days.astype("timedelta64[D]")).astype(
        "datetime64[ns]"
    )


def _pointer_text() -> list[str | None]:
    """Pointer lists for the 4-bit masks, in the contract's '1,2,3' form (0 -> missing)."""
    out: list[str | None] = [None]
    for mask in range(1, 16):
        out.append(",".join(str(j + 1) for j in range(4) if mask >> j & 1))
    return out


@dataclass
class Identifiers:
    """String identifiers: claim ids by claim row, remit ids and payer ICNs by remittance."""

    claim_number_order: np.ndarray
    """Claim rows in patient-control-number order."""
    claim_id: pa.Array
    remit_id: pa.Array
    payer_claim_number: pa.Array
    remit_of_claim: np.ndarray
    """Remittance position per claim row (-1 when the claim has no remittance)."""


def assign_identifiers(
    claims: pd.DataFrame, remits: pd.DataFrame, start: pd.Timestamp
) -> Identifiers:
    """Patient control numbers in submission order; remit ids in remittance order; payer ICNs."""
    n = len(claims)
    order = np.lexsort((np.arange(n), claims["submission_day"].to_numpy()))
    number = np.empty(n, dtype=np.int64)
    number[order] = np.arange(1, n + 1)

    remit_order = np.lexsort((number[remits["claim"].to_numpy()], remits["remit_day"].to_numpy()))
    remit_number = np.empty(len(remits), dtype=np.int64)
    remit_number[remit_order] = np.arange(1, len(remits) + 1)
    # Payer ICN: 2-digit payer prefix, year and day of year of the remittance, 7-digit serial.
    remit_dates = pd.DatetimeIndex(_dates(start, remits["remit_day"].to_numpy()))
    serial = pd.Series(remit_number).groupby(remits["payer"].to_numpy()).rank().astype(np.int64)
    icn_number = (
        (remits["payer"].to_numpy().astype(np.int64) + 11) * 10**12
        + (remit_dates.year.to_numpy().astype(np.int64) % 100) * 10**10
        + remit_dates.dayofyear.to_numpy().astype(np.int64) * 10**7
        + serial.to_numpy()
    )
    remit_of_claim = np.full(n, -1, dtype=np.int64)
    remit_of_claim[remits["claim"].to_numpy()] = np.arange(len(remits))
    return Identifiers(
        claim_number_order=order,
        claim_id=_ids("PCN", number, 9),
        remit_id=_ids("RMT", remit_number, 10),
        payer_claim_number=pc.cast(pa.array(icn_number), pa.string()),
        remit_of_claim=remit_of_claim,
    )


def build_tables(
    encounters: Encounters,
    payment: LinePayment,
    remittances: Remittances,
    followups: pd.DataFrame,
    ids: Identifiers,
    world: World,
    start: pd.Timestamp,
    rng: np.random.Generator,
) -> ClaimsDataset:
    """All nine contract tables, validated."""
    claims, lines = encounters.claims, encounters.lines
    n = len(claims)
    payer = claims["payer"].to_numpy()
    patient = claims["patient"].to_numpy()
    rejection = claims["rejection"].to_numpy()
    n_payers = len(world.payers)

    # Payer fields; a claim rejected for an unknown payer ID carries a garbled one and no name.
    payer_ids = [p.payer_id for p in world.payers]
    garbled = [p.payer_id[:-2] + p.payer_id[-1] + p.payer_id[-2] for p in world.payers]
    garbled = [g if g not in payer_ids else "00000" for g in garbled]
    unknown_payer = rejection == REJECT_PAYER_ID
    payer_id_index = np.where(unknown_payer, payer + n_payers, payer)
    payer_name_index = np.where(unknown_payer, -1, payer)

    # Rendering NPI: roster NPI, a typo of it, an outsider's NPI, or nothing.
    provider = claims["provider"].to_numpy()
    n_providers = len(world.provider_npi)
    outsiders = world.referring_npi[-UNKNOWN_RENDERING_POOL:]
    rendering_vocab = [*world.provider_npi, *corrupt_npis(world.provider_npi), *outsiders]
    state = claims["rendering_state"].to_numpy()
    rendering_index = np.select(
        [state == RENDERING_MISSING, state == RENDERING_TYPO, state == RENDERING_UNKNOWN],
        [-1, provider + n_providers, 2 * n_providers + provider % len(outsiders)],
        provider,
    )
    taxonomy_index = np.where(
        claims["taxonomy_missing"].to_numpy(), -1, claims["specialty"].to_numpy()
    )
    service = _dates(start, claims["service_day"].to_numpy())
    birth = _dates(start, world.patient_birth_day[patient])
    line_claim = lines["claim"].to_numpy()
    total_charge = np.round(np.bincount(line_claim, weights=payment.charge, minlength=n), 2)
    member_state = claims["member_id_state"].to_numpy()
    original = claims["original"].to_numpy()
    original_remit = np.where(original >= 0, ids.remit_of_claim[np.maximum(original, 0)], -1)
    auth = np.where(claims["has_auth"].to_numpy(), np.arange(n), -1)
    auth_numbers = _ids("A", rng.integers(10**8, 10**9, n), 9)
    # Payers whose authorizations the practice writes on the lines that need them.
    line_auth = world.payer_values("line_level_auth")[payer] & (auth >= 0)
    referral = np.where(claims["has_referral"].to_numpy(), np.arange(n), -1)
    member = member_ids(
        world,
        patient,
        np.where(member_state == MEMBER_ID_STALE, world.patient_payer[patient], payer),
        member_state == MEMBER_ID_TYPO,
    )
    frame = _checked(
        "claims",
        pd.DataFrame(
            {
                "claim_id": _column(ids.claim_id),
                "submission_date": _dates(start, claims["submission_day"].to_numpy()),
                "claim_type": "professional",
                "frequency_code": _vocab(["1", "7"], (claims["frequency"].to_numpy() == 7) * 1),
                "original_payer_claim_number": _column(ids.payer_claim_number, original_remit),
                "payer_id": _vocab(payer_ids + garbled, payer_id_index),
                "payer_name": _vocab([p.name for p in world.payers], payer_name_index),
                "claim_filing_indicator": _vocab([p.filing_indicator for p in world.payers], payer),
                "payer_type": _vocab([p.payer_type for p in world.payers], payer),
                "billing_npi": _vocab(
                    [world.billing_npi], np.where(rejection == REJECT_BILLING_NPI, -1, 0)
                ),
                "rendering_npi": _vocab(rendering_vocab, rendering_index),
                "referring_npi": _vocab(world.referring_npi, claims["referring"].to_numpy()),
                # The rendering provider's taxonomy, else the billing provider's (as an 837
                # reader takes it): a missing rendering taxonomy shows in rendering_taxonomy.
                "provider_taxonomy": _vocab(
                    [*(s.taxonomy for s in world.spec.specialties), BILLING_TAXONOMY],
                    np.where(taxonomy_index < 0, len(world.spec.specialties), taxonomy_index),
                ),
                "place_of_service": _vocab(PLACES, claims["place"].to_numpy()),
                "total_charge": total_charge,
                "service_date_from": service,
                "service_date_to": service,
                "patient_id": _column(member),
                "patient_birth_date": pd.Series(birth).where(rejection != REJECT_BIRTH_DATE),
                "patient_sex": _vocab(
                    ["F", "M", "U"],
                    pd.Series(world.patient_sex[patient]).map({"F": 0, "M": 1, "U": 2}).to_numpy(),
                ),
                "prior_auth_number": _column(auth_numbers, np.where(line_auth, -1, auth)),
                "referral_number": _column(_ids("RF", rng.integers(10**7, 10**8, n), 8), referral),
                "has_other_coverage": claims["other_known"].to_numpy(),
                **_claim_context(claims, lines, world, start, total_charge, rng),
            }
        ),
    )

    line_frame = _checked(
        "lines",
        pd.DataFrame(
            {
                "claim_id": _column(ids.claim_id, line_claim),
                "line_number": lines["line_number"].to_numpy(),
                "procedure_code": _vocab(CODES, lines["code"].to_numpy()),
                **{
                    f"modifier_{j}": _vocab(MODIFIERS, lines[f"modifier_{j}"].to_numpy())
                    for j in range(1, 5)
                },
                "units": lines["units"].to_numpy(dtype=float),
                "line_charge": np.round(payment.charge, 2),
                "service_date": service[line_claim],
                "diagnosis_pointers": _column(
                    pa.array(_pointer_text(), type=pa.string()), lines["pointers"].to_numpy()
                ),
                "revenue_code": _vocab([], np.full(len(lines), -1)),
                **_line_context(encounters, world, auth_numbers, auth, line_auth),
            }
        ),
    )

    dx = encounters.diagnoses
    row, position = np.nonzero(dx >= 0)
    diagnoses = _checked(
        "diagnoses",
        pd.DataFrame(
            {
                "claim_id": _column(ids.claim_id, row),
                "position": position + 1,
                "code": _vocab(DIAGNOSES, dx[row, position]),
            }
        ),
    )

    return ClaimsDataset(
        claims=frame,
        lines=line_frame,
        diagnoses=diagnoses,
        **_remittance_tables(remittances, ids, world, start, claims, member, rng),
        followups=_followup_table(followups, ids, start),
        rejections=_rejection_table(claims, ids, start, rng),
    )


def _checked(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Validate a freshly built table (one at a time, to keep peak memory low)."""
    valid, quarantined = validate_table(name, frame)
    if len(quarantined):
        raise RuntimeError(
            f"simulator produced {len(quarantined)} invalid '{name}' rows, e.g. "
            f"{quarantined['reason'].iloc[0]}; this is a simulator bug, please report it"
        )
    return valid


def _line_numbers(values: np.ndarray) -> pd.Series:
    """Line numbers with -1 (claim-level rows) as missing."""
    return pd.Series(pd.arrays.IntegerArray(values.astype(np.int64), values < 0))


def _remittance_tables(
    remittances: Remittances,
    ids: Identifiers,
    world: World,
    start: pd.Timestamp,
    claims: pd.DataFrame,
    member: pa.Array,
    rng: np.random.Generator,
) -> dict[str, pd.DataFrame]:
    remits = remittances.remits
    position = ids.remit_of_claim[remits["claim"].to_numpy()]
    payer = remits["payer"].to_numpy()
    claim = remits["claim"].to_numpy()
    patient = claims["patient"].to_numpy()[claim]
    service = _dates(start, claims["service_day"].to_numpy()[claim])
    remit_day = remits["remit_day"].to_numpy()
    # NM1*74: the payer names the member ID it has when it could not match the one sent.
    reason = remits["claim_reason"].to_numpy()
    wrong_id = claims["member_id_state"].to_numpy()[claim] != MEMBER_ID_OK
    corrected = (
        (reason == REASON_INDEX["member_not_identified"])
        & wrong_id
        & (rng.random(len(remits)) < 0.6)
    )
    right_id = member_ids(world, patient, payer, np.zeros(len(remits), dtype=bool))
    # DTM*036: once the payer has the member's coverage ending on file, its 835s say when.
    leaving = (world.patient_next_payer[patient] != world.patient_payer[patient]) & (
        payer == world.patient_payer[patient]
    )
    ends = world.patient_switch_day[patient]
    on_file = leaving & (remit_day >= ends - 30) & (rng.random(len(remits)) < 0.7)
    remit_table = (
        pd.DataFrame(
            {
                "remit_id": _column(ids.remit_id, position),
                "claim_id": _column(ids.claim_id, remits["claim"].to_numpy()),
                "payer_claim_number": _column(ids.payer_claim_number, position),
                "status_code": _vocab(STATUS_VOCABULARY, remits["status"].to_numpy()),
                "total_charge": remits["total_charge"].to_numpy(),
                "paid_amount": remits["paid"].to_numpy(),
                "patient_responsibility": remits["patient_responsibility"].to_numpy(),
                "remit_date": _dates(start, remits["remit_day"].to_numpy()),
                "payer_id": _vocab([p.payer_id for p in world.payers], payer),
                "payer_name": _vocab([p.name for p in world.payers], payer),
                "claim_filing_indicator": _vocab([p.filing_indicator for p in world.payers], payer),
                "frequency_code": _vocab(
                    ["1", "7"], (claims["frequency"].to_numpy()[claim] == 7).astype(np.int64)
                ),
                "patient_member_id": _column(member, claim),
                "insured_member_id": _column(member, claim),
                "corrected_member_id": _column(
                    right_id, np.where(corrected, np.arange(len(remits)), -1)
                ),
                "statement_from": service,
                "statement_to": service,
                "received_date": _dates(start, claims["submission_day"].to_numpy()[claim] + 1),
                "coverage_expiration_date": pd.Series(_dates(start, np.minimum(ends, 10**5))).where(
                    on_file
                ),
            }
        )
        .iloc[np.argsort(position, kind="stable")]
        .reset_index(drop=True)
    )
    remit_table = _checked("remittances", remit_table)

    def keyed(frame: pd.DataFrame) -> dict[str, pd.Series]:
        claim = frame["claim"].to_numpy()
        return {
            "remit_id": _column(ids.remit_id, ids.remit_of_claim[claim]),
            "claim_id": _column(ids.claim_id, claim),
        }

    lines = remittances.lines
    remit_lines = _checked(
        "remit_lines",
        pd.DataFrame(
            {
                **keyed(lines),
                "line_number": lines["line_number"].to_numpy(),
                "procedure_code": _vocab(CODES, lines["code"].to_numpy()),
                "line_charge": np.round(lines["charge"].to_numpy(), 2),
                "paid_amount": np.round(lines["paid"].to_numpy(), 2),
                "units": lines["units"].to_numpy(dtype=float),
                **{
                    f"modifier_{j}": _vocab(MODIFIERS, lines[f"modifier_{j}"].to_numpy())
                    for j in range(1, 5)
                },
                "service_date": _dates(
                    start, claims["service_day"].to_numpy()[lines["claim"].to_numpy()]
                ),
                "allowed_amount": np.round(lines["allowed"].to_numpy(), 2),
                "line_control_number": _vocab(
                    [
                        str(i)
                        for i in range(int(np.max(lines["line_number"].to_numpy(), initial=0)) + 1)
                    ],
                    lines["line_number"].to_numpy(),
                ),
            }
        ),
    )
    adj = remittances.adjustments
    adjustments = _checked(
        "adjustments",
        pd.DataFrame(
            {
                **keyed(adj),
                "line_number": _line_numbers(adj["line_number"].to_numpy()),
                "group_code": _vocab(GROUP_VOCABULARY, adj["group"].to_numpy()),
                "carc": _vocab(CARC_VOCABULARY, adj["carc"].to_numpy()),
                "amount": np.round(adj["amount"].to_numpy(dtype=float), 2),
                "quantity": np.full(len(adj), np.nan),
            }
        ),
    )
    rem = remittances.remarks
    remarks = _checked(
        "remarks",
        pd.DataFrame(
            {
                **keyed(rem),
                "line_number": _line_numbers(rem["line_number"].to_numpy()),
                "rarc": _vocab(RARC_VOCABULARY, rem["rarc"].to_numpy()),
                # Claim-level remarks of a professional claim come in MOA, line ones in LQ.
                "source": _vocab(["MOA", "LQ"], (rem["line_number"].to_numpy() >= 0) * 1),
            }
        ),
    )
    return {
        "remittances": remit_table,
        "remit_lines": remit_lines,
        "adjustments": adjustments,
        "remarks": remarks,
    }


def _followup_table(followups: pd.DataFrame, ids: Identifiers, start: pd.Timestamp) -> pd.DataFrame:
    actions = ["corrected_claim", "appeal", "peer_to_peer", "eligibility_rebill"]
    action_index = (
        pd.Series(followups["action"].to_numpy())
        .map({a: i for i, a in enumerate(actions)})
        .to_numpy()
    )
    return _checked(
        "followups",
        pd.DataFrame(
            {
                "claim_id": _column(ids.claim_id, followups["claim"].to_numpy()),
                "action": _vocab(actions, action_index),
                "action_date": _dates(start, followups["action_day"].to_numpy()),
                "resolved_date": _dates(start, followups["resolved_day"].to_numpy()),
                "recovered": followups["recovered"].to_numpy(dtype=bool),
                "recovered_amount": np.round(
                    followups["recovered_amount"].to_numpy(dtype=float), 2
                ),
            }
        ),
    )


def _rejection_table(
    claims: pd.DataFrame, ids: Identifiers, start: pd.Timestamp, rng: np.random.Generator
) -> pd.DataFrame:
    rows = np.flatnonzero(claims["rejection"].to_numpy() >= 0)
    reason = claims["rejection"].to_numpy()[rows]
    sources = np.array([s for s, _, _ in REJECTION_REASONS])
    delay = np.where(sources[reason] == "999", 0, rng.integers(1, 3, len(rows)))
    return _checked(
        "rejections",
        pd.DataFrame(
            {
                "claim_id": _column(ids.claim_id, rows),
                "rejection_date": _dates(start, claims["submission_day"].to_numpy()[rows] + delay),
                "source": _vocab([s for s, _, _ in REJECTION_REASONS], reason),
                "reason": _vocab([t for _, t, _ in REJECTION_REASONS], reason),
            }
        ),
    )


BILLING_TAXONOMY = "193200000X"
"""The practice bills as a multi-specialty group."""
DELAY_REASONS = ("1", "7", "11")
"""CLM20 codes the practice gives: eligibility unknown, third party delay, other."""
NOTES = (
    "Patient seen for follow-up per treatment plan",
    "Records available on request",
    "Services rendered as ordered",
)


def _claim_context(
    claims: pd.DataFrame,
    lines: pd.DataFrame,
    world: World,
    start: pd.Timestamp,
    total_charge: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, object]:
    """The contract's optional claim columns: subscriber, states, taxonomies, facility, delay,
    accident, EPSDT, onset, attachments, note, CLIA, other payer."""
    spec = world.spec
    n = len(claims)
    patient = claims["patient"].to_numpy()
    payer = claims["payer"].to_numpy()
    day = claims["service_day"].to_numpy()
    states = [spec.practice_state, *spec.neighbour_states]
    place = np.array(PLACES)[claims["place"].to_numpy()]
    facility = pd.Series(place).map({p: i for i, p in enumerate(FACILITY_PLACES)})
    facility_index = facility.fillna(-1).to_numpy(dtype=np.int64)
    accident = claims["accident"].to_numpy()
    auto_state = np.where(rng.random(n) < 0.9, 0, rng.integers(1, len(states), n))
    accident_day = claims["accident_day"].to_numpy()
    accident_known = (accident > 0) & ~claims["accident_date_missing"].to_numpy()
    onset = claims["onset_day"].to_numpy()
    episode = claims["episode_start"].to_numpy()
    attachment = claims["attachment"].to_numpy()
    surgery = (
        np.bincount(
            lines["claim"].to_numpy()[
                CODE_FAMILY[lines["code"].to_numpy()] == FAMILY_INDEX["ortho_surgery"]
            ],
            minlength=n,
        )
        > 0
    )
    age = (day - world.patient_birth_day[patient]) / 365.25
    preventive = (
        np.bincount(
            lines["claim"].to_numpy()[
                np.isin(
                    CODE_FAMILY[lines["code"].to_numpy()],
                    [FAMILY_INDEX[f] for f in PREVENTIVE_FAMILIES],
                )
            ],
            minlength=n,
        )
        > 0
    )
    epsdt = (world.payer_types[payer] == "medicaid") & (age < 21) & preventive
    known = claims["other_known"].to_numpy()
    secondary = claims["as_secondary"].to_numpy()
    other = world.patient_other_payer[patient]
    paid_known = secondary & ~claims["primary_paid_missing"].to_numpy()
    primary_paid = np.round(total_charge * rng.uniform(0.2, 0.45, n), 2)
    clia = claims["clia"].to_numpy() & ~claims["clia_on_line"].to_numpy()
    group = world.patient_group[patient]
    return {
        "payer_responsibility": _vocab(["P", "S"], secondary.astype(np.int64)),
        "subscriber_group_number": _column(
            _ids("G", group, 6), np.where(group > 0, np.arange(n), -1)
        ),
        "patient_relationship": _vocab(RELATIONSHIPS, world.patient_relationship[patient]),
        "patient_key": _column(patient_keys(world, start, patient)),
        "patient_state": _vocab(states, world.patient_state[patient]),
        "subscriber_state": _vocab(states, world.patient_state[patient]),
        "billing_state": _vocab(states, np.zeros(n, dtype=np.int64)),
        "billing_taxonomy": _vocab([BILLING_TAXONOMY], np.zeros(n, dtype=np.int64)),
        "rendering_taxonomy": _vocab(
            [s.taxonomy for s in spec.specialties],
            np.where(claims["taxonomy_missing"].to_numpy(), -1, claims["specialty"].to_numpy()),
        ),
        "service_facility_npi": _vocab(world.facility_npi, facility_index),
        "service_facility_state": _vocab(states, np.where(facility_index >= 0, 0, -1)),
        "delay_reason_code": _vocab(
            DELAY_REASONS,
            np.where(claims["delay_reason"].to_numpy(), rng.integers(0, 3, n), -1),
        ),
        "related_causes": _vocab(ACCIDENT_CAUSES, np.where(accident > 0, accident, -1)),
        "auto_accident_state": _vocab(states, np.where(accident == 1, auto_state, -1)),
        "epsdt_indicator": _vocab(["Y"], np.where(epsdt, 0, -1)),
        "accident_date": pd.Series(_dates(start, accident_day)).where(accident_known),
        "onset_date": pd.Series(_dates(start, np.maximum(onset, -(10**5)))).where(onset > NO_DAY),
        "initial_treatment_date": pd.Series(_dates(start, np.maximum(episode, -(10**5)))).where(
            episode > NO_DAY
        ),
        "attachment_types": _vocab(
            ["09", "OB"],
            np.where(attachment != ATTACHMENT_NONE, surgery.astype(np.int64), -1),
        ),
        "attachment_transmission": _vocab(
            ["FX", "EL", "AA"],
            np.select(
                [attachment == ATTACHMENT_ON_REQUEST, attachment == ATTACHMENT_SENT],
                [2, rng.integers(0, 2, n)],
                -1,
            ),
        ),
        "claim_note": _vocab(
            NOTES, np.where(claims["note"].to_numpy(), rng.integers(0, len(NOTES), n), -1)
        ),
        "clia_number": _vocab([world.clia_number], np.where(clia, 0, -1)),
        "other_payer_id": _vocab([p.payer_id for p in world.payers], np.where(known, other, -1)),
        "other_payer_responsibility": _vocab(
            ["P", "S"], np.where(known, np.where(secondary, 0, 1), -1)
        ),
        "other_payer_filing_indicator": _vocab(
            [p.filing_indicator for p in world.payers], np.where(known, other, -1)
        ),
        "other_payer_paid_amount": np.where(paid_known, primary_paid, np.nan),
        "other_payer_adjudication_date": pd.Series(
            _dates(start, np.maximum(claims["primary_paid_day"].to_numpy(), 0))
        ).where(paid_known),
    }


def _line_context(
    encounters: Encounters,
    world: World,
    auth_numbers: pa.Array,
    auth: np.ndarray,
    line_auth: np.ndarray,
) -> dict[str, object]:
    """The contract's optional line columns: line authorization, NDC, CLIA, unit basis."""
    claims, lines = encounters.claims, encounters.lines
    claim = lines["claim"].to_numpy()
    code = lines["code"].to_numpy()
    payer = claims["payer"].to_numpy()[claim]
    rules = world.rules
    period = rules.period(claims["service_day"].to_numpy())[claim]
    needs = lines["units"].to_numpy() >= rules.auth_units[period, payer, code]
    # The authorization goes on the lines that need it (the first line if none does).
    needing_claim = np.bincount(claim[needs], minlength=len(claims)) > 0
    first = lines["line_number"].to_numpy() == 1
    on_line = line_auth[claim] & (needs | (first & ~needing_claim[claim]))
    ndc = lines["ndc"].to_numpy()
    codes = np.array(CODES, dtype=object)[code]
    ndc_rows = np.flatnonzero(ndc)
    ndc_code = np.full(len(lines), -1, dtype=np.int64)
    drugs = list(NDC_OF_CODE)
    ndc_code[ndc_rows] = [drugs.index(c) for c in codes[ndc_rows]]
    per_unit = np.array([NDC_OF_CODE[c][2] for c in drugs])
    quantity = np.where(
        ndc, np.round(lines["units"].to_numpy() * per_unit[np.maximum(ndc_code, 0)], 3), np.nan
    )
    lab = CODE_FAMILY[code] == FAMILY_INDEX["lab"]
    clia_line = claims["clia_on_line"].to_numpy()[claim] & lab
    return {
        "line_prior_auth_number": _column(auth_numbers, np.where(on_line, auth[claim], -1)),
        "ndc_code": _vocab([NDC_OF_CODE[c][0] for c in drugs], ndc_code),
        "ndc_quantity": quantity,
        "ndc_unit": _vocab([NDC_OF_CODE[c][1] for c in drugs], ndc_code),
        "line_clia_number": _vocab([world.clia_number], np.where(clia_line, 0, -1)),
        "unit_basis": _vocab(["UN"], np.zeros(len(lines), dtype=np.int64)),
    }
