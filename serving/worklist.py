"""The denials worklist: which denials to work first, how, and by when.

:class:`WorklistService` takes denials (from a data set folder, 835 files, or an API request),
classifies and routes them and gives each a deadline (:mod:`features.denials`), scores the
recovery probability (:mod:`training.recovery`, or the category's table rate when no recovery
model is registered yet), and ranks the work queue:

``priority_score = recovery_probability x denied_amount x urgency - effort_cost``

* ``expected_recovery`` = recovery probability x denied amount (the dollars working it is
  expected to bring back);
* ``urgency`` = 1 + ``urgency_max_boost`` x (share of the last ``urgency_window_days`` before
  the deadline already used up): up to 1.5x on the deadline day by default, 1.0 when the
  deadline is further away; ``past_deadline_factor`` (0.1) once it has passed;
* ``effort_cost`` = the route's cost in dollars (``features/data/denial_routes.csv``; a
  peer-to-peer costs physician time, a corrected claim a few minutes).

Every denial appears exactly once, in one section:

``work_queue``  soft denials and open rejections, ranked (``rank`` 1 = work first);
``tracking``    hard denials: written off, listed for root-cause tracking, never ranked;
``in_progress`` denials with a follow-up already on or before the as-of date;
``expired``     soft denials never worked whose deadline has passed: listed (a payer may still
                accept a late appeal for good cause) but not ranked with work that can succeed.

No patient identifier is read into the worklist or logged; logs carry counts only.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from sklearn.pipeline import Pipeline

from features.atomic import atomic_file, write_text
from features.codes import code_tables
from features.denials import (
    REJECTION,
    UNKNOWN_CATEGORY,
    DenialRules,
    PayerWindows,
    default_denial_rules,
    denials_from_dataset,
    fill_instructions,
    load_payer_windows,
    prepare_denials,
)
from features.schema import ClaimsDataset, rejects_report

log = logging.getLogger(__name__)

WORK_QUEUE = "work_queue"
TRACKING = "tracking"
IN_PROGRESS = "in_progress"
EXPIRED = "expired"
SECTIONS = (WORK_QUEUE, EXPIRED, TRACKING, IN_PROGRESS)

OUTPUT_COLUMNS: tuple[str, ...] = (
    "rank",
    "section",
    "claim_id",
    "kind",
    "payer_id",
    "payer_name",
    "payer_type",
    "carc",
    "group_code",
    "rarc",
    "reason",
    "category",
    "category_label",
    "hard",
    "preventable",
    "clinical",
    "route",
    "route_label",
    "next_action",
    "denial_date",
    "deadline",
    "deadline_basis",
    "days_left",
    "past_deadline",
    "denied_amount",
    "recovery_probability",
    "expected_recovery",
    "effort_cost",
    "urgency",
    "priority_score",
    "why",
    "note",
    "probability_source",
    "appeal_deadline",
    "days_since_denial",
    "service_date",
    "payer_claim_number",
    "procedure_code",
    "prior_attempts",
    "worked_on",
)
"""Worklist columns, in output order (rows: work queue by rank, then tracking, in progress)."""


class WorklistConfig(BaseModel):
    """How the queue is ranked. Defaults suit a small practice's billing office."""

    urgency_window_days: int = Field(
        default=30, ge=1, le=365, description="Days before a deadline over which urgency rises."
    )
    urgency_max_boost: float = Field(
        default=0.5, ge=0.0, le=5.0, description="Extra weight on the deadline day (0.5 = 1.5x)."
    )
    past_deadline_factor: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Weight of a denial whose deadline has passed."
    )
    effort_costs: dict[str, float] = Field(
        default_factory=dict,
        description="Cost in dollars of working each route; overrides denial_routes.csv.",
    )
    work_lag_days: int = Field(
        default=7,
        ge=0,
        le=180,
        description="Days from the list to the action: the recovery model scores the denial "
        "as of as_of + this lag (recovery falls as denials age).",
    )
    include_rejections: bool = Field(
        default=True, description="Put open front-end rejections (resubmission) in the queue."
    )
    top_factors: int = Field(default=3, ge=0, le=10)


