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
    """

    name: str
    columns: tuple[str, ...]
    level: str = "claim"
    categories: tuple[str, ...] = ()
    label: str = ""


RATE_KEYS: tuple[RateKey, ...] = (
    RateKey("payer", ("payer_id",), categories=("eligibility", "timely_filing", "other"),
            label="payer's recent denial rate"),
    RateKey(
        "payer_procedure",
        ("payer_id", "procedure_code"),
        level="line",
        categories=("authorization", "non_covered", "documentation", "coding"),
        label="payer's denial rate for this procedure",
    ),
    RateKey(
        "payer_procedure_auth",
        ("payer_id", "procedure_code", "prior_auth_present"),
        level="line",
        categories=("authorization",),
        label="payer's denial rate for this procedure with/without an authorization",
    ),
    RateKey(
        "payer_family_auth",
        ("payer_id", "procedure_family", "prior_auth_present"),
        level="line",
        categories=("authorization",),
        label="payer's denial rate for this procedure family with/without an authorization",
    ),
    RateKey(
        "procedure_dx",
        ("procedure_code", "principal_dx_category"),
        level="line",
        categories=("medical_necessity",),
        label="denial rate of this procedure with this diagnosis",
    ),
    RateKey(
        "payer_family_dx",
        ("payer_id", "procedure_family", "principal_dx_category"),
        level="line",
        categories=("medical_necessity",),
        label="payer's denial rate for this procedure family with this diagnosis",
    ),
    RateKey("provider", ("rendering_npi",), categories=("credentialing", "missing_information"),
            label="rendering provider's recent denial rate"),
    RateKey("provider_payer", ("rendering_npi", "payer_id"), categories=("credentialing",),
            label="rendering provider's denial rate with this payer"),
    RateKey("patient_payer", ("patient_id", "payer_id"), categories=("eligibility",),
            label="patient's earlier denials with this payer"),
)

HISTORY_FEATURE_LABELS: dict[str, str] = {}
"""Feature name -> what it means to a biller; filled below from RATE_KEYS and counts."""


def _rate_feature_names(key: RateKey) -> list[str]:
    names = [f"hist_{key.name}_n", f"hist_{key.name}_rate"]
    names += [f"hist_{key.name}_rate_{c}" for c in key.categories]
    return names


for _key in RATE_KEYS:
    for _name in _rate_feature_names(_key):
        HISTORY_FEATURE_LABELS[_name] = _key.label

COUNT_FEATURES: dict[str, str] = {
    "hist_patient_prior_claims": "patient's earlier claims with any payer",
    "hist_patient_payer_prior_claims": "patient's earlier claims with this payer",
    "hist_patient_days_since_prior_claim": "days since the patient's previous claim",
    "hist_provider_payer_prior_claims": "rendering provider's earlier claims with this payer",
    "hist_same_service_prior_submissions": "earlier submissions for the same patient, date "
    "and procedures (possible duplicate)",
}
HISTORY_FEATURE_LABELS.update(COUNT_FEATURES)

HISTORY_FEATURES: tuple[str, ...] = tuple(HISTORY_FEATURE_LABELS)


def _key_hash(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """One int64 per row for a multi-column key (consistent across frames)."""
    parts = frame[list(columns)].astype("str").fillna("")
    return pd.util.hash_pandas_object(parts, index=False).to_numpy().view(np.int64)


def _claim_keys(tables: ClaimTables, claim_features: pd.DataFrame) -> pd.DataFrame:
    """Per-claim key columns (payer, patient, provider, auth flag, principal dx category)."""
    claims = tables.claims
    keys = pd.DataFrame(
        {
            "claim_id": claims["claim_id"].to_numpy(),
            "payer_id": claims["payer_id"].to_numpy(),
            "patient_id": claims["patient_id"].to_numpy(),
            "rendering_npi": claims["rendering_npi"].fillna(claims["billing_npi"]).to_numpy(),
            "submission_date": claims["submission_date"].to_numpy(),
            "service_date_from": claims["service_date_from"].to_numpy(),
        }
    )
    by_id = claim_features.set_index("claim_id")
    keys["prior_auth_present"] = keys["claim_id"].map(by_id["prior_auth_present"]).to_numpy()
    keys["principal_dx_category"] = keys["claim_id"].map(by_id["principal_dx_category"])
    return keys


def _line_keys(tables: ClaimTables, claim_keys: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct (claim, procedure) with the claim's keys and its slot/line."""
    lines = canonical_lines(tables.lines)[["claim_id", "procedure_code", "slot", "line_number"]]
    lines = lines.drop_duplicates(["claim_id", "procedure_code"])
    lines = lines.merge(claim_keys, on="claim_id", how="inner")
    lines["procedure_family"] = procedure_family(lines["procedure_code"])
    return lines


