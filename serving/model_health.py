"""Model health for the analytics report: scores over time, calibration, feature drift.

Each month of the period is scored point in time: the model's history is set to what the
practice knew on the month's first day (claims sent before it, remittances that had arrived,
:func:`training.model.with_history`), then a sample of the month's claims is scored. So the
scores are the ones the model would have given at submission, not scores that have read their
own outcomes.

* **Scores over time**: the denial probability's quantiles by month.
* **Calibration**: mean predicted probability against the observed denial rate, by month and
  by payer, over the scored claims whose outcome has arrived.
* **Drift**: population stability index (PSI) of the model's most important features (gain of
  the denial booster) in each month against the month the training ended, scored the same way.

A warning says to retrain when a month after the training ended crosses a threshold: its
calibration gap or a feature's PSI (:data:`CALIBRATION_GAP`, :data:`PSI_THRESHOLD`).
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from features.claim_tables import ClaimTables
from features.schema import ClaimsDataset

CALIBRATION_GAP = 0.03
"""|mean predicted - observed denial rate| of a month (with 200+ outcomes) that asks for a look."""
PSI_THRESHOLD = 0.25
"""PSI above which a feature has shifted materially (0.1-0.25: moderate; the usual bands)."""
TOP_FEATURES = 8
SAMPLE_PER_MONTH = 2000
MIN_OUTCOMES = 200


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (quantile bins of the
    reference; missing values are a bin of their own)."""
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    present = reference[~np.isnan(reference)]
    edges: Any = (
        np.unique(np.quantile(present, np.linspace(0, 1, bins + 1))) if len(present) else []
    )
    inner = np.asarray(edges)[1:-1]

    def shares(values: np.ndarray) -> np.ndarray:
        missing = np.isnan(values)
        counts = np.bincount(
            np.searchsorted(inner, values[~missing], side="right"), minlength=len(inner) + 1
        ).astype(float)
        counts = np.append(counts, missing.sum())
        return np.maximum(counts / max(len(values), 1), 1e-4)

    expected, actual = shares(reference), shares(current)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _scored_month(
    pipeline: Any,
    tables: ClaimTables,
    outcomes: pd.DataFrame,
    day: pd.Timestamp,
    ids: pd.Series,
    rng: np.random.Generator,
) -> tuple[pd.Series, pd.DataFrame]:
    """Scores and model matrix of a sample of ``ids`` with history as known on ``day``."""
    from training.model import predict, with_history

    claims = tables.claims
    sent = claims.loc[claims["submission_date"] < day, "claim_id"]
    known = outcomes[pd.to_datetime(outcomes["remit_date"]) < day].reset_index(drop=True)
    view = with_history(pipeline, tables.subset(sent), known)
    if len(ids) > SAMPLE_PER_MONTH:
        ids = ids.iloc[np.sort(rng.choice(len(ids), SAMPLE_PER_MONTH, replace=False))]
    subset = tables.subset(ids)
    prediction = predict(view, subset, keep_matrix=True)
    scores = pd.Series(prediction.denial_probability, index=subset.claims["claim_id"].to_numpy())
    return scores, prediction.model_matrix()


def model_health_section(
    dataset: ClaimsDataset,
    model_uri: str,
    tracking_uri: str | None,
    start: pd.Timestamp,
    end: pd.Timestamp,
    seed: int = 0,
) -> dict[str, Any]:
    """The report's model-health figures for the months of ``start``..``end``."""
    from serving.loading import load_service
    from training.dataset import outcome_labels

    service = load_service(model_uri, tracking_uri or "")
    pipeline = service.pipeline
    model = pipeline.named_steps["model"]
    tables = ClaimTables.from_dataset(dataset)
    outcomes = outcome_labels(dataset)
    claims = tables.claims
    months = pd.period_range(start, end, freq="M")
    trained_until = _training_end(service.info.training_period)
    reference_month = (
        (trained_until - pd.Timedelta(days=1)).to_period("M")
        if trained_until is not None
        else months[0] - 1
    )
    gains = model.denial_booster_.feature_importance("gain")
    names = list(model.feature_names_in_)
    top = [names[i] for i in np.argsort(-gains)[:TOP_FEATURES]]
    rng = np.random.default_rng(seed)
    month_of = claims["submission_date"].dt.to_period("M")

    def score(month: pd.Period) -> tuple[pd.Series, pd.DataFrame]:
        ids = claims.loc[month_of == month, "claim_id"]
        return _scored_month(pipeline, tables, outcomes, month.to_timestamp(), ids, rng)

    _, reference = score(reference_month)
    label = outcomes.set_index("claim_id")["denied"]
    payer = claims.set_index("claim_id")["payer_name"].fillna(
        claims.set_index("claim_id")["payer_id"]
    )
    rows: list[dict[str, Any]] = []
    drift: list[dict[str, Any]] = []
    by_payer: list[pd.DataFrame] = []
    for month in months:
        scores, matrix = score(month)
        if scores.empty:
            continue
        observed = label.reindex(scores.index)
        has = observed.notna().to_numpy()
        q = np.quantile(scores.to_numpy(), [0.1, 0.25, 0.5, 0.75, 0.9])
        rows.append(
            {
                "month": str(month),
                "claims_scored": len(scores),
                "p10": round(float(q[0]), 4),
                "p25": round(float(q[1]), 4),
                "median": round(float(q[2]), 4),
                "p75": round(float(q[3]), 4),
                "p90": round(float(q[4]), 4),
                "outcomes": int(has.sum()),
                "predicted": round(float(scores[has].mean()), 4) if has.any() else None,
                "observed": round(float(observed[has].astype(float).mean()), 4)
                if has.any()
                else None,
            }
        )
        drift.append(
            {"month": str(month), **{f: round(psi(reference[f], matrix[f]), 4) for f in top}}
        )
        by_payer.append(
            pd.DataFrame(
                {
                    "payer": payer.reindex(scores.index).to_numpy()[has],
                    "predicted": scores.to_numpy()[has],
                    "observed": observed.to_numpy()[has].astype(float),
                }
            )
        )
    payers = (
        pd.concat(by_payer)
        if by_payer
        else pd.DataFrame(columns=["payer", "predicted", "observed"])
    )
    calibration_by_payer = [
        {
            "payer": str(name),
            "outcomes": len(g),
            "predicted": round(float(g["predicted"].mean()), 4),
            "observed": round(float(g["observed"].mean()), 4),
        }
        for name, g in payers.groupby("payer")
    ]
    warnings = []
    # Only months after the training ended say anything about the model since training.
    after = str(reference_month)
    for row in rows:
        if (
            row["month"] > after
            and row["outcomes"] >= MIN_OUTCOMES
            and row["predicted"] is not None
        ):
            gap = abs(row["predicted"] - row["observed"])
            if gap > CALIBRATION_GAP:
                warnings.append(
                    f"{row['month']}: predicted {row['predicted']:.1%} against "
                    f"{row['observed']:.1%} observed (gap above {CALIBRATION_GAP:.0%})"
                )
    for row in drift:
        for feature in top if row["month"] > after else []:
            if row[feature] > PSI_THRESHOLD:
                warnings.append(
                    f"{row['month']}: {feature} drifted (PSI {row[feature]:.2f} > {PSI_THRESHOLD})"
                )
    return {
        "model": {
            "uri": model_uri,
            "version": service.info.version,
            "training_period": service.info.training_period,
        },
        "reference_month": str(reference_month),
        "top_features": top,
        "scores_by_month": rows,
        "calibration_by_payer": calibration_by_payer,
        "drift_by_month": drift,
        "thresholds": {"calibration_gap": CALIBRATION_GAP, "psi": PSI_THRESHOLD},
        "warnings": warnings,
        "retrain": bool(warnings),
        "advice": "Retrain the model (`denial-risk train`): " + "; ".join(warnings[:5])
        if warnings
        else "Calibration and feature drift are within their thresholds.",
    }