@dataclass
class Worklist:
    """A prioritised worklist: ``rows`` has :data:`OUTPUT_COLUMNS`, queue first in rank order."""

    rows: pd.DataFrame
    as_of: pd.Timestamp | None
    probability_source: str
    model_version: str | None = None
    dropped_after_as_of: int = 0
    factors: list[list[dict[str, Any]]] = field(default_factory=list)
    """Per row, the top factors as dicts (field, description, contribution, direction)."""

    def section(self, name: str) -> pd.DataFrame:
        return self.rows[self.rows["section"] == name]

    @property
    def queue(self) -> pd.DataFrame:
        return self.section(WORK_QUEUE)

    @property
    def tracking(self) -> pd.DataFrame:
        return self.section(TRACKING)

    def summary(self) -> dict[str, Any]:
        """Counts and dollars per section (no claim-level data): safe to log."""
        rows = self.rows
        queue = self.queue
        return {
            "as_of": None if self.as_of is None else f"{self.as_of:%Y-%m-%d}",
            "rows": len(rows),
            **{f"{s}_rows": int((rows["section"] == s).sum()) for s in SECTIONS},
            "past_deadline_in_queue": int(queue["past_deadline"].sum()),
            "expired_denied_amount": float(self.section(EXPIRED)["denied_amount"].sum()),
            "unknown_carc": int((rows["category"] == UNKNOWN_CATEGORY).sum()),
            "rejections": int((rows["kind"] == REJECTION).sum()),
            "denied_amount": float(rows["denied_amount"].sum()),
            "queue_expected_recovery": float(queue["expected_recovery"].sum()),
            "tracking_denied_amount": float(self.tracking["denied_amount"].sum()),
            "dropped_after_as_of": self.dropped_after_as_of,
            "probability_source": self.probability_source,
            "model_version": self.model_version,
        }


