"""Denial analytics: where revenue leaks, whether it is getting better, and what changed.

The figures behind ``denial-risk report`` and ``GET /v1/analytics/summary``, computed from a
data set's own claims, 835s, follow-ups and rejections (:class:`features.schema.ClaimsDataset`).
Everything is a plain JSON-ready dict; :mod:`serving.report` draws it.

Definitions (each figure in the output says which one it is):

* **Adjudicated claim**: a claim with a first adjudication (:mod:`features.x12.outcomes`),
  counted in the month of that remittance. Replacement claims (frequency 7) count as claims of
  their own, as a payer counts them.
* **Denial rate, claims**: denied first adjudications / adjudicated claims.
* **Denial rate, dollars**: billed charges of denied claims / billed charges of adjudicated
  claims (Kodiak's "share of claim dollars").
* **Front-end rejection** (999/277CA): counted apart, against the claims submitted that month;
  never a denial.
* **Denied dollars**: charge minus paid on the denied first adjudication
  (:func:`features.denials.denials_from_dataset`).
* Benchmarks (``../shared/reference/denial-facts.md``): below 5% of claims is best in class,
  above 10% signals a systemic problem.

Denials already received are read as of the period's last day, with the worklist's rules
(:mod:`features.denials`: hard/soft, route, deadline): **open** = soft, not written off, no
follow-up answered yet; **written off** = hard denials, soft ones whose deadline passed
unworked, and worked ones the payer upheld.

Rules are data: the front-end step that owns each reason category in
``features/data/denial_origins.csv``, RARC texts in ``rarc.csv``, procedure sections in
``procedure_sections.csv``. No patient identifier is read into any figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from features.claim_features import procedure_family
from features.codes import code_tables
from features.denials import (
    DENIAL,
    default_denial_rules,
    denials_from_dataset,
    load_payer_windows,
    main_procedures,
    prepare_denials,
)
from features.schema import ClaimsDataset
from features.x12.outcomes import first_adjudication_outcomes

BEST_IN_CLASS = 0.05
"""Initial denial rate (share of claims) below which a practice is best in class."""
SYSTEMIC = 0.10
"""Initial denial rate above which denials signal a systemic problem."""
AGE_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("0-30", 0, 30),
    ("31-60", 31, 60),
    ("61-90", 61, 90),
    ("90+", 91, 10**6),
)
DEADLINE_HORIZONS = (7, 14, 30)
MAX_PERIOD_DAYS = 3653
"""The longest period a report covers (ten years)."""
TOP_ROWS = 25
"""Rows kept per breakdown (by denied dollars); the rest are counted in ``rows_omitted``."""

PLACE_OF_SERVICE = {
    "02": "Telehealth (not at home)",
    "10": "Telehealth at home",
    "11": "Office",
    "12": "Home",
    "19": "Off-campus outpatient hospital",
    "20": "Urgent care",
    "21": "Inpatient hospital",
    "22": "On-campus outpatient hospital",
    "23": "Emergency room",
    "24": "Ambulatory surgical center",
    "31": "Skilled nursing facility",
    "32": "Nursing facility",
    "81": "Independent laboratory",
}
"""CMS place-of-service code set, the codes a professional practice bills most."""


# -- rules as data -------------------------------------------------------------------------------
def _data_table(name: str) -> pd.DataFrame:
    with (resources.files("features") / "data" / name).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)


@lru_cache(maxsize=1)
def denial_origins() -> pd.DataFrame:
    """Per reason category: the front-end step that owns it (``step``, ``step_label``, why)."""
    table = _data_table("denial_origins.csv").set_index("category", verify_integrity=True)
    missing = set(code_tables().reason_categories.index) - set(table.index)
    if missing:
        raise ValueError(f"denial_origins.csv has no step for categories {sorted(missing)}")
    return table


@lru_cache(maxsize=1)
def rarc_texts() -> dict[str, str]:
    """Plain-language text of the remark codes the table knows."""
    table = _data_table("rarc.csv")
    return dict(zip(table["rarc"].str.strip().str.upper(), table["description"], strict=True))


@lru_cache(maxsize=1)
def _sections() -> pd.DataFrame:
    return _data_table("procedure_sections.csv")


@lru_cache(maxsize=4096)
def procedure_section(code: str) -> str:
    """The CPT section or HCPCS level II group a 5-character code falls in ("" if none)."""
    for first, last, section in _sections()[["first", "last", "section"]].itertuples(index=False):
        if (
            len(code) == len(first)
            and first <= code <= last
            and code[0].isalpha() == first[0].isalpha()
        ):
            return str(section)
    return ""


def family_label(family: str) -> str:
    """``974`` -> ``974xx (Medicine)``: a family as a person reads it."""
    if not family:
        return "(no procedure)"
    section = procedure_section(family + "0" * (5 - len(family)))
    return f"{family}xx ({section})" if section else f"{family}xx"


# -- the period ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    """Calendar days ``start`` to ``end``, both included."""

    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def days(self) -> int:
        return int((self.end - self.start).days) + 1

    @property
    def previous(self) -> Period:
        """The period of the same length just before this one (in whole months when this one
        is whole months: 2025 is compared with 2024, leap day or not)."""
        end = self.start - pd.Timedelta(days=1)
        next_day = self.end + pd.Timedelta(days=1)
        if self.start.day == 1 and next_day.day == 1:
            months = (next_day.year - self.start.year) * 12 + next_day.month - self.start.month
            return Period(self.start - pd.DateOffset(months=months), end)
        return Period(end - pd.Timedelta(days=self.days - 1), end)

    def holds(self, dates: pd.Series) -> np.ndarray:
        values = pd.to_datetime(dates)
        return ((values >= self.start) & (values <= self.end)).to_numpy(dtype=bool)

    def as_dict(self) -> dict[str, str]:
        return {"from": f"{self.start:%Y-%m-%d}", "to": f"{self.end:%Y-%m-%d}"}


def resolve_period(
    latest: pd.Timestamp | None, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
) -> Period:
    """The report's period: ``end`` defaults to the data's latest date (``latest``), ``start``
    to the first day of the month eleven months before ``end``'s (a trailing year by month).

    Raises ``ValueError`` when ``start`` is after ``end``.
    """
    if end is None:
        end = latest if latest is not None else pd.Timestamp.now()
    end = pd.Timestamp(end).normalize()
    if start is None:
        start = (end.to_period("M") - 11).to_timestamp()
    start = pd.Timestamp(start).normalize()
    if start > end:
        raise ValueError(
            f"the period starts ({start:%Y-%m-%d}) after it ends ({end:%Y-%m-%d}): "
            "give --from before --to"
        )
    if (end - start).days > MAX_PERIOD_DAYS:
        raise ValueError(
            f"the period {start:%Y-%m-%d} to {end:%Y-%m-%d} is longer than ten years: "
            "give a shorter one (it is compared with the period of the same length before it)"
        )
    return Period(start, end)


# -- one table of facts per data set -------------------------------------------------------------
@dataclass
class DenialFacts:
    """Everything the figures are read from, built once per data set (:func:`denial_facts`).

    ``claims``: one row per adjudicated claim (first adjudication): ``claim_id, remit_date,
    denied, category, carc, charge, paid, payer_id, payer_name, payer_type, billing_npi,
    rendering_npi, place_of_service, procedure_code, family, submission_date``.
    ``submitted``: one row per claim in the 837s: ``claim_id, submission_date``.
    ``denials``: :func:`features.denials.denials_from_dataset` (denials and open rejections).
    ``rejections``: every front-end rejection: ``claim_id, rejection_date, source``.
    ``followups``: the data set's follow-ups (derived from later 835s when it has none).
    """

    claims: pd.DataFrame
    submitted: pd.DataFrame
    denials: pd.DataFrame
    rejections: pd.DataFrame
    followups: pd.DataFrame

    @property
    def latest(self) -> pd.Timestamp | None:
        """The data's own "today": its latest remittance, rejection or submission date."""
        dates = [
            self.claims["remit_date"].max(),
            self.rejections["rejection_date"].max() if len(self.rejections) else pd.NaT,
            self.submitted["submission_date"].max() if len(self.submitted) else pd.NaT,
        ]
        present = [pd.Timestamp(d) for d in dates if pd.notna(d)]
        return max(present).normalize() if present else None


