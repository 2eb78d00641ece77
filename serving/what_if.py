"""What-if re-scoring: a claim's fixes applied to it, and the claim scored again.

For each of a claim's fixable factors that raise its risk (in the order the explanation lists
them, the first :data:`TOP_FIXES` that can be made on the claim's own fields), the change is
made on a copy of the claim's tables (an authorization or referral number, a referring
provider's NPI, modifier 25 or 59, a diagnosis pointer, today's submission date) and the copy
is scored by the same predict path as the claim itself (:func:`training.model.predict`, called
by the service): "add the prior authorization number (REF*G1): 91% -> 14%". What is added is a
placeholder where the model reads only its presence (an authorization number), never a value
the biller has to look up.

A claim's history counts the earlier claims of its own batch (see :mod:`features.history`), so
the copies are scored where they see the same batch as the claim did:

- a batch sent on one day (one claim, or a day's claims): its claims never count each other,
  so every copy is scored in one call, each under its own ID (a copy sent today, on another
  day than the others, in a second call of its own);
- a batch sent over several days: one call per rank of fix, the whole batch with each claim's
  fix of that rank in place of the claim, under the claim's own ID.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.claim_features import DISTINCT_SERVICE_MODIFIERS, E_M_RANGE
from features.claim_tables import ClaimTables
from serving.explain import Factor

TOP_FIXES = 3
"""Fixes re-scored per claim: its first fixable factors with a change that can be made."""

PLACEHOLDER_NUMBER = "WHAT-IF"
"""What a what-if copy carries as an authorization or referral number (the model reads only
that one is there)."""

PLACEHOLDER_NPI = "1234567893"
"""A referring provider NPI for a what-if copy: CMS's example NPI (its check digit is valid)."""

_MODIFIERS = ("modifier_1", "modifier_2", "modifier_3", "modifier_4")

Scorer = Callable[[ClaimTables], np.ndarray]
"""Scores claim tables: each claim's denial probability, in the order of ``tables.claims``."""


@dataclass(frozen=True)
class WhatIf:
    """A fix made on the claim and the claim's denial probability with it."""

    field: str
    """The claim field of the factor the fix is for."""
    change: str
    """What was changed on the claim, in words."""
    probability: float
    """The claim's denial probability with the change made."""
    risk_removed: float
    """The denial probability the change removes (negative: it adds risk)."""


@dataclass(frozen=True)
class _Variants:
    """The claims one change could be made on, changed: their rows in the batch, the changed
    tables (in the same order) and the change in words per claim."""

    rows: np.ndarray
    tables: ClaimTables
    words: list[str]


def _blank(values: pd.Series) -> np.ndarray:
    """Whether each value is missing or only spaces."""
    text = values.astype("string")
    return (text.isna() | (text.str.strip() == "")).to_numpy(dtype=bool)


def _set_claim_field(column: str, value: object, words: str) -> Callable[..., _Variants | None]:
    def change(tables: ClaimTables, rows: np.ndarray, today: dt.date) -> _Variants | None:
        open_ = _blank(tables.claims[column])
        if not open_.any():
            return None
        sub = _take(tables, open_)
        sub.claims[column] = value
        return _Variants(rows[open_], sub, [words] * int(open_.sum()))

    return change


def _is_em(codes: pd.Series) -> np.ndarray:
    numbers = pd.to_numeric(codes.astype("string").str.strip(), errors="coerce")
    return ((numbers >= E_M_RANGE[0]) & (numbers <= E_M_RANGE[1])).to_numpy(
        dtype=bool, na_value=False
    )


def _free_slot(lines: pd.DataFrame) -> np.ndarray:
    """Each line's first empty modifier column (its index in :data:`_MODIFIERS`), -1 if none."""
    slot = np.full(len(lines), -1)
    for i in reversed(range(len(_MODIFIERS))):
        slot = np.where(_blank(lines[_MODIFIERS[i]]), i, slot)
    return slot


def _has_modifier(lines: pd.DataFrame, modifiers: frozenset[str]) -> np.ndarray:
    found = np.zeros(len(lines), dtype=bool)
    for column in _MODIFIERS:
        found |= (
            lines[column]
            .astype("string")
            .str.strip()
            .str.upper()
            .isin(modifiers)
            .to_numpy(dtype=bool, na_value=False)
        )
    return found