class WorklistService:
    """Classify, score and rank denials. Build once (model loaded), call per request or batch.

    Parameters
    ----------
    model
        The fitted recovery pipeline (:func:`training.recovery.load_recovery_model`); ``None``
        scores each denial with its category's ``recovery_when_worked`` table rate, so the
        worklist works before a recovery model has been trained.
    windows, rules, config
        Payer windows (defaults + per-payer overrides), routing rules, ranking settings.
    model_version
        Shown in the output and the API response.
    """

    def __init__(
        self,
        model: Pipeline | None = None,
        windows: PayerWindows | None = None,
        rules: DenialRules | None = None,
        config: WorklistConfig | None = None,
        model_version: str | None = None,
    ) -> None:
        self.model = model
        self.windows = windows or load_payer_windows()
        self.rules = rules or default_denial_rules()
        self.config = config or WorklistConfig()
        self.model_version = model_version

    @property
    def probability_source(self) -> str:
        return "recovery model" if self.model is not None else "category table rate"

    def prioritize_dataset(
        self, dataset: ClaimsDataset, as_of: pd.Timestamp | None = None
    ) -> Worklist:
        """Worklist of a data set's denials and open rejections as of ``as_of``.

        Default ``as_of``: the latest remittance or rejection date in the data (the data's own
        "today"). Denials dated after ``as_of`` are left out and counted.
        """
        frame = denials_from_dataset(dataset, self.config.include_rejections)
        return self.prioritize(frame, as_of)

    def prioritize(
        self, denials: pd.DataFrame, as_of: pd.Timestamp | pd.Series | None = None
    ) -> Worklist:
        """Rank a denial frame (:data:`features.denials.DENIAL_FRAME_COLUMNS`).

        ``as_of`` is a date, or a per-row series (backtests: each denial as of its own date);
        ``None`` means the latest denial date in the frame.
        """
        if not self.config.include_rejections and "kind" in denials.columns:
            denials = denials[denials["kind"] != REJECTION]
        denials = denials.reset_index(drop=True)
        fixed = None
        if as_of is None:
            dates = pd.to_datetime(denials["denial_date"]) if len(denials) else pd.Series()
            fixed = pd.Timestamp(dates.max()).normalize() if len(dates) else pd.Timestamp.now()
            as_of = fixed
        elif not isinstance(as_of, pd.Series):
            fixed = pd.Timestamp(as_of).normalize()
            as_of = fixed
        dropped = 0
        if fixed is not None and len(denials):
            keep = pd.to_datetime(denials["denial_date"]) <= fixed
            dropped = int((~keep).sum())
            denials = denials[keep].reset_index(drop=True)
        prepared = prepare_denials(denials, self.windows, as_of, self.rules)
        rows, factors = self._score(prepared)
        rows = self._rank(rows)
        order = rows.index.to_numpy()
        rows = rows.reset_index(drop=True)
        worklist = Worklist(
            rows=rows[list(OUTPUT_COLUMNS)],
            as_of=fixed,
            probability_source=self.probability_source,
            model_version=self.model_version,
            dropped_after_as_of=dropped,
            factors=[factors[i] for i in order] if factors else [[] for _ in order],
        )
        log.info("worklist built: %s", json.dumps(worklist.summary()))
        return worklist

    # -- scoring ---------------------------------------------------------------------------------
    def _score(self, prepared: pd.DataFrame) -> tuple[pd.DataFrame, list[list[dict[str, Any]]]]:
        rows = prepared.copy()
        n = len(rows)
        is_rejection = (rows["kind"] == REJECTION).to_numpy()
        probability = self._table_rates(rows)
        source = np.where(is_rejection, "route default", "category table rate").astype(object)
        factors: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        scored = ~is_rejection
        if self.model is not None and scored.any():
            from training.recovery import explain_recovery, predict_recovery

            subset = rows[scored].copy()
            # The denial will be worked a few days after the list is made: score it then.
            for column in ("days_since_denial", "days_since_service"):
                subset[column] = subset[column] + self.config.work_lag_days
            for column in ("days_left_appeal", "days_left_filing"):
                subset[column] = subset[column] - self.config.work_lag_days
            probability[scored] = predict_recovery(self.model, subset)
            source[scored] = "recovery model"
            if self.config.top_factors:
                explained = explain_recovery(self.model, subset, self.config.top_factors)
                for i, row_factors in zip(np.flatnonzero(scored), explained, strict=True):
                    factors[i] = [
                        {
                            "field": f.field,
                            "description": f.description,
                            "contribution": round(f.contribution, 4),
                            "direction": f.direction,
                        }
                        for f in row_factors
                    ]
        hard = rows["hard"].to_numpy()
        probability = np.where(hard, 0.0, probability)
        rows["recovery_probability"] = np.round(probability, 4)
        rows["probability_source"] = np.where(hard, "hard denial", source)
        rows["expected_recovery"] = (rows["recovery_probability"] * rows["denied_amount"]).round(2)
        costs = rows["route"].map(self.rules.routes["effort_cost"]).astype(float)
        if self.config.effort_costs:
            costs = rows["route"].map(self.config.effort_costs).fillna(costs)
        rows["effort_cost"] = costs.fillna(0.0)
        rows["urgency"] = self._urgency(rows["days_left"].to_numpy(), hard)
        rows["priority_score"] = (
            rows["expected_recovery"] * rows["urgency"] - rows["effort_cost"]
        ).round(2)
        rows["next_action"] = fill_instructions(rows, self.rules)
        rows["why"] = self._why(rows, factors)
        rows["note"] = self._notes(rows)
        return rows, factors

    def _table_rates(self, rows: pd.DataFrame) -> np.ndarray:
        """Category table rate for denials, the route's default rate for rejections."""
        table = code_tables().reason_categories["recovery_when_worked"]
        category = rows["category"].replace({UNKNOWN_CATEGORY: "other"})
        rates = category.map(table)
        route_default = rows["route"].map(self.rules.routes["default_recovery"])
        rates = rates.where(rows["kind"] != REJECTION, route_default)
        return rates.fillna(table["other"]).to_numpy(dtype=float, copy=True)

    def _urgency(self, days_left: np.ndarray, hard: np.ndarray) -> np.ndarray:
        config = self.config
        used = np.clip(1.0 - days_left / config.urgency_window_days, 0.0, 1.0)
        urgency = 1.0 + config.urgency_max_boost * used
        urgency = np.where(days_left < 0, config.past_deadline_factor, urgency)
        return np.round(np.where(hard, 0.0, urgency), 4)

    @staticmethod
    def _why(rows: pd.DataFrame, factors: list[list[dict[str, Any]]]) -> list[str]:
        out = []
        for i, row in enumerate(rows.itertuples(index=False)):
            if row.hard:
                out.append(f"hard denial ({row.category_label}): not recoverable")
            elif row.kind == REJECTION:
                out.append("front-end rejection: usually paid once corrected and resubmitted")
            elif factors[i]:
                out.append("; ".join(
                    f"{f['description']} ({'+' if f['contribution'] > 0 else '-'})"
                    for f in factors[i]
                ))  # fmt: skip
            else:
                out.append(f"{row.category_label} denials are usually recovered at this rate")
        return out

    @staticmethod
    def _notes(rows: pd.DataFrame) -> pd.Series:
        notes = rows["note"].fillna("").astype(str)
        past = rows["past_deadline"].to_numpy()
        text = [
            f"PAST DEADLINE ({d:%Y-%m-%d}); " + n if p else n
            for n, p, d in zip(notes, past, rows["deadline"], strict=True)
        ]
        rejection = rows["rejection_reason"].fillna("").astype(str)
        text = [f"{t}; {r}" if r else t for t, r in zip(text, rejection, strict=True)]
        return pd.Series([t.strip("; ") for t in text], index=rows.index)

    # -- ranking ---------------------------------------------------------------------------------
    @staticmethod
    def _rank(rows: pd.DataFrame) -> pd.DataFrame:
        worked_on = pd.to_datetime(rows["worked_on"])
        in_progress = worked_on.notna() & (worked_on <= rows["as_of"])
        rows["section"] = np.select(
            [
                rows["hard"].to_numpy(dtype=bool),
                in_progress.to_numpy(dtype=bool),
                rows["past_deadline"].to_numpy(dtype=bool),
            ],
            [TRACKING, IN_PROGRESS, EXPIRED],
            default=WORK_QUEUE,
        )
        section_order = rows["section"].map({s: i for i, s in enumerate(SECTIONS)})
        rows = rows.assign(_section=section_order, _neg_score=-rows["priority_score"],
                           _neg_amount=-rows["denied_amount"])  # fmt: skip
        rows = rows.sort_values(
            ["_section", "_neg_score", "days_left", "_neg_amount", "claim_id"], kind="stable"
        )
        queue = rows["section"] == WORK_QUEUE
        rows["rank"] = pd.array([None] * len(rows), dtype="Int64")
        rows.loc[queue, "rank"] = np.arange(1, int(queue.sum()) + 1)
        return rows.drop(columns=["_section", "_neg_score", "_neg_amount"])


