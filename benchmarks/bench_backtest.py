"""The product measured as it is used: trained on the history to a cut, then served for the
months after it with its history refreshed weekly (`denial-risk backtest`).

One world through the README's commands: ``denial-risk simulate --x12`` (or ``--sim``, an
existing simulation with its X12 files); the 837/835 files split at the cut by
``../shared/tools/split_x12.py`` (history: 837s sent and 835s paid before it); ``denial-risk
ingest`` of the history and ``denial-risk train`` on it (which reports its own test period both
ways: history refreshed daily, and as served); ``denial-risk ingest`` of every file (the later
months' claims and remittances too); ``denial-risk backtest`` of that data set from the cut with
the trained champion, every ``--refresh-days`` given (default 7; add 1 for the daily refresh),
against the simulator's truth (Bayes-optimal ratios).

Targets (issue 18), the default world with the weekly refresh: ROC-AUC >= 0.97 x Bayes and
ECE <= 0.02.

Run: .venv/bin/python benchmarks/bench_backtest.py --claims 200000
     .venv/bin/python benchmarks/bench_backtest.py --sim work/demo/sim --refresh-days 7,1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_generalise import CUT, SPLIT_TOOL  # noqa: E402
from bench_generalise import _run as run_logged  # noqa: E402


def _run(command: list[str], log: Path) -> float:
    """:func:`bench_generalise._run`, timed: its wall time in seconds."""
    started = time.perf_counter()
    run_logged(command, log)
    return time.perf_counter() - started


def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    cli = str(Path(sys.executable).with_name("denial-risk"))
    log = work / "commands.log"
    seconds: dict[str, float] = {}
    sim = args.sim or work / "sim"
    if args.sim is None:
        seconds["simulate"] = _run(
            [cli, "simulate", "--claims", str(args.claims), "--seed", str(args.seed), "--x12",
             "--out", str(sim)],
            log,
        )  # fmt: skip
    history, later = work / "history-x12", work / "later-x12"
    split = [sys.executable, str(SPLIT_TOOL), str(sim / "x12"), args.cut, str(history), str(later)]
    _run(split, log)
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    seconds["ingest history"] = _run(
        [cli, "ingest", str(history), "--out", str(work / "history"),
         "--validation", args.validation],
        log,
    )  # fmt: skip
    # The simulator's truth beside the ingested data set, where `train` looks for it: its
    # test period's Bayes-optimal figures (it reads the truth of those claims only).
    shutil.copy(sim / "truth.parquet", work / "history" / "truth.parquet")
    seconds["train"] = _run(
        [cli, "train", str(work / "history"), "--tracking-uri", tracking,
         "--out", str(work / "train")],
        log,
    )  # fmt: skip
    seconds["ingest all"] = _run(
        [cli, "ingest", str(sim / "x12"), "--out", str(work / "all"),
         "--validation", args.validation],
        log,
    )  # fmt: skip
    trained = json.loads((work / "train" / "metrics.json").read_text())
    backtests: dict[str, dict[str, object]] = {}
    for days in args.refresh_days:
        out = work / f"backtest-{days}d.parquet"
        seconds[f"backtest {days}d"] = _run(
            [cli, "backtest", str(work / "all"), "--from", args.cut, "--refresh-days", str(days),
             "--out", str(out), "--truth", str(sim / "truth.parquet"),
             "--tracking-uri", tracking],
            log,
        )  # fmt: skip
        backtests[f"{days}d"] = json.loads(out.with_name(out.stem + "-summary.json").read_text())
    return {"train": trained, "backtests": backtests, "seconds": seconds}


def refresh_cost(dataset: Path, tracking: str, days: list[str]) -> list[str]:
    """Process CPU time of one step's history refresh on ``dataset`` at each day, by part."""
    import copy

    import pandas as pd

    from features.claim_arrays import ClaimArrays
    from features.claim_tables import ClaimTables
    from features.pipeline import claim_feature_columns
    from features.schema import ClaimsDataset
    from serving.loading import load_service
    from training.dataset import history_before, outcome_labels

    data, _ = ClaimsDataset.read(dataset)
    tables, outcomes = ClaimTables.from_dataset(data), outcome_labels(data)
    features = load_service("models:/denial-risk@champion", tracking).pipeline["features"]
    lines = []
    for day in days:
        started = time.process_time()
        held, known = history_before(tables, outcomes, pd.Timestamp(day))
        selected = time.process_time()
        arrays = ClaimArrays.from_tables(held)
        columns = claim_feature_columns(arrays)
        converted = time.process_time()
        copy.copy(features.history_).refresh(arrays, columns, known)
        done = time.process_time()
        lines.append(
            f"- refresh on {day}: {len(held):,} claims and {len(known):,} remittances held; "
            f"CPU {done - started:.2f} s ({(done - started) / len(held) * 1e6:.1f} µs per "
            f"claim): history_before {selected - started:.2f} s, claim arrays and features "
            f"{converted - selected:.2f} s, history fit {done - converted:.2f} s"
        )
    return lines


