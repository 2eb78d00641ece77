"""`denial-risk`: one command line for billing teams and data scientists.

Each sub-command parses its arguments, calls one room of the code (simulator, features,
training, serving) and shows progress. Errors a user can fix exit with status 2 and one line
saying what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from denial_risk.settings import Settings, get_settings

app = typer.Typer(
    name="denial-risk",
    help="Predict, explain and prioritise claim denials (837/835) for billing teams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line saying what is wrong and what to do; return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@contextmanager
def progress_bar(description: str) -> Iterator:
    """A progress bar that takes ``(stage, fraction)`` callbacks."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=1.0)

        def update(stage: str, fraction: float) -> None:
            bar.update(task, completed=fraction, description=f"{description}: {stage}")

        yield update


def _settings(tracking_uri: str | None = None) -> Settings:
    settings = get_settings()
    if tracking_uri:
        settings = settings.model_copy(update={"tracking_uri": tracking_uri})
    return settings


TrackingOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else work/mlflow.db).",
    ),
]


ModelOption = Annotated[
    str | None,
    typer.Option("--model", help="Registry URI (models:/denial-risk@champion) or model folder."),
]

TopKOption = Annotated[int, typer.Option("--top-k", min=1, max=20, help="Factors per claim.")]


HistoryOption = Annotated[
    Path | None,
    typer.Option(
        "--history",
        help="Data set whose claims and remittances new claims are scored against (keep it "
        "current with `ingest --into`); default $DENIAL_RISK_HISTORY_DATASET, else the data set "
        "the model was trained on.",
    ),
]


def _parse_date(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise fail(f"{option} '{value}' is not a date like 2025-06-30") from None


# --------------------------------------------------------------------------------------------
@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Folder for the simulated data set.")] = Path(
        "work/sim"
    ),
    claims: Annotated[int, typer.Option("--claims", help="Number of claims to simulate.")] = 50_000,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the practice's patients and claims.")
    ] = 7,
    world_seed: Annotated[
        int | None,
        typer.Option(
            "--world-seed",
            help="Seed of the world: its payers, their rules, the practice's habits and the rule "
            "changes over time. Leave it out for the default world, calibrated to published "
            "denial figures. The same world seed with another --seed: another practice of "
            "that world.",
        ),
    ] = None,
    x12: Annotated[
        bool, typer.Option("--x12", help="Also write the claims as 837P and outcomes as 835 files.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing folder.")] = (
        False
    ),
) -> None:
    """Simulate a practice's claims, remittances and follow-ups (with ground truth apart)."""
    from simulator import SimulationConfig, format_summary, write_simulation
    from simulator import simulate as run

    if claims <= 0:
        raise fail(f"--claims must be a positive number of claims, got {claims}")
    if world_seed is not None and world_seed < 0:
        raise fail(f"--world-seed must be 0 or a positive number, got {world_seed}")
    _check_writable(out, overwrite)
    with progress_bar("simulating") as update:
        config = SimulationConfig(n_claims=claims, seed=seed, world_seed=world_seed)
        result = run(config, progress=update)
        update("writing Parquet" + (", 837P and 835 files" if x12 else ""), 0.95)
        write_simulation(result, out, overwrite=overwrite, x12=x12)
        update("done", 1.0)
    console.print(format_summary(result.summary))
    console.print(f"Data set written to [bold]{out}[/] (ground truth apart in truth.parquet).")


def _check_writable(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise fail(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise fail(f"--out {out} already holds files; choose another folder or add --overwrite")
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise fail(f"--out {out}: cannot write under {parent} (permission denied)")


# --------------------------------------------------------------------------------------------
@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="837P/837I/835 files or folders of them.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Data set folder to write (default work/ingested)."),
    ] = None,
    into: Annotated[
        Path | None,
        typer.Option(
            "--into",
            help="Data set folder to add the files to (created when absent). Files read before "
            "add nothing; remittances link to earlier claims; a replacement claim (CLM05-3 = "
            "7) replaces the earlier claim with its CLM01, a void (8) removes it.",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Files read in parallel.")] = 2,
    validation: Annotated[
        str,
        typer.Option(
            help="'full': pyx12 checks every segment against the 5010 guide; 'envelope': "
            "separators, control numbers and structure only (fast, for trusted bulk loads)."
        ),
    ] = "full",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing folder.")] = (
        False
    ),
) -> None:
    """Read 837 claim files and 835 remittances into a data set; quarantine what can't be used."""
    from features.x12.ingest import expand_paths, ingest_into, ingest_paths

    if validation not in {"full", "envelope"}:
        raise fail(f"--validation must be 'full' or 'envelope', got '{validation}'")
    if out is not None and into is not None:
        raise fail("give --out (a new data set) or --into (add to one), not both")
    if into is not None and overwrite:
        raise fail("--overwrite goes with --out; --into adds to the data set already there")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise fail(f"not found: {', '.join(missing)}")
    target = into if into is not None else (out or Path("work/ingested"))
    if into is not None:
        if into.exists() and not into.is_dir():
            raise fail(f"--into {into} is a file, not a folder")
        _check_writable(into, overwrite=True)
    else:
        _check_writable(target, overwrite)
    files = expand_paths(paths)
    if not files:
        raise fail("no files to read under the paths given")
    with progress_bar(f"reading {len(files)} files") as update:
        options = {
            "workers": workers,
            "validation": validation,
            "progress": lambda done, total: update(f"{done}/{total} files", done / total),
        }
        if into is not None:
            try:
                result = ingest_into(files, into, **options)  # type: ignore[arg-type]
            except ValueError as error:
                raise fail(str(error)) from None
        else:
            result = ingest_paths(files, **options)  # type: ignore[arg-type]
        _write_ingested(result, target)
    _print_ingest(result, target)