def _add_modifier(
    tables: ClaimTables, rows: np.ndarray, pick: np.ndarray, modifier: str
) -> _Variants | None:
    """Add ``modifier`` to the lines ``pick`` marks (each with a free modifier column)."""
    claims_changed = tables.claims["claim_id"].isin(tables.lines.loc[pick, "claim_id"]).to_numpy()
    if not claims_changed.any():
        return None
    lines = tables.lines.copy()
    slot = _free_slot(lines)
    for i, column in enumerate(_MODIFIERS):
        at = pick & (slot == i)
        if at.any():
            lines.loc[at, column] = modifier
    changed = ClaimTables(tables.claims, lines, tables.diagnoses)
    sub = _take(changed, claims_changed)
    where = lines.loc[pick, ["claim_id", "procedure_code", "line_number"]]
    said = {
        claim_id: ", ".join(
            f"{code} (line {number})"
            for code, number in zip(group["procedure_code"], group["line_number"], strict=True)
        )
        for claim_id, group in where.groupby("claim_id", sort=False)
    }
    words = [f"add modifier {modifier} to {said[c]}" for c in sub.claims["claim_id"]]
    return _Variants(rows[claims_changed], sub, words)


def _modifier_25(tables: ClaimTables, rows: np.ndarray, today: dt.date) -> _Variants | None:
    """Modifier 25 on the E/M lines of a claim that bills a procedure beside them."""
    lines = tables.lines
    em = _is_em(lines["procedure_code"])
    coded = ~_blank(lines["procedure_code"])
    has_procedure = lines.loc[coded & ~em, "claim_id"].unique()
    pick = (
        em
        & ~_has_modifier(lines, frozenset({"25"}))
        & (_free_slot(lines) >= 0)
        & lines["claim_id"].isin(has_procedure).to_numpy()
    )
    return _add_modifier(tables, rows, pick, "25")


def _modifier_59(tables: ClaimTables, rows: np.ndarray, today: dt.date) -> _Variants | None:
    """Modifier 59 on the last of two or more procedures (not E/M) of a claim without a
    distinct-service modifier on any line."""
    lines = tables.lines
    procedure = ~_blank(lines["procedure_code"]) & ~_is_em(lines["procedure_code"])
    distinct = lines.loc[_has_modifier(lines, DISTINCT_SERVICE_MODIFIERS), "claim_id"].unique()
    candidates = lines.loc[procedure & ~lines["claim_id"].isin(distinct).to_numpy()]
    counts = candidates["claim_id"].value_counts()
    several = candidates[candidates["claim_id"].map(counts).to_numpy() >= 2]
    last = several.sort_values("line_number").groupby("claim_id", sort=False).tail(1).index
    pick = lines.index.isin(last) & (_free_slot(lines) >= 0)
    return _add_modifier(tables, rows, pick, "59")


def _diagnosis_pointer(tables: ClaimTables, rows: np.ndarray, today: dt.date) -> _Variants | None:
    """The principal diagnosis (pointer 1) on lines that point to none."""
    lines = tables.lines
    with_dx = tables.diagnoses["claim_id"].unique()
    pick = _blank(lines["diagnosis_pointers"]) & lines["claim_id"].isin(with_dx).to_numpy()
    claims_changed = tables.claims["claim_id"].isin(lines.loc[pick, "claim_id"]).to_numpy()
    if not claims_changed.any():
        return None
    changed_lines = lines.copy()
    changed_lines.loc[pick, "diagnosis_pointers"] = "1"
    sub = _take(ClaimTables(tables.claims, changed_lines, tables.diagnoses), claims_changed)
    numbers = (
        lines.loc[pick]
        .groupby("claim_id", sort=False)["line_number"]
        .agg(lambda n: ", ".join(str(int(x)) for x in n))
    )
    words = [f"point line {numbers[c]} to the principal diagnosis" for c in sub.claims["claim_id"]]
    return _Variants(rows[claims_changed], sub, words)


def _submit_today(tables: ClaimTables, rows: np.ndarray, today: dt.date) -> _Variants | None:
    """Today's submission date on a claim dated later, whose service has ended."""
    day = pd.Timestamp(today)
    submission = pd.to_datetime(tables.claims["submission_date"]).dt.normalize()
    service_end = pd.to_datetime(tables.claims["service_date_to"]).dt.normalize()
    open_ = ((submission > day) & (service_end <= day)).to_numpy(dtype=bool, na_value=False)
    if not open_.any():
        return None
    sub = _take(tables, open_)
    sub.claims.loc[:, "submission_date"] = day
    return _Variants(rows[open_], sub, [f"submit today ({today:%Y-%m-%d})"] * int(open_.sum()))


Change = Callable[[ClaimTables, np.ndarray, dt.date], _Variants | None]

