"""Payer-change alerts: a sudden rise in one kind of denial at one payer, against its own past.

A payer that adds a code to its authorization list, withdraws a diagnosis or starts a new
edit shows up in the remittances as a run of denials where there were few. For every
combination a payer writes its rules over, at two levels,

* payer x procedure x reason category (the claim's main procedure), over the payer's claims
  for that procedure, smoothed toward the payer's rate for that reason over the procedure's
  family (its first three characters, :func:`features.claim_features.procedure_family`);
* payer x CARC, over all of the payer's claims,

a Bernoulli CUSUM runs week by week over the point-in-time history (each week's remittances,
in the week they arrived; nothing later is read):

* the in-control rate ``p0`` is the combination's own rate over the previous
  ``baseline_weeks`` weeks, smoothed toward its parent's (the payer's rate for that reason
  over the same weeks: the procedure family's, or every payer's for a CARC) with
  ``prior_claims`` claims of weight;
* the alternative is ``p1 = max(ratio x p0, p0 + min_lift)``;
* ``S = max(0, S + denials x log(p1/p0) + others x log((1-p1)/(1-p0)))``; an alert is raised
  the week ``S`` reaches ``threshold`` with at least ``min_denials`` denials since ``S`` last
  stood at 0. That week after the last zero is the change's estimated start.

After an alert the combination is muted for ``baseline_weeks`` weeks, by which time the new
rate is its baseline: one alert per change, not one per week. Nothing here knows a payer, a
code or a rule: the rates are the practice's own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.codes import code_tables

if TYPE_CHECKING:
    from features.analytics import DenialFacts, Period


@dataclass(frozen=True)
class DetectorSettings:
    """How sensitive the detector is (BENCHMARKS.md: delay and false alerts per year)."""

    baseline_weeks: int = 52
    warmup_weeks: int = 13
    """No alert before this many weeks of history."""
    prior_claims: float = 20.0
    ratio: float = 3.0
    min_lift: float = 0.1
    threshold: float = 8.0
    min_denials: int = 6
    min_rate: float = 0.002
    """The smallest in-control rate (a combination never denied is not certain to stay so)."""


@dataclass(frozen=True)
class Level:
    name: str
    group: tuple[str, ...]
    """Columns of the claims the rate is counted over (the denominator)."""
    key: str
    """The reason column within the group (the numerator)."""
    parent: tuple[str, ...]
    """Columns of the parent the rate is smoothed toward (with ``key``)."""


LEVELS = (
    Level(
        "payer x procedure x reason",
        ("payer_id", "procedure_code"),
        "category",
        ("payer_id", "family"),
    ),
    Level("payer x CARC", ("payer_id",), "carc", ()),
)


def weekly_alerts(events: pd.DataFrame, settings: DetectorSettings | None = None) -> pd.DataFrame:
    """Run the detector over adjudicated claims and return one row per alert.

    ``events``: one row per adjudicated claim with ``remit_date``, ``denied``, ``category``,
    ``carc``, ``payer_id``, ``procedure_code``, ``family`` and ``denied_amount`` (0 when
    paid). Returns ``level, payer_id, procedure, reason, started, detected, baseline_rate,
    rate_since_start, claims_since_start, denials_since_start`` (dates: the first day of the
    start week, the last day of the detection week).
    """
    settings = settings or DetectorSettings()
    columns = [
        "level",
        "payer_id",
        "procedure",
        "reason",
        "started",
        "detected",
        "baseline_rate",
        "rate_since_start",
        "claims_since_start",
        "denials_since_start",
        "cusum",
    ]
    if events.empty:
        return pd.DataFrame(columns=columns)
    dates = pd.to_datetime(events["remit_date"]).dt.normalize()
    first = dates.min()
    monday = first - pd.Timedelta(days=first.weekday())  # weeks run Monday to Sunday
    week = ((dates - monday).dt.days // 7).to_numpy(dtype=np.int64)
    n_weeks = int(week.max()) + 1
    found = []
    for level in LEVELS:
        found.append(_run_level(events, week, n_weeks, level, settings))
    alerts = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=columns)
    if alerts.empty:
        return pd.DataFrame(columns=columns)
    alerts["started"] = monday + pd.to_timedelta(alerts["start"] * 7, unit="D")
    alerts["detected"] = monday + pd.to_timedelta(alerts["alert"] * 7 + 6, unit="D")
    return alerts[columns].sort_values("detected", kind="stable").reset_index(drop=True)


def _joined(events: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    """The columns' values as one text key per row ("" for no columns)."""
    key = pd.Series("", index=events.index, dtype=object)
    for i, column in enumerate(columns):
        text = events[column].astype(object).where(events[column].notna(), "").astype(str)
        key = text if i == 0 else key + "\x1f" + text
    return key


