"""The unit the model scores: claims with their service lines and diagnoses.

``ClaimTables`` is what flows into the fitted pipeline at training, batch scoring and in the API.
A flat "claim lines" layout (one row per service line, claim fields repeated, diagnoses as a
comma-separated list) is offered for CSV input and for the MLflow pyfunc signature. Every contract
column of ``claims`` and ``lines`` has a column of its own name there (line fields that share a
claim field's meaning are ``line_``-prefixed in the contract itself); an optional column the
input lacks reads as empty, and a file without a column the contract requires is refused whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from features.schema import (
    CLAIMS,
    DIAGNOSES,
    LINES,
    OPTIONAL_COLUMNS,
    ClaimsDataset,
    _validate_table,
    column_values,
    empty_rejects,
    ids_in,
    quarantine_incomplete_claims,
)

FLAT_DIAGNOSES_COLUMN = "diagnosis_codes"
_LINE_COLUMNS = [c for c in LINES.columns if c != "claim_id"]
FLAT_REQUIRED_COLUMNS = tuple(
    dict.fromkeys(
        column
        for name, schema in (("claims", CLAIMS), ("lines", LINES))
        for column, spec in schema.columns.items()
        if not spec.nullable
        and column not in OPTIONAL_COLUMNS.get(name, ())
        and column != "has_other_coverage"  # absent reads as false (no other coverage known)
    )
)
"""The columns a flat claim-lines file must have: those the contract needs a value in. Without
one every claim would be quarantined for it, which says less than naming the column."""


class MissingColumnsError(ValueError):
    """A flat claim-lines file lacks columns the contract requires (named in the message)."""


@dataclass
class ClaimTables:
    """Claims, their lines and diagnoses: the input of every scoring path."""

    claims: pd.DataFrame
    lines: pd.DataFrame
    diagnoses: pd.DataFrame

    @classmethod
    def from_dataset(cls, dataset: ClaimsDataset) -> ClaimTables:
        return cls(dataset.claims, dataset.lines, dataset.diagnoses)

    def __len__(self) -> int:
        return len(self.claims)

    def subset(self, claim_ids: pd.Series | list[str]) -> ClaimTables:
        """The claims named, with their lines and diagnoses, in the order of ``claims``."""
        keep = pd.Index(
            pd.unique(pd.Series(list(claim_ids) if isinstance(claim_ids, list) else claim_ids))
        )

        def rows(frame: pd.DataFrame) -> pd.DataFrame:
            # A hash-index lookup: much faster than isin(set) on millions of string ids.
            return frame[keep.get_indexer(frame["claim_id"]) >= 0].reset_index(drop=True)

        return ClaimTables(rows(self.claims), rows(self.lines), rows(self.diagnoses))

    def to_flat_lines(self) -> pd.DataFrame:
        """One row per service line with the claim's fields repeated and diagnoses joined
        (``diagnosis_codes``); :meth:`from_flat_lines` reads it back to the same tables."""
        dx = (
            self.diagnoses.sort_values(["claim_id", "position"])
            .groupby("claim_id", sort=False)["code"]
            .agg(",".join)
            .rename(FLAT_DIAGNOSES_COLUMN)
        )
        flat = self.lines.merge(self.claims, on="claim_id", how="left", suffixes=("", "_claim"))
        return flat.merge(dx, left_on="claim_id", right_index=True, how="left")

    @classmethod
    def from_flat_lines(cls, flat: pd.DataFrame) -> tuple[ClaimTables, pd.DataFrame]:
        """Split a flat claim-lines frame into validated tables; return them and rejected rows.

        Claim fields are read from each claim's first line; a column the frame lacks reads as
        empty (``has_other_coverage`` as false). ``has_other_coverage`` written as text (a CSV)
        is read as a yes/no word; a claim with any other text there is quarantined. A frame
        without one of :data:`FLAT_REQUIRED_COLUMNS` raises :class:`MissingColumnsError`.
        """
        missing = [c for c in FLAT_REQUIRED_COLUMNS if c not in flat.columns]
        if missing:
            raise MissingColumnsError(
                f"the claim lines lack required column(s): {', '.join(missing)}; nothing was "
                f"read (a claim-lines file needs {', '.join(FLAT_REQUIRED_COLUMNS)})"
            )
        claim_columns = [c for c in CLAIMS.columns if c in flat.columns]
        claims = flat[claim_columns].drop_duplicates("claim_id").reset_index(drop=True)
        for column in CLAIMS.columns:
            if column not in claims.columns:
                claims[column] = False if column == "has_other_coverage" else None
        claims, unreadable = _coverage_flags_read(claims)
        lines = flat[["claim_id", *[c for c in _LINE_COLUMNS if c in flat.columns]]].copy()
        for column in _LINE_COLUMNS:
            if column not in lines.columns:
                lines[column] = None
        if FLAT_DIAGNOSES_COLUMN in flat.columns:
            codes = flat[["claim_id", FLAT_DIAGNOSES_COLUMN]].drop_duplicates("claim_id")
            codes = codes.dropna(subset=[FLAT_DIAGNOSES_COLUMN])
            split = codes[FLAT_DIAGNOSES_COLUMN].astype(str).str.replace(".", "", regex=False)
            exploded = codes.assign(code=split.str.split(",")).explode("code")
            exploded["code"] = exploded["code"].str.strip().str.upper()
            exploded = exploded[exploded["code"] != ""]
            exploded["position"] = exploded.groupby("claim_id").cumcount() + 1
            diagnoses = exploded[["claim_id", "position", "code"]]
        else:
            diagnoses = pd.DataFrame(columns=list(DIAGNOSES.columns))
        tables, rejects = validated(claims, lines, diagnoses)
        if unreadable is not None:
            rejects = pd.concat([unreadable, rejects], ignore_index=True)
        return tables, rejects


_YES_NO_WORDS = {
    **dict.fromkeys(["true", "t", "yes", "y", "1", "1.0"], True),
    **dict.fromkeys(["false", "f", "no", "n", "0", "0.0", ""], False),
}
"""How ``has_other_coverage`` may be written as text; empty means false, as a missing column."""


def _coverage_flags_read(claims: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``claims`` with a text ``has_other_coverage`` read as booleans, and the claims whose text
    is no yes/no word as quarantined rows (``None`` when there are none).

    The contract's coercion would make any text true: "False" included, which is how a CSV
    writes false.
    """
    flags = claims["has_other_coverage"]
    if pd.api.types.is_bool_dtype(flags.dtype):
        return claims, None
    words = flags.astype("string").str.strip().str.lower().fillna("")
    read = words.map(_YES_NO_WORDS)
    unknown = read.isna().to_numpy()
    claims = claims.assign(has_other_coverage=read.fillna(False).astype(bool))
    if not unknown.any():
        return claims, None
    rejected = claims[unknown].assign(has_other_coverage=flags[unknown])
    rejected.insert(0, "table", "claims")
    rejected["reason"] = [
        f"has_other_coverage {value!r} is not true or false (write true/false, yes/no or 1/0)"
        for value in flags[unknown]
    ]
    return claims[~unknown].reset_index(drop=True), rejected.reset_index(drop=True)


