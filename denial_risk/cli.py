"""`denial-risk`: one command line for billing teams and data scientists.

Each sub-command parses its arguments, calls one room of the code (simulator, features,
training, serving) and shows progress. Errors a user can fix exit with status 2 and one line
saying what to do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
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
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")] = 7,
    x12: Annotated[
        bool, typer.Option("--x12", help="Also write the claims as 837P and outcomes as 835 files.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing folder.")] = (
        False
    ),
) -> None:
    """Simulate a practice's claims, remittances and follow-ups (with ground truth apart)."""
    from simulator import SimulationConfig, format_summary, simulate as run, write_simulation

    if claims <= 0:
        raise fail(f"--claims must be a positive number of claims, got {claims}")
    _check_writable(out, overwrite)
    with progress_bar("simulating") as update:
        result = run(SimulationConfig(n_claims=claims, seed=seed), progress=update)
        update("writing Parquet", 0.95)
        write_simulation(result, out, overwrite=overwrite)
        if x12:
            from features.x12.writer import write_835, write_837p

            update("writing 837P and 835 files", 0.97)
            write_837p(result.dataset, out / "x12" / "837")
            write_835(result.dataset, out / "x12" / "835")
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
def train(
    dataset: Annotated[Path, typer.Argument(help="Data set folder (simulated or ingested).")] = Path(
        "work/sim"
    ),
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
    )
    try:
        with progress_bar("training") as update:
            outcome = run_training(train_settings, settings.resolved_tracking_uri(), update)
    except (TrainingDataError, FileNotFoundError) as error:
        raise fail(f"{error}. Nothing in the registry changed.") from None
    _print_training(outcome)


def _print_training(outcome) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"Test period ({outcome.split})")
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("Bayes-optimal", justify="right")
    for name in ["roc_auc", "pr_auc", "recall_at_90_precision", "ece", "brier",
                 "reason_top1_accuracy", "reason_top3_accuracy", "carc_top3_accuracy"]:
        if name in outcome.metrics:
            bayes = outcome.bayes_metrics.get(name)
            table.add_row(
                name, f"{outcome.metrics[name]:.4f}", "—" if bayes is None else f"{bayes:.4f}"
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


# --------------------------------------------------------------------------------------------
@app.command()
def models(tracking_uri: TrackingOption = None) -> None:
    """List registered model versions with their test metrics and aliases."""
    from training import registry

    settings = _settings(tracking_uri)
    client = registry.configure(settings.resolved_tracking_uri())
    table = Table(title=f"Registered model '{settings.model_name}'")
    for column in ("version", "aliases", "created", "ROC-AUC", "PR-AUC", "ECE", "reason top-1"):
        table.add_column(column)
    rows = registry.list_versions(
        client, settings.model_name,
        ["roc_auc", "pr_auc", "ece", "reason_top1_accuracy"],
    )
    if not rows:
        raise fail(f"no versions of '{settings.model_name}' registered yet; run `denial-risk train`")
    for row in rows:
        m = row.metrics
        table.add_row(
            row.version, ", ".join(row.aliases), row.created,
            *[f"{m[k]:.4f}" if k in m else "—"
              for k in ("roc_auc", "pr_auc", "ece", "reason_top1_accuracy")],
        )
    console.print(table)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registered version number to make champion.")],
    tracking_uri: TrackingOption = None,
) -> None:
    """Make a version the champion (the one `score` and `serve` use by default)."""
    from mlflow.exceptions import MlflowException

    from training import registry

    settings = _settings(tracking_uri)
    client = registry.configure(settings.resolved_tracking_uri())
    try:
        previous = registry.promote(client, settings.model_name, version, settings.champion_alias)
    except MlflowException:
        raise fail(f"version {version} of '{settings.model_name}' does not exist") from None
    console.print(f"Version {version} is now champion (was {previous or 'none'}).")


@app.command()
def rollback(tracking_uri: TrackingOption = None) -> None:
    """Put the previous champion back."""
    from training import registry

    settings = _settings(tracking_uri)
    client = registry.configure(settings.resolved_tracking_uri())
    try:
        version = registry.rollback(client, settings.model_name, settings.champion_alias)
    except ValueError as error:
        raise fail(str(error)) from None
    console.print(f"Rolled back: version {version} is champion again.")