def _row(name: str, metrics: dict, bayes: dict) -> str:
    def ratio(key: str) -> str:
        return f"{metrics[key] / bayes[key]:.3f}" if bayes.get(key) else "—"

    def of_bayes(key: str) -> str:
        return f"{bayes[key]:.4f}" if key in bayes else "—"

    return (
        f"| {name} | {int(metrics['n']):,} | {metrics['denial_rate']:.3f} / "
        f"{metrics['mean_prediction']:.3f} | {metrics['roc_auc']:.4f} / {of_bayes('roc_auc')} | "
        f"**{ratio('roc_auc')}** | **{metrics['ece']:.4f}** | "
        f"{metrics['reason_top1_accuracy']:.3f} / {of_bayes('reason_top1_accuracy')} | "
        f"{ratio('reason_top1_accuracy')} |"
    )


def report(result: dict) -> str:
    """The figures as BENCHMARKS.md rows."""
    train = result["train"]
    days = train.get("as_served_refresh_days", 7)
    rows = [
        "| evaluation | claims with an outcome | denial rate / mean prediction | ROC-AUC / "
        "Bayes | AUC ÷ Bayes | ECE | reason top-1 / Bayes | top-1 ÷ Bayes |",
        "|---|---|---|---|---|---|---|---|",
        _row("`train`'s test period, history refreshed daily", train["model"], train["bayes"]),
    ]
    if "as_served" in train:
        rows.append(
            _row(f"`train`'s test period, as served ({days}-day refresh)", train["as_served"],
                 train["bayes"])
        )  # fmt: skip
    for name, summary in result["backtests"].items():
        rows.append(
            _row(f"backtest from the cut, {name} refresh ({summary['steps']} steps)",
                 summary["metrics"], summary["bayes"])
        )  # fmt: skip
    lines = ["\n".join(rows), ""]
    for name, summary in result["backtests"].items():
        timing = summary["seconds"]
        steps = summary["step_log"]
        held = sum(s["history_claims"] for s in steps) / max(len(steps), 1)
        lines.append(
            f"- backtest {name}: {summary['claims']:,} claims replayed in {summary['steps']} "
            f"steps; history refresh {timing['refresh_per_step']:.2f} s per step "
            f"({held:,.0f} claims held on average, "
            f"{timing['refresh_per_step'] / held * 1e6:.1f} µs per claim held), "
            f"{timing['refresh']:.0f} s of refreshes and {timing['score']:.0f} s of scoring"
        )
        months = ", ".join(
            f"{m['month']} {m['denial_rate']:.3f}/{m['mean_prediction']:.3f} (ECE {m['ece']:.3f})"
            for m in summary["by_month"]
        )
        lines.append(f"  - by month, denial rate / mean prediction: {months}")
    lines.append(
        "- wall time: "
        + ", ".join(f"{name} {value:.0f} s" for name, value in result["seconds"].items())
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--claims", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sim", type=Path, default=None, help="An existing simulation (--x12).")
    parser.add_argument("--cut", default=CUT)
    parser.add_argument(
        "--refresh-days",
        type=lambda text: [int(d) for d in text.split(",")],
        default=[7],
        help="Backtests to run, by refresh interval in days, e.g. 7,1",
    )
    parser.add_argument("--validation", default="envelope", choices=["full", "envelope"])
    parser.add_argument("--work", type=Path, default=None, help="Keep the files here.")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON.")
    parser.add_argument(
        "--refresh-cost",
        default=None,
        help="Only measure one history refresh's CPU time by part, on --work's data set and "
        "champion (a run's), at these days (comma-separated)",
    )
    args = parser.parse_args()
    if args.refresh_cost:
        work = args.work or Path(".")
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        print("\n".join(refresh_cost(work / "all", tracking, args.refresh_cost.split(","))))
        return
    if not SPLIT_TOOL.exists():
        raise SystemExit(f"{SPLIT_TOOL} is missing: the benchmark splits files with it")
    work = args.work or Path(tempfile.mkdtemp(prefix="backtest-"))
    work.mkdir(parents=True, exist_ok=True)
    result = run(args, work)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))
    print(report(result))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
