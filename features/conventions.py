"""Public billing conventions as claim flags: rules any billing expert knows, with their source.

Payers differ in what they authorise, cover and bundle, and the model learns that from a
practice's own remittances (:mod:`features.history`). A few rules are the same for every payer
because CMS, the CPT book or the 837 guide set them: an E/M visit with a procedure needs
modifier 25, a drug code needs its NDC, a lab test the lab's CLIA number. Those are flags here.

The rules are data: ``features/data/billing_conventions.csv`` names each flag with its
description, likely denial category, public source and fix, and ``features/data/code_sets.csv``
the code ranges the flags refer to (laboratory, radiology, J codes...), so the claim scrubber can
read the same tables. The code below only says how each flag reads a claim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

from features.claim_arrays import MODIFIERS, NO_DAY, ClaimArrays, is_none, map_text

TELEHEALTH_PLACES = frozenset({"02", "10"})
TELEHEALTH_MODIFIERS = frozenset({"95", "GT", "FQ", "93"})
ACCIDENT_CAUSES = frozenset({"AA", "EM", "OA"})
SECONDARY_RESPONSIBILITY = frozenset({"S", "T", "A", "B", "C", "D", "E", "F", "G", "H"})


@dataclass(frozen=True)
class Convention:
    """One flag: what it means, the denial category it usually leads to, where the rule is
    written, and what to do."""

    flag: str
    description: str
    category: str
    source: str
    fix: str


@cache
def conventions() -> dict[str, Convention]:
    """The flags of ``billing_conventions.csv``, by name."""
    with resources.files("features").joinpath("data/billing_conventions.csv").open() as handle:
        table = pd.read_csv(handle, dtype=str, keep_default_na=False)
    return {row.flag: Convention(**row._asdict()) for row in table.itertuples(index=False)}


@cache
def _code_ranges() -> dict[str, tuple[tuple[str, str], ...]]:
    with resources.files("features").joinpath("data/code_sets.csv").open() as handle:
        table = pd.read_csv(handle, dtype=str, keep_default_na=False)
    ranges: dict[str, list[tuple[str, str]]] = {}
    for row in table.itertuples(index=False):
        ranges.setdefault(row.code_set, []).append((row.first, row.last))
    return {name: tuple(spans) for name, spans in ranges.items()}


def in_code_set(code: str, code_set: str) -> bool:
    """Whether a CPT/HCPCS code falls in one of the set's ranges (same-length codes compare as
    text: ``J0120 <= J1100 <= J9999``, ``80047 <= 85025 <= 89398``)."""
    return any(
        len(code) == len(first) and first <= code <= last
        for first, last in _code_ranges()[code_set]
    )


def _member(code_set: str) -> Callable[[str], bool]:
    return lambda code: in_code_set(code, code_set)


def _present(values: np.ndarray) -> np.ndarray:
    return ~is_none(values)


def _any_code(text: str, codes: frozenset[str]) -> bool:
    return any(part.strip().upper() in codes for part in text.split(","))


def convention_flags(arrays: ClaimArrays) -> dict[str, np.ndarray]:
    """Each flag of :func:`conventions` per claim (1.0 raised, 0.0 not), in the CSV's order."""
    claims, lines, factors = arrays.claims, arrays.lines, arrays.factors
    n = arrays.n_claims
    claim_of = lines["claim_index"]
    codes = lines["procedure_code"]

    def line_set(code_set: str) -> np.ndarray:
        return map_text(codes, _member(code_set), False, bool, factors)

    def any_line(mask: np.ndarray) -> np.ndarray:
        return np.bincount(claim_of[mask], minlength=n) > 0

    modifiers = np.zeros(len(codes), dtype=np.int64)
    bits = {"25": 1, "22": 2, "telehealth": 4}
    for column in MODIFIERS:
        modifiers |= map_text(lines[column], _modifier_bits(bits), 0, np.int64, factors)
    has = {name: (modifiers & bit) > 0 for name, bit in bits.items()}

    is_em = line_set("evaluation_management")
    em_lines = np.bincount(claim_of[is_em], minlength=n)
    other_lines = np.bincount(claim_of[~is_em], minlength=n)
    em_without_25 = any_line(is_em & ~has["25"])
    claim_has_25 = any_line(has["25"])

    documented = _present(claims["attachment_types"]) | _present(claims["claim_note"])
    line_documented = _present(lines["line_attachment_types"]) | _present(lines["line_note"])
    line_documented |= documented[claim_of]
    unlisted = map_text(codes, _is_unlisted, False, bool, factors)

    clia = _present(claims["clia_number"]) | any_line(_present(lines["line_clia_number"]))
    orderer = _present(claims["referring_npi"]) | any_line(_present(lines["line_referring_npi"]))
    ordered = line_set("laboratory") | line_set("radiology") | line_set("durable_equipment")

    causes = map_text(
        claims["related_causes"], lambda t: _any_code(t, ACCIDENT_CAUSES), False, bool, factors
    )
    secondary = map_text(
        claims["payer_responsibility"],
        lambda r: r.strip().upper() in SECONDARY_RESPONSIBILITY,
        False,
        bool,
        factors,
    )
    service = claims["service_date_from"]
    after = np.zeros(n, dtype=bool)
    for column in ("onset_date", "initial_treatment_date"):
        day = claims[column]
        after |= (day != NO_DAY) & (service != NO_DAY) & (day > service)
    line_place = np.where(
        is_none(lines["line_place_of_service"]),
        claims["place_of_service"][claim_of],
        lines["line_place_of_service"],
    )
    telehealth = map_text(line_place, TELEHEALTH_PLACES.__contains__, False, bool)

    flags = {
        "em_with_procedure_no_mod25": (em_lines > 0)
        & (other_lines > 0)
        & em_without_25
        & ~claim_has_25,
        "drug_line_without_ndc": any_line(
            line_set("drug_administered") & is_none(lines["ndc_code"])
        ),
        "lab_without_clia": any_line(line_set("laboratory")) & ~clia,
        "ordered_service_without_orderer": any_line(ordered) & ~orderer,
        "unlisted_without_documentation": any_line(unlisted & ~line_documented),
        "modifier_22_without_documentation": any_line(has["22"] & ~line_documented),
        "accident_without_date": causes & (claims["accident_date"] == NO_DAY),
        "onset_after_service": after,
        "secondary_without_primary_payment": secondary
        & np.isnan(claims["other_payer_paid_amount"]),
        "telehealth_without_modifier": any_line(telehealth & is_em & ~has["telehealth"]),
        "routine_physical_to_medicare": any_line(line_set("preventive_medicine"))
        & map_text(claims["payer_type"], lambda t: t == "medicare", False, bool, factors),
    }
    missing = set(conventions()) ^ set(flags)
    if missing:  # the CSV and this function must name the same flags
        raise ValueError(f"billing conventions without a rule or a row: {sorted(missing)}")
    return {name: flags[name].astype(np.float64) for name in conventions()}


def _modifier_bits(bits: dict[str, int]) -> Callable[[str], int]:
    def of(modifier: str) -> int:
        code = modifier.strip().upper()
        if code in TELEHEALTH_MODIFIERS:
            return bits["telehealth"]
        return bits.get(code, 0)

    return of


def _is_unlisted(code: str) -> bool:
    # CPT's unlisted codes end in 99 (e.g. 64999); E/M codes end in 99 too and are not unlisted.
    return (
        len(code) == 5
        and code.isascii()
        and code.isdigit()
        and code.endswith("99")
        and not in_code_set(code, "evaluation_management")
    )