def _write_ingested(result, out: Path) -> None:  # type: ignore[no-untyped-def]
    """The data set with its manifest, ingest state, ``ingest-report.json`` and
    ``quarantine.csv``, put in place together (``features.x12.ingest.write_ingest``)."""
    from features.x12.ingest import write_ingest

    write_ingest(result, out)


def _print_ingest(result, out: Path) -> None:  # type: ignore[no-untyped-def]
    table = Table(title="Ingest")
    counts = ("read", "ingested", "quarantined", "duplicate")
    for column in ("transaction", "files", *counts):
        table.add_column(column, justify="left" if column == "transaction" else "right")
    totals: dict[str, list[int]] = {}
    repeated = 0
    for name, entry in result.report.items():
        if name.startswith("_"):
            continue
        kind = str(entry.get("transaction_type") or "unreadable")
        unit = "remittances" if "835" in kind else "claims"
        row = totals.setdefault(kind, [0] * (1 + len(counts)))
        row[0] += 1
        for i, count in enumerate(counts, start=1):
            row[i] += int(entry.get(f"{unit}_{count}", 0) or 0)
        repeated += bool(entry.get("duplicate_of"))
    for kind, row in sorted(totals.items()):
        table.add_row(kind, *(f"{n:,}" for n in row))
    console.print(table)
    if repeated:
        console.print(
            f"{repeated:,} files repeat transaction sets read from another file (or earlier in "
            "the same file): read once, the copies counted as duplicates ('duplicate_of' in "
            "the per-file report)"
        )
    summary = result.summary
    if summary.get("run", 1) > 1:
        console.print(
            f"Run {summary['run']} added {summary['claims_added']:,} claims "
            f"({summary['claims_replaced']:,} replaced an earlier version, "
            f"{summary['claims_voided']:,} earlier claims voided), "
            f"{summary['remittances_added']:,} remittances "
            f"({summary['remittances_for_earlier_claims']:,} for claims ingested earlier); "
            f"{summary['transaction_sets_duplicate']:,} transaction sets were read before "
            f"({summary['files_not_parsed_again']:,} files byte-identical, not parsed again); "
            f"{summary['outcomes_changed']:,} earlier claims' outcomes changed "
            f"(reversals, corrected payments), {summary['outcomes_new_for_earlier_claims']:,} "
            "earlier claims got their first outcome."
        )
    dataset = result.dataset
    runs = f" (runs: {out / 'ingest-runs'})" if summary.get("run", 1) > 1 else ""
    console.print(
        f"Data set: {len(dataset.claims):,} claims, {len(dataset.remittances):,} remittances, "
        f"{len(dataset.rejections):,} front-end rejections -> [bold]{out}[/]\n"
        f"Per-file report: {out / 'ingest-report.json'}{runs}; "
        f"{len(result.quarantine):,} quarantined items with reasons: {out / 'quarantine.csv'}"
    )


# --------------------------------------------------------------------------------------------
@app.command()
def train(
    dataset: Annotated[
        Path, typer.Argument(help="Data set folder (simulated or ingested).")
    ] = Path("work/sim"),
    train_until: Annotated[
        str | None, typer.Option(help="Train on claims submitted before this date (YYYY-MM-DD).")
    ] = None,
    test_from: Annotated[
        str | None, typer.Option(help="Evaluate on claims submitted from this date.")
    ] = None,
    gate_metric: Annotated[
        str, typer.Option(help="Metric a new version must beat the champion on.")
    ] = "roc_auc",
    force_promote: Annotated[
        bool, typer.Option("--force-promote", help="Make this version champion regardless.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Folder for plots, model card, reports.")] = Path(
        "work/train"
    ),
    tune: Annotated[
        int, typer.Option("--tune", min=0, help="Optuna trials on time-ordered folds (0 = off).")
    ] = 0,
    max_training_claims: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="The boosters learn from at most this many of the latest training claims; "
            "older ones still feed the history rates (0 = every claim; default 400,000).",
        ),
    ] = None,
    refit: Annotated[
        bool,
        typer.Option(
            "--refit/--no-refit",
            help="After evaluation, re-learn the denial model on every labelled claim.",
        ),
    ] = True,
    served_refresh_days: Annotated[
        int,
        typer.Option(
            min=0,
            help="Also evaluate the test period as served, its history refreshed every N days "
            "(one history refresh per step; 0 = only the daily figures).",
        ),
    ] = 7,
    tracking_uri: TrackingOption = None,
) -> None:
    """Train denial, reason and CARC models; evaluate on a later period; register in MLflow."""
    from training.dataset import TrainingDataError
    from training.train import TrainSettings, run_training

    settings = _settings(tracking_uri)
    if not dataset.is_dir():
        raise fail(f"data set folder {dataset} not found (run `denial-risk simulate` first)")
    train_settings = TrainSettings(
        dataset=dataset,
        out_dir=out,
        train_until=_parse_date(train_until, "--train-until"),
        test_from=_parse_date(test_from, "--test-from"),
        gate_metric=gate_metric,
        force_promote=force_promote,
        registered_model_name=settings.model_name,
        champion_alias=settings.champion_alias,
        tune_trials=tune,
        refit_denials=refit,
        served_refresh_days=served_refresh_days,
    )
    if max_training_claims is not None:
        train_settings = train_settings.model_copy(
            update={"max_training_claims": max_training_claims or None}
        )
    try:
        with progress_bar("training") as update:
            outcome = run_training(train_settings, settings.resolved_tracking_uri(), update)
    except (TrainingDataError, FileNotFoundError) as error:
        raise fail(f"{error}. Nothing in the registry changed.") from None
    _print_training(outcome)


