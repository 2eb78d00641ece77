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
    factor_codes,
    factorize_text,
    group_starts,
    is_none,
    map_text,
)
from features.claim_features import ClaimGroups

OUTCOME_COLUMNS = ("claim_id", "remit_date", "denied", "category")
"""Columns an outcomes frame must have: one row per claim's first adjudication."""


@dataclass(frozen=True)
class RateKey:
    """A grouping for a smoothed, point-in-time denial rate.

    ``level`` is ``claim`` (one event per claim) or ``line`` (one event per distinct procedure on
    the claim; the claim's feature is the worst of its lines). ``categories`` adds one rate per
    denial category (e.g. how often this payer denied this procedure for authorization).
    ``window_days`` adds the same rates over only the most recent days, so a payer's new rule
    shows up in weeks rather than being averaged away by years of history.
    """

    name: str
    columns: tuple[str, ...]
    level: str = "claim"
    categories: tuple[str, ...] = ()
    label: str = ""
    window_days: int | None = None


RATE_KEYS: tuple[RateKey, ...] = (
    RateKey(
        "payer",
        ("payer_id",),
        categories=("eligibility", "timely_filing", "other"),
        label="payer's recent denial rate",
        window_days=90,
    ),
    RateKey(
        "payer_procedure",
        ("payer_id", "procedure_code"),
        level="line",
        categories=("authorization", "non_covered", "documentation", "coding"),
        label="payer's denial rate for this procedure",
        window_days=90,
    ),
    RateKey(
        "payer_procedure_auth",
        ("payer_id", "procedure_code", "prior_auth_present"),
        level="line",
        categories=("authorization",),
        label="payer's denial rate for this procedure with/without an authorization",
        window_days=60,
    ),
    RateKey(
        "payer_family_auth",
        ("payer_id", "procedure_family", "prior_auth_present"),
        level="line",
        categories=("authorization",),
        label="payer's denial rate for this procedure family with/without an authorization",
        window_days=60,
    ),
    RateKey(
        "procedure_dx",
        ("procedure_code", "line_dx_category"),
        level="line",
        categories=("medical_necessity",),
        label="denial rate of this procedure with the diagnosis its line points to",
    ),
    RateKey(
        "payer_family_dx",
        ("payer_id", "procedure_family", "line_dx_category"),
        level="line",
        categories=("medical_necessity",),
        label="payer's denial rate for this procedure family with this diagnosis",
        window_days=90,
    ),
    RateKey(
        "procedure_referring",
        ("procedure_code", "referring_npi_present"),
        level="line",
        categories=("missing_information",),
        label="denial rate of this procedure with/without a referring provider",
    ),
    RateKey(
        "procedure_place",
        ("procedure_code", "place_of_service"),
        level="line",
        categories=("coding",),
        label="denial rate of this procedure in this place of service",
    ),
    RateKey(
        "procedure_set",
        ("signature", "modifier_signature"),
        categories=("coding", "documentation"),
        label="denial rate of this exact combination of procedures and modifiers",
    ),
    RateKey(
        "payer_specialty_referral",
        ("payer_id", "provider_taxonomy", "referral_present"),
        categories=("authorization", "missing_information"),
        label="payer's denial rate for this specialty with/without a referral",
    ),
    RateKey(
        "payer_taxonomy_present",
        ("payer_id", "taxonomy_present"),
        categories=("missing_information",),
        label="payer's denial rate with/without a provider taxonomy",
    ),
    RateKey(
        "provider",
        ("rendering_npi",),
        categories=("credentialing", "missing_information"),
        label="rendering provider's recent denial rate",
    ),
    RateKey(
        "provider_payer",
        ("rendering_npi", "payer_id"),
        categories=("credentialing",),
        label="rendering provider's denial rate with this payer",
        window_days=60,
    ),
    RateKey(
        "patient_payer",
        ("patient_id", "payer_id"),
        categories=("eligibility",),
        label="patient's earlier denials with this payer",
    ),
)