CHANGES: dict[str, Change] = {
    "authorization": _set_claim_field(
        "prior_auth_number", PLACEHOLDER_NUMBER, "add the prior authorization number (REF*G1)"
    ),
    "referral": _set_claim_field(
        "referral_number", PLACEHOLDER_NUMBER, "add the referral number (REF*9F)"
    ),
    "referring_npi": _set_claim_field(
        "referring_npi", PLACEHOLDER_NPI, "add the referring or ordering provider's NPI"
    ),
    "modifier_25": _modifier_25,
    "modifier_59": _modifier_59,
    "diagnosis_pointer": _diagnosis_pointer,
    "submit_today": _submit_today,
}
"""Each change a what-if makes, by name: ``change(tables, rows, today)`` changes the claims of
``tables`` (rows ``rows`` of the batch) it can be made on."""

DATE_CHANGES = frozenset({"submit_today"})
"""Changes that move a claim to another day (scored apart in a batch sent on one day)."""

CHANGES_BY_FIELD: dict[str, tuple[str, ...]] = {
    "prior authorization": ("authorization",),
    "referral": ("referral",),
    "referring provider NPI": ("referring_npi",),
    "modifier 25 (E/M with procedure)": ("modifier_25",),
    "modifier 59/X (distinct procedures)": ("modifier_59",),
    # A pair of procedures: modifier 25 where an E/M visit is one of them, else 59.
    "procedure combination and modifiers": ("modifier_25", "modifier_59"),
    "diagnosis pointer": ("diagnosis_pointer",),
    "days from service to submission": ("submit_today",),
}
"""The changes that make a field's fix, in the order tried (the first that can be made)."""


def _take(tables: ClaimTables, keep: np.ndarray) -> ClaimTables:
    """The claims ``keep`` marks, with their lines and diagnoses (copies, to be changed)."""
    claims = tables.claims.loc[keep].reset_index(drop=True)
    if keep.all():
        return ClaimTables(claims, tables.lines.copy(), tables.diagnoses.copy())
    ids = pd.Index(claims["claim_id"])
    return ClaimTables(
        claims,
        tables.lines[ids.get_indexer(tables.lines["claim_id"]) >= 0].reset_index(drop=True),
        tables.diagnoses[ids.get_indexer(tables.diagnoses["claim_id"]) >= 0].reset_index(drop=True),
    )


def _renamed(tables: ClaimTables, ids: Sequence[str]) -> ClaimTables:
    """``tables`` with its claims (and their lines and diagnoses) under new IDs ``ids``."""
    old = pd.Index(tables.claims["claim_id"])
    new = np.asarray(ids, dtype=object)
    claims = tables.claims.copy()
    claims["claim_id"] = new
    lines, diagnoses = tables.lines.copy(), tables.diagnoses.copy()
    lines["claim_id"] = new[old.get_indexer(lines["claim_id"])]
    diagnoses["claim_id"] = new[old.get_indexer(diagnoses["claim_id"])]
    return ClaimTables(claims, lines, diagnoses)


def _concat(parts: list[ClaimTables]) -> ClaimTables:
    if len(parts) == 1:
        return parts[0]
    return ClaimTables(
        pd.concat([p.claims for p in parts], ignore_index=True),
        pd.concat([p.lines for p in parts], ignore_index=True),
        pd.concat([p.diagnoses for p in parts], ignore_index=True),
    )


def plan(factors: list[list[Factor]]) -> list[list[tuple[str, ...]]]:
    """Per claim, the changes its fixable risk-raising factors ask for, in their order: each
    the factor's field, then the changes that would make its fix (:data:`CHANGES_BY_FIELD`)."""
    return [
        [
            (f.field, *CHANGES_BY_FIELD[f.field])
            for f in claim_factors
            if f.actionable and f.contribution > 0 and f.field in CHANGES_BY_FIELD
        ]
        for claim_factors in factors
    ]


