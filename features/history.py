"""Point-in-time history features: what the practice had learned before each claim was sent.

For a claim submitted on day D, an outcome counts only if its remittance arrived before D
(``remit_date < D``), and an earlier submission counts only if it was sent before D. The same
code serves training and scoring: ``fit`` stores the events known up to the training cutoff (the
fitted state), and ``transform`` looks each claim up *as of its own submission date*. Training
claims therefore see only their past; new claims see everything up to the cutoff, plus the
submissions in the batch being scored. ``refresh`` brings the state up to date with newer data
without retraining.

No identifier becomes a feature: NPIs, member IDs and payer IDs are only grouping keys for
smoothed rates and counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from features.claim_arrays import (
    MODIFIERS,
    NO_DAY,
    ClaimArrays,
    TextFactors,
    day_column,
    factor_codes,
    factorize_text,
    group_starts,
    is_none,
    map_text,
)
from features.claim_features import ClaimGroups, principal_diagnoses
from features.codes import DENIAL_CATEGORIES

OUTCOME_COLUMNS = ("claim_id", "remit_date", "denied", "category")
"""Columns an outcomes frame must have: one row per claim's first adjudication."""
OUTCOME_EXTRA_COLUMNS = ("coverage_expiration_date", "corrected_member_id")
"""Columns an outcomes frame may have (from the first adjudication's 835)."""

_PAID_LAG = "hist_payer_max_paid_lag"


@dataclass(frozen=True)
class RateKey:
    """A grouping for a smoothed, point-in-time denial rate.

    ``level`` says what one event is: ``claim`` (a claim), ``line`` (a distinct procedure on a
    claim), ``diagnosis`` (a diagnosis a line points to) or ``pair`` (an ordered pair of
    distinct procedures on one claim); a line or pair rate's claim feature is the worst of the
    claim's lines or pairs, a diagnosis rate's the worst over lines of the line's best
    diagnosis (a payer accepts a procedure when any diagnosis it points to supports it). The
    target is always the claim's outcome (denied on first adjudication, and the category of its
    primary CARC).

    Rates are smoothed hierarchically: a group with few outcomes borrows from ``parent`` (a
    coarser grouping of the same level, e.g. payer x procedure borrows from payer x procedure
    family), the parent from its own, down to the level's root (every event alike), whose
    prior is the fixed ``prior_rate``. Every key keeps the rate of each denial category
    (how often this payer denied this procedure *for authorization*), smoothed the same way;
    ``by_category`` says whether those are model columns (they always feed the children's
    smoothing and the per-category evidence, see :data:`EVIDENCE_FEATURES`).

    ``window_days`` adds the same rates over the most recent days of known outcomes (ending
    the day after the latest remittance known, not at the submission day), smoothed toward
    the key's whole-history rate, so a payer's new rule shows up in weeks.
    """

    name: str
    columns: tuple[str, ...]
    level: str = "claim"
    parent: str | None = None
    by_category: bool = False
    label: str = ""
    window_days: int | None = None


# Declared parents first (the smoothing computes them in this order). None of these groupings
# names a payer, a code or a rule of any one practice: they are the combinations payers' edits
# are written over (authorization lists, code-pair edits, unit limits, coverage exclusions,
# diagnosis policies, enrolment), whose rates each practice's own remittances fill in.
RATE_KEYS: tuple[RateKey, ...] = (
    # -- claims -------------------------------------------------------------------------------
    RateKey("all", (), label="denial rate of all claims"),
    RateKey(
        "payer",
        ("payer_id",),
        parent="all",
        by_category=True,
        label="payer's denial rate",
        window_days=90,
    ),
    RateKey(
        "lag",
        ("lag_bucket", "delay_reason_present"),
        parent="all",
        label="denial rate of claims sent this long after the service",
    ),
    RateKey(
        "payer_lag",
        ("payer_id", "lag_bucket", "delay_reason_present"),
        parent="lag",
        label="payer's denial rate for claims sent this long after the service",
    ),
    RateKey(
        "payer_frequency",
        ("payer_id", "frequency_code"),
        parent="payer",
        label="payer's denial rate for original/replacement/void claims",
    ),
    RateKey(
        "payer_place",
        ("payer_id", "place_of_service"),
        parent="payer",
        label="payer's denial rate in this place of service",
    ),
    RateKey(
        "payer_coverage",
        (
            "payer_id",
            "payer_responsibility",
            "other_payer_known",
            "other_payer_paid_present",
            "accident_related",
        ),
        parent="payer",
        by_category=True,
        label="payer's denial rate with this coordination of benefits and accident status",
    ),
    RateKey(
        "payer_patient",
        ("payer_id", "patient_relationship", "patient_out_of_state", "age_band"),
        parent="payer",
        label="payer's denial rate for patients of this relationship, state and age",
    ),
    RateKey(
        "payer_member_shape",
        ("payer_id", "member_shape"),
        parent="payer",
        label="payer's denial rate for member IDs of this format (letters and digits)",
    ),
    RateKey(
        "payer_specialty",
        ("payer_id", "provider_taxonomy", "referral_present"),
        parent="payer",
        label="payer's denial rate for this specialty with/without a referral",
    ),
    RateKey(
        "provider_payer",
        ("rendering_npi", "payer_id"),
        parent="payer_specialty",
        by_category=True,
        label="rendering provider's denial rate with this payer",
        window_days=60,
    ),
    RateKey(
        "facility_payer",
        ("service_facility_npi", "billing_npi", "payer_id"),
        parent="payer",
        label="payer's denial rate for this billing provider and service facility",
    ),
    RateKey(
        "provider",
        ("rendering_npi",),
        parent="all",
        label="rendering provider's denial rate",
    ),
    RateKey(
        "patient_payer",
        ("patient_id", "payer_id"),
        parent="payer",
        by_category=True,
        label="patient's earlier denials with this payer",
    ),
    RateKey(
        "procedure_set",
        ("signature", "modifier_signature"),
        parent="all",
        by_category=True,
        label="denial rate of this exact combination of procedures and modifiers",
    ),
    RateKey(
        "same_service",
        ("patient_id", "service_day", "signature"),
        parent="all",
        label="outcome of an earlier claim for the same patient, date and procedures",
    ),
    # -- lines: one event per distinct procedure of a claim ------------------------------------
    RateKey("lines", (), level="line", label="denial rate of all service lines"),
    RateKey(
        "procedure",
        ("procedure_code",),
        level="line",
        parent="lines",
        label="denial rate of this procedure",
        window_days=60,
    ),
    RateKey(
        "payer_family",
        ("payer_id", "procedure_family"),
        level="line",
        parent="lines",
        label="payer's denial rate for this procedure family",
        window_days=90,
    ),
    RateKey(
        "payer_procedure",
        ("payer_id", "procedure_code"),
        level="line",
        parent="payer_family",
        by_category=True,
        label="payer's denial rate for this procedure",
        window_days=90,
    ),
    RateKey(
        "payer_procedure_auth",
        ("payer_id", "procedure_code", "auth_present"),
        level="line",
        parent="payer_procedure",
        by_category=True,
        label="payer's denial rate for this procedure with/without an authorization",
        window_days=60,
    ),
    RateKey(
        "payer_procedure_units",
        ("payer_id", "procedure_code", "units_bucket"),
        level="line",
        parent="payer_procedure",
        label="payer's denial rate for this procedure at this number of units",
    ),
    RateKey(
        "payer_procedure_modifiers",
        ("payer_id", "procedure_code", "line_modifiers"),
        level="line",
        parent="payer_procedure",
        by_category=True,
        label="payer's denial rate for this procedure with these modifiers",
    ),
    RateKey(
        "payer_procedure_documents",
        ("payer_id", "procedure_code", "documents"),
        level="line",
        parent="payer_procedure",
        by_category=True,
        label="payer's denial rate for this procedure with/without attachments, NDC, CLIA, "
        "referral",
    ),
    RateKey(
        "procedure_place",
        ("procedure_code", "line_place"),
        level="line",
        parent="procedure",
        label="denial rate of this procedure in this place of service",
    ),
    RateKey(
        "procedure_patient",
        ("procedure_code", "patient_sex", "age_band"),
        level="line",
        parent="procedure",
        by_category=True,
        label="denial rate of this procedure for a patient of this sex and age",
    ),
    RateKey(
        "procedure_provider",
        ("procedure_code", "provider_taxonomy", "referring_present"),
        level="line",
        parent="procedure",
        by_category=True,
        label="denial rate of this procedure by this specialty with/without an ordering provider",
    ),
    # -- diagnoses: one event per diagnosis a line points to (every one when it points to none)
    RateKey("diagnoses", (), level="diagnosis", label="denial rate of all line diagnoses"),
    RateKey(
        "dx_procedure",
        ("procedure_code",),
        level="diagnosis",
        parent="diagnoses",
        label="denial rate of this procedure (per diagnosis pointed to)",
    ),
    RateKey(
        "procedure_dx_category",
        ("procedure_code", "dx_category"),
        level="diagnosis",
        parent="dx_procedure",
        label="denial rate of this procedure with this diagnosis category",
    ),
    RateKey(
        "procedure_dx",
        ("procedure_code", "dx"),
        level="diagnosis",
        parent="procedure_dx_category",
        by_category=True,
        label="denial rate of this procedure with a diagnosis its line points to",
    ),
    RateKey(
        "payer_procedure_dx",
        ("payer_id", "procedure_code", "dx_category"),
        level="diagnosis",
        parent="procedure_dx_category",
        by_category=True,
        label="payer's denial rate for this procedure with this diagnosis category",
        window_days=90,
    ),
    # -- pairs: one event per ordered pair of distinct procedures on a claim -------------------
    RateKey("pairs", (), level="pair", label="denial rate of all procedure pairs"),
    RateKey(
        "procedure_pair",
        ("procedure_code", "other_procedure"),
        level="pair",
        parent="pairs",
        label="denial rate of this procedure billed with that one",
    ),
    RateKey(
        "procedure_pair_modifiers",
        ("procedure_code", "other_procedure", "line_modifiers"),
        level="pair",
        parent="procedure_pair",
        by_category=True,
        label="denial rate of this procedure with these modifiers billed with that one",
    ),
    RateKey(
        "payer_procedure_pair",
        ("payer_id", "procedure_code", "other_procedure"),
        level="pair",
        parent="procedure_pair",
        label="payer's denial rate for this procedure billed with that one",
    ),
)
LEVELS: tuple[str, ...] = ("claim", "line", "diagnosis", "pair")