def _rate_feature_names(key: RateKey) -> list[str]:
    names = [f"hist_{key.name}_n", f"hist_{key.name}_rate"]
    names += [f"hist_{key.name}_rate_{c}" for c in key.categories]
    if key.window_days:
        names += [f"hist_{key.name}_recent_n", f"hist_{key.name}_recent_rate"]
        names += [f"hist_{key.name}_recent_rate_{c}" for c in key.categories]
    return names


HISTORY_FEATURE_LABELS: dict[str, str] = {
    name: key.label for key in RATE_KEYS for name in _rate_feature_names(key)
}
"""Feature name -> what it means to a biller."""

COUNT_FEATURES: dict[str, str] = {
    "hist_patient_prior_claims": "patient's earlier claims with any payer",
    "hist_patient_payer_prior_claims": "patient's earlier claims with this payer",
    "hist_patient_days_since_prior_claim": "days since the patient's previous claim",
    "hist_provider_payer_prior_claims": "rendering provider's earlier claims with this payer",
    "hist_same_service_prior_submissions": "earlier submissions for the same patient, date "
    "and procedures (possible duplicate)",
    "hist_patient_family_claims_this_year": "patient's earlier claims this year with this payer "
    "for the same kind of service (benefit limits)",
    "hist_days_since_same_procedure": "days since the patient last had one of these procedures",
    "hist_days_since_same_family": "days since the patient last had a service of the same kind",
    "hist_payer_max_paid_lag": "longest service-to-submission delay this payer has still paid",
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
        mixed = self.column_hash(names[0])
        with np.errstate(over="ignore"):
            for name in names[1:]:
                mixed = mixed * np.uint64(1_000_003) ^ self.column_hash(name)
        # The first column alone is its own key (0 * 1_000_003 ^ h == h).
        combined = self._keys[names] = mixed.view(np.int64)
        return combined

    def mix_keys(self, groupings: tuple[tuple[str, ...], ...]) -> None:
        """Build these groupings' keys now, in a few numpy calls for all (same keys as alone).

        All groupings are mixed together column by column, as :meth:`key` mixes one: for a
        few claims that saves most of the calls of building each key on its own.
        """
        missing = tuple(names for names in groupings if names not in self._keys)
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
    ):
        columns[name] = claim_features[name]
    return KeyColumns(columns, factors=arrays.factors)


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
    _, first = np.unique(pair, return_index=True)
    rows = np.sort(first)
    claim_index = lines["claim_index"][rows]
    procedure = factors.take(lines["procedure_code"], rows)
    pointers = factors.take(lines["diagnosis_pointers"], rows)
    pointer = map_text(pointers, _first_pointer, -1, np.int64, factors)
    dx_code = _pointed_diagnosis(arrays, claim_index, pointer)
    dx_category = map_text(dx_code, lambda code: code[:3], None, object)
    columns = {
        "claim_index": claim_index,
        "procedure_code": procedure,
        "procedure_family": map_text(procedure, _family, None, object, factors),
        "line_dx_category": np.where(
            dx_category == None,  # noqa: E711
            claims["principal_dx_category"][claim_index],
            dx_category,
        ),
    }
    # The claim's own columns (payer, patient, days...) are its rows, taken when first used.
    sources = {name: (claims, claim_index) for name in claims.columns if name not in columns}
    return KeyColumns(columns, sources, factors)


_DIGITS = re.compile(r"\d+")