def _as_of(
    queries: pd.DataFrame,
    events: pd.DataFrame,
    value_columns: list[str],
    query_time: str,
) -> pd.DataFrame:
    """Cumulative event sums per ``key`` strictly before each query's time.

    ``events`` has ``key``, ``time`` and the value columns; ``queries`` has ``key`` and
    ``query_time``. Returns the value columns aligned with ``queries`` (0 where no event).
    """
    result = pd.DataFrame(0.0, index=queries.index, columns=value_columns)
    if events.empty or queries.empty:
        return result
    events = events.assign(time=pd.to_datetime(events["time"]).astype("datetime64[ns]"))
    ordered = events.sort_values(["key", "time"], kind="mergesort")
    cumulative = ordered.groupby("key", sort=False)[value_columns].cumsum()
    table = pd.DataFrame({"key": ordered["key"].to_numpy(), "time": ordered["time"].to_numpy()})
    table[value_columns] = cumulative.to_numpy()
    table = table.sort_values("time", kind="mergesort")
    probe = pd.DataFrame(
        {
            "key": queries["key"].to_numpy(),
            "time": pd.to_datetime(queries[query_time]).astype("datetime64[ns]").to_numpy(),
            "_row": np.arange(len(queries)),
        }
    ).sort_values("time", kind="mergesort")
    merged = pd.merge_asof(
        probe, table, on="time", by="key", allow_exact_matches=False, direction="backward"
    )
    merged = merged.sort_values("_row")
    result.loc[:, value_columns] = merged[value_columns].fillna(0.0).to_numpy()
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

    # -- state ---------------------------------------------------------------------------
    def fit(
        self,
        tables: ClaimTables,
        outcomes: pd.DataFrame,
        claim_features: pd.DataFrame,
    ) -> HistoryFeatures:
        """Store the outcome and submission events known in ``tables``/``outcomes``."""
        missing = [c for c in OUTCOME_COLUMNS if c not in outcomes.columns]
        if missing:
            raise ValueError(f"outcomes frame lacks column(s): {', '.join(missing)}")
        claim_keys = _claim_keys(tables, claim_features)
        self.claim_events_ = self._claim_events(claim_keys, outcomes)
        self.claim_events_["signature"] = (
            self.claim_events_["claim_id"].map(_procedure_signature(tables)).fillna("")
        )
        self.line_events_ = self._line_events(tables, claim_keys, outcomes)
        self.cutoff_ = (
            pd.Timestamp(outcomes["remit_date"].max()) if len(outcomes) else pd.NaT
        )
        return self

    def refresh(
        self, tables: ClaimTables, outcomes: pd.DataFrame, claim_features: pd.DataFrame
    ) -> HistoryFeatures:
        """Replace the stored events with newer data (same model, history up to date)."""
        return self.fit(tables, outcomes, claim_features)

    @staticmethod
    def _claim_events(claim_keys: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
        events = claim_keys.merge(
            outcomes[list(OUTCOME_COLUMNS)], on="claim_id", how="left", validate="one_to_one"
        )
        events["denied"] = events["denied"].fillna(False).astype(float)
        events["category"] = events["category"].fillna("").astype(str)
        events["has_outcome"] = events["remit_date"].notna().astype(float)
        return events

    @staticmethod
    def _line_events(
        tables: ClaimTables, claim_keys: pd.DataFrame, outcomes: pd.DataFrame
    ) -> pd.DataFrame:
        line_keys = _line_keys(tables, claim_keys)
        events = line_keys.merge(outcomes[list(OUTCOME_COLUMNS)], on="claim_id", how="inner")
        events["denied"] = events["denied"].fillna(False).astype(float)
        events["category"] = events["category"].fillna("").astype(str)
        return events

    # -- features ------------------------------------------------------------------------
    def transform(self, tables: ClaimTables, claim_features: pd.DataFrame) -> pd.DataFrame:
        """History features for each claim, as of its submission date."""
        claim_keys = _claim_keys(tables, claim_features)
        out = pd.DataFrame(index=pd.RangeIndex(len(claim_keys)))
        outcome_events = self.claim_events_[self.claim_events_["has_outcome"] > 0]
        line_keys = _line_keys(tables, claim_keys)
        for key in RATE_KEYS:
            if key.level == "claim":
                rates = self._rates(key, claim_keys, outcome_events)
                for column in rates.columns:
                    out[column] = rates[column].to_numpy()
            else:
                rates = self._rates(key, line_keys, self.line_events_)
                rates["claim_id"] = line_keys["claim_id"].to_numpy()
                worst = rates.groupby("claim_id", sort=False).max()
                for column in worst.columns:
                    out[column] = claim_keys["claim_id"].map(worst[column]).to_numpy()
        counts = self._submission_counts(tables, claim_keys)
        for column in counts.columns:
            out[column] = counts[column].to_numpy()
        return out.astype(float)

    def _rates(self, key: RateKey, queries: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
        value_columns = ["n", "denied", *[f"cat_{c}" for c in key.categories]]
        ev = pd.DataFrame(
            {
                "key": _key_hash(events, key.columns),
                "time": events["remit_date"].to_numpy(),
                "n": 1.0,
                "denied": events["denied"].to_numpy(dtype=float),
            }
        )
        for category in key.categories:
            ev[f"cat_{category}"] = (events["category"] == category).to_numpy(dtype=float)
        ev = ev[ev["time"].notna()]
        q = pd.DataFrame(
            {"key": _key_hash(queries, key.columns), "time": queries["submission_date"].to_numpy()}
        )
        sums = _as_of(q, ev, value_columns, "time")
        m, prior = self.smoothing, self.prior_rate
        n = sums["n"]
        result = pd.DataFrame(
            {
                f"hist_{key.name}_n": n,
                f"hist_{key.name}_rate": (sums["denied"] + m * prior) / (n + m),
            }
        )
        for category in key.categories:
            prior_c = prior / 10.0
            result[f"hist_{key.name}_rate_{category}"] = (
                sums[f"cat_{category}"] + m * prior_c
            ) / (n + m)
        return result

    def _submission_counts(self, tables: ClaimTables, claim_keys: pd.DataFrame) -> pd.DataFrame:
        """Counts of earlier *submissions* (known at sending time, no outcome needed)."""
        stored = self.claim_events_[
            ["claim_id", "patient_id", "payer_id", "rendering_npi", "submission_date",
             "service_date_from"]
        ]
        batch = claim_keys[list(stored.columns)]
        submissions = pd.concat([stored, batch], ignore_index=True).drop_duplicates("claim_id")
        signature = _procedure_signature(tables)
        stored_sig = self.claim_events_.set_index("claim_id")["signature"]
        all_sig = pd.concat([stored_sig, signature])
        all_sig = all_sig[~all_sig.index.duplicated(keep="last")]
        submissions["signature"] = submissions["claim_id"].map(all_sig).fillna("")
        claim_keys = claim_keys.assign(
            signature=claim_keys["claim_id"].map(signature).fillna("").to_numpy()
        )
        submissions["n"] = 1.0
        events = submissions.rename(columns={"submission_date": "time"})
        out = pd.DataFrame(index=claim_keys.index)

        def count(columns: tuple[str, ...]) -> np.ndarray:
            ev = pd.DataFrame(
                {"key": _key_hash(events, columns), "time": events["time"].to_numpy(), "n": 1.0}
            )
            q = pd.DataFrame(
                {
                    "key": _key_hash(claim_keys, columns),
                    "time": claim_keys["submission_date"].to_numpy(),
                }
            )
            return _as_of(q, ev, ["n"], "time")["n"].to_numpy()

        out["hist_patient_prior_claims"] = count(("patient_id",))
        out["hist_patient_payer_prior_claims"] = count(("patient_id", "payer_id"))
        out["hist_provider_payer_prior_claims"] = count(("rendering_npi", "payer_id"))
        out["hist_same_service_prior_submissions"] = count(
            ("patient_id", "service_date_from", "signature")
        )
        out["hist_patient_days_since_prior_claim"] = _days_since_previous(
            events, claim_keys
        )
        return out


def _procedure_signature(tables: ClaimTables) -> pd.Series:
    """Sorted procedure codes of a claim joined: equal for resubmissions of the same service."""
    codes = tables.lines.sort_values(["claim_id", "procedure_code"])
    return codes.groupby("claim_id", sort=False)["procedure_code"].agg("+".join)


def _days_since_previous(events: pd.DataFrame, claim_keys: pd.DataFrame) -> np.ndarray:
    """Days from the patient's previous submission (strictly earlier) to this one; -1 if none."""
    ev = pd.DataFrame(
        {
            "key": _key_hash(events, ("patient_id",)),
            "time": pd.to_datetime(events["time"]).astype("datetime64[ns]").to_numpy(),
        }
    ).dropna()
    ev["last_time"] = ev["time"]
    ev = ev.sort_values("time", kind="mergesort")
    probe = pd.DataFrame(
        {
            "key": _key_hash(claim_keys, ("patient_id",)),
            "time": pd.to_datetime(claim_keys["submission_date"]).astype("datetime64[ns]").to_numpy(),
            "_row": np.arange(len(claim_keys)),
        }
    ).sort_values("time", kind="mergesort")
    merged = pd.merge_asof(
        probe, ev, on="time", by="key", allow_exact_matches=False, direction="backward"
    ).sort_values("_row")
    days = (merged["time"] - merged["last_time"]).dt.days
    return days.fillna(-1).to_numpy(dtype=float)