def _print_training(outcome) -> None:  # type: ignore[no-untyped-def]
    from training.metrics import REPORTED_METRICS

    table = Table(title=f"Test period ({outcome.split})")
    table.add_column("metric")
    table.add_column("model, daily refresh", justify="right")
    served, days = outcome.served_metrics, outcome.served_refresh_days
    if served:
        table.add_column(f"as served ({days}-day refresh)", justify="right")
    table.add_column("Bayes-optimal", justify="right")
    for name in REPORTED_METRICS:
        if name in outcome.metrics:
            bayes = outcome.bayes_metrics.get(name)
            table.add_row(
                name,
                f"{outcome.metrics[name]:.4f}",
                *([f"{served[name]:.4f}" if name in served else "—"] if served else []),
                "—" if bayes is None else f"{bayes:.4f}",
            )
    console.print(table)
    counts = outcome.counts
    console.print(
        f"Trained on {counts['train_claims']:,} claims ({counts['train_denials']:,} denied), "
        f"tested on {counts['test_claims']:,} in {outcome.seconds:.0f}s."
    )
    verdict = "[green]promoted to champion[/]" if outcome.promoted else "[yellow]not promoted[/]"
    console.print(f"Registered version {outcome.version}: {verdict} ({outcome.gate_reason}).")
    console.print(f"Plots and model card: [bold]{outcome.out_dir}[/]")