def _rate_feature_names(key: RateKey) -> list[str]:
    names = [f"hist_{key.name}_n", f"hist_{key.name}_rate"]
    if key.by_category:
        names += [f"hist_{key.name}_rate_{c}" for c in DENIAL_CATEGORIES]
    if key.window_days:
        names += [f"hist_{key.name}_recent_n", f"hist_{key.name}_recent_rate"]
        if key.by_category:
            names += [f"hist_{key.name}_recent_rate_{c}" for c in DENIAL_CATEGORIES]
    return names


HISTORY_FEATURE_LABELS: dict[str, str] = {
    name: key.label for key in RATE_KEYS for name in _rate_feature_names(key)
}
"""Feature name -> what it means to a biller."""

EVIDENCE_FEATURES: dict[str, str] = {
    f"hist_evidence_{c}": f"highest {c.replace('_', ' ')} denial rate among the claim's "
    "groupings (payer, procedures, diagnoses, modifiers, providers...)"
    for c in DENIAL_CATEGORIES
}
"""Per denial category, the highest smoothed rate of that category over every grouping of the
claim, its lines and pairs: which cause its history points to, wherever it shows."""
HISTORY_FEATURE_LABELS.update(EVIDENCE_FEATURES)

COUNT_FEATURES: dict[str, str] = {
    "hist_patient_prior_claims": "patient's earlier claims with any payer",
    "hist_patient_payer_prior_claims": "patient's earlier claims with this payer",
    "hist_patient_days_since_prior_claim": "days since the patient's previous claim",
    "hist_provider_payer_prior_claims": "rendering provider's earlier claims with this payer",
    "hist_same_service_prior_submissions": "earlier submissions for the same patient, date "
    "and procedures (possible duplicate)",
    "hist_patient_family_claims_this_year": "patient's earlier claims this year with this payer "
    "for the same kind of service (benefit limits)",
    "hist_procedure_claims_this_year": "patient's earlier claims this year with this payer for "
    "one of these procedures (visit and unit limits)",
    "hist_family_claims_this_year": "patient's earlier claims this year with this payer for "
    "one of these kinds of service (visit limits)",
    "hist_person_prior_claims": "the person's earlier claims under any member ID",
    "hist_person_member_prior_claims": "the person's earlier claims under this member ID",
    "hist_person_payer_prior_claims": "the person's earlier claims with this payer",
    "hist_days_since_same_procedure": "days since the patient last had one of these procedures",
    "hist_days_since_same_family": "days since the patient last had a service of the same kind",
    "hist_payer_max_paid_lag": "longest service-to-submission delay this payer has still paid",
    "hist_days_past_paid_lag": "days beyond the longest delay this payer has still paid",
    "hist_days_past_late_denied_lag": "days beyond the shortest delay this payer has denied as "
    "late (its filing limit, learned from its timely-filing denials)",
    "hist_days_since_paid_with_payer": "days since the patient's last service this payer paid",
    "hist_days_past_known_coverage_end": "days from the coverage end date a remittance reported "
    "(DTM*036) to this service",
    "hist_member_id_corrected": "remittances that corrected this member ID (NM1*74)",
}
HISTORY_FEATURE_LABELS.update(COUNT_FEATURES)

HISTORY_FEATURES: tuple[str, ...] = tuple(HISTORY_FEATURE_LABELS)


class KeyColumns:
    """The columns of one query table (claims, or distinct procedures per claim) for grouping.

    A grouping's key is a 64-bit mix of its columns' hashes. Each column is hashed once, however
    many groupings use it, and missing values hash alike; each grouping's key (and, for large
    tables, its sort order) is built once however many indexes look it up. A column taken from
    another table (a claim's payer on each of its lines) takes that table's hashes by row rather
    than hashing the values again. No identifier becomes a feature: IDs only ever enter these
    hashes.
    """

    def __init__(
        self,
        columns: dict[str, np.ndarray],
        sources: dict[str, tuple[KeyColumns, np.ndarray]] | None = None,
        factors: TextFactors | None = None,
    ) -> None:
        self.columns = columns
        # The batch's text factors (see ClaimArrays.factors): distinct values found once.
        self._factors = factors
        # name -> (table, rows): this column is ``table[name][rows]``, so is its hash.
        self._sources = sources or {}
        self._hashes: dict[str, np.ndarray] = {}
        self._keys: dict[tuple[str, ...], np.ndarray] = {}
        self._orders: dict[tuple[str, ...], np.ndarray | None] = {}
        self._day_bits: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self["claim_index"])

    def __getitem__(self, name: str) -> np.ndarray:
        values = self.columns.get(name)
        if values is None:  # taken from another table on first use
            table, rows = self._sources[name]
            values = self.columns[name] = table[name][rows]
        return values

    def hash_columns(self, names: Iterable[str]) -> None:
        """Hash these columns now, small tables' text columns in one call (same hashes).

        Every hash depends on the value alone, so hashing several columns as one array gives
        each value the hash it gets alone; for a few claims that saves a call per column.
        """
        wanted = [name for name in dict.fromkeys(names) if name not in self._hashes]
        inherited: dict[KeyColumns, list[str]] = {}
        own: list[str] = []
        for name in wanted:
            if name in self._sources:
                inherited.setdefault(self._sources[name][0], []).append(name)
            else:
                own.append(name)
        for table, table_names in inherited.items():
            table.hash_columns(table_names)
        text = [name for name in own if self[name].dtype == object]
        numbers = [name for name in own if self[name].dtype != object]
        n = len(self)
        for together, as_one in (
            (text, lambda name: self[name]),
            # Numbers are hashed as float64 whatever their type, so convert each first.
            (numbers, lambda name: np.asarray(self[name], dtype=np.float64)),
        ):
            if len(together) > 1 and n * len(together) <= _HASH_TOGETHER_UP_TO:
                hashed = column_hash_values(np.concatenate([as_one(name) for name in together]))
                for i, name in enumerate(together):
                    self._hashes[name] = hashed[i * n : (i + 1) * n]
        for name in wanted:
            self.column_hash(name)

    def column_hash(self, name: str) -> np.ndarray:
        column_hash = self._hashes.get(name)
        if column_hash is None:
            if name in self._sources:
                table, rows = self._sources[name]
                column_hash = table.column_hash(name)[rows]
            else:
                column_hash = column_hash_values(
                    self[name], distinct=name in _DISTINCT_COLUMNS, factors=self._factors
                )
            self._hashes[name] = column_hash
        return column_hash

    def key(self, names: tuple[str, ...]) -> np.ndarray:
        combined = self._keys.get(names)
        if combined is not None:
            return combined
        if not names:  # a level's root: every row in one group
            combined = self._keys[names] = np.zeros(len(self), dtype=np.int64)
            return combined
        mixed = self.column_hash(names[0])
        with np.errstate(over="ignore"):
            for name in names[1:]:
                mixed = mixed * np.uint64(1_000_003) ^ self.column_hash(name)
        # The first column alone is its own key (0 * 1_000_003 ^ h == h).
        combined = self._keys[names] = mixed.view(np.int64)
        return combined

    def forget_key(self, names: tuple[str, ...]) -> None:
        """Drop the grouping's cached key (built again if asked for): at fit, each of a
        million claims' groupings is 8 bytes a row, needed only while its index is built."""
        self._keys.pop(names, None)

    def mix_keys(self, groupings: tuple[tuple[str, ...], ...]) -> None:
        """Build these groupings' keys now, in a few numpy calls for all (same keys as alone).

        All groupings are mixed together column by column, as :meth:`key` mixes one: for a
        few claims that saves most of the calls of building each key on its own.
        """
        for names in groupings:
            if not names:
                self.key(names)
        missing = tuple(names for names in groupings if names and names not in self._keys)
        if not missing:
            return
        plan = _mixing_plan(missing)
        hashes = np.array([self.column_hash(name) for name in plan.columns], dtype=np.uint64)
        hashes = hashes.reshape(len(plan.columns), len(self))
        mixed = hashes[plan.first]
        with np.errstate(over="ignore"):
            for taking, rows in plan.steps:
                mixed[:taking] = mixed[:taking] * np.uint64(1_000_003) ^ hashes[rows]
        for names, combined in zip(plan.groupings, mixed.view(np.int64), strict=True):
            self._keys[names] = combined

    def order(self, names: tuple[str, ...]) -> np.ndarray | None:
        """The rows sorted by the grouping's key, then by submission day (large tables only).

        So the searches of :func:`_search` run in ascending order: keys, then (key, day). One
        quicksort of the key's top 40 bits with the day in the low 24 (keys equal in their top
        40 bits but not in full may interleave: the order need only be rough, see
        :func:`_search`); a stable sort by key of the rows sorted by day cost three times as
        much.
        """
        if names not in self._orders:
            order = None
            if len(self) >= _SORT_QUERIES_ABOVE:
                if self._day_bits is None:
                    days = self["submission_day"]
                    known = days != NO_DAY
                    first = days[known].min() if known.any() else 0
                    self._day_bits = np.clip(np.where(known, days - first, 0), 0, _DAY_MASK)
                rough = (self.key(names) >> _DAY_BITS << _DAY_BITS) | self._day_bits
                order = np.argsort(rough)
            self._orders[names] = order
        return self._orders[names]

    def take(self, rows: np.ndarray) -> KeyColumns:
        return KeyColumns({}, {name: (self, rows) for name in (*self.columns, *self._sources)})

    def row_range(self, start: int, stop: int, first_claim: int) -> KeyColumns:
        """Rows ``start:stop`` as a table of their own, whose ``claim_index`` counts from the
        batch's claim ``first_claim`` (the first claim of the range) as 0.

        Hashes and keys already computed are sliced, not computed again: each depends on its
        row's values alone, so they are what the rows would get in a table of their own. Nothing
        is written to this table, so threads can take ranges of it side by side once its hashes
        and keys are built.
        """
        columns = {name: values[start:stop] for name, values in self.columns.items()}
        columns["claim_index"] = columns["claim_index"] - first_claim
        sources = {
            name: (table, rows[start:stop])
            for name, (table, rows) in self._sources.items()
            if name not in self.columns
        }
        view = KeyColumns(columns, sources)
        view._hashes = {name: hashed[start:stop] for name, hashed in self._hashes.items()}
        view._keys = {names: key[start:stop] for names, key in self._keys.items()}
        return view


