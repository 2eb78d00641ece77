"""Pricing and 835-like remittances: payments, CAS adjustments and remark codes.

A paid line carries the ordinary price of being paid - CO-45 (charge above the fee schedule),
PR-1/2/3 (deductible, coinsurance, copay) and, for Medicare, CO-253 (sequestration) - none of
which is a denial. A claim-level denial denies the claim whole: no line is paid and the CARC
sits once on the claim for the whole charge. A line-level denial denies its line only: that
line pays zero with the CARC in its CAS for the line's charge, the other lines are paid.
Either way a remittance balances: charge = paid + adjustments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.codes import code_tables
from simulator.adjudication import REASONS
from simulator.catalog import CHARGE_MULTIPLIER, EM_FAMILIES, PROCEDURE_FAMILIES, PROCEDURES
from simulator.catalog import PROFESSIONAL_COMPONENT_SHARE as PC_SHARE
from simulator.encounters import CODE_FAMILY, FAMILY_INDEX, MOD, Encounters
from simulator.world import World

MEDICARE_SEQUESTRATION = 0.02
COINSURANCE = {
    "commercial": 0.2,
    "medicare": 0.2,
    "medicare_advantage": 0.0,
    "medicaid": 0.0,
    "other": 0.1,
}
_EM = np.isin(np.arange(len(PROCEDURE_FAMILIES)), [FAMILY_INDEX[f] for f in EM_FAMILIES])

# Remittance frames hold integer codes into these vocabularies; tables.py turns them into text.
CARC_VOCABULARY: tuple[str, ...] = tuple(
    dict.fromkeys(["45", "1", "2", "3", "253", *(c for r in REASONS for c in r.carcs)])
)
GROUP_VOCABULARY: tuple[str, ...] = ("CO", "PR", "PI", "OA", "CR")
RARC_VOCABULARY: tuple[str, ...] = tuple(dict.fromkeys(r.rarc for r in REASONS if r.rarc))
STATUS_VOCABULARY: tuple[str, ...] = ("1", "4")
_CO, _PR = GROUP_VOCABULARY.index("CO"), GROUP_VOCABULARY.index("PR")


def _component_share(lines: pd.DataFrame) -> np.ndarray:
    mods = lines[[f"modifier_{j}" for j in range(1, 5)]].to_numpy()
    return np.where((mods == MOD["26"]).any(axis=1), PC_SHARE, 1.0)


def line_charges(lines: pd.DataFrame) -> np.ndarray:
    """Billed charge per line from the practice's charge master (whole dollars per unit)."""
    rate = np.array([p.medicare_rate for p in PROCEDURES])[lines["code"].to_numpy()]
    unit_price = np.maximum(np.round(rate * CHARGE_MULTIPLIER * _component_share(lines)), 1.0)
    return unit_price * lines["units"].to_numpy()


@dataclass
class LinePayment:
    """What each line would pay if the claim is paid (cents-rounded components)."""

    charge: np.ndarray
    allowed: np.ndarray
    deductible: np.ndarray
    coinsurance: np.ndarray
    copay: np.ndarray
    sequestration: np.ndarray

    @property
    def paid(self) -> np.ndarray:
        return np.round(
            self.allowed - self.deductible - self.coinsurance - self.copay - self.sequestration, 2
        )

    @property
    def patient_share(self) -> np.ndarray:
        return np.round(self.deductible + self.coinsurance + self.copay, 2)


DEDUCTIBLE_SHARE = 0.35
"""Chance the first line of an early-year claim meets an unmet deductible."""
DEDUCTIBLE_RANGE = (40.0, 300.0)
"""The deductible left to meet, uniform in dollars (rounded to whole dollars)."""


@dataclass
class _Terms:
    """What a line's payment depends on, before the deductible draw."""

    charge: np.ndarray
    allowed: np.ndarray
    deductible_possible: np.ndarray
    copay_amount: np.ndarray
    first_em: np.ndarray
    coinsurance_rate: np.ndarray
    medicare: np.ndarray


