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
    """One int64 per row for a multi-column key (consistent across frames)."""
    parts = frame[list(columns)].astype("str").fillna("")
    return pd.util.hash_pandas_object(parts, index=False).to_numpy().view(np.int64)


def _ns(values: pd.Series | np.ndarray) -> np.ndarray:
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


def _as_of(
    query_keys: np.ndarray,
    query_times: np.ndarray,
    event_keys: np.ndarray,
    event_times: np.ndarray,
    event_values: pd.DataFrame,
    reducer: str = "cumsum",
) -> pd.DataFrame:
    """Per query: running sum (or max) of events with the same key strictly before its time."""
    columns = list(event_values.columns)
    result = pd.DataFrame(0.0, index=pd.RangeIndex(len(query_keys)), columns=columns)
    if len(event_keys) == 0 or len(query_keys) == 0:
        return result
    events = pd.DataFrame({"key": event_keys, "time": event_times})
    events[columns] = event_values.to_numpy()
    events = events.dropna(subset=["time"]).sort_values(["key", "time"], kind="mergesort")
    grouped = events.groupby("key", sort=False)[columns]
    events[columns] = (grouped.cumsum() if reducer == "cumsum" else grouped.cummax()).to_numpy()
    events = events.sort_values("time", kind="mergesort")
    probe = pd.DataFrame(
        {"key": query_keys, "time": query_times, "_row": np.arange(len(query_keys))}
    ).sort_values("time", kind="mergesort")
    merged = pd.merge_asof(
        probe, events, on="time", by="key", allow_exact_matches=False, direction="backward"
    ).sort_values("_row")
    values = merged[columns].to_numpy(dtype=float)
    # No earlier event: a count is 0; a running maximum is unknown (NaN, the caller decides).
    result.loc[:, columns] = np.nan_to_num(values, nan=0.0) if reducer == "cumsum" else values
    return result


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
        """Store the claim, line and outcome events known in ``tables``/``outcomes``."""
        missing = [c for c in OUTCOME_COLUMNS if c not in outcomes.columns]
        if missing:
            raise ValueError(f"outcomes frame lacks column(s): {', '.join(missing)}")
        known = outcomes[list(OUTCOME_COLUMNS)].drop_duplicates("claim_id")
        claim_keys = _claim_keys(tables, claim_features)
        self.claim_events_ = _with_outcomes(claim_keys, known)
        self.line_events_ = _with_outcomes(_line_keys(tables, claim_keys), known)
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
        claim_outcomes = self.claim_events_[self.claim_events_["remit_date"].notna()]
        line_outcomes = self.line_events_[self.line_events_["remit_date"].notna()]
        for key in RATE_KEYS:
            if key.level == "claim":
                rates = self._rates(key, claim_keys, claim_outcomes)
                for column in rates.columns:
                    columns[column] = rates[column].to_numpy()
            else:
                rates = self._rates(key, line_keys, line_outcomes)
                rates["claim_id"] = line_keys["claim_id"].to_numpy()
                worst = rates.groupby("claim_id", sort=False).max()
                for column in worst.columns:
                    columns[column] = claim_keys["claim_id"].map(worst[column]).to_numpy()
        columns.update(self._submission_counts(claim_keys, line_keys))
        columns["hist_payer_max_paid_lag"] = self._payer_max_paid_lag(claim_keys)
        out = pd.DataFrame(columns)
        return out[list(HISTORY_FEATURES)].astype(float)

    def _rates(self, key: RateKey, queries: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
        values = pd.DataFrame({"n": np.ones(len(events)), "denied": events["denied"].to_numpy()})
        for category in key.categories:
            values[f"cat_{category}"] = (events["category"] == category).to_numpy(dtype=float)
        event_keys = _key_hash(events, key.columns)
        event_times = _ns(events["remit_date"])
        query_keys = _key_hash(queries, key.columns)
        query_times = _ns(queries["submission_date"])
        sums = _as_of(query_keys, query_times, event_keys, event_times, values)
        result = self._smoothed(key, sums, prefix=f"hist_{key.name}")
        if key.window_days:
            earlier = _as_of(
                query_keys,
                query_times - np.timedelta64(key.window_days, "D"),
                event_keys,
                event_times,
                values,
            )
            recent = self._smoothed(key, sums - earlier, prefix=f"hist_{key.name}_recent")
            result = pd.concat([result, recent], axis=1)
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

    def _submission_counts(
        self, claim_keys: pd.DataFrame, line_keys: pd.DataFrame
    ) -> dict[str, np.ndarray]:
        """Counts of earlier *submissions* (known at sending time, no outcome needed)."""
        stored = self.claim_events_[list(claim_keys.columns)]
        submissions = pd.concat([stored, claim_keys], ignore_index=True).drop_duplicates(
            "claim_id", keep="last"
        )
        ones = pd.DataFrame({"n": np.ones(len(submissions))})
        query_times = claim_keys["submission_date"].to_numpy()
        event_times = submissions["submission_date"].to_numpy()

        def count(columns: tuple[str, ...]) -> np.ndarray:
            return _as_of(
                _key_hash(claim_keys, columns),
                query_times,
                _key_hash(submissions, columns),
                event_times,
                ones,
            )["n"].to_numpy()

        out = {
            "hist_patient_prior_claims": count(("patient_id",)),
            "hist_patient_payer_prior_claims": count(("patient_id", "payer_id")),
            "hist_provider_payer_prior_claims": count(("rendering_npi", "payer_id")),
            "hist_same_service_prior_submissions": count(
                ("patient_id", "service_date_from", "signature")
            ),
            "hist_patient_family_claims_this_year": count(
                ("patient_id", "payer_id", "procedure_family_1", "service_year")
            ),
            "hist_patient_days_since_prior_claim": _days_since_last(
                _key_hash(claim_keys, ("patient_id",)),
                query_times,
                claim_keys["service_date_from"].to_numpy(),
                _key_hash(submissions, ("patient_id",)),
                event_times,
                submissions["service_date_from"].to_numpy(),
            ),
        }
        stored_lines = self.line_events_[list(line_keys.columns)]
        all_lines = pd.concat([stored_lines, line_keys], ignore_index=True).drop_duplicates(
            ["claim_id", "procedure_code"], keep="last"
        )
        for name, key in (
            ("hist_days_since_same_procedure", ("patient_id", "procedure_code")),
            ("hist_days_since_same_family", ("patient_id", "procedure_family")),
        ):
            days = _days_since_last(
                _key_hash(line_keys, key),
                line_keys["submission_date"].to_numpy(),
                line_keys["service_date_from"].to_numpy(),
                _key_hash(all_lines, key),
                all_lines["submission_date"].to_numpy(),
                all_lines["service_date_from"].to_numpy(),
            )
            per_claim = (
                pd.Series(np.where(days < 0, np.inf, days))
                .groupby(line_keys["claim_id"].to_numpy(), sort=False)
                .min()
            )
            shortest = claim_keys["claim_id"].map(per_claim).to_numpy(dtype=float)
            out[name] = np.where(np.isinf(shortest), -1.0, shortest)
        return out

    def _payer_max_paid_lag(self, claim_keys: pd.DataFrame) -> np.ndarray:
        """Longest submission delay the payer paid, as known before the claim was sent.

        A paid claim sent N days after service proves the payer's filing limit is at least N,
        so this learns each payer's limit from the practice's own remittances.
        """
        events = self.claim_events_[
            self.claim_events_["remit_date"].notna() & (self.claim_events_["denied"] == 0)
        ]
        lag = pd.DataFrame({"lag": events["days_service_to_submission"].to_numpy(dtype=float)})
        result = _as_of(
            _key_hash(claim_keys, ("payer_id",)),
            claim_keys["submission_date"].to_numpy(),
            _key_hash(events, ("payer_id",)),
            _ns(events["remit_date"]),
            lag,
            reducer="cummax",
        )["lag"].to_numpy()
        return np.where(result > 0, result, -1.0)


def _with_outcomes(keys: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    events = keys.merge(outcomes, on="claim_id", how="left")
    events["denied"] = events["denied"].fillna(False).astype(float)
    events["category"] = events["category"].fillna("").astype(str)
    events["remit_date"] = _ns(events["remit_date"])
    return events


def _days_since_last(
    query_keys: np.ndarray,
    query_times: np.ndarray,
    query_service: np.ndarray,
    event_keys: np.ndarray,
    event_times: np.ndarray,
    event_service: np.ndarray,
) -> np.ndarray:
    """Days from the latest earlier service date (among submissions sent before) to this one.

    -1 when there is none. Uses the running maximum of service dates so a late-sent claim for
    an old visit does not hide a recent one.
    """
    service_days = pd.DataFrame(
        {"day": (event_service.astype("datetime64[D]").astype(np.int64)).astype(float)}
    )
    latest = _as_of(
        query_keys, query_times, event_keys, event_times, service_days, reducer="cummax"
    )["day"].to_numpy()
    this_day = query_service.astype("datetime64[D]").astype(np.int64).astype(float)
    return np.where(latest > 0, this_day - latest, -1.0)