def _first_pointer(pointers: str) -> int:
    found = _DIGITS.search(pointers)
    return int(found.group()) if found else -1


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
        self.composite = composite[order]
        ordered = values[order]
        self.start = group_starts(key_id[order])
        sizes = np.diff(np.append(self.start, len(order)))
        self.running = _running(ordered, self.start, sizes, reducer)

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
        """Which columns the rates take, where their counts and windows are, their priors."""
        taken: list[int] = []
        self.rate_names: list[str] = []
        recent: list[int] = []  # (positions in ``taken``) a window's sums, as of day - window
        recent_now: list[int] = []  # the same index's sums as of the day itself
        rate: list[int] = []  # a smoothed rate (the others are counts)
        rate_count: list[int] = []  # the count each rate is smoothed with
        self.rate_is_overall: list[bool] = []  # the overall rate (else a category's)
        for lookup in self.lookups:
            if lookup.rate is None:
                continue
            self.rate_names += _rate_feature_names(lookup.rate)
            now = len(taken)
            for back in lookup.days_back:
                first = self.first_column[lookup.name, back]
                count = len(taken)
                taken += range(first, first + lookup.index.width)
                if back:
                    recent += range(count, len(taken))
                    recent_now += range(now, now + lookup.index.width)
                rate += range(count + 1, len(taken))
                rate_count += [count] * (lookup.index.width - 1)
                self.rate_is_overall += [True] + [False] * (lookup.index.width - 2)
        # Rate indexes come first, so their values are the leading rows (rates works in place).
        if taken != list(range(len(taken))):
            raise ValueError("rate indexes must be looked up before the others")
        self.n_rate_rows = len(taken)
        self._priors: dict[tuple[float, float], np.ndarray] = {}
        self.recent = np.array(recent, dtype=np.int64)
        self.recent_now = np.array(recent_now, dtype=np.int64)
        self.rate = np.array(rate, dtype=np.int64)
        self.rate_count = np.array(rate_count, dtype=np.int64)

    def column(self, name: str, back: int = 0) -> int:
        """The (first) column of an index's values as of ``back`` days before submission."""
        return self.first_column[name, back]

    def values(self, table: KeyColumns, compiled: bool = False) -> np.ndarray:
        """Each index's running sums (or maxima) for each row, as :meth:`EventIndex.lookup`.

        One row per column of the indexes' values (see :meth:`column`), one column per table
        row (so each feature is a contiguous row, however large the table); 0 (sums) or NaN
        (maxima) where no event is earlier. ``compiled``: a large table is looked up by
        :func:`features.lookup_kernel.look_up` (the same numbers).
        """
        n = len(table)
        table.mix_keys(self.groupings)
        days = table["submission_day"]
        as_of = np.array([days - back for back in self.backs]).reshape(len(self.backs), n)
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

    def priors(self, smoothing: float, prior_rate: float) -> np.ndarray:
        """The pseudo-counts of denials added to each rate's sum (one row per rate)."""
        priors = self._priors.get((smoothing, prior_rate))
        if priors is None:
            overall = np.array(self.rate_is_overall, dtype=bool)
            prior = np.where(overall, prior_rate, prior_rate / 10.0)
            priors = self._priors[smoothing, prior_rate] = smoothing * prior[:, None]
        return priors

    def rates(self, values: np.ndarray, smoothing: float, prior_rate: float) -> np.ndarray:
        """Counts and smoothed rates of the rate indexes, rows as ``rate_names``.

        Computed in place of their sums in ``values`` (the leading rows): a window's numbers
        are those as of the day less those as of ``window`` days earlier.
        """
        sums = values[: self.n_rate_rows]
        priors = self.priors(smoothing, prior_rate)
        # A block of rows at a time: the temporaries stay small however large the table.
        for start in range(0, sums.shape[1], _RATE_BLOCK):
            block = sums[:, start : start + _RATE_BLOCK]
            block[self.recent] = block[self.recent_now] - block[self.recent]
            denied = block[self.rate]
            denied += priors
            count = block[self.rate_count]
            count += smoothing
            block[self.rate] = np.divide(denied, count, out=denied)
        return sums


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
        """Index the outcome and submission events known in ``arrays``/``outcomes``."""
        missing = [c for c in OUTCOME_COLUMNS if c not in outcomes.columns]
        if missing:
            raise ValueError(f"outcomes frame lacks column(s): {', '.join(missing)}")
        known = outcomes[list(OUTCOME_COLUMNS)].drop_duplicates("claim_id")
        claims = claim_keys(arrays, claim_features)
        lines = line_keys(arrays, claims)
        remit_day, denied, category = _outcomes_by_claim(claims, known)
        self.rate_indexes_: dict[str, EventIndex] = {}
        for key in RATE_KEYS:
            events = claims if key.level == "claim" else lines
            at = events["claim_index"]
            values = [np.ones(len(at)), denied[at]]
            values += [(category[at] == c).astype(float) for c in key.categories]
            self.rate_indexes_[key.name] = EventIndex(
                events.key(key.columns), remit_day[at], np.column_stack(values)
            )
        paid = (remit_day != NO_DAY) & (denied == 0)
        self.paid_lag_index_ = EventIndex(
            claims.key(("payer_id",))[paid],
            remit_day[paid],
            claims["days_service_to_submission"][paid],
            reducer="max",
        )
        self.submission_indexes_ = self._submission_indexes(claims, lines)
        self.known_claims_ = np.unique(_claim_hash(claims["claim_id"]))
        self.cutoff_ = pd.Timestamp(known["remit_date"].max()) if len(known) else pd.NaT
        return self

    def refresh(
        self,
        arrays: ClaimArrays,
        claim_features: dict[str, np.ndarray],
        outcomes: pd.DataFrame,
    ) -> HistoryFeatures:
        """Replace the stored events with newer data (same model, history up to date)."""
        return self.fit(arrays, claim_features, outcomes)

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
        claim_columns, line_columns = _hashed_columns(claims)
        claims.hash_columns(claim_columns)
        lines.hash_columns(line_columns)
        # Built now, not on first use in a thread that scores a range.
        for lookups in self._table_lookups():
            lookups.priors(self.smoothing, self.prior_rate)
        if executor is None:
            return HistoryBatch(self, claims, lines, self._batch_indexes(claims, lines))
        # What the indexes read of the lines' claim columns, taken now: from here on, nothing
        # writes to these two tables while threads read them.
        for name in ("submission_day", "service_day"):
            lines[name]
        return HistoryBatch(
            self, claims, lines, executor.submit(self._batch_indexes, claims, lines)
        )

    def _features(
        self,
        claims: KeyColumns,
        lines: KeyColumns,
        batch: Callable[[], dict[str, EventIndex]],
        side_by_side: bool,
        compiled: bool = False,
    ) -> dict[str, np.ndarray]:
        """:meth:`transform` of the claims (and their lines) in these tables; ``batch`` gives
        :meth:`_batch_indexes` of the whole batch they belong to (once they are needed).
        ``compiled`` is passed to :meth:`_TableLookups.values`."""
        by_claim = ClaimGroups(lines["claim_index"], len(claims))
        claim_lookups, line_lookups = self._table_lookups()
        if side_by_side and len(claims) >= _LOOKUPS_SIDE_BY_SIDE_FROM:
            # Most of a large batch's history time is numpy sorting, searching and taking,
            # which release the GIL: the line lookups run on a second core meanwhile.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="line-lookups") as pool:
                pending_lines = pool.submit(line_lookups.values, lines, compiled)
                claim_values = claim_lookups.values(claims, compiled)
                line_values = pending_lines.result()
        else:
            claim_values = claim_lookups.values(claims, compiled)
            line_values = line_lookups.values(lines, compiled)
        columns: dict[str, np.ndarray] = {}
        for lookups, values, reduce in (
            (claim_lookups, claim_values, None),
            # A line rate's claim feature is the worst of the claim's procedures.
            (line_lookups, line_values, by_claim.max),
        ):
            rates = lookups.rates(values, self.smoothing, self.prior_rate)  # rows: features
            if reduce is not None:
                rates = reduce(rates.T).T
            columns.update(zip(lookups.rate_names, rates, strict=True))
        columns.update(
            self._submission_counts(
                claims, lines, by_claim, claim_values, line_values, batch(), compiled
            )
        )
        lag = claim_values[claim_lookups.column(_PAID_LAG)]
        columns[_PAID_LAG] = np.where(lag > 0, lag, -1.0)
        return {name: columns[name] for name in HISTORY_FEATURES}

    def __getstate__(self) -> dict[str, object]:
        # The lookups are derived from the fitted indexes (rebuilt on first use): not pickled,
        # so the fitted state is the indexes alone, as models saved earlier hold it.
        state = dict(super().__getstate__())
        state.pop("_lookups", None)
        return state

    def _table_lookups(self) -> tuple[_TableLookups, _TableLookups]:
        """The claim and line lookups of the fitted indexes (built once, rebuilt after a fit)."""
        fitted = (self.rate_indexes_, self.paid_lag_index_, self.submission_indexes_)
        cached = self.__dict__.get("_lookups")
        if cached is not None and all(a is b for a, b in zip(cached[0], fitted, strict=True)):
            return cached[1], cached[2]
        by_level: dict[str, list[_IndexLookup]] = {"claim": [], "line": []}
        for key in RATE_KEYS:
            by_level[key.level].append(
                _IndexLookup(
                    key.name,
                    self.rate_indexes_[key.name],
                    key.columns,
                    (0, key.window_days) if key.window_days else (0,),
                    rate=key,
                )
            )
        for name, columns in self._COUNT_KEYS.items():
            by_level["claim"].append(_IndexLookup(name, self.submission_indexes_[name], columns))
        for name, (level, columns) in self._LAST_SERVICE_KEYS.items():
            by_level[level].append(_IndexLookup(name, self.submission_indexes_[name], columns))
        by_level["claim"].append(_IndexLookup(_PAID_LAG, self.paid_lag_index_, ("payer_id",)))
        claim_lookups = _TableLookups(by_level["claim"])
        line_lookups = _TableLookups(by_level["line"])
        self._lookups = (fitted, claim_lookups, line_lookups)
        return claim_lookups, line_lookups

    # -- submissions (known when sent, no outcome needed) ---------------------------------------
    _COUNT_KEYS: dict[str, tuple[str, ...]] = {
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
            "line": [],
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

        claim_lookups, line_lookups = self._table_lookups()
        out: dict[str, np.ndarray] = {}
        for name, columns in self._COUNT_KEYS.items():
            count = claim_values[claim_lookups.column(name)]
            if name in batch:
                count = count + in_batch(batch[name], claims, columns)
            out[name] = count
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
        batch_indexes: dict[str, EventIndex] | Future[dict[str, EventIndex]],
    ) -> None:
        self.history = history
        self.claims = claims
        self.lines = lines
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
        claims, lines = self.claims, self.lines
        if start != 0 or stop != len(claims):
            line_claims = lines["claim_index"]
            # Lines are in claim order (ClaimArrays' canonical order): a range's are a range.
            if np.any(line_claims[1:] < line_claims[:-1]):
                raise ValueError("history ranges need the lines sorted by claim")
            line_start, line_stop = line_claims.searchsorted([start, stop])
            claims = claims.row_range(start, stop, start)
            lines = lines.row_range(int(line_start), int(line_stop), start)
        return self.history._features(
            claims, lines, lambda: self.batch_indexes, side_by_side, compiled
        )


_RATE_BLOCK = 16_384
"""Table rows smoothed at a time (a few MB of temporaries)."""

_PAID_LAG = "hist_payer_max_paid_lag"

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
        (hashed if key.level == "claim" else line_columns).extend(key.columns)
    for columns in HistoryFeatures._COUNT_KEYS.values():
        hashed.extend(columns)
    for level, columns in HistoryFeatures._LAST_SERVICE_KEYS.values():
        (hashed if level == "claim" else line_columns).extend(columns)
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