def denial_facts(dataset: ClaimsDataset) -> DenialFacts:
    """Join outcomes, claims and remittances once (a million claims: seconds, not minutes)."""
    outcomes = first_adjudication_outcomes(dataset)
    # Hash joins on the IDs: a million claims' columns looked up one by one took a minute.
    remits = dataset.remittances[["remit_id", "total_charge", "payer_id", "payer_name"]]
    claim_columns = [
        "claim_id",
        "payer_id",
        "payer_name",
        "payer_type",
        "billing_npi",
        "rendering_npi",
        "place_of_service",
        "submission_date",
        "total_charge",
    ]
    joined = (
        outcomes[["claim_id", "remit_id"]]
        .astype(str)
        .merge(remits.astype({"remit_id": str}), on="remit_id", how="left")
        .merge(
            dataset.claims[claim_columns].astype({"claim_id": str}),
            on="claim_id",
            how="left",
            suffixes=("_remit", ""),
        )
    )
    procedure = main_procedures(dataset).reindex(joined["claim_id"]).to_numpy(dtype=object)
    charge = joined["total_charge_remit"].astype(float).fillna(joined["total_charge"].astype(float))
    frame = pd.DataFrame(
        {
            "claim_id": joined["claim_id"].to_numpy(dtype=object),
            "remit_date": pd.to_datetime(outcomes["remit_date"]).dt.normalize().to_numpy(),
            "denied": outcomes["denied"].to_numpy(dtype=bool),
            "category": outcomes["denial_category"].to_numpy(dtype=object),
            "carc": outcomes["primary_carc"].to_numpy(dtype=object),
            "charge": charge.to_numpy(),
            "paid": outcomes["paid_amount"].to_numpy(dtype=float),
            "payer_id": joined["payer_id"].fillna(joined["payer_id_remit"]).to_numpy(dtype=object),
            "payer_name": joined["payer_name"]
            .fillna(joined["payer_name_remit"])
            .to_numpy(dtype=object),
            "payer_type": joined["payer_type"].to_numpy(dtype=object),
            "billing_npi": joined["billing_npi"].to_numpy(dtype=object),
            "rendering_npi": joined["rendering_npi"].to_numpy(dtype=object),
            "place_of_service": joined["place_of_service"].to_numpy(dtype=object),
            "procedure_code": procedure,
            "family": procedure_family(pd.Series(procedure).fillna("")).to_numpy(dtype=object),
            "submission_date": pd.to_datetime(joined["submission_date"]).to_numpy(),
        }
    )
    windows = load_payer_windows()
    frame["payer_type"] = windows.payer_type_for(
        frame["payer_id"].astype(object), frame["payer_type"].astype(object)
    ).to_numpy()
    denials = denials_from_dataset(dataset, include_rejections=True, outcomes=outcomes)
    followups = dataset.followups
    if followups.empty and len(denials):
        from features.x12.outcomes import derive_followups

        followups = derive_followups(dataset)
    rejections = dataset.rejections[["claim_id", "rejection_date", "source"]].copy()
    rejections["rejection_date"] = pd.to_datetime(rejections["rejection_date"]).dt.normalize()
    submitted = dataset.claims[["claim_id", "submission_date"]].copy()
    return DenialFacts(frame, submitted, denials, rejections, followups.reset_index(drop=True))