def _terms(encounters: Encounters, world: World, start: pd.Timestamp) -> _Terms:
    claims, lines = encounters.claims, encounters.lines
    claim = lines["claim"].to_numpy()
    code = lines["code"].to_numpy()
    payer = claims["payer"].to_numpy()[claim]
    ptype = world.payer_types[payer]
    rate = np.array([p.medicare_rate for p in PROCEDURES])[code]
    fee = world.payer_values("fee_factor")[payer]
    charge = line_charges(lines)
    allowed = np.minimum(
        np.round(rate * fee * lines["units"].to_numpy() * _component_share(lines), 2), charge
    )
    first_line = lines["line_number"].to_numpy() == 1
    # Deductibles bite early in the calendar year.
    month = pd.DatetimeIndex(start + pd.to_timedelta(claims["service_day"].to_numpy(), unit="D"))
    early = month.month.to_numpy()[claim] <= 3
    has_deductible = np.isin(ptype, ["commercial", "medicare", "other"])
    is_em = _EM[CODE_FAMILY[code]]
    first_em = is_em & (pd.Series(is_em).groupby(claim).cumsum().to_numpy() == 1)
    coinsurance_rate = np.vectorize(COINSURANCE.get)(ptype)
    coinsurance_rate = np.where(is_em & (ptype == "commercial"), 0.0, coinsurance_rate)
    return _Terms(
        charge=charge,
        allowed=allowed,
        deductible_possible=first_line & early & has_deductible,
        copay_amount=world.payer_values("copay")[payer],
        first_em=first_em,
        coinsurance_rate=coinsurance_rate,
        medicare=ptype == "medicare",
    )


def price_lines(
    encounters: Encounters, world: World, start: pd.Timestamp, rng: np.random.Generator
) -> LinePayment:
    """Allowed amounts from the payer's fee factor; patient share by the plan type's design."""
    t = _terms(encounters, world, start)
    n_lines = len(t.charge)
    takes = t.deductible_possible & (rng.random(n_lines) < DEDUCTIBLE_SHARE)
    owed = np.round(rng.uniform(*DEDUCTIBLE_RANGE, n_lines))
    deductible = np.where(takes, np.minimum(t.allowed, owed), 0.0)
    remaining = t.allowed - deductible
    copay = np.where(t.first_em, np.minimum(t.copay_amount, remaining), 0.0)
    remaining = remaining - copay
    coinsurance = np.round(remaining * t.coinsurance_rate, 2)
    sequestration = np.where(
        t.medicare, np.round((remaining - coinsurance) * MEDICARE_SEQUESTRATION, 2), 0.0
    )
    return LinePayment(t.charge, t.allowed, deductible, coinsurance, copay, sequestration)


def zero_paid_probability(encounters: Encounters, world: World, start: pd.Timestamp) -> np.ndarray:
    """Per line, the probability that :func:`price_lines` makes it pay $0 (if not denied).

    A line pays nothing when the copay (first E/M line) or a deductible takes all it allows:
    the deductible, ``min(allowed, round(U))`` with U uniform on :data:`DEDUCTIBLE_RANGE`,
    leaves nothing when ``round(U) >= allowed - copay``, i.e. ``U >= ceil(allowed - copay) -
    0.5``. Exact, so the truth can tell when a claim with a denied line pays $0 in all.
    """
    t = _terms(encounters, world, start)
    left = np.round(t.allowed - np.where(t.first_em, t.copay_amount, 0.0), 2)
    low, high = DEDUCTIBLE_RANGE
    smallest = np.ceil(left - 1e-9) - 0.5
    covers = np.clip((high - smallest) / (high - low), 0.0, 1.0)
    return np.where(left <= 0, 1.0, np.where(t.deductible_possible, DEDUCTIBLE_SHARE * covers, 0.0))


@dataclass
class Remittances:
    """Remittance rows keyed by internal claim row (ids are attached in :mod:`simulator.tables`).

    Code columns (``status``, ``group``, ``carc``, ``rarc``) index the ``*_VOCABULARY`` tuples.
    """

    remits: pd.DataFrame
    lines: pd.DataFrame
    adjustments: pd.DataFrame
    remarks: pd.DataFrame


