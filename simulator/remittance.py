"""Pricing and 835-like remittances: payments, CAS adjustments and remark codes.

A paid claim's lines carry the ordinary price of being paid - CO-45 (charge above the fee
schedule), PR-1/2/3 (deductible, coinsurance, copay) and, for Medicare, CO-253 (sequestration) -
none of which is a denial. A denied claim is denied whole: every line pays zero and the denial
CARC sits on each line (``line_level`` reasons) or once on the claim. Either way a remittance
balances: charge = paid + adjustments.
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


def price_lines(
    encounters: Encounters, world: World, start: pd.Timestamp, rng: np.random.Generator
) -> LinePayment:
    """Allowed amounts from the payer's fee factor; patient share by the plan type's design."""
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
    takes = first_line & early & has_deductible & (rng.random(len(lines)) < 0.35)
    deductible = np.where(
        takes, np.minimum(allowed, np.round(rng.uniform(40, 300, len(lines)))), 0.0
    )
    remaining = allowed - deductible
    is_em = _EM[CODE_FAMILY[code]]
    copay_amount = world.payer_values("copay")[payer]
    first_em = is_em & (pd.Series(is_em).groupby(claim).cumsum().to_numpy() == 1)
    copay = np.where(first_em, np.minimum(copay_amount, remaining), 0.0)
    remaining = remaining - copay
    coinsurance_rate = np.vectorize(COINSURANCE.get)(ptype)
    coinsurance_rate = np.where(is_em & (ptype == "commercial"), 0.0, coinsurance_rate)
    coinsurance = np.round(remaining * coinsurance_rate, 2)
    sequestration = np.where(
        ptype == "medicare", np.round((remaining - coinsurance) * MEDICARE_SEQUESTRATION, 2), 0.0
    )
    return LinePayment(charge, allowed, deductible, coinsurance, copay, sequestration)


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
    denied: np.ndarray,
    reason: np.ndarray,
    carc: np.ndarray,
    not_recognized: np.ndarray,
    payment: LinePayment,
    rng: np.random.Generator,
) -> Remittances:
    """One 835 claim payment per claim in ``rows``; per-claim arrays are indexed by claim row."""
    claims, lines = encounters.claims, encounters.lines
    tables = code_tables()
    n = len(claims)
    in_scope = np.zeros(n, dtype=bool)
    in_scope[rows] = True
    claim = lines["claim"].to_numpy()
    keep = in_scope[claim]
    line_claim = claim[keep]
    line_number = lines["line_number"].to_numpy()[keep]
    code = lines["code"].to_numpy()[keep]
    units = lines["units"].to_numpy()[keep]
    charge = payment.charge[keep]
    line_denied = denied[line_claim]
    paid = np.where(line_denied, 0.0, payment.paid[keep])
    reason_line_level = np.array([r.line_level for r in REASONS] + [False])
    line_level = reason_line_level[reason]  # reason -1 picks the trailing False
    rarc_of = np.array([RARC_VOCABULARY.index(r.rarc) if r.rarc else -1 for r in REASONS] + [-1])
    carc_index = {c: i for i, c in enumerate(CARC_VOCABULARY)}
    claim_carc = np.full(n, -1, dtype=np.int64)
    denied_rows = np.flatnonzero(denied)
    claim_carc[denied_rows] = [carc_index[c] for c in carc[denied_rows]]
    default_group = tables.carc["default_group"]
    group_of_carc = np.array(
        [GROUP_VOCABULARY.index(default_group[c]) for c in CARC_VOCABULARY] + [-1]
    )
    denial_group = group_of_carc[claim_carc]

    total_charge = np.bincount(claim, weights=payment.charge, minlength=n)
    claim_paid = np.bincount(line_claim, weights=paid, minlength=n)
    share = np.where(line_denied, 0.0, payment.patient_share[keep])
    patient = np.bincount(line_claim, weights=share, minlength=n)
    patient = np.where(denied & (denial_group == _PR), total_charge, patient)
    lag = 10 + np.minimum(rng.gamma(2.0, 6.0, n), 35).astype(np.int64)
    remits = pd.DataFrame(
        {
            "claim": rows,
            "payer": claims["payer"].to_numpy()[rows],
            "status": (denied[rows] & not_recognized[rows]).astype(np.int64),
            "total_charge": np.round(total_charge[rows], 2),
            "paid": np.round(claim_paid[rows], 2),
            "patient_responsibility": np.round(patient[rows], 2),
            "remit_day": claims["submission_day"].to_numpy()[rows] + lag[rows],
        }
    )

    # Service lines are reported unless the whole claim was denied at claim level.
    reported = ~(line_denied & ~line_level[line_claim])
    remit_lines = pd.DataFrame(
        {
            "claim": line_claim,
            "line_number": line_number,
            "code": code,
            "charge": charge,
            "paid": paid,
            "units": units,
        }
    )[reported]

    adjustments = []
    remarks = []
    ok = ~line_denied
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

    denied_lines = line_denied & line_level[line_claim]
    adjustments.append(
        pd.DataFrame(
            {
                "claim": line_claim[denied_lines],
                "line_number": line_number[denied_lines],
                "group": denial_group[line_claim[denied_lines]],
                "carc": claim_carc[line_claim[denied_lines]],
                "amount": charge[denied_lines],
            }
        )
    )
    rarc_lines = denied_lines & (rarc_of[reason[line_claim]] >= 0)
    remarks.append(
        pd.DataFrame(
            {
                "claim": line_claim[rarc_lines],
                "line_number": line_number[rarc_lines],
                "rarc": rarc_of[reason[line_claim[rarc_lines]]],
            }
        )
    )

    claim_level = rows[denied[rows] & ~line_level[rows]]
    adjustments.append(
        pd.DataFrame(
            {
                "claim": claim_level,
                "line_number": -1,
                "group": denial_group[claim_level],
                "carc": claim_carc[claim_level],
                "amount": np.round(total_charge[claim_level], 2),
            }
        )
    )
    with_rarc = claim_level[rarc_of[reason[claim_level]] >= 0]
    remarks.append(
        pd.DataFrame({"claim": with_rarc, "line_number": -1, "rarc": rarc_of[reason[with_rarc]]})
    )
    return Remittances(
        remits=remits,
        lines=remit_lines.reset_index(drop=True),
        adjustments=pd.concat(adjustments, ignore_index=True),
        remarks=pd.concat(remarks, ignore_index=True),
    )
