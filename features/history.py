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

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from features.claim_features import canonical_lines, procedure_family
from features.claim_tables import ClaimTables

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


def _key_hash(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """One int64 per row for a multi-column key (the same values give the same number).

    Each column is hashed as text (missing as empty) and the hashes are mixed column by
    column; cheaper than hashing a frame, which matters when one claim is scored at a time.
    """
    combined = np.zeros(len(frame), dtype=np.uint64)
    for column in columns:
        text = frame[column].astype("str").fillna("").to_numpy(dtype=object)
        with np.errstate(over="ignore"):
            combined = combined * np.uint64(1_000_003) ^ pd.util.hash_array(text)
    return combined.view(np.int64)


def _ns(values: pd.Series | np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind == "M":
        return array.astype("datetime64[ns]")
    return pd.to_datetime(pd.Series(values)).astype("datetime64[ns]").to_numpy()


def _code_hash(codes: pd.Series) -> np.ndarray:
    return pd.util.hash_array(codes.astype("str").fillna("").to_numpy(dtype=object))


def procedure_signatures(lines: pd.DataFrame) -> pd.DataFrame:
    """Order-free signatures per claim: its procedure codes, and codes with their modifiers.

    A sum of per-code hashes (mod 2**64) is the same for any order of the lines, and equal for
    resubmissions of the same service, without building strings per claim.
    """
    mods = lines[["modifier_1", "modifier_2", "modifier_3", "modifier_4"]].astype("str")
    with_mods = (
        lines["procedure_code"]
        .astype("str")
        .str.cat([mods[c].fillna("") for c in mods.columns], sep=":")
    )
    frame = pd.DataFrame(
        {
            "claim_id": lines["claim_id"].to_numpy(),
            "signature": _code_hash(lines["procedure_code"]),
            "modifier_signature": _code_hash(with_mods),
        }
    )
    summed = frame.groupby("claim_id", sort=False)[["signature", "modifier_signature"]].sum()
    return summed.astype("uint64").astype(str)


def _claim_keys(tables: ClaimTables, claim_features: pd.DataFrame) -> pd.DataFrame:
    """Per-claim keys and flags used by the history groupings."""
    claims = tables.claims
    keys = pd.DataFrame(
        {
            "claim_id": claims["claim_id"].to_numpy(),
            "payer_id": claims["payer_id"].to_numpy(),
            "patient_id": claims["patient_id"].to_numpy(),
            "rendering_npi": claims["rendering_npi"].fillna(claims["billing_npi"]).to_numpy(),
            "provider_taxonomy": claims["provider_taxonomy"].to_numpy(),
            "place_of_service": claims["place_of_service"].to_numpy(),
            "submission_date": _ns(claims["submission_date"]),
            "service_date_from": _ns(claims["service_date_from"]),
        }
    )
    by_id = claim_features.set_index("claim_id")
    for flag in (
        "prior_auth_present",
        "referral_present",
        "referring_npi_present",
        "taxonomy_present",
        "days_service_to_submission",
        "procedure_family_1",
    ):
        keys[flag] = keys["claim_id"].map(by_id[flag]).to_numpy()
    keys["principal_dx_category"] = keys["claim_id"].map(by_id["principal_dx_category"])
    signatures = procedure_signatures(tables.lines)
    keys["signature"] = keys["claim_id"].map(signatures["signature"]).fillna("").to_numpy()
    keys["modifier_signature"] = (
        keys["claim_id"].map(signatures["modifier_signature"]).fillna("").to_numpy()
    )
    keys["service_year"] = pd.DatetimeIndex(keys["service_date_from"]).year.to_numpy()
    return keys


def _line_keys(tables: ClaimTables, claim_keys: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct (claim, procedure) with the claim's keys and the line's diagnosis.

    The line's diagnosis is the first one its pointer names (the principal when it has none):
    a payer judges medical necessity by the diagnosis the line is billed for.
    """
    lines = canonical_lines(tables.lines)
    lines = lines.drop_duplicates(["claim_id", "procedure_code"])
    first_pointer = pd.to_numeric(
        lines["diagnosis_pointers"].astype("str").str.extract(r"(\d+)", expand=False),
        errors="coerce",
    )
    dx = tables.diagnoses.set_index(["claim_id", "position"])["code"]
    pointed = pd.MultiIndex.from_arrays(
        [lines["claim_id"].to_numpy(), first_pointer.fillna(-1).astype(int).to_numpy()]
    )
    line_dx = pd.Series(dx.reindex(pointed).to_numpy(), index=lines.index)
    lines = lines[["claim_id", "procedure_code", "slot", "line_number"]].assign(
        line_dx_code=line_dx.to_numpy()
    )
    lines = lines.merge(claim_keys, on="claim_id", how="inner")
    lines["line_dx_category"] = (
        lines["line_dx_code"].astype("str").str.slice(0, 3).fillna(lines["principal_dx_category"])
    )
    lines["procedure_family"] = procedure_family(lines["procedure_code"])
    return lines


def _days(values: pd.Series | np.ndarray) -> np.ndarray:
    """Calendar day numbers (int64; NaT becomes the minimum int64)."""
    return _ns(values).astype("datetime64[D]").astype(np.int64)


_NO_DAY = np.iinfo(np.int64).min


class EventIndex:
    """Events of one grouping, sorted by (key, day), with running sums or maxima per key.

    Built once (at fit); each lookup is a binary search, so scoring a claim costs the same
    however long the stored history is. ``lookup`` returns, for each query, the running value
    over events of the same key on days strictly before the query's day.
    """

    def __init__(
        self, keys: np.ndarray, days: np.ndarray, values: np.ndarray, reducer: str = "sum"
    ) -> None:
        keep = days != _NO_DAY
        keys, days, values = keys[keep], days[keep], np.asarray(values, dtype=float)[keep]
        self.reducer = reducer
        self.keys = np.unique(keys)
        key_id = np.searchsorted(self.keys, keys)
        composite = (key_id.astype(np.int64) << 32) | (days - _DAY_ORIGIN)
        order = np.argsort(composite, kind="mergesort")
        self.composite = composite[order]
        ordered = values[order]
        sorted_ids = key_id[order]
        self.start = np.searchsorted(sorted_ids, np.arange(len(self.keys)), side="left")
        frame = pd.DataFrame(ordered)
        grouped = frame.groupby(sorted_ids, sort=False)
        running = grouped.cumsum() if reducer == "sum" else grouped.cummax()
        self.running = running.to_numpy(dtype=np.float64)
        self.width = values.shape[1] if values.ndim == 2 else 1

    def lookup(self, keys: np.ndarray, days: np.ndarray) -> np.ndarray:
        fill = 0.0 if self.reducer == "sum" else np.nan
        out = np.full((len(keys), self.width), fill)
        if len(self.keys) == 0 or len(keys) == 0:
            return out
        position = np.searchsorted(self.keys, keys)
        position = np.minimum(position, len(self.keys) - 1)
        known = (self.keys[position] == keys) & (days != _NO_DAY)
        composite = (position.astype(np.int64) << 32) | (days - _DAY_ORIGIN)
        last = np.searchsorted(self.composite, composite, side="left") - 1
        valid = known & (last >= self.start[position]) & (last >= 0)
        out[valid] = self.running[last[valid]]
        return out


_DAY_ORIGIN = np.int64(-(2**31))
"""Shift so day numbers (since 1970, possibly negative) fit the low 32 bits as non-negatives."""


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
        self, tables: ClaimTables, outcomes: pd.DataFrame, claim_features: pd.DataFrame
    ) -> HistoryFeatures:
        """Index the outcome and submission events known in ``tables``/``outcomes``."""
        missing = [c for c in OUTCOME_COLUMNS if c not in outcomes.columns]
        if missing:
            raise ValueError(f"outcomes frame lacks column(s): {', '.join(missing)}")
        known = outcomes[list(OUTCOME_COLUMNS)].drop_duplicates("claim_id")
        claim_keys = _claim_keys(tables, claim_features)
        line_keys = _line_keys(tables, claim_keys)
        claim_events = _with_outcomes(claim_keys, known)
        line_events = _with_outcomes(line_keys, known)
        self.rate_indexes_: dict[str, EventIndex] = {}
        for key in RATE_KEYS:
            events = claim_events if key.level == "claim" else line_events
            events = events[events["remit_date"].notna()]
            values = [np.ones(len(events)), events["denied"].to_numpy(dtype=float)]
            values += [(events["category"] == c).to_numpy(dtype=float) for c in key.categories]
            self.rate_indexes_[key.name] = EventIndex(
                _key_hash(events, key.columns),
                _days(events["remit_date"]),
                np.column_stack(values),
            )
        paid = claim_events[claim_events["remit_date"].notna() & (claim_events["denied"] == 0)]
        self.paid_lag_index_ = EventIndex(
            _key_hash(paid, ("payer_id",)),
            _days(paid["remit_date"]),
            paid[["days_service_to_submission"]].to_numpy(dtype=float),
            reducer="max",
        )
        self.submission_indexes_ = self._submission_indexes(claim_keys, line_keys)
        self.known_claims_ = np.unique(_claim_hash(claim_keys["claim_id"]))
        self.cutoff_ = pd.Timestamp(known["remit_date"].max()) if len(known) else pd.NaT
        return self

    def refresh(
        self, tables: ClaimTables, outcomes: pd.DataFrame, claim_features: pd.DataFrame
    ) -> HistoryFeatures:
        """Replace the stored events with newer data (same model, history up to date)."""
        return self.fit(tables, outcomes, claim_features)

    def transform(self, tables: ClaimTables, claim_features: pd.DataFrame) -> pd.DataFrame:
        """History features for each claim, as of its submission date."""
        claim_keys = _claim_keys(tables, claim_features)
        line_keys = _line_keys(tables, claim_keys)
        columns: dict[str, np.ndarray] = {}
        for key in RATE_KEYS:
            queries = claim_keys if key.level == "claim" else line_keys
            rates = self._rates(key, queries)
            if key.level == "line":
                rates["claim_id"] = line_keys["claim_id"].to_numpy()
                worst = rates.groupby("claim_id", sort=False).max()
                rates = worst.reindex(claim_keys["claim_id"].to_numpy())
            for column in rates.columns:
                columns[column] = rates[column].to_numpy()
        columns.update(self._submission_counts(claim_keys, line_keys))
        lag = self.paid_lag_index_.lookup(
            _key_hash(claim_keys, ("payer_id",)), _days(claim_keys["submission_date"])
        )[:, 0]
        columns["hist_payer_max_paid_lag"] = np.where(lag > 0, lag, -1.0)
        out = pd.DataFrame(columns)
        return out[list(HISTORY_FEATURES)].astype(float)

    def _rates(self, key: RateKey, queries: pd.DataFrame) -> pd.DataFrame:
        index = self.rate_indexes_[key.name]
        query_keys = _key_hash(queries, key.columns)
        query_days = _days(queries["submission_date"])
        names = ["n", "denied", *[f"cat_{c}" for c in key.categories]]
        sums = pd.DataFrame(index.lookup(query_keys, query_days), columns=names)
        result = self._smoothed(key, sums, prefix=f"hist_{key.name}")
        if key.window_days:
            earlier = index.lookup(query_keys, query_days - key.window_days)
            recent = sums - pd.DataFrame(earlier, columns=names)
            result = pd.concat(
                [result, self._smoothed(key, recent, prefix=f"hist_{key.name}_recent")], axis=1
            )
        return result

    def _smoothed(self, key: RateKey, sums: pd.DataFrame, prefix: str) -> pd.DataFrame:
        m, prior = self.smoothing, self.prior_rate
        n = sums["n"].to_numpy()
        result = {
            f"{prefix}_n": n,
            f"{prefix}_rate": (sums["denied"].to_numpy() + m * prior) / (n + m),
        }
        for category in key.categories:
            result[f"{prefix}_rate_{category}"] = (
                sums[f"cat_{category}"].to_numpy() + m * prior / 10.0
            ) / (n + m)
        return pd.DataFrame(result)

    # -- submissions (known when sent, no outcome needed) ---------------------------------------
    _COUNT_KEYS: dict[str, tuple[str, ...]] = {
        "hist_patient_prior_claims": ("patient_id",),
        "hist_patient_payer_prior_claims": ("patient_id", "payer_id"),
        "hist_provider_payer_prior_claims": ("rendering_npi", "payer_id"),
        "hist_same_service_prior_submissions": ("patient_id", "service_date_from", "signature"),
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
        cls, claim_keys: pd.DataFrame, line_keys: pd.DataFrame
    ) -> dict[str, EventIndex]:
        indexes: dict[str, EventIndex] = {}
        sent = _days(claim_keys["submission_date"])
        for name, columns in cls._COUNT_KEYS.items():
            indexes[name] = EventIndex(
                _key_hash(claim_keys, columns), sent, np.ones((len(claim_keys), 1))
            )
        for name, (level, columns) in cls._LAST_SERVICE_KEYS.items():
            frame = claim_keys if level == "claim" else line_keys
            indexes[name] = EventIndex(
                _key_hash(frame, columns),
                _days(frame["submission_date"]),
                _days(frame["service_date_from"]).astype(float)[:, None],
                reducer="max",
            )
        return indexes

    def _submission_counts(
        self, claim_keys: pd.DataFrame, line_keys: pd.DataFrame
    ) -> dict[str, np.ndarray]:
        """Earlier submissions: the stored ones plus those in this batch not stored yet."""
        is_new = ~np.isin(_claim_hash(claim_keys["claim_id"]), self.known_claims_)
        new_claims = claim_keys[is_new]
        new_lines = line_keys[line_keys["claim_id"].isin(set(new_claims["claim_id"]))]
        batch = self._submission_indexes(new_claims, new_lines) if is_new.any() else {}
        out: dict[str, np.ndarray] = {}
        claim_days = _days(claim_keys["submission_date"])
        for name, columns in self._COUNT_KEYS.items():
            keys = _key_hash(claim_keys, columns)
            count = self.submission_indexes_[name].lookup(keys, claim_days)[:, 0]
            if name in batch:
                count = count + batch[name].lookup(keys, claim_days)[:, 0]
            out[name] = count
        for name, (level, columns) in self._LAST_SERVICE_KEYS.items():
            frame = claim_keys if level == "claim" else line_keys
            keys, days = _key_hash(frame, columns), _days(frame["submission_date"])
            latest = self.submission_indexes_[name].lookup(keys, days)[:, 0]
            if name in batch:
                latest = np.fmax(latest, batch[name].lookup(keys, days)[:, 0])
            service_day = _days(frame["service_date_from"]).astype(float)
            since = np.where(np.isnan(latest), -1.0, service_day - latest)
            if level == "line":
                # The shortest gap over the claim's lines; none at all -> -1.
                gaps = pd.Series(np.where(since < 0, np.inf, since))
                shortest = gaps.groupby(frame["claim_id"].to_numpy(), sort=False).min()
                values = shortest.reindex(claim_keys["claim_id"].to_numpy()).to_numpy()
                since = np.where(np.isinf(values) | np.isnan(values), -1.0, values)
            out[name] = since
        return out


def _claim_hash(claim_ids: pd.Series) -> np.ndarray:
    return pd.util.hash_array(claim_ids.astype("str").to_numpy(dtype=object)).view(np.int64)


def _with_outcomes(keys: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    events = keys.merge(outcomes, on="claim_id", how="left")
    events["denied"] = events["denied"].fillna(False).astype(float)
    events["category"] = events["category"].fillna("").astype(str)
    events["remit_date"] = _ns(events["remit_date"])
    return events
