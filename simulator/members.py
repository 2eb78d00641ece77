"""Who the patient is to each payer: member IDs in the payer's format, and the patient key.

A patient has one member ID per payer (a Medicare MBI-like ID, a plan prefix and digits...), so
the ID on a claim changes when the patient changes payer. The patient key is the stable link
across payers, hashed by :func:`features.identity.patient_key` from a synthetic name, the birth
date and sex (the name is drawn, hashed and never written).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.identity import patient_key
from simulator.world import FIRST_NAMES, LAST_NAMES, World

_MBI_LETTERS = np.frombuffer(b"ACDEFGHJKMNPQRTUVWXY", dtype=np.uint8)
"""Letters an MBI may use (no S, L, O, I, B, Z)."""
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)
_ALPHANUMERIC = np.concatenate([_DIGITS, _MBI_LETTERS])
_MBI = ("19", "L", "A", "D", "L", "A", "D", "L", "L", "D", "D")
"""MBI positions: a digit 1-9, letters, letters or digits, digits."""
_WIDTH = 12


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a well-spread 64-bit hash of each value."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _prefix(key: str) -> bytes:
    letters = [c for c in key.upper() if c.isalpha()]
    return "".join((letters + ["X", "X", "X"])[:3]).encode("ascii")


def member_ids(world: World, patient: np.ndarray, payer: np.ndarray, typo: np.ndarray) -> pa.Array:
    """The member ID of each (patient, payer) as the claim writes it; ``typo`` rows get one
    digit wrong (the last one), a registration error the payer will not match."""
    n = len(patient)
    with np.errstate(over="ignore"):
        seed = _mix(patient.astype(np.uint64) * np.uint64(1_000_003) + payer.astype(np.uint64))
        draws = np.stack([_mix(seed + np.uint64(j)) for j in range(_WIDTH)], axis=1)
    chars = np.full((n, _WIDTH), ord(" "), dtype=np.uint8)
    digits = _DIGITS[(draws % np.uint64(10)).astype(np.int64)]
    types = world.payer_types[payer]
    medicare = types == "medicare"
    for j, kind in enumerate(_MBI):
        alphabet = {"19": _DIGITS[1:], "L": _MBI_LETTERS, "A": _ALPHANUMERIC, "D": _DIGITS}[kind]
        pick = (draws[medicare, j] % np.uint64(len(alphabet))).astype(np.int64)
        chars[medicare, j] = alphabet[pick]
    # Plans: three letters of the plan's name and nine digits; Medicaid: ten digits;
    # TRICARE and other federal programmes: an eleven-digit benefits number.
    prefixes = np.array([np.frombuffer(_prefix(p.key), dtype=np.uint8) for p in world.payers])
    plan = np.isin(types, ["commercial", "medicare_advantage"])
    chars[plan, :3] = prefixes[payer[plan]]
    chars[plan, 3:] = digits[plan, 3:]
    medicaid = types == "medicaid"
    chars[medicaid, :10] = digits[medicaid, :10]
    other = types == "other"
    chars[other, :11] = digits[other, :11]
    last = np.where(medicare, 10, np.where(plan, 11, np.where(medicaid, 9, 10)))
    rows = np.flatnonzero(typo)
    old = chars[rows, last[rows]] - ord("0")
    chars[rows, last[rows]] = ord("0") + (old + 1) % 10
    text = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(_WIDTH), n, [None, pa.py_buffer(chars.tobytes())]
    )
    return pc.utf8_rtrim_whitespace(pc.cast(pc.cast(text, pa.binary()), pa.string()))


def patient_keys(world: World, start: pd.Timestamp, patients: np.ndarray) -> pa.Array:
    """The patient key of each patient in ``patients`` (hashed from name, birth date, sex)."""
    unique, inverse = np.unique(patients, return_inverse=True)
    birth = (
        (
            np.datetime64(start.date(), "D")
            + world.patient_birth_day[unique].astype("timedelta64[D]")
        )
        .astype(str)
        .tolist()
    )
    names = world.patient_name[unique]
    keys = [
        patient_key(LAST_NAMES[last], FIRST_NAMES[first], born, sex)
        for (last, first), born, sex in zip(
            names.tolist(), birth, world.patient_sex[unique].tolist(), strict=True
        )
    ]
    return pc.take(pa.array(keys, type=pa.string()), pa.array(inverse))