@app.command()
def backtest(
    dataset: Annotated[
        Path, typer.Argument(help="Data set folder whose later claims are replayed.")
    ],
    start: Annotated[
        str, typer.Option("--from", help="Replay the claims sent from this day (YYYY-MM-DD).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Predictions file (.csv or .parquet); the summary goes beside it "
            "(NAME-summary.json).",
        ),
    ] = Path("work/backtest.csv"),
    until: Annotated[
        str | None, typer.Option(help="Only claims sent before this day (default: all).")
    ] = None,
    refresh_days: Annotated[
        int,
        typer.Option(
            "--refresh-days", min=1, help="Days between history refreshes (1 = every day)."
        ),
    ] = 7,
    retrain_days: Annotated[
        int,
        typer.Option(
            "--retrain-days",
            min=0,
            help="Fit a model on what was known at the first step and every N days after "
            "instead of using --model (much slower; 0 = never).",
        ),
    ] = 0,
    model: ModelOption = None,
    explain: Annotated[
        bool, typer.Option("--explain/--no-explain", help="Add SHAP factors and fixes (slower).")
    ] = False,
    top_k: TopKOption = 5,
    truth: Annotated[
        Path | None,
        typer.Option(
            help="Simulator's truth.parquet for Bayes-optimal ratios (default: the data set's "
            "own, if it has one)."
        ),
    ] = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Replay claims sent from a day as they would have been scored, history refreshed in steps;
    measure them against what happened (ROC-AUC, ECE, calibration by month, reasons)."""
    import pandas as pd

    from features.atomic import write_text
    from features.claim_tables import ClaimTables
    from features.schema import ClaimsDataset, rejects_report
    from serving.loading import load_service
    from serving.service import ModelInfo, ScoringService
    from training.backtest import BacktestPlan, fit_known_at, replay, summarise
    from training.dataset import outcome_labels
    from training.estimator import EstimatorConfig
    from training.metrics import read_truth
    from training.train import TrainSettings

    settings = _settings(tracking_uri)
    if out.suffix.lower() not in {".csv", ".parquet"}:
        raise fail(f"--out {out}: use a .csv or .parquet file name")
    if not dataset.is_dir():
        raise fail(f"data set folder {dataset} not found")
    if retrain_days and model:
        raise fail("--model and --retrain-days exclude each other: retraining fits its own models")
    truth_path = truth or dataset / "truth.parquet"
    if truth is not None and not truth.is_file():
        raise fail(f"--truth {truth} not found")
    first = _parse_date(start, "--from")
    last = _parse_date(until, "--until")
    try:
        plan = BacktestPlan(
            pd.Timestamp(first),
            pd.Timestamp(last) if last else None,
            refresh_days=refresh_days,
            retrain_days=retrain_days,
        )
    except ValueError as error:
        raise fail(str(error)) from None
    summary_path = out.with_name(out.stem + "-summary.json")
    rejects_path = out.with_name(out.stem + "-rejects.csv")
    warnings: list[str] = []
    try:
        with progress_bar("backtest") as update:
            update("reading the data set", 0.02)
            data, rejects = ClaimsDataset.read(dataset)
            tables, outcomes = ClaimTables.from_dataset(data), outcome_labels(data)
            rejected = set(data.rejections["claim_id"].astype(str))
            retrain = None
            if retrain_days:
                defaults = TrainSettings(dataset=dataset)
                info = ModelInfo(name=settings.model_name, version="retrained", alias=None, uri="")
                pipeline = None

                def retrain(day: pd.Timestamp):  # type: ignore[no-untyped-def]
                    return fit_known_at(
                        tables,
                        outcomes,
                        day,
                        EstimatorConfig(booster=defaults.booster),
                        defaults.min_training_claims,
                        defaults.max_training_claims,
                    )
            else:
                update("loading model", 0.05)
                service = load_service(
                    model or settings.resolved_model_uri(), settings.resolved_tracking_uri()
                )
                info, pipeline = service.info, service.pipeline
                warnings += _learned_period_warning(info, settings, plan.start)

            def scorer(step_pipeline, step_tables):  # type: ignore[no-untyped-def]
                step = ScoringService(step_pipeline, info)
                return step.score_frame(step_tables, explain=explain, top_k=top_k)

            result = replay(
                pipeline,
                tables,
                outcomes,
                plan,
                scorer,
                retrain,
                rejected,
                lambda stage, f: update(stage, 0.1 + 0.8 * f),
            )
            update("measuring", 0.9)
            truth_frame = (
                read_truth(truth_path, result.predictions["claim_id"])
                if truth_path.is_file()
                else None
            )
            summary = summarise(result, truth_frame)
            summary = {
                "data_set": str(dataset),
                "model": f"{info.name} v{info.version}",
                "from": f"{plan.start:%Y-%m-%d}",
                "until": f"{plan.until:%Y-%m-%d}" if plan.until is not None else None,
                "refresh_days": refresh_days,
                "retrain_days": retrain_days,
                "schema_rejected_rows": len(rejects),
                **summary,
                "warnings": warnings,
                "step_log": result.step_table().to_dict(orient="records"),
            }
            update("writing", 0.95)
            out.parent.mkdir(parents=True, exist_ok=True)
            if len(rejects):
                _write_table(rejects_report(rejects), rejects_path)
            _write_table(result.predictions, out)
            write_text(summary_path, json.dumps(summary, indent=2, default=str))
            update("done", 1.0)
    except (RuntimeError, FileNotFoundError, ValueError) as error:
        # TrainingDataError and ModelLoadError are among these.
        raise fail(str(error)) from None
    _print_backtest(summary, out, summary_path, rejects_path if len(rejects) else None)


def _learned_period_warning(info, settings, start) -> list[str]:  # type: ignore[no-untyped-def]
    """A warning when a registered model learned from claims of the period replayed."""
    from mlflow.exceptions import MlflowException

    from training import registry
    from training.backtest import learned_until

    if not info.uri.startswith("models:/"):
        return []
    try:
        last = learned_until(
            registry.configure(settings.resolved_tracking_uri()), info.name, info.version
        )
    except MlflowException:
        return []
    if last is None or last < start:
        return []
    return [
        f"model {info.name} v{info.version} learned from claims sent up to {last:%Y-%m-%d}, "
        f"after --from {start:%Y-%m-%d}: it is measured on claims it learned from, so the "
        "figures are optimistic. Backtest a model trained before --from (or use "
        "--retrain-days) for an honest replay."
    ]


def _print_backtest(summary, out: Path, summary_path: Path, rejects) -> None:  # type: ignore[no-untyped-def]
    from training.metrics import REPORTED_METRICS

    metrics, bayes = summary["metrics"], summary.get("bayes", {})
    table = Table(
        title=f"Backtest {summary['period']}: {summary['steps']} steps, history refreshed "
        f"every {summary['refresh_days']} day(s)"
    )
    for column in ("metric", "model", "Bayes-optimal", "model / Bayes"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name in (n for n in REPORTED_METRICS if n in metrics):
        b = bayes.get(name)
        table.add_row(
            name,
            f"{metrics[name]:.4f}",
            "—" if b is None else f"{b:.4f}",
            f"{metrics[name] / b:.3f}" if b else "—",
        )
    console.print(table)
    months = Table(title="Calibration by month of submission")
    for column in ("month", "claims", "denial rate", "mean prediction", "ROC-AUC", "ECE"):
        months.add_column(column, justify="left" if column == "month" else "right")
    for row in summary["by_month"]:
        months.add_row(
            row["month"],
            f"{row['claims']:,}",
            *(f"{row[k]:.3f}" for k in ("denial_rate", "mean_prediction", "roc_auc", "ece")),
        )
    console.print(months)
    seconds = summary["seconds"]
    outcomes = ", ".join(f"{n:,} {name}" for name, n in summary["outcomes"].items())
    console.print(
        f"Scored {summary['claims']:,} claims ({outcomes}) with {summary['model']}; "
        f"measured on the {summary['claims_with_outcome']:,} with an outcome. History refresh "
        f"{seconds['refresh_per_step']:.1f}s per step"
        + (f", retraining {seconds['retrain']:.0f}s in all" if seconds["retrain"] else "")
        + "."
    )
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")
    if rejects is not None:
        console.print(
            f"{summary['schema_rejected_rows']:,} data set rows failed validation and were not "
            f"replayed, with reasons: [bold]{rejects}[/]"
        )
    console.print(f"Predictions: [bold]{out}[/]; summary: [bold]{summary_path}[/]")


# --------------------------------------------------------------------------------------------
def _registry_client(settings):  # type: ignore[no-untyped-def]
    """The registry client of a command that reads the registry (never creates one)."""
    from training import registry

    try:
        return registry.configure(settings.resolved_tracking_uri())
    except registry.RegistryNotFound as error:
        raise fail(str(error)) from None


@app.command()
def models(tracking_uri: TrackingOption = None) -> None:
    """List registered model versions with their test metrics and aliases."""
    from training import registry

    settings = _settings(tracking_uri)
    client = _registry_client(settings)
    table = Table(title=f"Registered model '{settings.model_name}'")
    for column in ("version", "aliases", "created", "ROC-AUC", "PR-AUC", "ECE", "reason top-1"):
        table.add_column(column)
    rows = registry.list_versions(
        client,
        settings.model_name,
        ["roc_auc", "pr_auc", "ece", "reason_top1_accuracy"],
    )
    if not rows:
        raise fail(
            f"no versions of '{settings.model_name}' registered yet; run `denial-risk train`"
        )
    for row in rows:
        m = row.metrics
        table.add_row(
            row.version,
            ", ".join(row.aliases) + (f" (incomplete: {row.incomplete})" if row.incomplete else ""),
            row.created,
            *[
                f"{m[k]:.4f}" if k in m else "—"
                for k in ("roc_auc", "pr_auc", "ece", "reason_top1_accuracy")
            ],
        )
    console.print(table)
    stopped = registry.stopped_runs(client)
    if stopped:
        started = ", ".join(
            f"{run.info.run_id[:8]} (started "
            f"{datetime.fromtimestamp(run.info.start_time / 1000):%Y-%m-%d %H:%M})"
            for run in stopped
        )
        console.print(
            f"{len(stopped)} training run(s) were killed before they registered a version, and "
            f"left nothing to promote: {started}. The next `train` marks them KILLED in MLflow."
        )


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered version number to make champion.")],
    tracking_uri: TrackingOption = None,
) -> None:
    """Make a version the champion (the one `score` and `serve` use by default)."""
    from mlflow.exceptions import MlflowException

    from training import registry

    settings = _settings(tracking_uri)
    client = _registry_client(settings)
    try:
        previous = registry.promote(client, settings.model_name, version, settings.champion_alias)
    except MlflowException:
        raise fail(f"version {version} of '{settings.model_name}' does not exist") from None
    except registry.IncompleteVersion as error:
        raise fail(f"{error}; the champion is unchanged. Train again.") from None
    console.print(f"Version {version} is now champion (was {previous or 'none'}).")


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the model into.")] = Path(
        "models/denial-risk"
    ),
    model: ModelOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Copy a registered model (default: the champion) to a folder for offline serving."""
    import mlflow

    from features.atomic import atomic_folder

    settings = _settings(tracking_uri)
    _registry_client(settings)
    uri = model or settings.resolved_model_uri()
    if out.exists() and any(out.iterdir()):
        raise fail(f"--out {out} already holds files; choose an empty folder")
    try:
        # The folder appears whole or not at all: `--model` would try to load a partial one.
        with atomic_folder(out) as staging:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging))
            path = out / Path(local).resolve().relative_to(staging.resolve())
    except Exception as error:  # MLflow raises several types for a missing model
        raise fail(f"cannot export '{uri}': {error}") from None
    console.print(f"Exported {uri} to [bold]{path}[/]; use it with --model {out}")