def _training_end(period: str) -> pd.Timestamp | None:
    if ".." not in period:
        return None
    try:
        return pd.Timestamp(period.split("..")[1]) + pd.Timedelta(days=1)
    except ValueError:
        return None


def health_html(health: dict[str, Any]) -> list[str]:
    """The model-health sections of the report page."""
    from serving.report import _figure, _svg, plot_bars, plot_with_table, table, table_section

    rows = health["scores_by_month"]
    months = [r["month"] for r in rows]
    figure, ax = _figure()
    ax.fill_between(
        months,
        [r["p10"] for r in rows],
        [r["p90"] for r in rows],
        alpha=0.2,
        color="#1f5f99",
        label="10th-90th percentile",
    )
    ax.plot(months, [r["median"] for r in rows], marker="o", color="#1f5f99", label="median")
    ax.plot(
        months,
        [r["predicted"] if r["predicted"] is not None else np.nan for r in rows],
        marker="s",
        color="#d9822b",
        label="mean predicted",
    )
    ax.plot(
        months,
        [r["observed"] if r["observed"] is not None else np.nan for r in rows],
        marker="^",
        color="#6a9f3a",
        label="observed denial rate",
    )
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    ax.legend(fontsize=8)
    advice = html.escape(health["advice"])
    warn = f"<p class='warn'>{advice}</p>" if health["retrain"] else f"<p>{advice}</p>"
    model = health["model"]
    parts = [
        warn,
        plot_with_table(
            "model_scores",
            "Scores and calibration by month",
            _svg(figure, "model_scores"),
            table(
                "model_scores",
                rows,
                (
                    ("month", "Month", "text"),
                    ("claims_scored", "Claims scored", "int"),
                    ("p10", "10th pct", "rate"),
                    ("median", "Median", "rate"),
                    ("p90", "90th pct", "rate"),
                    ("outcomes", "Outcomes arrived", "int"),
                    ("predicted", "Mean predicted", "rate"),
                    ("observed", "Observed", "rate"),
                ),
            ),
            f"Model {model['uri']} v{model['version']}, trained on {model['training_period']}; "
            "each month scored with the history known on its first day.",
        ),
    ]
    top = health["top_features"]
    last = health["drift_by_month"][-1] if health["drift_by_month"] else {}
    parts.append(
        plot_with_table(
            "model_drift",
            f"Feature drift against {health['reference_month']} (PSI, latest month)",
            plot_bars("model_drift", top, {"PSI": [last.get(f, 0.0) for f in top]}),
            table(
                "model_drift",
                health["drift_by_month"],
                (("month", "Month", "text"), *((f, f, "text") for f in top)),
            ),
            f"PSI above {PSI_THRESHOLD} is a material shift.",
        )
    )
    parts.append(
        table_section(
            "calibration_by_payer",
            "Calibration by payer",
            table(
                "calibration_by_payer",
                health["calibration_by_payer"],
                (
                    ("payer", "Payer", "text"),
                    ("outcomes", "Outcomes", "int"),
                    ("predicted", "Mean predicted", "rate"),
                    ("observed", "Observed", "rate"),
                ),
            ),
        )
    )
    return parts