def what_ifs(
    tables: ClaimTables,
    factors: list[list[Factor]],
    before: np.ndarray,
    score: Scorer,
    today: dt.date,
    top: int = TOP_FIXES,
) -> list[list[WhatIf]]:
    """Each claim's what-ifs, most risk removed first (see the module's docstring).

    ``factors`` and ``before`` (the claims' denial probabilities) are in the order of
    ``tables.claims``; ``score`` scores changed tables by the claims' predict path.
    """
    n = len(tables)
    wanted = plan(factors)
    by_change: dict[str, list[int]] = {}
    for row, asks in enumerate(wanted):
        for _, *alternatives in asks:
            for name in alternatives:
                by_change.setdefault(name, []).append(row)
    # Every change that can be made, on every claim that asks for it (then each claim keeps
    # its first ``top``): changed tables per change, and where each claim's copy is.
    made: dict[str, _Variants] = {}
    position: dict[tuple[str, int], int] = {}
    for name, asked in by_change.items():
        rows = np.unique(np.asarray(asked, dtype=np.intp))
        keep = np.zeros(n, dtype=bool)
        keep[rows] = True
        variants = CHANGES[name](_take(tables, keep), rows, today)
        if variants is None:
            continue
        made[name] = variants
        for i, row in enumerate(variants.rows.tolist()):
            position[(name, row)] = i
    chosen: list[list[tuple[str, str]]] = []  # per claim: (field, change)
    for row, asks in enumerate(wanted):
        picked: list[tuple[str, str]] = []
        for field, *alternatives in asks:
            change = next((a for a in alternatives if (a, row) in position), None)
            if change is not None and all(change != done for _, done in picked):
                picked.append((field, change))
            if len(picked) == top:
                break
        chosen.append(picked)
    after = _rescore(tables, made, position, chosen, score)
    results: list[list[WhatIf]] = []
    for row, picked in enumerate(chosen):
        found = [
            WhatIf(
                field=field,
                change=made[name].words[position[(name, row)]],
                probability=after[(row, rank)],
                risk_removed=round(float(before[row]) - after[(row, rank)], 4),
            )
            for rank, (field, name) in enumerate(picked)
        ]
        # Most risk removed first; of equal ones, the explanation's order.
        results.append(sorted(found, key=lambda w: -w.risk_removed))
    return results


def _rescore(
    tables: ClaimTables,
    made: dict[str, _Variants],
    position: dict[tuple[str, int], int],
    chosen: list[list[tuple[str, str]]],
    score: Scorer,
) -> dict[tuple[int, int], float]:
    """The denial probability of each (claim row, rank) copy, scored as the module says."""
    copies = [
        (row, rank, name)
        for row, picked in enumerate(chosen)
        for rank, (_, name) in enumerate(picked)
    ]
    if not copies:
        return {}
    one_day = pd.to_datetime(tables.claims["submission_date"]).dt.normalize().nunique() <= 1
    calls: list[tuple[ClaimTables, list[tuple[int, int] | None]]] = []
    if one_day:
        for dated in (False, True):
            group = [c for c in copies if (c[2] in DATE_CHANGES) == dated]
            if not group:
                continue
            parts: list[ClaimTables] = []
            keys: list[tuple[int, int] | None] = []
            for name in dict.fromkeys(c[2] for c in group):
                mine = [c for c in group if c[2] == name]
                variants = made[name]
                keep = np.zeros(len(variants.rows), dtype=bool)
                keep[[position[(name, row)] for row, _, _ in mine]] = True
                sub = _take(variants.tables, keep)
                # Kept in the variants' order: the claims' rows ascending.
                order = sorted(mine, key=lambda c: position[(name, c[0])])
                parts.append(_renamed(sub, [f"what-if {row} {rank}" for row, rank, _ in order]))
                keys += [(row, rank) for row, rank, _ in order]
            calls.append((_concat(parts), keys))
    else:
        for rank in range(max(len(picked) for picked in chosen)):
            mine = [c for c in copies if c[1] == rank]
            replaced = np.zeros(len(tables), dtype=bool)
            parts, keys = [], []
            for name in dict.fromkeys(c[2] for c in mine):
                rows = sorted(row for row, _, n in mine if n == name)
                variants = made[name]
                keep = np.zeros(len(variants.rows), dtype=bool)
                keep[[position[(name, row)] for row in rows]] = True
                parts.append(_take(variants.tables, keep))
                keys += [(row, rank) for row in rows]
                replaced[rows] = True
            parts.append(_take(tables, ~replaced))
            keys += [None] * int((~replaced).sum())
            calls.append((_concat(parts), keys))
    after: dict[tuple[int, int], float] = {}
    for call, keys in calls:
        probabilities = score(call).tolist()
        for key, probability in zip(keys, probabilities, strict=True):
            if key is not None:
                after[key] = probability
    return after


def fixes_first(factors: list[Factor], changes: list[WhatIf], probability: float) -> list[Factor]:
    """A claim's factors with its fixes (fixable factors that raise the risk) first, ordered by
    the risk they remove: a what-if's measured drop where the fix was made and the claim scored
    again, else the drop its factor's log-odds alone would give (``probability`` without the
    contribution). The other factors follow in their order."""
    removed = {change.field: change.risk_removed for change in changes}
    odds = np.log(max(probability, 1e-6) / max(1.0 - probability, 1e-6))

    def drop(factor: Factor) -> float:
        if factor.field in removed:
            return removed[factor.field]
        return probability - 1.0 / (1.0 + np.exp(factor.contribution - odds))

    fixes = [f for f in factors if f.actionable and f.contribution > 0]
    if len(fixes) < 2:
        return factors
    ranked = sorted(fixes, key=lambda f: -drop(f))
    first = {id(f) for f in ranked}
    return ranked + [f for f in factors if id(f) not in first]