@app.command()
def rollback(tracking_uri: TrackingOption = None) -> None:
    """Put the previous champion back."""
    from training import registry

    settings = _settings(tracking_uri)
    client = _registry_client(settings)
    try:
        version = registry.rollback(client, settings.model_name, settings.champion_alias)
    except ValueError as error:
        raise fail(str(error)) from None
    console.print(f"Rolled back: version {version} is champion again.")


# --------------------------------------------------------------------------------------------


@app.command("train-recovery")
def train_recovery(
    dataset: Annotated[Path, typer.Argument(help="Data set with denials and their follow-ups.")],
    test_from: Annotated[
        str | None, typer.Option(help="Evaluate on denials from this date (YYYY-MM-DD).")
    ] = None,
    payer_windows: Annotated[
        Path | None, typer.Option(help="CSV of per-payer appeal windows / filing limits.")
    ] = None,
    force_promote: Annotated[bool, typer.Option("--force-promote")] = False,
    out: Annotated[Path, typer.Option(help="Folder for plots and reports.")] = Path(
        "work/recovery"
    ),
    tracking_uri: TrackingOption = None,
) -> None:
    """Train the model of which denials are recovered when worked; register it in MLflow."""
    from training.recovery import RecoveryDataError, RecoveryTrainSettings, run_recovery_training

    settings = _settings(tracking_uri)
    if not dataset.is_dir():
        raise fail(f"data set folder {dataset} not found")
    recovery_settings = RecoveryTrainSettings(
        dataset=dataset,
        out_dir=out,
        test_from=_parse_date(test_from, "--test-from"),
        payer_windows=payer_windows,
        force_promote=force_promote,
        registered_model_name=settings.recovery_model_name,
        champion_alias=settings.champion_alias,
    )
    try:
        with progress_bar("training the recovery model") as update:
            outcome = run_recovery_training(
                recovery_settings, settings.resolved_tracking_uri(), progress=update
            )
    except (RecoveryDataError, FileNotFoundError) as error:
        raise fail(f"{error}. Nothing in the registry changed.") from None
    _print_recovery(outcome)


def _print_recovery(outcome) -> None:  # type: ignore[no-untyped-def]
    m, truth = outcome.metrics, outcome.truth_metrics
    parts = [f"ROC-AUC {m.get('roc_auc', float('nan')):.3f}"]
    if "roc_auc" in truth:
        parts.append(f"(true probabilities {truth['roc_auc']:.3f})")
    parts.append(f"ECE {m.get('ece', float('nan')):.3f}")
    console.print(f"Recovery model on the later period ({outcome.split}): " + " ".join(parts))
    verdict = "promoted to champion" if outcome.promoted else "not promoted"
    console.print(f"Registered version {outcome.version}: {verdict} ({outcome.gate_reason}).")


@app.command()
def worklist(
    source: Annotated[Path, typer.Argument(help="835 files (or a folder) or a data set folder.")],
    out: Annotated[Path, typer.Option("--out", help="Worklist file (.csv or .parquet).")] = Path(
        "work/worklist.csv"
    ),
    as_of: Annotated[
        str | None, typer.Option(help="Date the list is for (default: latest denial date).")
    ] = None,
    payer_windows: Annotated[
        Path | None, typer.Option(help="CSV of per-payer appeal windows / filing limits.")
    ] = None,
    no_rejections: Annotated[
        bool, typer.Option("--no-rejections", help="Leave front-end rejections out.")
    ] = False,
    tracking_uri: TrackingOption = None,
) -> None:
    """Rank denied claims by the money they can still recover, with deadline and next action."""
    import pandas as pd

    from serving.worklist import WorklistConfig, load_worklist_service, run_worklist

    settings = _settings(tracking_uri)
    if out.suffix.lower() not in {".csv", ".parquet"}:
        raise fail(f"--out {out}: use a .csv or .parquet file name")
    day = _parse_date(as_of, "--as-of")
    try:
        with progress_bar("building the worklist") as update:
            update("loading the recovery model", 0.1)
            service = load_worklist_service(
                settings.resolved_tracking_uri(),
                f"models:/{settings.recovery_model_name}@{settings.champion_alias}",
                payer_windows=payer_windows,
                config=WorklistConfig(include_rejections=not no_rejections),
            )
            update("reading, classifying and ranking denials", 0.3)
            result, written = run_worklist(
                source, out, service, None if day is None else pd.Timestamp(day)
            )
            update("done", 1.0)
    except (FileNotFoundError, ValueError) as error:
        raise fail(str(error)) from None
    _print_worklist(result, written)


