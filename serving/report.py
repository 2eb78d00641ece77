"""The denial analytics report: one self-contained HTML page and ``report.json`` beside it.

:func:`run_report` reads a data set folder, computes the figures (:mod:`features.analytics`,
:mod:`features.payer_change`; model health with a model, :mod:`serving.model_health`) and
writes both files. :func:`report_html` draws the figures as a page that opens offline: every
plot is an SVG drawn by matplotlib and inlined, the only script is the page's own, and nothing
is fetched from a network. Every plot has its table one click away (``<details>``), and every
number in a table carries the exact value of report.json in ``data-value``.

:class:`AnalyticsService` keeps one data set's facts between API requests
(``GET /v1/analytics/summary``) until its files change.
"""

from __future__ import annotations

import html
import io
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.analytics import BEST_IN_CLASS, SYSTEMIC, DenialFacts, denial_facts, summary
from features.atomic import write_text
from features.schema import ClaimsDataset

Column = tuple[str, str, str]
"""(key in the row, header, format: ``int``, ``rate``, ``money``, ``text``)."""


# -- the service ---------------------------------------------------------------------------------
def build_figures(
    facts: DenialFacts,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    model_health: Callable[[pd.Timestamp, pd.Timestamp], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report's figures; ``model_health(start, end)`` adds the model's section."""
    figures = summary(facts, start, end)
    if model_health is not None:
        period = figures["period"]
        figures["model_health"] = model_health(
            pd.Timestamp(period["from"]), pd.Timestamp(period["to"])
        )
    return figures


def read_dataset(folder: Path) -> ClaimsDataset:
    """The data set a report reads (every table but the diagnoses' codes matter)."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data set folder not found: {folder} (give a folder written by `denial-risk "
            "ingest` or `denial-risk simulate`)"
        )
    dataset, _ = ClaimsDataset.read(folder)
    return dataset


def run_report(
    dataset_dir: Path,
    out: Path,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    model_uri: str | None = None,
    tracking_uri: str | None = None,
    timings: bool = False,
) -> Any:
    """The CLI's job: read, compute, write ``out`` (HTML) and ``report.json`` beside it.

    Returns the paths written, or ``(paths, seconds per step)`` with ``timings``.
    """
    if out.suffix.lower() not in {".html", ".htm"}:
        raise ValueError(f"--out must end in .html, got {out.name}")
    clock: dict[str, float] = {}
    started = time.perf_counter()
    dataset = read_dataset(dataset_dir)
    clock["read"] = time.perf_counter() - started
    started = time.perf_counter()
    facts = denial_facts(dataset)
    clock["facts"] = time.perf_counter() - started
    health = None
    if model_uri:
        from serving.model_health import model_health_section

        def health(start: pd.Timestamp, end: pd.Timestamp) -> dict[str, Any]:
            return model_health_section(dataset, model_uri, tracking_uri, start, end)

    started = time.perf_counter()
    figures = build_figures(facts, start, end, health)
    clock["figures"] = time.perf_counter() - started
    started = time.perf_counter()
    written = write_report(figures, out)
    clock["write"] = time.perf_counter() - started
    return (written, clock) if timings else written


def write_report(figures: dict[str, Any], out: Path) -> list[Path]:
    """Write ``report.json`` and the HTML page (each complete or absent)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_name("report.json")
    write_text(json_path, json.dumps(figures, indent=2))
    write_text(out, report_html(figures))
    return [out, json_path]


@dataclass
class _Cached:
    signature: tuple[tuple[str, float, int], ...]
    facts: DenialFacts


class AnalyticsService:
    """One data set's figures for the API: its facts are built once and kept until a file of
    the folder changes (size or modification time)."""

    def __init__(self, dataset_dir: Path) -> None:
        self.dataset_dir = dataset_dir
        self._lock = threading.Lock()
        self._cached: _Cached | None = None

    def _signature(self) -> tuple[tuple[str, float, int], ...]:
        if not self.dataset_dir.is_dir():
            raise FileNotFoundError(
                f"no data set at {self.dataset_dir}: set DENIAL_RISK_ANALYTICS_DATASET to a data "
                "set folder (written by `denial-risk ingest`)"
            )
        return tuple(
            (p.name, p.stat().st_mtime, p.stat().st_size)
            for p in sorted(self.dataset_dir.glob("*.parquet"))
        )

    def facts(self) -> DenialFacts:
        with self._lock:
            signature = self._signature()
            if self._cached is None or self._cached.signature != signature:
                self._cached = _Cached(signature, denial_facts(read_dataset(self.dataset_dir)))
            return self._cached.facts

    def summary(self, start: pd.Timestamp | None, end: pd.Timestamp | None) -> dict[str, Any]:
        return build_figures(self.facts(), start, end)


# -- plots ---------------------------------------------------------------------------------------
_COLOURS = ("#1f5f99", "#d9822b", "#6a9f3a", "#8c3d8c", "#b23b3b")


def _figure(width: float = 7.5, height: float = 3.2) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.add_subplot()


def _svg(figure: Any, name: str) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _percent_axis(axis: Any) -> None:
    from matplotlib.ticker import PercentFormatter

    axis.set_major_formatter(PercentFormatter(1.0, decimals=None))


def plot_denial_rate(months: list[dict[str, Any]]) -> str:
    figure, ax = _figure()
    labels = [m["month"] for m in months]
    for key, label, colour, style in (
        ("denial_rate", "denials, share of claims", _COLOURS[0], "-"),
        ("denial_rate_dollars", "denials, share of dollars", _COLOURS[1], "-"),
        ("rejection_rate", "front-end rejections (not denials)", _COLOURS[4], ":"),
    ):
        values = [m[key] if m[key] is not None else float("nan") for m in months]
        ax.plot(labels, values, style, marker="o", color=colour, label=label)
    ax.axhline(BEST_IN_CLASS, color=_COLOURS[2], linestyle="--", linewidth=1)
    ax.axhline(SYSTEMIC, color=_COLOURS[4], linestyle="--", linewidth=1)
    ax.text(0, BEST_IN_CLASS, " best in class < 5%", va="bottom", fontsize=8, color=_COLOURS[2])
    ax.text(0, SYSTEMIC, " systemic > 10%", va="bottom", fontsize=8, color=_COLOURS[4])
    _percent_axis(ax.yaxis)
    ax.set_ylim(bottom=0)
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    ax.legend(fontsize=8, loc="upper left")
    return _svg(figure, "denial_rate")


def plot_bars(
    name: str,
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    rate: bool = False,
    limit: int = 15,
) -> str:
    """Horizontal bars, one group per label (first row on top)."""
    labels = [str(label)[:48] for label in labels[:limit]]
    height = max(2.0, 0.32 * len(labels) * max(1, len(series)) + 0.8)
    figure, ax = _figure(7.5, min(height, 9.0))
    count = len(series)
    width = 0.8 / max(count, 1)
    positions = range(len(labels))
    for i, (legend, values) in enumerate(series.items()):
        shown = [float(v or 0.0) for v in list(values)[:limit]]
        ax.barh(
            [p + (i - (count - 1) / 2) * width for p in positions],
            shown,
            height=width,
            color=_COLOURS[i % len(_COLOURS)],
            label=legend,
        )
    ax.set_yticks(list(positions), labels, fontsize=8)
    ax.invert_yaxis()
    if rate:
        _percent_axis(ax.xaxis)
    else:
        ax.xaxis.set_major_formatter(lambda value, _: f"${value:,.0f}")
    if count > 1 or rate:
        ax.legend(fontsize=8, loc="lower right")
    return _svg(figure, name)


# -- the page ------------------------------------------------------------------------------------
def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "<td data-value=''>n/a</td>"
    if kind == "rate":
        text = f"{float(value):.1%}"
    elif kind == "money":
        text = f"${float(value):,.2f}"
    elif kind == "int":
        text = f"{int(value):,}"
    elif isinstance(value, list):
        text = ", ".join(map(str, value))
    else:
        text = str(value)
    raw = value if not isinstance(value, list) else ", ".join(map(str, value))
    number = " class='num'" if kind in ("rate", "money", "int") else ""
    return f"<td{number} data-value='{html.escape(str(raw), quote=True)}'>{html.escape(text)}</td>"


def table(name: str, rows: list[dict[str, Any]], columns: Sequence[Column]) -> str:
    head = "".join(f"<th>{html.escape(header)}</th>" for _, header, _ in columns)
    body = "".join(
        "<tr>" + "".join(_cell(row.get(key), kind) for key, _, kind in columns) + "</tr>"
        for row in rows
    )
    if not rows:
        body = f"<tr><td colspan='{len(columns)}'>none</td></tr>"
    return (
        f"<table data-table='{html.escape(name)}'><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def plot_with_table(name: str, title: str, svg: str, table_html: str, note: str = "") -> str:
    """A plot and its table one click away."""
    caption = f"<p class='note'>{html.escape(note)}</p>" if note else ""
    return (
        f"<section id='{html.escape(name)}'><h3>{html.escape(title)}</h3>{caption}"
        f"<figure class='plot' data-plot='{html.escape(name)}'>{svg}</figure>"
        f"<details data-for='{html.escape(name)}'><summary>Table</summary>{table_html}</details>"
        "</section>"
    )


def table_section(name: str, title: str, table_html: str, note: str = "") -> str:
    caption = f"<p class='note'>{html.escape(note)}</p>" if note else ""
    heading = f"<h3>{html.escape(title)}</h3>"
    return f"<section id='{html.escape(name)}'>{heading}{caption}{table_html}</section>"


MONTH_COLUMNS: tuple[Column, ...] = (
    ("month", "Month", "text"),
    ("claims_adjudicated", "Claims adjudicated", "int"),
    ("claims_denied", "Claims denied", "int"),
    ("denial_rate", "Denial rate (claims)", "rate"),
    ("denied_charges", "Denied charges", "money"),
    ("denial_rate_dollars", "Denial rate (dollars)", "rate"),
    ("claims_submitted", "Claims submitted", "int"),
    ("rejections", "Front-end rejections", "int"),
    ("rejection_rate", "Rejection rate", "rate"),
    ("benchmark", "Against the benchmark", "text"),
)
RATE_COLUMNS: tuple[Column, ...] = (
    ("label", "", "text"),
    ("claims_adjudicated", "Claims adjudicated", "int"),
    ("claims_denied", "Claims denied", "int"),
    ("denial_rate", "Denial rate (claims)", "rate"),
    ("denied_charges", "Denied charges", "money"),
    ("denial_rate_dollars", "Denial rate (dollars)", "rate"),
)
DENIAL_COLUMNS: tuple[Column, ...] = (
    ("label", "", "text"),
    ("denials", "Denials", "int"),
    ("share", "Share of denials", "rate"),
    ("denied_dollars", "Denied dollars", "money"),
)


def _breakdown_html(figures: dict[str, Any]) -> list[str]:
    b = figures["breakdowns"]
    parts = []
    for key, title in (
        ("payer", "Denial rate by payer"),
        ("payer_type", "Denial rate by payer type"),
        ("procedure_family", "Denial rate by procedure family"),
    ):
        rows = b[key]["rows"]
        svg = plot_bars(
            key,
            [r["label"] for r in rows],
            {
                "share of claims": [r["denial_rate"] for r in rows],
                "share of dollars": [r["denial_rate_dollars"] for r in rows],
            },
            rate=True,
        )
        parts.append(plot_with_table(key, title, svg, table(key, rows, RATE_COLUMNS)))
    for key, title in (
        ("reason_category", "Denied dollars by reason category"),
        ("carc", "Denied dollars by CARC"),
    ):
        rows = b[key]["rows"]
        svg = plot_bars(
            key, [r["label"] for r in rows], {"denied dollars": [r["denied_dollars"] for r in rows]}
        )
        parts.append(plot_with_table(key, title, svg, table(key, rows, DENIAL_COLUMNS)))
    for key, title, columns in (
        ("rendering_provider", "Denial rate by rendering provider", RATE_COLUMNS),
        ("billing_provider", "Denial rate by billing provider", RATE_COLUMNS),
        ("service_location", "Denial rate by place of service", RATE_COLUMNS),
        ("rarc", "Remark codes (RARC) on the period's denials", DENIAL_COLUMNS),
        ("hard_soft", "Hard or soft", DENIAL_COLUMNS),
        ("preventable", "Preventable", DENIAL_COLUMNS),
        ("clinical", "Clinical or administrative", DENIAL_COLUMNS),
    ):
        omitted = b[key]["rows_omitted"]
        note = f"{omitted:,} more rows with fewer denied dollars are left out." if omitted else ""
        parts.append(table_section(key, title, table(key, b[key]["rows"], columns), note))
    return parts


def _origin_html(figures: dict[str, Any]) -> str:
    origin = figures["point_of_origin"]
    steps = origin["steps"]
    svg = plot_bars(
        "point_of_origin",
        [s["label"] for s in steps],
        {
            "this period": [s["denied_dollars"] for s in steps],
            "previous period": [s["previous_denied_dollars"] for s in steps],
        },
    )
    columns: tuple[Column, ...] = (
        ("label", "Front-end step", "text"),
        ("categories", "Reason categories it owns", "text"),
        ("denials", "Denials", "int"),
        ("denied_dollars", "Denied dollars", "money"),
        ("previous_denials", "Denials, previous period", "int"),
        ("previous_denied_dollars", "Denied dollars, previous period", "money"),
        ("change_dollars", "Change", "money"),
    )
    return plot_with_table(
        "point_of_origin",
        "Point of origin: which front-end step lost the most",
        svg,
        table("point_of_origin", steps, columns),
        origin["sentence"],
    )


def _received_html(figures: dict[str, Any]) -> list[str]:
    r = figures["denials_received"]
    buckets = r["age_buckets"]
    parts = [
        plot_with_table(
            "age_buckets",
            f"Open denials by age (days since the denial, as of {r['as_of']})",
            plot_bars(
                "age_buckets",
                [b["bucket"] for b in buckets],
                {"open dollars": [b["open_dollars"] for b in buckets]},
            ),
            table(
                "age_buckets",
                buckets,
                (
                    ("bucket", "Age (days)", "text"),
                    ("denials", "Open denials", "int"),
                    ("open_dollars", "Open dollars", "money"),
                ),
            ),
            f"{r['open_denials']:,} denials open, ${r['open_dollars']:,.2f}: soft, not written "
            "off, no answer from the payer yet.",
        )
    ]
    routes = r["recovery_by_route"]
    parts.append(
        plot_with_table(
            "recovery_by_route",
            "Recovered against expected, by route",
            plot_bars(
                "recovery_by_route",
                [x["label"] for x in routes],
                {
                    "expected": [x["expected_dollars"] for x in routes],
                    "recovered": [x["recovered_dollars"] for x in routes],
                },
            ),
            table(
                "recovery_by_route",
                routes,
                (
                    ("label", "Route", "text"),
                    ("worked", "Worked", "int"),
                    ("answered", "Answered", "int"),
                    ("denied_dollars", "Denied dollars", "money"),
                    ("expected_dollars", "Expected", "money"),
                    ("recovered_dollars", "Recovered", "money"),
                ),
            ),
            f"Expected: {r['expected_basis']}.",
        )
    )
    parts.append(
        table_section(
            "deadlines",
            "Deadlines coming up (open, not yet worked)",
            table(
                "deadlines",
                r["deadlines"],
                (
                    ("within_days", "Within days", "int"),
                    ("denials", "Denials", "int"),
                    ("dollars", "Dollars", "money"),
                ),
            ),
        )
    )
    overturn: tuple[Column, ...] = (
        ("key", "", "text"),
        ("answered", "Answered", "int"),
        ("overturned", "Overturned", "int"),
        ("overturn_rate", "Overturn rate", "rate"),
    )
    parts.append(
        table_section(
            "overturn_by_payer",
            "Overturn rate by payer",
            table("overturn_by_payer", r["overturn_by_payer"], overturn),
        )
    )
    parts.append(
        table_section(
            "overturn_by_reason",
            "Overturn rate by reason",
            table("overturn_by_reason", r["overturn_by_reason"], overturn),
        )
    )
    w = r["written_off"]
    rows = [
        {
            "what": "Hard denials (not recoverable)",
            "denials": w["hard_denials"],
            "dollars": w["hard_dollars"],
        },
        {
            "what": "Soft denials past their deadline, never worked",
            "denials": w["expired_unworked"],
            "dollars": w["expired_dollars"],
        },
        {
            "what": "Worked, upheld by the payer",
            "denials": w["upheld_after_work"],
            "dollars": w["upheld_dollars"],
        },
    ]
    parts.append(
        table_section(
            "written_off",
            f"Dollars written off: ${w['total_dollars']:,.2f}",
            table(
                "written_off",
                rows,
                (
                    ("what", "", "text"),
                    ("denials", "Denials", "int"),
                    ("dollars", "Dollars", "money"),
                ),
            ),
        )
    )
    return parts


def _alerts_html(figures: dict[str, Any]) -> str:
    a = figures["payer_change_alerts"]
    columns: tuple[Column, ...] = (
        ("payer_name", "Payer", "text"),
        ("what", "What rose", "text"),
        ("started", "Started", "text"),
        ("detected", "Detected", "text"),
        ("baseline_rate", "Rate before", "rate"),
        ("rate_since_start", "Rate since", "rate"),
        ("claims_affected", "Claims affected", "int"),
        ("dollars_at_stake", "Dollars at stake", "money"),
    )
    return table_section(
        "payer_change_alerts",
        f"Payer-change alerts ({len(a['alerts'])})",
        table("payer_change_alerts", a["alerts"], columns),
        a["method"] + ".",
    )


def _health_html(health: dict[str, Any]) -> list[str]:
    from serving.model_health import health_html

    return health_html(health)


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:70em;font-size:14px;"
    "color:#222}h1{margin-bottom:.2em}h2{border-bottom:2px solid #1f5f99;margin-top:2em}"
    "table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;"
    "padding:3px 6px;text-align:left;vertical-align:top}td.num{text-align:right}"
    "th{background:#eef}figure.plot{margin:0}figure.plot svg{max-width:100%;height:auto}"
    "details summary{cursor:pointer;color:#1f5f99;margin-bottom:.5em}.note{color:#555}"
    ".warn{background:#fdecea;border-left:4px solid #b23b3b;padding:.6em 1em}"
    ".kpi{display:inline-block;margin:0 2em .8em 0}.kpi b{display:block;font-size:1.6em}"
)


def report_html(figures: dict[str, Any], title: str = "Denial analytics") -> str:
    """The figures as one self-contained page (no network, no CDN; values escaped)."""
    period = figures["period"]
    head = figures["headline"]["period"]
    prev = figures["headline"]["previous"]

    def kpi(label: str, value: str) -> str:
        return f"<span class='kpi'>{html.escape(label)}<b>{html.escape(value)}</b></span>"

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    kpis = "".join(
        [
            kpi("Denial rate, claims", pct(head["denial_rate"])),
            kpi("Denial rate, dollars", pct(head["denial_rate_dollars"])),
            kpi("Denied dollars", f"${head['denied_dollars']:,.0f}"),
            kpi("Front-end rejections", f"{head['rejections']:,} ({pct(head['rejection_rate'])})"),
            kpi("Open denied dollars", f"${figures['denials_received']['open_dollars']:,.0f}"),
        ]
    )
    verdict = (
        f"Against the benchmarks the period is <b>{html.escape(head['benchmark'])}</b> "
        f"(previous period: {html.escape(prev['benchmark'])}, denial rate "
        f"{pct(prev['denial_rate'])}). Below 5% of claims is best in class; above 10% signals "
        "a systemic problem."
    )
    months = figures["denial_rate_by_month"]
    sections = [
        "<h2>Denial rate over time</h2>",
        plot_with_table(
            "denial_rate",
            "Denial rate by month",
            plot_denial_rate(months),
            table("denial_rate", months, MONTH_COLUMNS),
            figures["definitions"]["denial_rate"] + "; " + figures["definitions"]["rejection_rate"],
        ),
        "<h2>Where the denials come from</h2>",
        _origin_html(figures),
        *_breakdown_html(figures),
        "<h2>Denials already received</h2>",
        *_received_html(figures),
        "<h2>What changed: payer-change alerts</h2>",
        _alerts_html(figures),
    ]
    if figures.get("model_health"):
        sections += ["<h2>Model health</h2>", *_health_html(figures["model_health"])]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='note'>{html.escape(period['from'])} to "
        f"{html.escape(period['to'])}, against {html.escape(period['previous']['from'])} to "
        f"{html.escape(period['previous']['to'])}. The same figures are in report.json.</p>"
        f"<div>{kpis}</div><p>{verdict}</p>{''.join(sections)}</body></html>"
    )