# -- loading, input and output -------------------------------------------------------------------
def load_worklist_service(
    tracking_uri: str | None,
    model_uri: str | None = "models:/denial-recovery@champion",
    payer_windows: Path | None = None,
    config: WorklistConfig | None = None,
    routes_path: Path | None = None,
    rules_path: Path | None = None,
) -> WorklistService:
    """A service with the registered recovery model, or the table rates when none is found.

    A missing model is not an error (the worklist still ranks by table rates, and says so in
    ``probability_source``); a broken override file is, with the file named.
    """
    from features.denials import load_denial_rules

    windows = load_payer_windows(payer_windows)
    rules = (
        load_denial_rules(routes_path, rules_path)
        if routes_path or rules_path
        else default_denial_rules()
    )
    model, version = None, None
    if tracking_uri and model_uri:
        try:
            from training import registry
            from training.recovery import load_recovery_model

            model = load_recovery_model(model_uri, tracking_uri)
            version = _version_of(model_uri, tracking_uri, registry)
        except Exception as error:  # no registry, no model yet: fall back to table rates
            log.warning("recovery model %s not loaded (%s); using table rates", model_uri,
                        type(error).__name__)  # fmt: skip
            model = None
    return WorklistService(model, windows, rules, config, version)


def _version_of(model_uri: str, tracking_uri: str, registry: Any) -> str | None:
    if not model_uri.startswith("models:/"):
        return None
    name, _, ref = model_uri.removeprefix("models:/").partition("@")
    if ref:
        return registry.champion_version(registry.configure(tracking_uri), name, ref)
    return model_uri.rsplit("/", 1)[-1]