# -- figures -------------------------------------------------------------------------------------
def _rate(numerator: float, denominator: float) -> float | None:
    return round(float(numerator) / float(denominator), 6) if denominator else None


def _money(value: float) -> float:
    return round(float(value), 2)


def benchmark_status(rate: float | None) -> str:
    """``best in class`` below 5%, ``systemic`` above 10%, else ``watch``."""
    if rate is None:
        return "no claims"
    if rate < BEST_IN_CLASS:
        return "best in class"
    return "systemic" if rate > SYSTEMIC else "watch"


def _claim_totals(claims: pd.DataFrame, key: pd.Series) -> pd.DataFrame:
    """Claims, denied claims, charges and denied charges per value of ``key``."""
    denied_charge = claims["charge"].where(claims["denied"], 0.0)
    return pd.DataFrame(
        {
            "claims": claims.groupby(key).size(),
            "denied": claims["denied"].groupby(key).sum(),
            "charges": claims["charge"].groupby(key).sum(),
            "denied_charges": denied_charge.groupby(key).sum(),
        }
    )


def monthly_rates(facts: DenialFacts, period: Period) -> list[dict[str, Any]]:
    """Per month of the period: claims and dollars adjudicated and denied, rejections apart."""
    claims = facts.claims[period.holds(facts.claims["remit_date"])]
    by_month = _claim_totals(claims, claims["remit_date"].dt.to_period("M"))
    sent = facts.submitted[period.holds(facts.submitted["submission_date"])]
    rejected = facts.rejections[period.holds(facts.rejections["rejection_date"])]
    rejected = rejected.drop_duplicates("claim_id")
    months = pd.period_range(period.start, period.end, freq="M")
    by_month = by_month.reindex(months, fill_value=0)
    sent_by = sent.groupby(sent["submission_date"].dt.to_period("M")).size().reindex(months)
    rej_by = rejected.groupby(rejected["rejection_date"].dt.to_period("M")).size().reindex(months)
    rows = []
    for m, row in by_month.iterrows():
        n_sent = int(sent_by.get(m, 0) if pd.notna(sent_by.get(m)) else 0)
        n_rej = int(rej_by.get(m, 0) if pd.notna(rej_by.get(m)) else 0)
        rate = _rate(row["denied"], row["claims"])
        rows.append(
            {
                "month": str(m),
                "claims_adjudicated": int(row["claims"]),
                "claims_denied": int(row["denied"]),
                "denial_rate": rate,
                "charges": _money(row["charges"]),
                "denied_charges": _money(row["denied_charges"]),
                "denial_rate_dollars": _rate(row["denied_charges"], row["charges"]),
                "claims_submitted": n_sent,
                "rejections": n_rej,
                "rejection_rate": _rate(n_rej, n_sent),
                "benchmark": benchmark_status(rate),
            }
        )
    return rows