def _counts(
    codes: np.ndarray,
    week: np.ndarray,
    n_groups: int,
    n_weeks: int,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    flat = codes * n_weeks + week
    out = np.bincount(flat, weights=weights, minlength=n_groups * n_weeks)
    return out.reshape(n_groups, n_weeks).astype(float)


def _trailing(matrix: np.ndarray, width: int) -> np.ndarray:
    """Sum over the ``width`` weeks before each week (the week itself excluded)."""
    cumulative = np.concatenate([np.zeros((matrix.shape[0], 1)), np.cumsum(matrix, axis=1)], 1)
    n = matrix.shape[1]
    upper = cumulative[:, :n]
    lower = cumulative[:, np.maximum(np.arange(n) - width, 0)]
    return upper - lower


def _run_level(
    events: pd.DataFrame, week: np.ndarray, n_weeks: int, level: Level, s: DetectorSettings
) -> pd.DataFrame:
    group_key = _joined(events, level.group)
    group_code, groups = pd.factorize(group_key)
    denied = events["denied"].to_numpy(dtype=bool)
    reason = events[level.key].astype(object).where(denied, None)
    key_text = group_key + "\x1f" + reason.fillna("").astype(str)
    key_code, keys = pd.factorize(key_text.where(denied))
    if len(keys) == 0:
        return pd.DataFrame()
    n = _counts(group_code, week, len(groups), n_weeks)
    d_keys = _counts(key_code[denied], week[denied], len(keys), n_weeks)
    totals = d_keys.sum(axis=1)
    watched = np.flatnonzero(totals >= s.min_denials)
    if len(watched) == 0:
        return pd.DataFrame()
    d = d_keys[watched]
    key_rows = (
        pd.DataFrame({"group": group_code[denied], "key": key_code[denied]})
        .drop_duplicates("key")
        .set_index("key")["group"]
    )
    key_group = key_rows.reindex(watched).to_numpy()
    n_k = n[key_group]
    # The parent: the same reason over the parent grouping's claims.
    parent_key = _joined(events, level.parent)
    parent_code, parents = pd.factorize(parent_key)
    p_reason = parent_key + "\x1f" + reason.fillna("").astype(str)
    pr_code, pr_keys = pd.factorize(p_reason.where(denied))
    n_parent = _counts(parent_code, week, len(parents), n_weeks)
    d_parent = _counts(pr_code[denied], week[denied], len(pr_keys), n_weeks)
    first_rows = np.unique(key_code[denied], return_index=True)[1]
    key_parent_reason = pd.Series(pr_code[denied][first_rows], index=key_code[denied][first_rows])
    key_parent = pd.Series(parent_code[denied][first_rows], index=key_code[denied][first_rows])
    base_d = _trailing(d, s.baseline_weeks)
    base_n = _trailing(n_k, s.baseline_weeks)
    parent_d = _trailing(d_parent, s.baseline_weeks)[key_parent_reason.reindex(watched).to_numpy()]
    parent_n = _trailing(n_parent, s.baseline_weeks)[key_parent.reindex(watched).to_numpy()]
    parent_rate = np.where(parent_n > 0, parent_d / np.maximum(parent_n, 1), s.min_rate)
    p0 = (base_d + s.prior_claims * parent_rate) / (base_n + s.prior_claims)
    p0 = np.clip(p0, s.min_rate, 0.9)
    p1 = np.minimum(np.maximum(s.ratio * p0, p0 + s.min_lift), 0.99)
    step = d * np.log(p1 / p0) + (n_k - d) * np.log((1 - p1) / (1 - p0))

    cusum = np.zeros(len(watched))
    start = np.zeros(len(watched), dtype=np.int64)
    since_d = np.zeros(len(watched))
    since_n = np.zeros(len(watched))
    muted_until = np.full(len(watched), s.warmup_weeks, dtype=np.int64)
    rows: list[dict[str, Any]] = []
    for w in range(n_weeks):
        active = w >= muted_until
        restart = cusum <= 0
        start = np.where(restart, w, start)
        since_d = np.where(restart, 0.0, since_d)
        since_n = np.where(restart, 0.0, since_n)
        cusum = np.where(active, np.maximum(0.0, cusum + step[:, w]), 0.0)
        since_d += d[:, w]
        since_n += n_k[:, w]
        fire = active & (cusum >= s.threshold) & (since_d >= s.min_denials)
        for i in np.flatnonzero(fire):
            parts = str(keys[watched[i]]).split("\x1f")
            rows.append(
                {
                    "level": level.name,
                    "payer_id": parts[0],
                    "procedure": parts[1] if level.key == "category" else None,
                    "reason": parts[-1],
                    "start": int(start[i]),
                    "alert": w,
                    "baseline_rate": round(float(p0[i, start[i]]), 4),
                    "rate_since_start": round(float(since_d[i] / max(since_n[i], 1.0)), 4),
                    "claims_since_start": int(since_n[i]),
                    "denials_since_start": int(since_d[i]),
                    "cusum": round(float(cusum[i]), 2),
                }
            )
        muted_until = np.where(fire, w + s.baseline_weeks, muted_until)
        cusum = np.where(fire, 0.0, cusum)
    return pd.DataFrame(rows)


def alert_events(facts: DenialFacts) -> pd.DataFrame:
    """The detector's input from the analytics facts: adjudicated claims with denied dollars."""
    claims = facts.claims
    amount = np.where(claims["denied"], (claims["charge"] - claims["paid"]).clip(lower=0), 0.0)
    return claims.assign(denied_amount=amount)[
        [
            "remit_date",
            "denied",
            "category",
            "carc",
            "payer_id",
            "procedure_code",
            "family",
            "denied_amount",
        ]
    ]


def combination_weeks(
    events: pd.DataFrame, payer_id: str, reason: str, procedure: str | None = None
) -> pd.DataFrame:
    """Week by week (weeks start on Monday, as the detector's), the claims and denials of one
    combination the detector watches: with ``procedure``, the payer's claims of that main
    procedure and their denials of category ``reason``; without, all of the payer's claims and
    their denials with CARC ``reason``. ``events`` as :func:`weekly_alerts` takes them.

    Returns ``week, claims, denials, rate`` for every week from the first to the last
    remittance of ``events`` (weeks without a claim of the combination count 0, rate NaN).
    """
    dates = pd.to_datetime(events["remit_date"]).dt.normalize()
    week = (dates - pd.to_timedelta(dates.dt.weekday, unit="D")).to_numpy()
    in_group = (events["payer_id"].astype(str) == payer_id).to_numpy(dtype=bool)
    column = "carc"
    if procedure is not None:
        in_group = in_group & (events["procedure_code"].astype(str) == procedure).to_numpy(
            dtype=bool
        )
        column = "category"
    denied = (
        in_group
        & events["denied"].to_numpy(dtype=bool)
        & (events[column].astype(str) == reason).to_numpy(dtype=bool)
    )
    weeks = pd.date_range(week.min(), week.max(), freq="7D") if len(week) else []
    frame = pd.DataFrame(
        {
            "claims": pd.Series(in_group.astype(int)).groupby(week).sum(),
            "denials": pd.Series(denied.astype(int)).groupby(week).sum(),
        }
    ).reindex(weeks, fill_value=0)
    frame["rate"] = frame["denials"] / frame["claims"].where(frame["claims"] > 0)
    return frame.rename_axis("week").reset_index()


def payer_change_alerts(
    facts: DenialFacts, period: Period, settings: DetectorSettings | None = None
) -> dict[str, Any]:
    """Alerts detected within the period, each with its start, the claims affected and the
    dollars at stake (denials of the combination from its start to the period's end)."""
    from features.analytics import family_label

    settings = settings or DetectorSettings()
    known = facts.claims[facts.claims["remit_date"] <= period.end]
    events = alert_events(facts)[facts.claims["remit_date"] <= period.end]
    alerts = weekly_alerts(events, settings)
    alerts = alerts[period.holds(alerts["detected"])] if len(alerts) else alerts
    names = known.dropna(subset=["payer_id"]).drop_duplicates("payer_id").set_index("payer_id")
    carc_text = code_tables().carc["description"].to_dict()
    rows = []
    for alert in alerts.itertuples(index=False):
        hit = (
            (events["payer_id"].astype(str) == alert.payer_id)
            & events["denied"].to_numpy(dtype=bool)
            & (events["remit_date"] >= alert.started)
        )
        if alert.procedure is not None:
            hit &= (events["procedure_code"].astype(str) == alert.procedure) & (
                events["category"].astype(str) == alert.reason
            )
            label = code_tables().category_label(alert.reason)
            what = f"{label} denials of {alert.procedure} ({family_label(alert.procedure[:3])})"
        else:
            hit &= events["carc"].astype(str) == alert.reason
            what = f"CARC {alert.reason} ({carc_text.get(alert.reason, 'not in the CARC table')})"
        payer = names["payer_name"].get(alert.payer_id) if alert.payer_id in names.index else None
        rows.append(
            {
                "level": alert.level,
                "payer_id": alert.payer_id,
                "payer_name": payer if isinstance(payer, str) else alert.payer_id,
                "procedure": alert.procedure,
                "reason": alert.reason,
                "what": what,
                "started": f"{alert.started:%Y-%m-%d}",
                "detected": f"{alert.detected:%Y-%m-%d}",
                "baseline_rate": alert.baseline_rate,
                "rate_since_start": alert.rate_since_start,
                "claims_affected": int(hit.sum()),
                "dollars_at_stake": round(float(events.loc[hit, "denied_amount"].sum()), 2),
            }
        )
    return {
        "method": "Bernoulli CUSUM per payer x procedure x reason and per payer x CARC, "
        "weekly over the remittances as they arrived, against each one's own previous "
        f"{settings.baseline_weeks} weeks (features/payer_change.py)",
        "settings": asdict(settings),
        "alerts": rows,
    }