def read_denials_input(source: Path) -> tuple[ClaimsDataset, pd.DataFrame]:
    """A data set folder (``claims.parquet`` ...) or 835/837 files (a folder of them).

    Returns the data set and the quarantined rows (with reasons).
    """
    if source.is_dir() and (source / "remittances.parquet").exists():
        return ClaimsDataset.read(source)
    if source.exists():
        from features.x12.ingest import ingest_paths

        result = ingest_paths([source])
        return result.dataset, result.quarantine
    raise FileNotFoundError(
        f"input {source} not found: give a data set folder or 835 files (a folder of them)"
    )


def write_worklist(worklist: Worklist, out: Path, html_view: bool = True) -> dict[str, Path]:
    """Write the worklist as CSV or Parquet (by ``out``'s suffix) and an HTML view beside it.

    Each file is complete or absent, and the table is written last: a run killed before it
    leaves no new table beside an older summary. Returns the paths written (``table``,
    ``summary``, ``html``).
    """
    suffix = out.suffix.lower()
    if suffix not in {".csv", ".parquet"}:
        raise ValueError(f"--out must end in .csv or .parquet, got {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = {"table": out, "summary": out.with_suffix(".summary.json")}
    write_text(written["summary"], json.dumps(worklist.summary(), indent=2))
    if html_view:
        written["html"] = write_text(out.with_suffix(".html"), worklist_html(worklist))
    with atomic_file(out) as temp:
        if suffix == ".parquet":
            worklist.rows.to_parquet(temp, index=False)
        else:
            worklist.rows.to_csv(temp, index=False, date_format="%Y-%m-%d")
    return written


_HTML_COLUMNS: tuple[tuple[str, str], ...] = (
    ("rank", "Rank"),
    ("claim_id", "Claim"),
    ("payer_name", "Payer"),
    ("carc", "CARC"),
    ("reason", "Reason"),
    ("category_label", "Category"),
    ("hard", "Hard"),
    ("preventable", "Preventable"),
    ("clinical", "Clinical"),
    ("route_label", "Route"),
    ("next_action", "Next action"),
    ("deadline", "Deadline"),
    ("days_left", "Days left"),
    ("denied_amount", "Denied $"),
    ("recovery_probability", "Recovery %"),
    ("expected_recovery", "Expected $"),
    ("why", "Why"),
    ("note", "Note"),
)

_SORT_JS = """
document.querySelectorAll('table.wl th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var asc = th.dataset.dir !== 'asc';
    th.closest('tr').querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = asc ? 'asc' : 'desc';
    Array.from(body.rows).sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    }).forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _cell(column: str, value: Any) -> tuple[str, str]:
    """(display text, sort key) for one cell."""
    if value is None or (not isinstance(value, str | bool) and pd.isna(value)):
        return "", ""
    if isinstance(value, pd.Timestamp):
        text = f"{value:%Y-%m-%d}"
        return text, text
    if column == "recovery_probability":
        return f"{float(value):.0%}", f"{float(value):.6f}"
    if column in ("denied_amount", "expected_recovery"):
        return f"${float(value):,.2f}", f"{float(value):.2f}"
    if isinstance(value, bool | np.bool_):
        return ("yes" if value else ""), ("1" if value else "0")
    return str(value), str(value)


def _html_table(rows: pd.DataFrame, caption: str) -> str:
    head = "".join(f"<th title='click to sort'>{html.escape(label)}</th>"
                   for _, label in _HTML_COLUMNS)  # fmt: skip
    body = []
    for _, row in rows.iterrows():
        cells = []
        for column, _ in _HTML_COLUMNS:
            text, key = _cell(column, row[column])
            cells.append(f"<td data-v='{html.escape(key, quote=True)}'>{html.escape(text)}</td>")
        style = " class='past'" if bool(row["past_deadline"]) else ""
        body.append(f"<tr{style}>{''.join(cells)}</tr>")
    return (
        f"<h2>{html.escape(caption)} ({len(rows):,})</h2><table class='wl'><thead><tr>{head}"
        f"</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def worklist_html(worklist: Worklist, title: str = "Denials worklist") -> str:
    """A self-contained HTML page: one sortable table per section (click a header to sort).

    All values are HTML-escaped; the page loads nothing from the network.
    """
    s = worklist.summary()
    as_of = s["as_of"] or "each denial's own date"
    intro = (
        f"As of {as_of}. {s['work_queue_rows']:,} denials to work "
        f"(expected recovery ${s['queue_expected_recovery']:,.0f}), "
        f"{s['tracking_rows']:,} hard denials to write off and track, "
        f"{s['in_progress_rows']:,} already in progress, {s['expired_rows']:,} past their "
        "deadline unworked. Recovery probability from the "
        f"{html.escape(worklist.probability_source)}"
        + (f" v{html.escape(str(worklist.model_version))}" if worklist.model_version else "")
        + ". Rows past their deadline are shaded."
    )
    sections = [
        _html_table(worklist.section(WORK_QUEUE), "Work queue, highest priority first"),
        _html_table(
            worklist.section(EXPIRED),
            "Past the deadline, never worked: late appeal only with good cause, else write off",
        ),
        _html_table(worklist.section(TRACKING), "Hard denials: write off, fix the root cause"),
        _html_table(worklist.section(IN_PROGRESS), "Already being worked"),
    ]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1.5em;font-size:14px}"
        "table{border-collapse:collapse;margin-bottom:2em}"
        "th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}"
        "th{background:#eef;cursor:pointer;position:sticky;top:0}"
        "th[data-dir=asc]::after{content:' \\25B2'}th[data-dir=desc]::after{content:' \\25BC'}"
        "tr.past{background:#fdecea}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{intro}</p>{''.join(sections)}"
        f"<script>{_SORT_JS}</script></body></html>"
    )


def run_worklist(
    source: Path,
    out: Path,
    service: WorklistService,
    as_of: pd.Timestamp | None = None,
) -> tuple[Worklist, dict[str, Path]]:
    """The CLI's job: read the input, build the worklist, write table + HTML + summary."""
    dataset, quarantine = read_denials_input(source)
    worklist = service.prioritize_dataset(dataset, as_of)
    path = out.with_suffix(".quarantine.csv")
    if len(quarantine):
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as temp:
            rejects_report(quarantine).to_csv(temp, index=False)
    written = write_worklist(worklist, out)
    if len(quarantine):
        written["quarantine"] = path
    return worklist, written