def _print_worklist(result, written: dict) -> None:  # type: ignore[no-untyped-def]
    summary = result.summary()
    console.print(
        f"Worklist as of {summary['as_of']}: {summary['work_queue_rows']:,} denials to work "
        f"(expected recovery ${summary['queue_expected_recovery']:,.0f}), "
        f"{summary['tracking_rows']:,} hard denials for root-cause tracking, "
        f"{summary['expired_rows']:,} past their deadline unworked; "
        f"recovery probabilities from {summary['probability_source']}."
    )
    top = result.queue.head(5)
    if len(top):
        table = Table(title="Top of the work queue")
        for column in (
            "rank",
            "claim",
            "CARC",
            "root cause",
            "next step",
            "days left",
            "p(recover)",
            "expected $",
        ):
            table.add_column(column, overflow="fold")
        for _, row in top.iterrows():
            table.add_row(
                str(row["rank"]),
                str(row["claim_id"]),
                f"{row['group_code']}-{row['carc']}",
                str(row["category_label"]),
                str(row["route_label"]),
                str(row["days_left"]),
                f"{row['recovery_probability']:.0%}",
                f"{row['expected_recovery']:,.0f}",
            )
        console.print(table)
    console.print("Written: " + ", ".join(f"{k} {v}" for k, v in written.items()))