@dataclass(frozen=True)
class _MixingPlan:
    """How :meth:`KeyColumns.mix_keys` mixes several groupings' keys at once."""

    groupings: tuple[tuple[str, ...], ...]
    """Distinct, longest first: those still taking a column at each step are leading rows."""
    columns: tuple[str, ...]
    """Every column they use, once."""
    first: np.ndarray
    """Each grouping's first column (a row of ``columns``)."""
    steps: tuple[tuple[int, np.ndarray], ...]
    """Per further column: how many groupings take one, and which column each takes."""


@lru_cache(maxsize=64)
def _mixing_plan(groupings: tuple[tuple[str, ...], ...]) -> _MixingPlan:
    distinct = tuple(sorted(dict.fromkeys(groupings), key=len, reverse=True))
    columns = tuple(dict.fromkeys(name for names in distinct for name in names))
    steps = []
    for step in range(1, len(distinct[0])):
        taking = [names for names in distinct if len(names) > step]
        steps.append((len(taking), np.array([columns.index(n[step]) for n in taking])))
    first = np.array([columns.index(names[0]) for names in distinct])
    return _MixingPlan(distinct, columns, first, tuple(steps))


_DISTINCT_COLUMNS = frozenset({"claim_id"})
"""Key columns whose values are (almost) all distinct: hashed value by value."""

_DAY_BITS = np.int64(24)
_DAY_MASK = np.int64((1 << 24) - 1)
"""A query's submission day (counted from the table's first) in the low bits of its sort key
(:meth:`KeyColumns.order`); 2**24 days are 45,000 years."""

_FACTORIZE_ABOVE = 64
"""Longer text columns are hashed once per distinct value (faster when values repeat)."""

_HASH_TOGETHER_UP_TO = 4_096
"""Text columns of a table this small (values in all) are hashed in one call."""

_MISSING_HASH = np.uint64(0x9E3779B97F4A7C15)
"""The hash of a missing text value (any fixed number that a real string is unlikely to hit)."""


def column_hash_values(
    values: np.ndarray, distinct: bool = False, factors: TextFactors | None = None
) -> np.ndarray:
    """A 64-bit hash per value that depends on the value alone, never on the rest of the array.

    So a claim scored alone gets the same key as in a million-claim batch. Text is hashed once
    per distinct value (SipHash, via pandas), unless the values are ``distinct`` (claim IDs:
    finding the distinct values would cost more than hashing them all; those ``factors`` keeps
    are not found again); numbers are mixed with SplitMix64.
    """
    if values.dtype == object:
        if len(values) <= _FACTORIZE_ABOVE:
            missing = np.array([v is None for v in values], dtype=bool)
            text = np.array([v if v is not None else "" for v in values], dtype=object)
            hashed = pd.util.hash_array(text, categorize=False)
            hashed[missing] = _MISSING_HASH
            return hashed
        if distinct:
            missing = is_none(values)
            text = np.where(missing, "", values) if missing.any() else values
            hashed = pd.util.hash_array(text, categorize=False)
            hashed[missing] = _MISSING_HASH
            return hashed
        codes, uniques = factorize_text(values, factors)
        hashed = pd.util.hash_array(uniques, categorize=False)
        return np.append(hashed, _MISSING_HASH)[codes]  # code -1 (missing) takes the last
    bits = np.asarray(values, dtype=np.float64) + 0.0  # + 0.0 makes -0.0 and 0.0 one value
    with np.errstate(over="ignore"):
        z = bits.view(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def claim_keys(arrays: ClaimArrays, claim_features: dict[str, np.ndarray]) -> KeyColumns:
    """Per-claim grouping keys and flags."""
    claims = arrays.claims
    rendering = np.where(
        claims["rendering_npi"] == None,  # noqa: E711 (elementwise test of an object array)
        claims["billing_npi"],
        claims["rendering_npi"],
    )
    signature, modifier_signature = procedure_signatures(arrays)
    service_day = claims["service_date_from"]
    principal = principal_diagnoses(arrays)
    columns = {
        "claim_index": np.arange(arrays.n_claims),
        "claim_id": claims["claim_id"],
        "payer_id": claims["payer_id"],
        "patient_id": claims["patient_id"],
        "rendering_npi": rendering,
        "provider_taxonomy": claims["provider_taxonomy"],
        "place_of_service": claims["place_of_service"],
        "submission_day": claims["submission_date"],
        "service_day": service_day,
        "signature": signature,
        "modifier_signature": modifier_signature,
        "principal_dx": principal,
        "service_year": np.where(
            service_day == NO_DAY,
            -1,
            service_day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64),
        ),
    }
    for name in (
        "prior_auth_present",
        "referral_present",
        "referring_npi_present",
        "taxonomy_present",
        "days_service_to_submission",
        "procedure_family_1",
        "principal_dx_category",
        "payer_responsibility",
        "patient_relationship",
        "frequency_code",
        "other_payer_known",
        "other_payer_paid_present",
        "patient_out_of_state",
        "attachment_present",
        "clia_present",
    ):
        columns[name] = claim_features[name]
    columns.update(
        {
            "billing_npi": claims["billing_npi"],
            "patient_sex": claims["patient_sex"],
            "service_facility_npi": claims["service_facility_npi"],
            "patient_key": claims["patient_key"],
            "member_shape": map_text(claims["patient_id"], _id_shape, None, object, arrays.factors),
            "lag_bucket": _bucket(claim_features["days_service_to_submission"], _LAG_BUCKETS),
            "delay_reason_present": (~is_none(claims["delay_reason_code"])).astype(float),
            "accident_related": (~is_none(claims["related_causes"])).astype(float),
            "age_band": _bucket(claim_features["patient_age"], _AGE_BANDS),
        }
    )
    return KeyColumns(columns, factors=arrays.factors)


_LAG_BUCKETS = np.array([15, 30, 60, 90, 95, 120, 150, 180, 270, 365, 730], dtype=float)
"""Service-to-submission days: payers' filing limits are 90, 95, 120, 180 or 365 days; a
payer's limit shows as the bucket from which its claims are denied for late filing."""
_AGE_BANDS = np.array([1, 5, 12, 18, 40, 65, 80], dtype=float)
"""Years: the age bands of preventive codes and payers' age edits."""