def headline(facts: DenialFacts, period: Period) -> dict[str, Any]:
    """The period's totals, and the same for the previous period of equal length."""

    def totals(p: Period) -> dict[str, Any]:
        claims = facts.claims[p.holds(facts.claims["remit_date"])]
        denied = claims[claims["denied"]]
        n_sent = int(p.holds(facts.submitted["submission_date"]).sum())
        rejected = facts.rejections[p.holds(facts.rejections["rejection_date"])]
        n_rej = int(rejected["claim_id"].nunique())
        denials = facts.denials[
            (facts.denials["kind"] == DENIAL) & p.holds(facts.denials["denial_date"])
        ]
        rate = _rate(len(denied), len(claims))
        return {
            **p.as_dict(),
            "claims_adjudicated": len(claims),
            "claims_denied": len(denied),
            "denial_rate": rate,
            "charges": _money(claims["charge"].sum()),
            "denied_charges": _money(denied["charge"].sum()),
            "denial_rate_dollars": _rate(denied["charge"].sum(), claims["charge"].sum()),
            "denied_dollars": _money(denials["denied_amount"].sum()),
            "claims_submitted": n_sent,
            "rejections": n_rej,
            "rejection_rate": _rate(n_rej, n_sent),
            "benchmark": benchmark_status(rate),
        }

    return {"period": totals(period), "previous": totals(period.previous)}


def _classified(facts: DenialFacts, period: Period) -> pd.DataFrame:
    """The period's denials (not rejections), classified, with deadlines as of its end."""
    denials = facts.denials[
        (facts.denials["kind"] == DENIAL) & period.holds(facts.denials["denial_date"])
    ]
    return prepare_denials(denials, as_of=period.end)


def _limited(rows: list[dict[str, Any]], limit: int = TOP_ROWS) -> dict[str, Any]:
    return {"rows": rows[:limit], "rows_omitted": max(len(rows) - limit, 0)}