def validated(
    claims: pd.DataFrame, lines: pd.DataFrame, diagnoses: pd.DataFrame
) -> tuple[ClaimTables, pd.DataFrame]:
    """Validate the three tables; quarantine bad rows and any claim left incomplete by them."""
    return _validated(claims, lines, diagnoses, _validate_table)


_TableValidator = Callable[[str, pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame | None]]
""":func:`features.schema.validate_table`, or that with ``None`` for no rejected rows."""


def _validated(
    claims: pd.DataFrame,
    lines: pd.DataFrame,
    diagnoses: pd.DataFrame,
    validate: _TableValidator,
) -> tuple[ClaimTables, pd.DataFrame]:
    # ``validate`` is a parameter so tests can compare the fast path with pandera's.
    rejects = []
    tables = {}
    for name, frame in (("claims", claims), ("lines", lines), ("diagnoses", diagnoses)):
        tables[name], bad = validate(name, frame)
        if bad is not None and len(bad):
            rejects.append(bad)
    if not rejects and _complete_and_linked(tables["claims"], tables["lines"], tables["diagnoses"]):
        # Nothing to quarantine: the steps below would return the tables as they are.
        return ClaimTables(tables["claims"], tables["lines"], tables["diagnoses"]), empty_rejects()
    all_rejects = pd.concat(rejects, ignore_index=True) if rejects else empty_rejects()
    # Not through a ClaimsDataset: its six empty remittance tables would cost more than the rest.
    claims, lines, diagnoses, all_rejects = quarantine_incomplete_claims(
        tables["claims"], tables["lines"], tables["diagnoses"], all_rejects
    )
    # Orphan lines/diagnoses (no claim row) would be silently unused: quarantine them too.
    orphans = []
    kept = {}
    for name, frame in (("lines", lines), ("diagnoses", diagnoses)):
        kept[name] = frame
        orphan = ~ids_in(frame["claim_id"], claims["claim_id"])
        if not orphan.any():
            continue
        rows = frame[orphan].copy()
        rows.insert(0, "table", name)
        rows["reason"] = "no claim row with this claim_id (or the claim was quarantined)"
        orphans.append(rows)
        kept[name] = frame[~orphan].reset_index(drop=True)
    if orphans:
        all_rejects = pd.concat([all_rejects, *orphans], ignore_index=True)
    return ClaimTables(claims, kept["lines"], kept["diagnoses"]), all_rejects


def _complete_and_linked(
    claims: pd.DataFrame, lines: pd.DataFrame, diagnoses: pd.DataFrame
) -> bool:
    """Every claim has a line, and every line and diagnosis a claim: what a request's valid
    tables almost always are, found with one read of each ``claim_id`` column."""
    known = set(column_values(claims, "claim_id"))
    line_claims = set(column_values(lines, "claim_id"))
    return known == line_claims and known.issuperset(column_values(diagnoses, "claim_id"))