@app.command()
def report(
    dataset: Annotated[Path, typer.Argument(help="Data set folder (from `ingest` or `simulate`).")],
    out: Annotated[
        Path, typer.Option("--out", help="The HTML page; report.json goes beside it.")
    ] = (Path("work/report.html")),
    start: Annotated[
        str | None,
        typer.Option(
            "--from", help="First day (default: first of the month 11 months before --to)."
        ),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Last day (default: the data's latest date).")
    ] = None,
    model: ModelOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Denial analytics: rates against the benchmarks, where denials start, what is open, what
    changed at each payer, and (with --model) the model's health. One page that opens offline."""
    import pandas as pd

    from serving.report import run_report

    settings = _settings(tracking_uri)
    first, last = _parse_date(start, "--from"), _parse_date(end, "--to")
    try:
        with progress_bar("building the report") as update:
            update("reading the data set and computing the figures", 0.1)
            written = run_report(
                dataset,
                out,
                None if first is None else pd.Timestamp(first),
                None if last is None else pd.Timestamp(last),
                model_uri=model,
                tracking_uri=settings.resolved_tracking_uri() if model else None,
            )
            update("done", 1.0)
    except (FileNotFoundError, ValueError) as error:
        raise fail(str(error)) from None
    _print_report(written)


def _print_report(written: list[Path]) -> None:
    figures = json.loads(written[1].read_text())
    head = figures["headline"]["period"]
    rate = head["denial_rate"]
    console.print(
        f"{head['from']} to {head['to']}: denial rate "
        f"{'n/a' if rate is None else f'{rate:.1%}'} of claims ({head['benchmark']}), "
        f"${head['denied_dollars']:,.0f} denied; {head['rejections']:,} front-end rejections; "
        f"{len(figures['payer_change_alerts']['alerts'])} payer-change alerts. "
        + figures["point_of_origin"]["sentence"]
    )
    health = figures.get("model_health")
    if health:
        console.print(
            ("[bold red]" if health["retrain"] else "") + health["advice"], highlight=False
        )
    console.print(f"Report: {written[0]} (figures: {written[1]})")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Server processes.")] = 1,
    model: ModelOption = None,
    history: HistoryOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Start the scoring API (FastAPI + uvicorn); docs at http://HOST:PORT/docs."""
    from serving.server import run

    settings = _settings(tracking_uri)
    if model:
        settings = settings.model_copy(update={"model_uri": model})
    if history:
        settings = settings.model_copy(update={"history_dataset": history})
    problem = settings.api_auth_problem()
    if problem:
        raise fail(problem)
    console.print(
        f"Serving {settings.resolved_model_uri()} on http://{host}:{port} "
        f"(docs: http://{host}:{port}/docs)"
    )
    run(host, port, settings, workers=workers)


@app.command()
def score(
    source: Annotated[
        Path, typer.Argument(help="Data set folder, claim-lines .parquet/.csv, or 837 file(s).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output file (.parquet or .csv).")] = Path(
        "work/scores.csv"
    ),
    model: ModelOption = None,
    explain: Annotated[
        bool, typer.Option("--explain/--no-explain", help="Add SHAP factors and fixes.")
    ] = True,
    top_k: TopKOption = 5,
    history: HistoryOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Score claims before submission: denial probability, likely reasons, CARCs, fixes."""
    from features.schema import rejects_report
    from serving.batch import read_claims
    from serving.loading import load_service

    settings = _settings(tracking_uri)
    if out.suffix.lower() not in {".csv", ".parquet"}:
        raise fail(f"--out {out}: use a .csv or .parquet file name")
    try:
        with progress_bar("scoring") as update:
            update("loading the model and its history", 0.05)
            service = load_service(
                model or settings.resolved_model_uri(),
                settings.resolved_tracking_uri(),
                history=history or settings.history_dataset,
            )
            update("reading and validating claims", 0.3)
            tables, rejects = read_claims(source)
            n_claims = len(tables)
            update(f"scoring {n_claims:,} claims", 0.5)

            def explained(done: int, total: int) -> None:
                update(f"explained {done:,} of {total:,} claims", 0.55 + 0.4 * done / total)

            frame = service.score_frame(tables, explain=explain, top_k=top_k, progress=explained)
            update("writing", 0.95)
            out.parent.mkdir(parents=True, exist_ok=True)
            rejects_path = out.with_name(out.stem + "-rejects.csv")
            # The scores last: a run killed before them leaves no new scores beside new rejects.
            if len(rejects):
                _write_table(rejects_report(rejects), rejects_path)
            _write_table(frame, out)
            update("done", 1.0)
    except (RuntimeError, FileNotFoundError, ValueError) as error:
        raise fail(str(error)) from None
    rejected_claims = _rejected_claim_count(rejects)
    if service.history is not None:
        console.print(f"Scored with the {service.history.describe()}.")
    if len(rejects):
        console.print(f"{len(rejects):,} input rows rejected with reasons: [bold]{rejects_path}[/]")
    console.print(
        f"Scored {len(frame):,} claims with model {service.info.name} v{service.info.version}; "
        f"{rejected_claims:,} claims rejected; total {len(frame) + rejected_claims:,}. "
        f"Scores: [bold]{out}[/]"
    )


def _rejected_claim_count(rejects) -> int:  # type: ignore[no-untyped-def]
    if rejects is None or len(rejects) == 0 or "claim_id" not in rejects.columns:
        return 0
    return int(rejects["claim_id"].dropna().nunique())


def _write_table(frame, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Parquet or CSV by ``path``'s suffix, complete or absent."""
    from features.atomic import atomic_file

    with atomic_file(path) as temp:
        if path.suffix.lower() == ".parquet":
            frame.to_parquet(temp, index=False)
        else:
            frame.to_csv(temp, index=False)


# --------------------------------------------------------------------------------------------
@app.command()
def demo(
    claims: Annotated[int, typer.Option("--claims", help="Claims to simulate.")] = 60_000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    work: Annotated[Path, typer.Option("--work", help="Folder for everything the demo makes.")] = (
        Path("work/demo")
    ),
) -> None:
    """The whole path on simulated data: simulate, ingest X12, train, evaluate, score 837s."""
    import shutil

    from serving.loading import load_service
    from simulator import SimulationConfig, format_summary, write_simulation
    from simulator import simulate as run
    from training.train import TrainSettings, run_training

    if claims < 5_000:
        raise fail("--claims: the demo needs at least 5,000 claims to train a useful model")
    if work.exists():
        shutil.rmtree(work)
    tracking_uri = f"sqlite:///{(work / 'mlflow.db').resolve()}"
    sim_dir = work / "sim"

    console.rule("[bold]1. Simulate a practice (tables, 837P claim files, 835 remittances)")
    with progress_bar("simulating") as update:
        result = run(SimulationConfig(n_claims=claims, seed=seed), progress=update)
        update("writing Parquet, 837P and 835 files", 0.95)
        write_simulation(result, sim_dir, x12=True)
    console.print(format_summary(result.summary))

    console.rule("[bold]2. Ingest the 837/835 files (pyx12), as with a practice's own files")
    # The newest 837s are the claims about to be sent; the 835s paid in the month before them
    # arrive after training (step 4). The rest is the practice's data set so far.
    ingested_dir = work / "ingested"
    claim_files = sorted((sim_dir / "x12" / "837").iterdir())
    recent: list[Path] = []
    while claim_files and sum(p.stat().st_size for p in recent) <= 400_000:
        recent.insert(0, claim_files.pop())  # a few hundred claims
    today = min(_x12_day(path) for path in recent)
    month_ago = today - timedelta(days=30)
    paid = {path: _x12_day(path) for path in sorted((sim_dir / "x12" / "835").iterdir())}
    later_835s = [path for path, day in paid.items() if month_ago <= day < today]
    first = claim_files + [path for path, day in paid.items() if day < month_ago]
    console.print(
        f"Today is {today:%Y-%m-%d}: the 837s from today on are scored in step 5, the 835s paid "
        f"from {month_ago:%Y-%m-%d} arrive in step 4."
    )
    _demo_ingest(first, ingested_dir)

    console.rule("[bold]3. Train, evaluate on a later period, register in MLflow")
    settings = TrainSettings(
        dataset=ingested_dir, out_dir=work / "train", truth_path=sim_dir / "truth.parquet"
    )
    with progress_bar("training") as update:
        outcome = run_training(settings, tracking_uri, update)
    _print_training(outcome)

    console.rule("[bold]4. A month of remittances later: add the new 835s to the data set")
    _demo_ingest(later_835s, ingested_dir)

    console.rule("[bold]5. Score today's 837 files before submission, with today's history")
    # No retrain: the model's history is the data set as it stands now (training.history_store).
    service = load_service(f"models:/{settings.registered_model_name}@champion", tracking_uri)
    history = service.history.describe() if service.history else "model's history"
    console.print(f"Reading the {len(recent)} most recent 837 files; scoring with the {history}.")
    tables, _ = _read_837(recent)
    _show_examples(service, tables)

    console.rule("[bold]6. Denials already received: a worklist from the 835s")
    from serving.worklist import load_worklist_service, run_worklist
    from training.recovery import RecoveryTrainSettings, run_recovery_training

    # 835s show an appeal only when it pays; the simulator's follow-up log stands in for the
    # practice's appeal-tracking records, which hold the failures too.
    recovery = RecoveryTrainSettings(dataset=sim_dir, out_dir=work / "recovery")
    with progress_bar("training the recovery model") as update:
        recovery_outcome = run_recovery_training(recovery, tracking_uri, progress=update)
    _print_recovery(recovery_outcome)
    service_wl = load_worklist_service(
        tracking_uri, f"models:/{recovery.registered_model_name}@champion"
    )
    result_wl, written = run_worklist(ingested_dir, work / "worklist.csv", service_wl)
    _print_worklist(result_wl, written)

    console.rule("[bold]7. Denial analytics: rates, root causes, payer changes, model health")
    from serving.report import run_report

    with progress_bar("building the report") as update:
        update("computing the figures and scoring a sample of each month", 0.1)
        report_paths = run_report(
            ingested_dir,
            work / "report.html",
            model_uri=f"models:/{settings.registered_model_name}@champion",
            tracking_uri=tracking_uri,
        )
        update("done", 1.0)
    _print_report(report_paths)

    console.rule("[bold]Where to look next")
    console.print(
        f"- Model card and plots: {work / 'train'} (calibration.png, precision_recall.png, "
        "shap_summary.png, model_card.md)\n"
        f"- What ingest read and quarantined: {work / 'ingested' / 'ingest-report.json'}\n"
        f"- The worklist in a browser: {work / 'worklist.html'}\n"
        f"- The denial analytics report in a browser: {work / 'report.html'}\n"
        f"- MLflow UI: .venv/bin/mlflow ui --backend-store-uri {tracking_uri} "
        "then open http://127.0.0.1:5000\n"
        f"- Score your own claims: .venv/bin/denial-risk score CLAIMS --tracking-uri {tracking_uri}"
    )


def _demo_ingest(files: list[Path], dataset: Path) -> None:
    from features.x12.ingest import ingest_into

    with progress_bar(f"reading {len(files)} files") as update:
        result = ingest_into(
            files,
            dataset,
            workers=2,
            validation="envelope",
            progress=lambda done, total: update(f"{done}/{total} files", done / total),
        )
        _write_ingested(result, dataset)
    _print_ingest(result, dataset)


def _x12_day(path: Path) -> date:
    """The day a simulated X12 file was sent (837 BHT04) or paid (835 BPR16)."""
    text = path.read_text(errors="replace")
    element, terminator = text[3], text[105]  # fixed places in the ISA
    for segment in text.split(terminator):
        fields = segment.strip().split(element)
        if fields[0] == "BHT" and len(fields) > 4:
            return datetime.strptime(fields[4], "%Y%m%d").date()
        if fields[0] == "BPR" and len(fields) > 16:
            return datetime.strptime(fields[16], "%Y%m%d").date()
    raise ValueError(f"{path.name}: no BHT04 or BPR16 date")


def _read_837(paths: list[Path]):  # type: ignore[no-untyped-def]
    from features.claim_tables import ClaimTables
    from features.x12.ingest import read_claims_837

    dataset, quarantine = read_claims_837(paths)
    return ClaimTables.from_dataset(dataset), quarantine


def _show_examples(service, tables) -> None:  # type: ignore[no-untyped-def]
    """Score claims and print a high-risk and a medium-risk example with their fixes."""
    scores = service.score(tables, explain=True, top_k=5)
    console.print(
        f"Scored {len(scores):,} claims: "
        + ", ".join(
            f"{band} risk {sum(s.risk_band == band for s in scores):,}"
            for band in ("high", "medium", "low")
        )
    )
    ordered = sorted(scores, key=lambda s: -s.denial_probability)
    # One claim with a fixable top factor (its fix measured, if one is), and one medium-risk
    # claim, when there are such.
    fixable = [s for s in ordered if s.factors and s.factors[0].fix and s.risk_band == "high"]
    measured = [s for s in fixable if s.what_if]
    medium = [s for s in ordered if s.risk_band == "medium"]
    picks = [(measured or fixable or ordered)[0]]
    second = next((s for s in medium + ordered if s is not picks[0]), None)
    if second is not None:
        picks.append(second)
    for example in picks:
        _print_score(example)


def _print_score(score) -> None:  # type: ignore[no-untyped-def]
    console.print(
        f"\n[bold]Claim {score.claim_id}[/]: denial probability "
        f"[bold]{score.denial_probability:.0%}[/] ({score.risk_band} risk, "
        f"{score.risk_band_threshold}); model v{score.model_version}"
    )
    reasons = ", ".join(f"{r['label']} {r['probability']:.0%}" for r in score.likely_reasons)
    carcs = ", ".join(f"CARC {c['code']} {c['probability']:.0%}" for c in score.likely_carcs)
    console.print(f"  likely reasons: {reasons}\n  likely CARCs: {carcs}")
    totals = {group["group"]: group for group in score.factor_groups}
    for group in ("fix_on_claim", "context"):
        factors = [f for f in score.factors if f.group == group]
        if not factors:
            continue
        heading = totals.get(group)
        total = f" ({heading['contribution']:+.2f} log-odds in all)" if heading else ""
        label = heading["label"] if heading else group
        console.print(f"  [bold]{label}[/]{total}")
        for factor in factors:
            line = f" (line {factor.line_number})" if factor.line_number else ""
            sign = "+" if factor.contribution > 0 else ""
            console.print(
                f"    • {factor.field}{line}: {factor.description} "
                f"[dim]({sign}{factor.contribution:.2f} log-odds, {factor.direction})[/]"
            )
            if factor.fix:
                console.print(f"      [green]fix:[/] {factor.fix}")
    if score.what_if:
        console.print("  [bold]What if[/] (the claim scored again with the fix made)")
        for change in score.what_if:
            # The calibration is a step function: a fix can lower the model's raw risk and
            # leave the probability where it was; the model may also see a fix raise it.
            note = "" if change.risk_removed >= 0.005 else " [dim](does not lower the risk)[/]"
            console.print(
                f"    • {change.change}: {score.denial_probability:.0%} -> "
                f"[bold]{change.probability:.0%}[/]{note}"
            )
    if score.suggested_fix:
        reason = f" ({score.suggested_fix_reason})" if score.suggested_fix_reason else ""
        console.print(f"  [bold green]suggested fix{reason}:[/] {score.suggested_fix}")