def rate_breakdown(
    facts: DenialFacts,
    period: Period,
    column: str,
    label: Callable[[str], str] | None = None,
    names: pd.Series | None = None,
) -> dict[str, Any]:
    """Denial rates of adjudicated claims grouped by ``column``, most denied dollars first."""
    claims = facts.claims[period.holds(facts.claims["remit_date"])]
    key = claims[column].astype(object).where(claims[column].notna(), "").astype(str)
    grouped = _claim_totals(claims, key).sort_values(["denied_charges", "denied"], ascending=False)
    rows = []
    for value, row in grouped.iterrows():
        text = str(value)
        shown = label(text) if label else text
        if names is not None and text in names.index:
            shown = f"{names[text]} ({text})"
        rows.append(
            {
                "key": text,
                "label": shown or "(blank)",
                "claims_adjudicated": int(row["claims"]),
                "claims_denied": int(row["denied"]),
                "denial_rate": _rate(row["denied"], row["claims"]),
                "denied_charges": _money(row["denied_charges"]),
                "denial_rate_dollars": _rate(row["denied_charges"], row["charges"]),
            }
        )
    return _limited(rows)


def denial_breakdown(
    denials: pd.DataFrame, column: str, label: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """Denials of the period grouped by ``column``: count, share, denied dollars."""
    key = denials[column].astype(object).where(denials[column].notna(), "").astype(str)
    grouped = pd.DataFrame(
        {
            "denials": denials.groupby(key).size(),
            "dollars": denials["denied_amount"].groupby(key).sum(),
        }
    ).sort_values(["dollars", "denials"], ascending=False)
    total = len(denials)
    rows = [
        {
            "key": str(value),
            "label": (label(str(value)) if label else str(value)) or "(none)",
            "denials": int(row["denials"]),
            "share": _rate(row["denials"], total),
            "denied_dollars": _money(row["dollars"]),
        }
        for value, row in grouped.iterrows()
    ]
    return _limited(rows)


def _flag_breakdown(denials: pd.DataFrame, column: str, yes: str, no: str) -> dict[str, Any]:
    labelled = denials.assign(_flag=np.where(denials[column].to_numpy(dtype=bool), yes, no))
    return denial_breakdown(labelled, "_flag")


def breakdowns(facts: DenialFacts, period: Period, classified: pd.DataFrame) -> dict[str, Any]:
    """Denial rates by payer, payer type, providers, location and procedure family; the
    period's denials by reason category, CARC, RARC, hard/soft, preventable and clinical."""
    tables = code_tables()
    claims = facts.claims
    payer_names = (
        claims.dropna(subset=["payer_id"]).drop_duplicates("payer_id").set_index("payer_id")
    )["payer_name"].dropna()
    carc_text = tables.carc["description"].to_dict()
    rarcs = rarc_texts()
    remarks = classified.assign(rarc=classified["rarc"].fillna("").str.split(";")).explode("rarc")
    remarks = remarks[remarks["rarc"] != ""]
    return {
        "payer": rate_breakdown(facts, period, "payer_id", names=payer_names.astype(str)),
        "payer_type": rate_breakdown(facts, period, "payer_type", _title),
        "rendering_provider": rate_breakdown(facts, period, "rendering_npi", _npi),
        "billing_provider": rate_breakdown(facts, period, "billing_npi", _npi),
        "service_location": rate_breakdown(facts, period, "place_of_service", _place),
        "procedure_family": rate_breakdown(facts, period, "family", family_label),
        "reason_category": denial_breakdown(classified, "category", tables.category_label),
        "carc": denial_breakdown(
            classified, "carc", lambda c: f"CARC {c}: {carc_text.get(c, 'not in the CARC table')}"
        ),
        "rarc": denial_breakdown(
            remarks, "rarc", lambda r: f"{r}: {rarcs.get(r, 'not in features/data/rarc.csv')}"
        ),
        "hard_soft": _flag_breakdown(classified, "hard", "hard (write off)", "soft (workable)"),
        "preventable": _flag_breakdown(classified, "preventable", "preventable", "not preventable"),
        "clinical": _flag_breakdown(classified, "clinical", "clinical", "administrative"),
    }


def _title(value: str) -> str:
    return value.replace("_", " ").capitalize()


def _npi(value: str) -> str:
    return f"NPI {value}" if value else "(none on the claim)"


def _place(value: str) -> str:
    return f"{value} {PLACE_OF_SERVICE.get(value, '')}".strip() if value else "(none)"


def point_of_origin(facts: DenialFacts, period: Period) -> dict[str, Any]:
    """Denied dollars by the front-end step that owns each reason, this period against the
    previous one; names the step that lost the most and the one that grew the most."""
    origins = denial_origins()
    rows: dict[str, dict[str, Any]] = {}
    for step, label in origins[["step", "step_label"]].drop_duplicates().itertuples(index=False):
        categories = origins.index[origins["step"] == step].tolist()
        rows[step] = {
            "step": step,
            "label": label,
            "categories": [code_tables().category_label(c) for c in categories],
            "denials": 0,
            "denied_dollars": 0.0,
            "previous_denials": 0,
            "previous_denied_dollars": 0.0,
        }
    for prefix, p in (("", period), ("previous_", period.previous)):
        denials = _classified(facts, p)
        step = denials["category"].map(origins["step"]).fillna("unassigned")
        for name, group in denials.groupby(step):
            rows[str(name)][f"{prefix}denials"] = len(group)
            rows[str(name)][f"{prefix}denied_dollars"] = _money(group["denied_amount"].sum())
    ordered = sorted(rows.values(), key=lambda r: -r["denied_dollars"])
    for row in ordered:
        row["change_dollars"] = _money(row["denied_dollars"] - row["previous_denied_dollars"])
    most = ordered[0] if ordered and ordered[0]["denied_dollars"] > 0 else None
    grew = max(ordered, key=lambda r: r["change_dollars"], default=None)
    has_previous = any(r["previous_denials"] for r in ordered)
    if most is None:
        sentence = "No denials in the period."
    else:
        sentence = (
            f"{most['label']} lost the most: ${most['denied_dollars']:,.0f} denied this period"
        )
        if has_previous:
            sentence += f" against ${most['previous_denied_dollars']:,.0f} the period before"
            if grew is not None and grew["change_dollars"] > 0:
                sentence += f"; {grew['label']} grew the most (+${grew['change_dollars']:,.0f})"
        else:
            sentence += " (no denials in the period before to compare with)"
        sentence += "."
    return {
        "steps": ordered,
        "most_lost": most["step"] if most else None,
        "grew_most": grew["step"] if grew is not None and grew["change_dollars"] > 0 else None,
        "previous_period": period.previous.as_dict(),
        "sentence": sentence,
    }


def denials_received(facts: DenialFacts, period: Period) -> dict[str, Any]:
    """Denials received up to the period's end, as of that day: ages, open dollars, deadlines,
    recovered against expected by route, overturn rates, dollars written off."""
    as_of = period.end
    denials = facts.denials[
        (facts.denials["kind"] == DENIAL) & (facts.denials["denial_date"] <= as_of)
    ]
    frame = prepare_denials(denials, as_of=as_of)
    followups = facts.followups.copy()
    followups["action_date"] = pd.to_datetime(followups["action_date"])
    followups["resolved_date"] = pd.to_datetime(followups["resolved_date"])
    followups = followups[followups["action_date"] <= as_of].sort_values("action_date")
    first = followups.drop_duplicates("claim_id").set_index("claim_id")
    resolved = first["resolved_date"].notna() & (first["resolved_date"] <= as_of)
    cid = frame["claim_id"]
    worked = cid.isin(first.index).to_numpy()
    answered = cid.map(resolved).fillna(False).to_numpy(dtype=bool)
    recovered_amount = cid.map(first["recovered_amount"].where(resolved, 0.0)).fillna(0.0)
    recovered = answered & (recovered_amount.to_numpy() > 0)
    hard = frame["hard"].to_numpy(dtype=bool)
    expired = ~hard & ~worked & frame["past_deadline"].to_numpy(dtype=bool)
    upheld = ~hard & answered & ~recovered
    open_ = ~hard & ~expired & ~answered
    amount = frame["denied_amount"].to_numpy(dtype=float)
    age = frame["days_since_denial"].to_numpy()
    buckets = [
        {
            "bucket": name,
            "denials": int((open_ & (age >= low) & (age <= high)).sum()),
            "open_dollars": _money(amount[open_ & (age >= low) & (age <= high)].sum()),
        }
        for name, low, high in AGE_BUCKETS
    ]
    days_left = frame["days_left"].to_numpy()
    unworked = open_ & ~worked
    deadlines = [
        {
            "within_days": h,
            "denials": int((unworked & (days_left >= 0) & (days_left <= h)).sum()),
            "dollars": _money(amount[unworked & (days_left >= 0) & (days_left <= h)].sum()),
        }
        for h in DEADLINE_HORIZONS
    ]
    rates = code_tables().reason_categories["recovery_when_worked"]
    expected = frame["category"].replace({"unknown": "other"}).map(rates).fillna(rates["other"])
    route = cid.map(first["action"]).fillna("")
    worked_frame = pd.DataFrame(
        {
            "route": route[worked],
            "denied": amount[worked],
            "expected": (expected.to_numpy() * amount)[worked],
            "recovered": recovered_amount.to_numpy()[worked],
            "answered": answered[worked],
            "won": recovered[worked],
        }
    )
    route_labels = default_denial_rules().routes["label"].to_dict()
    by_route = [
        {
            "route": str(name),
            "label": route_labels.get(str(name), _title(str(name))),
            "worked": len(group),
            "answered": int(group["answered"].sum()),
            "denied_dollars": _money(group["denied"].sum()),
            "expected_dollars": _money(group["expected"].sum()),
            "recovered_dollars": _money(group["recovered"].sum()),
        }
        for name, group in worked_frame.groupby("route")
    ]
    answered_frame = frame[answered].assign(_won=recovered[answered])
    return {
        "as_of": f"{as_of:%Y-%m-%d}",
        "denials": len(frame),
        "open_denials": int(open_.sum()),
        "open_dollars": _money(amount[open_].sum()),
        "age_buckets": buckets,
        "deadlines": deadlines,
        "recovery_by_route": by_route,
        "expected_basis": "the reason category's recovery rate when worked "
        "(features/data/reason_categories.csv) x denied dollars, for denials worked so far",
        "overturn_by_payer": _overturn(answered_frame, "payer_name"),
        "overturn_by_reason": _overturn(answered_frame, "category_label"),
        "written_off": {
            "hard_denials": int(hard.sum()),
            "hard_dollars": _money(amount[hard].sum()),
            "expired_unworked": int(expired.sum()),
            "expired_dollars": _money(amount[expired].sum()),
            "upheld_after_work": int(upheld.sum()),
            "upheld_dollars": _money(amount[upheld].sum()),
            "total_dollars": _money(amount[hard | expired | upheld].sum()),
        },
    }


def _overturn(answered: pd.DataFrame, column: str) -> list[dict[str, Any]]:
    key = answered[column].astype(object).where(answered[column].notna(), "(unknown)")
    rows = [
        {
            "key": str(name),
            "answered": len(group),
            "overturned": int(group["_won"].sum()),
            "overturn_rate": _rate(group["_won"].sum(), len(group)),
        }
        for name, group in answered.groupby(key)
    ]
    return sorted(rows, key=lambda r: -r["answered"])


def summary(
    facts: DenialFacts,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    alerts: Callable[[DenialFacts, Period], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every figure of the report for the period (see the module docstring), JSON-ready."""
    period = resolve_period(facts.latest, start, end)
    classified = _classified(facts, period)
    if alerts is None:
        from features.payer_change import payer_change_alerts

        alerts = payer_change_alerts
    figures = {
        "period": {**period.as_dict(), "previous": period.previous.as_dict()},
        "benchmarks": {
            "best_in_class_below": BEST_IN_CLASS,
            "systemic_above": SYSTEMIC,
            "source": "denial-facts.md: best in class < 5% of claims, > 10% systemic",
        },
        "definitions": {
            "denial_rate": "denied first adjudications / claims adjudicated (by remittance month)",
            "denial_rate_dollars": "billed charges of denied claims / billed charges adjudicated",
            "rejection_rate": "claims rejected before adjudication (999/277CA) / claims "
            "submitted; rejections are not denials",
            "denied_dollars": "charge minus paid on the denied first adjudication",
        },
        "headline": headline(facts, period),
        "denial_rate_by_month": monthly_rates(facts, period),
        "breakdowns": breakdowns(facts, period, classified),
        "point_of_origin": point_of_origin(facts, period),
        "denials_received": denials_received(facts, period),
        "payer_change_alerts": alerts(facts, period),
    }
    return _json_ready(figures)


def _json_ready(value: Any) -> Any:
    """Plain Python numbers and strings (numpy scalars and NaN made JSON-safe)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