def _bucket(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bucket of each value among ``edges`` (NaN stays NaN, a key value of its own)."""
    return np.where(np.isnan(values), np.nan, np.searchsorted(edges, values, side="right"))


def _id_shape(member_id: str) -> str:
    """A member ID's format: letters as A, digits as 9 (``W123456789`` -> ``A999999999``)."""
    return "".join("9" if c.isdigit() else "A" if c.isalpha() else c for c in member_id.strip())


def procedure_signatures(arrays: ClaimArrays) -> tuple[np.ndarray, np.ndarray]:
    """Order-free signatures per claim: its procedure codes, and codes with their modifiers.

    A sum of per-line hashes (mod 2**64) is the same for any order of the lines, and equal for
    resubmissions of the same service, without building strings per claim.
    """
    lines = KeyColumns(arrays.lines, factors=arrays.factors)
    lines.hash_columns(("procedure_code", *MODIFIERS))
    signature = np.zeros(arrays.n_claims, dtype=np.uint64)
    modifier_signature = np.zeros(arrays.n_claims, dtype=np.uint64)
    claim_index = arrays.lines["claim_index"]
    if len(claim_index) == 0:
        return signature, modifier_signature
    # Lines are sorted by claim, so each claim's sum is one segment; uint64 sums wrap, and
    # sums mod 2**64 do not depend on the order they are added in.
    code_hash = lines.key(("procedure_code",)).view(np.uint64)
    modifier_hash = lines.key(("procedure_code", *MODIFIERS)).view(np.uint64)
    if np.all(claim_index[1:] >= claim_index[:-1]):
        starts = group_starts(claim_index)
        signature[claim_index[starts]] = np.add.reduceat(code_hash, starts)
        modifier_signature[claim_index[starts]] = np.add.reduceat(modifier_hash, starts)
    else:
        np.add.at(signature, claim_index, code_hash)
        np.add.at(modifier_signature, claim_index, modifier_hash)
    return signature, modifier_signature


def line_keys(arrays: ClaimArrays, claims: KeyColumns) -> KeyColumns:
    """One row per distinct (claim, procedure) with the claim's keys and the line's diagnosis.

    The first line of each procedure in canonical order stands for it. The line's diagnosis is
    the first one its pointer names (the principal when it has none): a payer judges medical
    necessity by the diagnosis the line is billed for.
    """
    lines, factors = arrays.lines, arrays.factors
    codes = factor_codes(lines["procedure_code"], factors=factors)
    pair = lines["claim_index"] * (int(codes.max(initial=0)) + 1) + codes
    _, first, which = np.unique(pair, return_index=True, return_inverse=True)
    rows = np.sort(first)
    claim_index = lines["claim_index"][rows]
    # Units of a procedure over all its lines on the claim (a unit limit is per code and day).
    units_of = np.bincount(which.ravel(), weights=np.nan_to_num(lines["units"]))
    units = units_of[which.ravel()[rows]]
    procedure = factors.take(lines["procedure_code"], rows)
    pointers = factors.take(lines["diagnosis_pointers"], rows)
    line_place = lines["line_place_of_service"][rows]
    line_place = np.where(is_none(line_place), claims["place_of_service"][claim_index], line_place)

    def present(column: str) -> np.ndarray:
        return ~is_none(lines[column][rows])

    def on_claim(name: str) -> np.ndarray:
        return claims[name][claim_index] > 0

    attachments = present("line_attachment_types") | on_claim("attachment_present")
    clia = present("line_clia_number") | on_claim("clia_present")
    referral = present("line_referral_number") | on_claim("referral_present")
    columns = {
        "claim_index": claim_index,
        "procedure_code": procedure,
        "procedure_family": map_text(procedure, _family, None, object, factors),
        "pointed": map_text(pointers, _pointer_mask, _ALL_POSITIONS, np.int64, factors),
        "line_modifiers": _line_modifier_signatures(arrays)[rows],
        "auth_present": (present("line_prior_auth_number") | on_claim("prior_auth_present")) * 1.0,
        "units_bucket": np.minimum(units, 20.0),
        "documents": attachments * 1.0 + present("ndc_code") * 2.0 + clia * 4.0 + referral * 8.0,
        "line_place": line_place,
        "referring_present": (present("line_referring_npi") | on_claim("referring_npi_present"))
        * 1.0,
    }
    # The claim's own columns (payer, patient, days...) are its rows, taken when first used.
    sources = {name: (claims, claim_index) for name in claims.columns if name not in columns}
    return KeyColumns(columns, sources, factors)


def _line_modifier_signatures(arrays: ClaimArrays) -> np.ndarray:
    """Per line, an order-free signature of its modifiers (a sum of their hashes mod 2**64)."""
    lines = KeyColumns(arrays.lines, factors=arrays.factors)
    lines.hash_columns(MODIFIERS)
    with np.errstate(over="ignore"):
        total = np.zeros(len(arrays.lines["claim_index"]), dtype=np.uint64)
        for column in MODIFIERS:
            total += lines.column_hash(column)
    return total.view(np.int64)


MAX_PAIR_PROCEDURES = 8
"""A claim's pairs are those of its first procedures (in canonical order) up to this many: a
40-line claim would otherwise make 1,560 pairs."""


def pair_keys(lines: KeyColumns) -> KeyColumns:
    """One row per ordered pair (a, b) of distinct procedures on a claim: a's line keys (payer,
    procedure, modifiers...) and b's procedure as ``other_procedure``.

    Code-pair edits (NCCI-style bundling, mutually exclusive services) deny a line for the
    company it keeps on the claim, not for its own codes.
    """
    claim_index = lines["claim_index"]
    n = len(claim_index)
    starts = group_starts(claim_index)
    sizes = np.diff(np.append(starts, n))
    rank = np.arange(n) - np.repeat(starts, sizes)
    kept = rank < MAX_PAIR_PROCEDURES
    size = np.minimum(sizes, MAX_PAIR_PROCEDURES)[np.repeat(np.arange(len(starts)), sizes)]
    # Each kept row a pairs with the other kept rows of its claim: the k-th partner of a is
    # the k-th kept row of the claim, skipping a itself.
    partners = (size - 1)[kept]
    a = np.repeat(np.flatnonzero(kept), partners)
    k = np.arange(len(a)) - np.repeat(np.cumsum(partners) - partners, partners)
    b = np.repeat(starts, sizes)[a] + k + (k >= rank[a])
    columns = {
        "claim_index": claim_index[a],
        "other_procedure": lines["procedure_code"][b],
    }
    sources = {
        name: (lines, a) for name in (*lines.columns, *lines._sources) if name not in columns
    }
    return KeyColumns(columns, sources)


_DIGITS = re.compile(r"\d+")
_POSITIONS = 12
"""Diagnosis positions a line may point to (an 837P holds 12 diagnoses, 837I 25)."""
_ALL_POSITIONS = (1 << _POSITIONS) - 1


def _pointer_mask(pointers: str) -> int:
    """The diagnosis positions a line points to, as bits (position 1 is bit 0); every position
    when it names none (a payer then reads all of the claim's diagnoses)."""
    mask = 0
    for found in _DIGITS.findall(pointers):
        position = int(found)
        if 1 <= position <= _POSITIONS:
            mask |= 1 << (position - 1)
    return mask or _ALL_POSITIONS


def diagnosis_keys(arrays: ClaimArrays, lines: KeyColumns) -> KeyColumns:
    """One row per (line, diagnosis it points to), in line order: the line's keys (payer,
    procedure...) and the diagnosis code and category. ``line`` numbers the line rows."""
    row, bit = np.nonzero((lines["pointed"][:, None] >> np.arange(_POSITIONS)) & 1)
    dx = _pointed_diagnosis(arrays, lines["claim_index"][row], bit + 1)
    found = dx != None  # noqa: E711  (elementwise)
    row, dx = row[found], dx[found]
    columns = {
        "claim_index": lines["claim_index"][row],
        "line": row,
        "dx": dx,
        "dx_category": map_text(dx, lambda code: code[:3], None, object),
    }
    names = (*lines.columns, *lines._sources)
    sources = {name: (lines, row) for name in names if name not in columns}
    return KeyColumns(columns, sources)


def _family(code: str) -> str | None:
    return code[:3] or None


def _pointed_diagnosis(
    arrays: ClaimArrays, claim_index: np.ndarray, pointer: np.ndarray
) -> np.ndarray:
    """The diagnosis code at (claim, position) for each line (``None`` when there is none)."""
    dx = arrays.diagnoses
    out = np.full(len(claim_index), None, dtype=object)
    if len(dx["code"]) == 0 or len(claim_index) == 0:
        return out
    width = np.int64(max(int(dx["position"].max()), int(pointer.max()), 0) + 1)
    stored = dx["claim_index"] * width + dx["position"]
    order = np.argsort(stored, kind="stable")
    stored = stored[order]
    wanted = claim_index * width + pointer
    found = np.minimum(np.searchsorted(stored, wanted), len(stored) - 1)
    hit = (stored[found] == wanted) & (pointer >= 0)
    out[hit] = dx["code"][order[found[hit]]]
    return out


class EventIndex:
    """Events of one grouping, sorted by (key, day), with running sums or maxima per key.

    Built once (at fit); each lookup is a binary search, so scoring a claim costs the same
    however long the stored history is. ``lookup`` returns, for each query, the running value
    over events of the same key on days strictly before the query's day.
    """

    def __init__(
        self, keys: np.ndarray, days: np.ndarray, values: np.ndarray, reducer: str = "sum"
    ) -> None:
        values = np.asarray(values, dtype=float)
        values = values if values.ndim == 2 else values[:, None]
        keep = days != NO_DAY
        if reducer == "max":
            keep &= ~np.isnan(values).any(axis=1)  # an unknown value raises no maximum
        keys, days, values = keys[keep], days[keep], values[keep]
        self.reducer = reducer
        self.width = values.shape[1]
        self.keys, key_id = np.unique(keys, return_inverse=True)
        composite = (key_id.astype(np.int64) << 32) | (days - _DAY_ORIGIN)
        order = np.argsort(composite, kind="stable")
        composite = composite[order]
        ordered = values[order]
        start = group_starts(key_id[order])
        sizes = np.diff(np.append(start, len(order)))
        running = _running(ordered, start, sizes, reducer)
        # A lookup reads the running value after the last event before its day, so of a key's
        # events on one day only the last row is ever read: keep that one (the same numbers,
        # a fraction of the rows for a busy payer's or procedure's index).
        last_of_day = (
            np.append(composite[1:] != composite[:-1], True)
            if len(order)
            else np.zeros(0, dtype=bool)
        )
        self.composite = composite[last_of_day]
        self.running = running[last_of_day]
        self.start = group_starts(self.composite >> 32)

    def lookup(
        self, keys: np.ndarray, days: np.ndarray, order: np.ndarray | None = None
    ) -> np.ndarray:
        return self.lookup_located(self.locate(keys, order), days, order)

    def lookup_compiled(self, table: KeyColumns, columns: tuple[str, ...]) -> np.ndarray:
        """:meth:`lookup` of a table's rows by the grouping ``columns``, as of their submission
        day, through the compiled kernel (:func:`features.lookup_kernel.look_up`)."""
        from features.lookup_kernel import look_up  # numba: scoring's chunks only

        keys, days = table.key(columns), table["submission_day"]
        fill = 0.0 if self.reducer == "sum" else np.nan
        out = np.full((self.width, len(keys)), fill)
        if len(self.keys) == 0:
            return out.T
        look_up(
            self.keys, self.start, self.composite, self.running, keys,
            _kernel_row_order(self, table, columns), (days - _DAY_ORIGIN)[None, :],
            (days != NO_DAY)[None, :], np.zeros(1, dtype=np.int64), fill, out, 0,
        )  # fmt: skip
        return out.T

    def locate(self, keys: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
        """Each query key's position among the stored keys (-1 when never seen).

        ``order``, if given, sorts ``keys`` (see :func:`_search`); the same order serves
        :meth:`lookup_located` for these keys, whatever the days.
        """
        if len(self.keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        position = np.minimum(_search(self.keys, keys, order), len(self.keys) - 1)
        return np.where(self.keys[position] == keys, position, -1)

    def lookup_located(
        self, position: np.ndarray, days: np.ndarray, order: np.ndarray | None = None
    ) -> np.ndarray:
        """:meth:`lookup` for keys already :meth:`locate`-d (reused across windows)."""
        fill = 0.0 if self.reducer == "sum" else np.nan
        out = np.full((len(position), self.width), fill)
        if len(self.keys) == 0:
            return out
        # Every row is searched (in the (key, day) order given: ascending stored positions and
        # days); rows with an unknown key or no day get nonsense positions, which ``found``
        # drops. Fewer steps than picking rows first.
        composite = (position << 32) | (days - _DAY_ORIGIN)
        last = _search(self.composite, composite, order) - 1
        found = (position >= 0) & (days != NO_DAY)
        found &= last >= self.start[position]
        out[found] = self.running[last[found]]
        return out


def _search(stored: np.ndarray, queries: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """``np.searchsorted(stored, queries)`` (left side), in ``order`` for large query sets.

    Binary searches for queries in ascending order walk memory forwards and narrow each
    other's range: on a million stored events that is several times faster than random order.
    ``order`` need only sort the queries roughly (the results are the same in any order), so one
    sort of a grouping's keys serves its key search and every day search after it.
    """
    if len(queries) < _SORT_QUERIES_ABOVE:
        return stored.searchsorted(queries)
    if order is None:
        order = np.argsort(queries)
    found = np.empty(len(queries), dtype=np.int64)
    found[order] = np.searchsorted(stored, queries[order])
    return found


_SORT_QUERIES_ABOVE = 1_000

_KERNEL_SORTS_ABOVE_KEYS = 16_384
"""The compiled lookups (:mod:`features.lookup_kernel`) take a table's rows in key order only
for an index of more keys than this. A smaller index's keys (128 kB) stay in cache whatever
the order, and sorting a 20k-claim chunk's rows cost 1-3 ms per grouping while saving under
0.5 ms per index (measured index by index); a patient's or a service's index (30k-150k keys)
was searched twice as fast in key order."""


def _kernel_row_order(index: EventIndex, table: KeyColumns, columns: tuple[str, ...]) -> np.ndarray:
    """The order the compiled kernel takes ``table``'s rows in to look ``index`` up by the
    grouping ``columns``: by key for an index of many keys, else as they come."""
    if len(index.keys) > _KERNEL_SORTS_ABOVE_KEYS:
        order = table.order(columns)
        if order is not None:
            return order
    return np.arange(len(table))


def _running(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray, reducer: str) -> np.ndarray:
    """Running sum or maximum within consecutive groups (all in numpy, no per-group loop)."""
    if len(values) == 0:
        return values
    group = np.repeat(np.arange(len(starts)), sizes)
    if reducer == "sum":
        total = np.cumsum(values, axis=0)
        before = total[starts] - values[starts]
        return total - before[group]
    # Lift each group above the previous one; one running maximum then never crosses groups.
    # Values are whole days, so the lifted numbers stay exact in float64.
    low = values.min(axis=0)
    span = values.max(axis=0) - low + 1.0
    lift = group[:, None] * span
    return np.maximum.accumulate(values - low + lift, axis=0) - lift + low


def _categories_of(name: str) -> str:
    """The name of a rate key's category index (denied claims only, one column per category)."""
    return f"{name}:categories"


_DAY_ORIGIN = np.int64(-(2**31))
"""Shift so day numbers (since 1970, possibly negative) fit the low 32 bits as non-negatives."""


@dataclass(frozen=True)
class _IndexLookup:
    """One fitted index, looked up for every row of a query table by one grouping's key."""

    name: str
    """The rate key's name, or the count feature's."""
    index: EventIndex
    columns: tuple[str, ...]
    """The grouping's key columns."""
    days_back: tuple[int, ...] = (0,)
    """Look up as of the submission day minus each of these (a rate's window: ``(0, days)``)."""
    rate: RateKey | None = None
    """Set for a rate index: its sums become counts and smoothed rates."""


class _TableLookups:
    """All index lookups of one query table (claims, or lines) in a few numpy calls.

    Looked up one at a time, each index and window costs tens of microseconds of numpy call
    overhead (filling, masking, picking rows), which for one claim is most of the cost of the
    history features. Here each index costs its two binary searches (its keys, then its (key,
    day) events) and one gather of its running values into a matrix shared by all indexes; what
    follows (which rows matched, blanking the rest, windows, smoothing) is done once for all.
    Large tables go index by index instead (:meth:`_many_values`), where call overhead does not
    matter. The numbers are those of :meth:`EventIndex.lookup`, bit for bit.

    Derived from the fitted indexes on first use and never pickled: the fitted state stays the
    indexes alone.
    """

    def __init__(self, lookups: list[_IndexLookup]) -> None:
        self.lookups = lookups
        self.groupings = tuple(lookup.columns for lookup in lookups)
        sizes = np.array([len(lookup.index.keys) for lookup in lookups], dtype=np.int64)
        self.has_keys = sizes > 0
        self.last_key = np.maximum(sizes - 1, 0)
        self.key_offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        # All indexes' keys and key starts end to end, so one comparison checks every match. The
        # extra element is where an index without keys points (its rows never match).
        self.keys = np.concatenate([*(lookup.index.keys for lookup in lookups), [0]])
        self.starts = np.concatenate([*(lookup.index.start for lookup in lookups), [0]])
        self.backs = sorted({back for lookup in lookups for back in lookup.days_back})
        # A slot is one (index, days back) lookup; each fills ``index.width`` adjacent columns.
        # Per index: its slots (adjacent) and their columns (adjacent, slot after slot).
        self.slots: list[tuple[slice, slice]] = []
        slot_index: list[int] = []
        slot_back: list[int] = []
        column_slot: list[int] = []
        fill: list[float] = []
        self.first_column: dict[tuple[str, int], int] = {}
        for i, lookup in enumerate(lookups):
            width = lookup.index.width
            first_slot, first = len(slot_index), len(column_slot)
            for back in lookup.days_back:
                self.first_column[lookup.name, back] = len(column_slot)
                column_slot += [len(slot_index)] * width
                fill += [0.0 if lookup.index.reducer == "sum" else np.nan] * width
                slot_index.append(i)
                slot_back.append(self.backs.index(back))
            self.slots.append((slice(first_slot, len(slot_index)), slice(first, len(column_slot))))
        self.slot_index = np.array(slot_index, dtype=np.int64)
        self.slot_back = np.array(slot_back, dtype=np.int64)
        self.column_slot = np.array(column_slot, dtype=np.int64)
        self.fill = np.array(fill)
        self._plan_rates()

    def _plan_rates(self) -> None:
        """The rate keys looked up here (parents before children) and their feature names."""
        self.rate_keys = [lookup.rate for lookup in self.lookups if lookup.rate is not None]
        self.rate_names: list[str] = []
        seen: set[str] = set()
        for key in self.rate_keys:
            if key.parent is not None and key.parent not in seen:
                raise ValueError(f"rate key {key.name}: its parent {key.parent} must come first")
            seen.add(key.name)
            self.rate_names += _rate_feature_names(key)

    def column(self, name: str, back: int = 0) -> int:
        """The (first) column of an index's values as of ``back`` days before submission."""
        return self.first_column[name, back]

    def values(
        self, table: KeyColumns, compiled: bool = False, anchor_day: np.ndarray | None = None
    ) -> np.ndarray:
        """Each index's running sums (or maxima) for each row, as :meth:`EventIndex.lookup`.

        One row per column of the indexes' values (see :meth:`column`), one column per table
        row (so each feature is a contiguous row, however large the table); 0 (sums) or NaN
        (maxima) where no event is earlier. ``compiled``: a large table is looked up by
        :func:`features.lookup_kernel.look_up` (the same numbers).

        A window ends at ``anchor_day`` (per row: the day after the latest outcome known when
        the claim was sent, see :meth:`HistoryFeatures._anchor_days`), not at the submission
        day: a claim sent months after the history ends sees the last weeks of outcomes known,
        as a claim of the training period saw the weeks before it, not an empty window.
        """
        n = len(table)
        table.mix_keys(self.groupings)
        days = table["submission_day"]
        window_end = days if anchor_day is None else np.minimum(days, anchor_day)
        as_of = np.array([days if back == 0 else window_end - back for back in self.backs])
        as_of = as_of.reshape(len(self.backs), n)
        queries = [table.key(lookup.columns) for lookup in self.lookups]
        if n >= _SORT_QUERIES_ABOVE:
            return self._many_values(table, queries, as_of, compiled)
        query_keys = np.array(queries).reshape(len(self.lookups), n)
        # Unknown keys get nonsense positions and events; ``found`` below drops them.
        positions = np.zeros((len(self.lookups), n), dtype=np.int64)
        for i, lookup in enumerate(self.lookups):
            if self.has_keys[i]:  # else nothing matches (below): the rows take their fill
                positions[i] = lookup.index.keys.searchsorted(query_keys[i])
        # As EventIndex.lookup_located: the first event at or after (key, day), per slot.
        composite = (positions[self.slot_index] << 32) | (as_of[self.slot_back] - _DAY_ORIGIN)
        after = np.zeros((len(self.slot_index), n), dtype=np.int64)
        out = np.empty((len(self.column_slot), n))
        for i, lookup in enumerate(self.lookups):
            if self.has_keys[i]:
                index = lookup.index
                slots, columns = self.slots[i]
                after[slots] = index.composite.searchsorted(composite[slots])
                # The running values of the last events before, slot by slot; "wrap" reads
                # row -1 (no event before) as Python does, and ``found`` drops it.
                into = out[columns].reshape(slots.stop - slots.start, index.width, n)
                index.running.take(
                    after[slots] - 1, axis=0, out=into.transpose(0, 2, 1), mode="wrap"
                )
        position_all = np.minimum(positions, self.last_key[:, None]) + self.key_offset[:, None]
        matched = (self.keys[position_all] == query_keys) & self.has_keys[:, None]
        found = matched[self.slot_index] & (as_of != NO_DAY)[self.slot_back]
        found &= after - 1 >= self.starts[position_all[self.slot_index]]
        np.copyto(out, self.fill[:, None], where=~found[self.column_slot])
        return out

    def _many_values(
        self,
        table: KeyColumns,
        queries: list[np.ndarray],
        as_of: np.ndarray,
        compiled: bool = False,
    ) -> np.ndarray:
        """:meth:`values` of a large table, index by index.

        Searches run in key order (see :func:`_search`) and each step works on one row of the
        result at a time: matrices over all indexes would cost more memory traffic than the
        numpy calls they save. ``compiled``: each index in one pass of the compiled kernel.
        """
        has_day = as_of != NO_DAY
        day_bits = as_of - _DAY_ORIGIN
        out = np.empty((len(self.column_slot), as_of.shape[1]))
        if compiled:
            from features.lookup_kernel import look_up  # numba: scoring's chunks only
        for i, lookup in enumerate(self.lookups):
            index, keys = lookup.index, queries[i]
            slots, columns = self.slots[i]
            if not self.has_keys[i]:
                out[columns] = self.fill[columns, None]
                continue
            if compiled:
                look_up(
                    index.keys, index.start, index.composite, index.running, keys,
                    _kernel_row_order(index, table, lookup.columns), day_bits, has_day,
                    self.slot_back[slots], self.fill[columns.start], out, columns.start,
                )  # fmt: skip
                continue
            order = table.order(lookup.columns)
            position = np.minimum(_search(index.keys, keys, order), len(index.keys) - 1)
            matched = index.keys[position] == keys
            start = index.start[position]
            for slot in range(slots.start, slots.stop):
                back = self.slot_back[slot]
                after = _search(index.composite, (position << 32) | day_bits[back], order)
                missing = ~(matched & has_day[back] & (after - 1 >= start))
                first = columns.start + (slot - slots.start) * index.width
                for column in range(first, first + index.width):
                    # A column at a time, so each fills a contiguous row of ``out``.
                    index.running[:, column - first].take(after - 1, out=out[column], mode="wrap")
                    np.copyto(out[column], self.fill[column], where=missing)
        return out

    def rates(
        self, values: np.ndarray, smoothing: float, prior_rate: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rate features (rows as ``rate_names``) and each category's highest smoothed
        rate over this table's keys (rows in :data:`DENIAL_CATEGORIES` order), per table row.

        A key's rate is its denials plus ``smoothing`` pseudo-claims at its parent's smoothed
        rate, over its claims plus ``smoothing``; a root's pseudo-claims are at ``prior_rate``
        (a category's at ``prior_rate`` / the number of categories). A window's rate is smoothed
        toward the key's whole-history rate.
        """
        m = smoothing
        k = len(DENIAL_CATEGORIES)
        n_rows = values.shape[1]
        overall: dict[str, np.ndarray] = {}
        by_category: dict[str, np.ndarray] = {}
        out = np.empty((len(self.rate_names), n_rows))
        evidence = np.zeros((k, n_rows))
        row = 0

        def put(block: np.ndarray) -> None:
            nonlocal row
            if block.ndim == 1:
                block = block[None, :]
            out[row : row + len(block)] = block
            row += len(block)

        for key in self.rate_keys:
            dense = self.column(key.name, 0)
            sparse = self.column(_categories_of(key.name), 0)
            count, denied = values[dense], values[dense + 1]
            categories = values[sparse : sparse + k]
            if key.parent is None:
                parent_rate: np.ndarray | float = prior_rate
                parent_categories: np.ndarray | float = prior_rate / k
            else:
                parent_rate, parent_categories = overall[key.parent], by_category[key.parent]
            rate = (denied + m * parent_rate) / (count + m)
            category_rates = (categories + m * parent_categories) / (count + m)
            overall[key.name], by_category[key.name] = rate, category_rates
            np.maximum(evidence, category_rates, out=evidence)
            put(count)
            put(rate)
            if key.by_category:
                put(category_rates)
            if key.window_days:
                dense_before = self.column(key.name, key.window_days)
                sparse_before = self.column(_categories_of(key.name), key.window_days)
                recent_count = count - values[dense_before]
                recent_denied = denied - values[dense_before + 1]
                recent = categories - values[sparse_before : sparse_before + k]
                put(recent_count)
                put((recent_denied + m * rate) / (recent_count + m))
                if key.by_category:
                    put((recent + m * category_rates) / (recent_count + m))
        return out, evidence


class HistoryFeatures(BaseEstimator):
    """Point-in-time denial rates and submission counts (see the module docstring).

    Parameters
    ----------
    smoothing:
        Pseudo-count pulling a rate toward ``prior_rate`` when a group has few outcomes.
    prior_rate:
        Rate assumed for a group with no history yet. Fixed, not learned, so that no global
        figure from later outcomes leaks into early claims.
    """

    def __init__(self, smoothing: float = 5.0, prior_rate: float = 0.1) -> None:
        self.smoothing = smoothing
        self.prior_rate = prior_rate

    def fit(
        self,
        arrays: ClaimArrays,
        claim_features: dict[str, np.ndarray],
        outcomes: pd.DataFrame,
    ) -> HistoryFeatures:
        """Index the outcome and submission events known in ``arrays``/``outcomes``.

        ``outcomes`` has :data:`OUTCOME_COLUMNS`, and may have ``coverage_expiration_date``
        (835 DTM*036) and ``corrected_member_id`` (835 NM1*74) of the claims' remittances.
        """
        missing = [c for c in OUTCOME_COLUMNS if c not in outcomes.columns]
        if missing:
            raise ValueError(f"outcomes frame lacks column(s): {', '.join(missing)}")
        extra = [c for c in OUTCOME_EXTRA_COLUMNS if c in outcomes.columns]
        known = outcomes[[*OUTCOME_COLUMNS, *extra]].drop_duplicates("claim_id")
        claims = claim_keys(arrays, claim_features)
        lines = line_keys(arrays, claims)
        tables = {
            "claim": claims,
            "line": lines,
            "diagnosis": diagnosis_keys(arrays, lines),
            "pair": pair_keys(lines),
        }
        remit_day, denied, category = _outcomes_by_claim(claims, known)
        category_code = pd.Index(DENIAL_CATEGORIES).get_indexer(category)
        self.rate_indexes_: dict[str, EventIndex] = {}
        for key in RATE_KEYS:
            events = tables[key.level]
            at = events["claim_index"]
            keys, days = events.key(key.columns), remit_day[at]
            self.rate_indexes_[key.name] = EventIndex(
                keys, days, np.column_stack([np.ones(len(at)), denied[at]])
            )
            # Categories of denied claims only: a tenth of the events, each one category.
            rows = np.flatnonzero((denied[at] > 0) & (category_code[at] >= 0))
            one_hot = np.zeros((len(rows), len(DENIAL_CATEGORIES)))
            one_hot[np.arange(len(rows)), category_code[at][rows]] = 1.0
            self.rate_indexes_[_categories_of(key.name)] = EventIndex(
                keys[rows], days[rows], one_hot
            )
            events.forget_key(key.columns)
        del tables  # the line diagnoses and pairs are not needed again
        self.outcome_indexes_ = _outcome_indexes(claims, known, remit_day, denied, category)
        self.submission_indexes_ = self._submission_indexes(claims, lines)
        self.known_claims_ = np.unique(_claim_hash(claims["claim_id"]))
        self.cutoff_ = pd.Timestamp(known["remit_date"].max()) if len(known) else pd.NaT
        self.remit_days_ = np.unique(remit_day[remit_day != NO_DAY])
        return self

    def refresh(
        self,
        arrays: ClaimArrays,
        claim_features: dict[str, np.ndarray],
        outcomes: pd.DataFrame,
    ) -> HistoryFeatures:
        """Replace the stored events with newer data (same model, history up to date)."""
        # The state replaced is released first: a large practice's history is never held
        # twice. A copy refreshed (``training.model.with_history``) leaves its original's
        # state alone.
        self.release()
        return self.fit(arrays, claim_features, outcomes)

    def release(self) -> None:
        """Drop the stored events (and their look-ups) until :meth:`refresh` stores new ones;
        transforming in between is an error. Training releases the training cutoff's history
        while its boosters fit, since evaluation refreshes it anyway."""
        for name in ("rate_indexes_", "outcome_indexes_", "submission_indexes_", "_lookups"):
            self.__dict__.pop(name, None)

    def transform(
        self, arrays: ClaimArrays, claim_features: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """History features for each claim, as of its submission date (``HISTORY_FEATURES``)."""
        return self.batch(arrays, claim_features).features(0, arrays.n_claims)

    def batch(
        self,
        arrays: ClaimArrays,
        claim_features: dict[str, np.ndarray],
        executor: Executor | None = None,
    ) -> HistoryBatch:
        """What the history features of any range of this batch's claims are computed from.

        The grouping keys of its claims and lines, hashed once, and the indexes of the batch's
        own new submissions: a claim's counts include the earlier claims of the same batch,
        so these are built over the whole batch, whatever range is then looked up. Given an
        ``executor`` (whose threads then compute ranges), those indexes are built in one of its
        threads: mostly numpy sorting, which runs beside the first range's look-ups until that
        range needs its counts.
        """
        claims = claim_keys(arrays, claim_features)
        lines = line_keys(arrays, claims)
        diagnoses = diagnosis_keys(arrays, lines)
        claim_columns, line_columns = _hashed_columns(claims)
        claims.hash_columns(claim_columns)
        lines.hash_columns(line_columns)
        diagnoses.hash_columns(("dx", "dx_category"))
        # Built now, not on first use in a thread that scores a range.
        self._table_lookups()
        if executor is None:
            return HistoryBatch(self, claims, lines, diagnoses, self._batch_indexes(claims, lines))
        # What the indexes read of the lines' claim columns, taken now: from here on, nothing
        # writes to these two tables while threads read them.
        for name in ("submission_day", "service_day"):
            lines[name]
        return HistoryBatch(
            self, claims, lines, diagnoses, executor.submit(self._batch_indexes, claims, lines)
        )

    def _features(
        self,
        claims: KeyColumns,
        lines: KeyColumns,
        diagnoses: KeyColumns,
        batch: Callable[[], dict[str, EventIndex]],
        side_by_side: bool,
        compiled: bool = False,
    ) -> dict[str, np.ndarray]:
        """:meth:`transform` of the claims (and their lines and line diagnoses) in these tables;
        ``batch`` gives :meth:`_batch_indexes` of the whole batch they belong to (once they are
        needed). ``compiled`` is passed to :meth:`_TableLookups.values`."""
        pairs = pair_keys(lines)
        by_claim = ClaimGroups(lines["claim_index"], len(claims))
        by_claim_of_pairs = ClaimGroups(pairs["claim_index"], len(claims))
        claim_lookups, line_lookups, dx_lookups, pair_lookups = self._table_lookups()

        def worst_line_best_diagnosis(values: np.ndarray) -> np.ndarray:
            # A line is as safe as its safest diagnosis; the claim as risky as its riskiest line.
            starts = group_starts(diagnoses["line"])
            if len(starts) == 0:
                return np.full((values.shape[0], len(claims)), np.nan)
            best = np.minimum.reduceat(values, starts, axis=1)
            lines_of = ClaimGroups(diagnoses["claim_index"][starts], len(claims))
            return lines_of.max_of_columns(best)

        anchor = self._anchor_days(claims["submission_day"])

        def anchor_of(table: KeyColumns) -> np.ndarray | None:
            return None if anchor is None else anchor[table["claim_index"]]

        def lines_diagnoses_and_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return (
                line_lookups.values(lines, compiled, anchor_of(lines)),
                dx_lookups.values(diagnoses, compiled, anchor_of(diagnoses)),
                pair_lookups.values(pairs, compiled, anchor_of(pairs)),
            )

        if side_by_side and len(claims) >= _LOOKUPS_SIDE_BY_SIDE_FROM:
            # Most of a large batch's history time is numpy sorting, searching and taking,
            # which release the GIL: the line, diagnosis and pair lookups run on a second core.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="line-lookups") as pool:
                pending = pool.submit(lines_diagnoses_and_pairs)
                claim_values = claim_lookups.values(claims, compiled, anchor)
                line_values, dx_values, pair_values = pending.result()
        else:
            claim_values = claim_lookups.values(claims, compiled, anchor)
            line_values, dx_values, pair_values = lines_diagnoses_and_pairs()
        columns: dict[str, np.ndarray] = {}
        evidence: np.ndarray | None = None
        for lookups, values, reduce in (
            (claim_lookups, claim_values, None),
            # A line or pair rate's claim feature is the worst of the claim's lines or pairs.
            (line_lookups, line_values, by_claim.max_of_columns),
            (dx_lookups, dx_values, worst_line_best_diagnosis),
            (pair_lookups, pair_values, by_claim_of_pairs.max_of_columns),
        ):
            rates, worst = lookups.rates(values, self.smoothing, self.prior_rate)
            if reduce is not None:
                rates, worst = reduce(rates), reduce(worst)
            columns.update(zip(lookups.rate_names, rates, strict=True))
            # fmax: a claim without pairs (one procedure) takes its claim and line evidence.
            evidence = worst if evidence is None else np.fmax(evidence, worst)
        # Narrows the type for mypy (the loop above runs four times).
        assert evidence is not None  # noqa: S101
        columns.update(zip(EVIDENCE_FEATURES, evidence, strict=True))
        columns.update(
            self._submission_counts(
                claims, lines, by_claim, claim_values, line_values, batch(), compiled
            )
        )
        columns.update(_person_features(claims, columns))

        def outcome(name: str) -> np.ndarray:
            return claim_values[claim_lookups.column(name)]

        lag = outcome(_PAID_LAG)
        columns[_PAID_LAG] = np.where(lag > 0, lag, -1.0)
        # How far past what the payer has paid, and past what it has denied as late: its
        # filing limit learned from its own remittances (NaN until it has shown one).
        delay = claims["days_service_to_submission"]
        columns["hist_days_past_paid_lag"] = delay - lag
        columns["hist_days_past_late_denied_lag"] = delay + outcome("late_denied_lag")
        service_day = claims["service_day"].astype(float)
        last_paid = outcome("last_paid_service")
        columns["hist_days_since_paid_with_payer"] = np.where(
            np.isnan(last_paid), -1.0, service_day - last_paid
        )
        columns["hist_days_past_known_coverage_end"] = service_day - outcome("coverage_end")
        columns["hist_member_id_corrected"] = outcome("member_corrected")
        return {name: columns[name] for name in HISTORY_FEATURES}

    def _anchor_days(self, days: np.ndarray) -> np.ndarray | None:
        """Per submission day, the day after the latest remittance known before it: where the
        recent windows end. The same in training (a claim of the training period, the outcomes
        before its day) and in serving (a new claim, the last remittance held), so a window
        covers the same span of known outcomes in both. ``None`` for a model fitted before the
        remittance days were kept (its windows end at the submission day)."""
        remit_days = getattr(self, "remit_days_", None)
        if remit_days is None:
            return None
        if len(remit_days) == 0:
            return days
        before = np.searchsorted(remit_days, days, side="left") - 1
        latest = remit_days[np.maximum(before, 0)]
        return np.where(before >= 0, np.minimum(days, latest + 1), days)

    def __getstate__(self) -> dict[str, object]:
        # The lookups are derived from the fitted indexes (rebuilt on first use): not pickled,
        # so the fitted state is the indexes alone, as models saved earlier hold it.
        state = dict(super().__getstate__())
        state.pop("_lookups", None)
        return state

    def _table_lookups(self) -> tuple[_TableLookups, ...]:
        """The lookups of the fitted indexes per level (:data:`LEVELS`: claims, lines, line
        diagnoses, pairs), built once, rebuilt after a fit."""
        if "rate_indexes_" not in self.__dict__:
            # Released while training fits its boosters, or never built: a registered model
            # brings no history of its own (it is built from a data set, see
            # training.history_store).
            raise RuntimeError(
                "this history was released or never built: refresh it (or give the model a "
                "history data set) before transforming"
            )
        fitted = (self.rate_indexes_, self.outcome_indexes_, self.submission_indexes_)
        cached = self.__dict__.get("_lookups")
        if cached is not None and all(a is b for a, b in zip(cached[0], fitted, strict=True)):
            return cached[1]
        by_level: dict[str, list[_IndexLookup]] = {level: [] for level in LEVELS}
        for key in RATE_KEYS:
            backs = (0, key.window_days) if key.window_days else (0,)
            by_level[key.level].append(
                _IndexLookup(key.name, self.rate_indexes_[key.name], key.columns, backs, rate=key)
            )
            categories = _categories_of(key.name)
            by_level[key.level].append(
                _IndexLookup(categories, self.rate_indexes_[categories], key.columns, backs)
            )
        for name, columns in self._COUNT_KEYS.items():
            by_level["claim"].append(_IndexLookup(name, self.submission_indexes_[name], columns))
        for name, columns in self._LINE_COUNT_KEYS.items():
            by_level["line"].append(_IndexLookup(name, self.submission_indexes_[name], columns))
        for name, (level, columns) in self._LAST_SERVICE_KEYS.items():
            by_level[level].append(_IndexLookup(name, self.submission_indexes_[name], columns))
        for name, (columns, _) in _OUTCOME_KEYS.items():
            by_level["claim"].append(_IndexLookup(name, self.outcome_indexes_[name], columns))
        lookups = tuple(_TableLookups(by_level[level]) for level in LEVELS)
        self._lookups = (fitted, lookups)
        return lookups

    # -- submissions (known when sent, no outcome needed) ---------------------------------------
    _COUNT_KEYS: dict[str, tuple[str, ...]] = {
        "hist_person_prior_claims": ("patient_key",),
        "hist_person_member_prior_claims": ("patient_key", "patient_id"),
        "hist_person_payer_prior_claims": ("patient_key", "payer_id"),
        "hist_patient_prior_claims": ("patient_id",),
        "hist_patient_payer_prior_claims": ("patient_id", "payer_id"),
        "hist_provider_payer_prior_claims": ("rendering_npi", "payer_id"),
        "hist_same_service_prior_submissions": ("patient_id", "service_day", "signature"),
        "hist_patient_family_claims_this_year": (
            "patient_id",
            "payer_id",
            "procedure_family_1",
            "service_year",
        ),
    }
    _LINE_COUNT_KEYS: dict[str, tuple[str, ...]] = {
        # Visit and unit limits are per year, per code or kind of service, for any line.
        "hist_procedure_claims_this_year": (
            "patient_id",
            "payer_id",
            "procedure_code",
            "service_year",
        ),
        "hist_family_claims_this_year": (
            "patient_id",
            "payer_id",
            "procedure_family",
            "service_year",
        ),
    }
    """Earlier submissions counted per line; a claim's feature is its lines' largest count."""
    _LAST_SERVICE_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
        "hist_patient_days_since_prior_claim": ("claim", ("patient_id",)),
        "hist_days_since_same_procedure": ("line", ("patient_id", "procedure_code")),
        "hist_days_since_same_family": ("line", ("patient_id", "procedure_family")),
    }

    @classmethod
    def _submission_indexes(
        cls, claims: KeyColumns, lines: KeyColumns, only: Container[str] | None = None
    ) -> dict[str, EventIndex]:
        """An index per count feature (those in ``only``, if given)."""
        indexes: dict[str, EventIndex] = {}
        for name, columns in cls._COUNT_KEYS.items():
            if only is not None and name not in only:
                continue
            indexes[name] = EventIndex(
                claims.key(columns), claims["submission_day"], np.ones(len(claims))
            )
        for name, columns in cls._LINE_COUNT_KEYS.items():
            if only is not None and name not in only:
                continue
            indexes[name] = EventIndex(
                lines.key(columns), lines["submission_day"], np.ones(len(lines))
            )
        for name, (level, columns) in cls._LAST_SERVICE_KEYS.items():
            if only is not None and name not in only:
                continue
            frame = claims if level == "claim" else lines
            indexes[name] = EventIndex(
                frame.key(columns),
                frame["submission_day"],
                frame["service_day"].astype(float),
                reducer="max",
            )
        return indexes

    @classmethod
    def _shared_keys(cls, claims: KeyColumns, lines: KeyColumns) -> set[str]:
        """Count features whose key some two claims (or lines) of the batch share.

        Only these can count a submission of this batch: a claim or line whose key is its own
        matches no event but its own, which is not earlier than itself.
        """
        by_table: dict[str, list[tuple[str, tuple[str, ...]]]] = {
            "claim": list(cls._COUNT_KEYS.items()),
            "line": list(cls._LINE_COUNT_KEYS.items()),
        }
        for name, (level, columns) in cls._LAST_SERVICE_KEYS.items():
            by_table[level].append((name, columns))
        shared: set[str] = set()
        for table, groupings in ((claims, by_table["claim"]), (lines, by_table["line"])):
            # All of a table's groupings at once: a key repeats if it equals its neighbour once
            # each grouping's keys are sorted.
            keys = np.array([table.key(columns) for _, columns in groupings])
            keys = np.sort(keys.reshape(len(groupings), len(table)), axis=1)
            repeats = (keys[:, 1:] == keys[:, :-1]).any(axis=1)
            shared.update(
                name for (name, _), repeat in zip(groupings, repeats, strict=True) if repeat
            )
        return shared

    def _batch_indexes(self, claims: KeyColumns, lines: KeyColumns) -> dict[str, EventIndex]:
        """Indexes of the batch's submissions not stored yet, by count feature (see
        :meth:`_submission_counts`); ``claims``/``lines`` are the whole batch's."""
        stored = self.known_claims_
        hashes = claims.column_hash("claim_id").view(np.int64)  # as _claim_hash
        where = np.minimum(np.searchsorted(stored, hashes), max(len(stored) - 1, 0))
        is_new = (stored[where] != hashes) if len(stored) else np.ones(len(claims), dtype=bool)
        # A claim never counts itself (only earlier days count), so one new claim adds nothing;
        # nor do new claims whose key no other claim (or line) of the batch shares.
        if is_new.sum() <= 1:
            return {}
        new_lines = np.flatnonzero(is_new[lines["claim_index"]])
        return self._submission_indexes(
            claims.take(np.flatnonzero(is_new)),
            lines.take(new_lines),
            only=self._shared_keys(claims, lines) if len(claims) <= _SMALL_BATCH else None,
        )

    def _submission_counts(
        self,
        claims: KeyColumns,
        lines: KeyColumns,
        by_claim: ClaimGroups,
        claim_values: np.ndarray,
        line_values: np.ndarray,
        batch: dict[str, EventIndex],
        compiled: bool = False,
    ) -> dict[str, np.ndarray]:
        """Earlier submissions: the stored ones plus those in this batch not stored yet.

        The stored ones are ``claim_values``/``line_values`` (see :meth:`_table_lookups`), the
        batch's are in ``batch`` (:meth:`_batch_indexes`), looked up by the compiled kernel
        if ``compiled`` (large tables).
        """

        def in_batch(index: EventIndex, table: KeyColumns, columns: tuple[str, ...]) -> np.ndarray:
            if compiled and len(table) >= _SORT_QUERIES_ABOVE:
                return index.lookup_compiled(table, columns)[:, 0]
            keys, days = table.key(columns), table["submission_day"]
            return index.lookup(keys, days, table.order(columns))[:, 0]

        claim_lookups, line_lookups, *_ = self._table_lookups()
        out: dict[str, np.ndarray] = {}
        for name, columns in self._COUNT_KEYS.items():
            count = claim_values[claim_lookups.column(name)]
            if name in batch:
                count = count + in_batch(batch[name], claims, columns)
            out[name] = count
        for name, columns in self._LINE_COUNT_KEYS.items():
            count = line_values[line_lookups.column(name)]
            if name in batch:
                count = count + in_batch(batch[name], lines, columns)
            out[name] = by_claim.max_of_columns(count[None, :])[0]
        for level, frame, values, lookups in (
            ("claim", claims, claim_values, claim_lookups),
            ("line", lines, line_values, line_lookups),
        ):
            # A level's features together (one row each): fewer calls for a few claims.
            names = [name for name, (at, _) in self._LAST_SERVICE_KEYS.items() if at == level]
            latest = values[[lookups.column(name) for name in names]]
            for row, name in enumerate(names):
                if name in batch:
                    columns = self._LAST_SERVICE_KEYS[name][1]
                    latest[row] = np.fmax(latest[row], in_batch(batch[name], frame, columns))
            since = np.where(np.isnan(latest), -1.0, frame["service_day"] - latest)
            if level == "line":
                # The shortest gap over the claim's lines; none at all -> -1.
                gaps = np.where(since < 0, np.inf, since)
                shortest = -by_claim.max(-gaps.T).T
                since = np.where(np.isinf(shortest) | np.isnan(shortest), -1.0, shortest)
            out.update(zip(names, since, strict=True))
        return out


class HistoryBatch:
    """A batch's history, ready to be computed for any range of its claims (see
    :meth:`HistoryFeatures.batch`).

    Apart from the batch's own submissions (indexed once, over the whole batch), a claim's
    history features are lookups of its own row: the features of claims ``start:stop`` are
    those rows of the whole batch's features, bit for bit. Ranges may be computed in threads
    side by side; nothing shared is written meanwhile.
    """

    def __init__(
        self,
        history: HistoryFeatures,
        claims: KeyColumns,
        lines: KeyColumns,
        diagnoses: KeyColumns,
        batch_indexes: dict[str, EventIndex] | Future[dict[str, EventIndex]],
    ) -> None:
        self.history = history
        self.claims = claims
        self.lines = lines
        self.diagnoses = diagnoses
        self._batch_indexes = batch_indexes

    @property
    def batch_indexes(self) -> dict[str, EventIndex]:
        """The indexes of the batch's own new submissions (waiting for them if being built)."""
        indexes = self._batch_indexes
        return indexes.result() if isinstance(indexes, Future) else indexes

    def features(
        self, start: int, stop: int, side_by_side: bool = True, compiled: bool = False
    ) -> dict[str, np.ndarray]:
        """History features of claims ``start:stop`` (``HISTORY_FEATURES``).

        ``side_by_side=False`` keeps the claim and line lookups of a large range in this thread
        (for a caller that already runs ranges in threads of its own). ``compiled``: large
        tables are looked up by the compiled kernel (:mod:`features.lookup_kernel`).
        """
        claims, lines, diagnoses = self.claims, self.lines, self.diagnoses
        if start != 0 or stop != len(claims):
            line_claims = lines["claim_index"]
            # Lines are in claim order (ClaimArrays' canonical order): a range's are a range,
            # and so are their diagnoses' (in line order).
            if np.any(line_claims[1:] < line_claims[:-1]):
                raise ValueError("history ranges need the lines sorted by claim")
            line_start, line_stop = line_claims.searchsorted([start, stop])
            dx_start, dx_stop = diagnoses["claim_index"].searchsorted([start, stop])
            claims = claims.row_range(start, stop, start)
            lines = lines.row_range(int(line_start), int(line_stop), start)
            diagnoses = diagnoses.row_range(int(dx_start), int(dx_stop), start)
        return self.history._features(
            claims, lines, diagnoses, lambda: self.batch_indexes, side_by_side, compiled
        )


_RATE_BLOCK = 16_384
"""Table rows smoothed at a time (a few MB of temporaries)."""


def _person_features(claims: KeyColumns, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Counts by person are unknown (NaN) without a patient key: every claim without one would
    count as one person."""
    no_key = is_none(claims["patient_key"])
    return {
        name: np.where(no_key, np.nan, columns[name])
        for name in (
            "hist_person_prior_claims",
            "hist_person_member_prior_claims",
            "hist_person_payer_prior_claims",
        )
    }


_SMALL_BATCH = 2_000
"""Batches up to this many claims check which batch indexes can count anything at all."""

_LOOKUPS_SIDE_BY_SIDE_FROM = 5_000
"""Claims from which the claim and line lookups run in two threads (below, a thread costs more
than it saves)."""


def _hashed_columns(claims: KeyColumns) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The claim and line columns :meth:`HistoryFeatures.transform` hashes (to hash at once)."""
    return _hashed_column_names(tuple(claims.columns))


@lru_cache(maxsize=8)
def _hashed_column_names(claim_columns: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    hashed = ["claim_id", "payer_id"]
    line_columns: list[str] = []
    for key in RATE_KEYS:
        # A pair's columns are its first line's, but for the other line's procedure.
        # A diagnosis row's are its line's, but for the diagnosis itself.
        own = [c for c in key.columns if c not in ("other_procedure", "dx", "dx_category")]
        (hashed if key.level == "claim" else line_columns).extend(own)
    for counted in HistoryFeatures._COUNT_KEYS.values():
        hashed.extend(counted)
    for grouping, _ in _OUTCOME_KEYS.values():
        hashed.extend(grouping)
    for level, grouping in HistoryFeatures._LAST_SERVICE_KEYS.values():
        (hashed if level == "claim" else line_columns).extend(grouping)
    for grouping in HistoryFeatures._LINE_COUNT_KEYS.values():
        line_columns.extend(grouping)
    # A line column taken from its claim is hashed with the claim's columns.
    hashed += [name for name in line_columns if name in claim_columns]
    return tuple(dict.fromkeys(hashed)), tuple(dict.fromkeys(line_columns))


def _claim_hash(claim_ids: np.ndarray) -> np.ndarray:
    return column_hash_values(claim_ids, distinct=True).view(np.int64)


def _outcomes_by_claim(
    claims: KeyColumns, known: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each claim's outcome: remittance day (``NO_DAY`` if none yet), denied (0/1), category."""
    row = pd.Index(known["claim_id"].astype(str)).get_indexer(claims["claim_id"])
    has = row >= 0
    remit = pd.to_datetime(known["remit_date"]).to_numpy().astype("datetime64[D]").astype(np.int64)
    remit_day = np.full(len(claims), NO_DAY, dtype=np.int64)
    remit_day[has] = remit[row[has]]
    denied = np.zeros(len(claims))
    denied[has] = known["denied"].fillna(False).to_numpy(dtype=float)[row[has]]
    category = np.full(len(claims), "", dtype=object)
    category[has] = known["category"].fillna("").astype(str).to_numpy(dtype=object)[row[has]]
    return remit_day, denied, category


_OUTCOME_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    _PAID_LAG: (("payer_id",), "max"),
    "late_denied_lag": (("payer_id",), "max"),
    "last_paid_service": (("patient_id", "payer_id"), "max"),
    "coverage_end": (("patient_id", "payer_id"), "max"),
    "member_corrected": (("patient_id",), "sum"),
}
"""Indexes of what remittances said beyond denied or paid, by grouping and reducer."""


def _outcome_indexes(
    claims: KeyColumns,
    known: pd.DataFrame,
    remit_day: np.ndarray,
    denied: np.ndarray,
    category: np.ndarray,
) -> dict[str, EventIndex]:
    """What the practice learned from each remittance, as of the day it arrived: the longest
    delay a payer still paid and the shortest it denied as late (its filing limit lies
    between), the patient's last paid service with the payer, the coverage end date a
    remittance reported (DTM*036), and member IDs the payer corrected (NM1*74)."""
    row = pd.Index(known["claim_id"].astype(str)).get_indexer(claims["claim_id"])
    has = row >= 0

    def by_claim(column: str) -> np.ndarray:
        values = np.full(len(row), None, dtype=object)
        if column in known.columns:
            given = known[column].to_numpy(dtype=object).copy()
            given[pd.isna(given)] = None  # NaN, NaT and pd.NA alike
            values[has] = given[row[has]]
        return values

    paid = (remit_day != NO_DAY) & (denied == 0)
    service_day = claims["service_day"].astype(float)
    coverage_end = day_column(pd.Series(by_claim("coverage_expiration_date"))).astype(float)
    coverage_end[coverage_end == float(NO_DAY)] = np.nan
    corrected = by_claim("corrected_member_id")
    member = claims["patient_id"]
    was_corrected = ~is_none(corrected) & (corrected != member)
    lag = claims["days_service_to_submission"]
    late = (denied > 0) & (category == "timely_filing") & ~np.isnan(lag)
    events = {
        _PAID_LAG: (paid, lag),
        # The shortest delay denied as late, as a maximum of its negative.
        "late_denied_lag": (late, -lag),
        "last_paid_service": (paid, service_day),
        "coverage_end": (~np.isnan(coverage_end), coverage_end),
        "member_corrected": (was_corrected, np.ones(len(row))),
    }
    indexes = {}
    for name, (columns, reducer) in _OUTCOME_KEYS.items():
        rows, values = events[name]
        indexes[name] = EventIndex(
            claims.key(columns)[rows], remit_day[rows], values[rows], reducer=reducer
        )
    return indexes