def build_remittances(
    encounters: Encounters,
    rows: np.ndarray,
    claim_reason: np.ndarray,
    claim_carc: np.ndarray,
    not_recognized: np.ndarray,
    line_reason: np.ndarray,
    line_carc: np.ndarray,
    payment: LinePayment,
    rng: np.random.Generator,
) -> Remittances:
    """One 835 claim payment per claim in ``rows``.

    ``claim_reason`` / ``claim_carc`` (per claim row) deny a claim whole; ``line_reason`` /
    ``line_carc`` (per service line) deny single lines of a claim otherwise paid. Index -1 and
    '' mean no denial.
    """
    claims, lines = encounters.claims, encounters.lines
    tables = code_tables()
    n = len(claims)
    in_scope = np.zeros(n, dtype=bool)
    in_scope[rows] = True
    claim = lines["claim"].to_numpy()
    keep = in_scope[claim]
    line_claim = claim[keep]
    line_number = lines["line_number"].to_numpy()[keep]
    charge = payment.charge[keep]
    whole = claim_reason >= 0
    line_denied = (line_reason[keep] >= 0) & ~whole[line_claim]
    ok = ~whole[line_claim] & ~line_denied
    paid = np.where(ok, payment.paid[keep], 0.0)

    carc_index = {c: i for i, c in enumerate(CARC_VOCABULARY)}
    default_group = tables.carc["default_group"]
    group_of_carc = np.array(
        [GROUP_VOCABULARY.index(default_group[c]) for c in CARC_VOCABULARY] + [-1]
    )
    rarc_of = np.array([RARC_VOCABULARY.index(r.rarc) if r.rarc else -1 for r in REASONS] + [-1])

    def carc_codes(values: np.ndarray) -> np.ndarray:
        return np.array([carc_index.get(c, -1) for c in values], dtype=np.int64)

    whole_carc = np.full(n, -1, dtype=np.int64)
    whole_carc[whole] = carc_codes(claim_carc[whole])
    denied_carc = carc_codes(line_carc[keep][line_denied])

    total_charge = np.bincount(claim, weights=payment.charge, minlength=n)
    claim_paid = np.bincount(line_claim, weights=paid, minlength=n)
    share = np.where(ok, payment.patient_share[keep], 0.0)
    # A denial under group PR (coverage ended, benefit maximum...) is the patient's to pay.
    pr_denied = np.zeros(len(line_claim))
    pr_denied[np.flatnonzero(line_denied)] = np.where(
        group_of_carc[denied_carc] == _PR, charge[line_denied], 0.0
    )
    patient = np.bincount(line_claim, weights=share + pr_denied, minlength=n)
    patient = np.where(whole & (group_of_carc[whole_carc] == _PR), total_charge, patient)
    lag = 10 + np.minimum(rng.gamma(2.0, 6.0, n), 35).astype(np.int64)
    remits = pd.DataFrame(
        {
            "claim": rows,
            "payer": claims["payer"].to_numpy()[rows],
            "claim_reason": claim_reason[rows],
            "status": (whole[rows] & not_recognized[rows]).astype(np.int64),
            "total_charge": np.round(total_charge[rows], 2),
            "paid": np.round(claim_paid[rows], 2),
            "patient_responsibility": np.round(patient[rows], 2),
            "remit_day": claims["submission_day"].to_numpy()[rows] + lag[rows],
        }
    )

    # Service lines are reported unless the whole claim was denied at claim level.
    reported = ~whole[line_claim]
    remit_lines = pd.DataFrame(
        {
            "claim": line_claim,
            "line_number": line_number,
            "code": lines["code"].to_numpy()[keep],
            "charge": charge,
            "paid": paid,
            "allowed": np.where(ok, payment.allowed[keep], 0.0),
            "units": lines["units"].to_numpy()[keep],
            **{f"modifier_{j}": lines[f"modifier_{j}"].to_numpy()[keep] for j in range(1, 5)},
        }
    )[reported]

    adjustments = []
    for group, carc_code, amount in (
        (_CO, "45", payment.charge[keep] - payment.allowed[keep]),
        (_PR, "1", payment.deductible[keep]),
        (_PR, "3", payment.copay[keep]),
        (_PR, "2", payment.coinsurance[keep]),
        (_CO, "253", payment.sequestration[keep]),
    ):
        mask = ok & (np.round(amount, 2) > 0)
        adjustments.append(
            pd.DataFrame(
                {
                    "claim": line_claim[mask],
                    "line_number": line_number[mask],
                    "group": group,
                    "carc": carc_index[carc_code],
                    "amount": np.round(amount[mask], 2),
                }
            )
        )
    adjustments.append(
        pd.DataFrame(
            {
                "claim": line_claim[line_denied],
                "line_number": line_number[line_denied],
                "group": group_of_carc[denied_carc],
                "carc": denied_carc,
                "amount": charge[line_denied],
            }
        )
    )
    line_rarc = rarc_of[line_reason[keep][line_denied]]
    remarks = [
        pd.DataFrame(
            {
                "claim": line_claim[line_denied][line_rarc >= 0],
                "line_number": line_number[line_denied][line_rarc >= 0],
                "rarc": line_rarc[line_rarc >= 0],
            }
        )
    ]
    claim_level = rows[whole[rows]]
    adjustments.append(
        pd.DataFrame(
            {
                "claim": claim_level,
                "line_number": -1,
                "group": group_of_carc[whole_carc[claim_level]],
                "carc": whole_carc[claim_level],
                "amount": np.round(total_charge[claim_level], 2),
            }
        )
    )
    with_rarc = claim_level[rarc_of[claim_reason[claim_level]] >= 0]
    remarks.append(
        pd.DataFrame(
            {"claim": with_rarc, "line_number": -1, "rarc": rarc_of[claim_reason[with_rarc]]}
        )
    )
    return Remittances(
        remits=remits,
        lines=remit_lines.reset_index(drop=True),
        adjustments=pd.concat(adjustments, ignore_index=True),
        remarks=pd.concat(remarks, ignore_index=True),
    )
