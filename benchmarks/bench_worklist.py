"""Benchmark the denials worklist against an oracle ranking on a simulated practice.

Usage::

    .venv/bin/python benchmarks/bench_worklist.py --claims 200000 --seed 7

Protocol (figures for BENCHMARKS.md):

1. Simulate ``--claims`` claims and write the data set (``truth.parquet`` kept beside it).
2. Train the recovery model (:func:`training.recovery.run_recovery_training`): denials before
   the 80th percentile of denial dates train (rows as of the day each was worked), later ones
   test. It reads only the contract tables; ``truth.parquet`` is read for evaluation only.
3. Population: every denial of the later period (worked or not; hard ones included), follow-ups
   hidden so nothing is "in progress". Front-end rejections are left out (no truth for them).
4. Rankings, each scored with one yardstick, *expected recovered dollars* = the simulator's
   ``true_recovery_probability`` (the chance the denial is recovered if worked about 30 days
   after it arrives) x denied amount:

   * ``worklist``: the service's order (work queue by rank, then hard denials);
   * ``oracle``: by true probability x denied amount;
   * ``amount``: by denied amount alone; ``age``: oldest denial first.

   **A. as identified**: every denial ranked as of its own denial date (the moment it is
   identified, when its deadline starts running), one list for the whole later period.
   **B. monthly lists**: every 30 days the denials that arrived since the last list are ranked
   as of that day; captures are summed over the lists (``age`` = first in, first out).

5. Captured dollars in the top ``--share`` (20%) of each list, and the ratio to the oracle's
   (target: worklist >= 0.90). Also: the same with table rates instead of the model (no
   recovery model yet), the recovery model's test metrics, and worklist throughput.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.denials import denials_from_dataset
from features.schema import ClaimsDataset
from serving.worklist import WorklistService, load_worklist_service
from training.recovery import RecoveryTrainSettings, capture_report, run_recovery_training


def _report(rows: pd.DataFrame, truth: pd.Series, share: float) -> dict[str, float]:
    true_p = rows["claim_id"].map(truth).fillna(0.0).to_numpy()
    return capture_report(
        np.arange(len(rows)),
        rows["denied_amount"].to_numpy(),
        true_p,
        rows["denial_date"].to_numpy(),
        share,
    )


def protocol_a(
    service: WorklistService, later: pd.DataFrame, truth: pd.Series, share: float
) -> dict[str, float]:
    rows = service.prioritize(later, later["denial_date"]).rows
    return _report(rows, truth, share)


def protocol_b(
    service: WorklistService, later: pd.DataFrame, truth: pd.Series, share: float
) -> dict[str, float]:
    start = later["denial_date"].min()
    end = later["denial_date"].max()
    totals: dict[str, float] = {}
    lists = 0
    cut = start + pd.Timedelta(days=29)
    previous = start - pd.Timedelta(days=1)
    while previous < end:
        batch = later[(later["denial_date"] > previous) & (later["denial_date"] <= cut)]
        if len(batch):
            rows = service.prioritize(batch.reset_index(drop=True), cut).rows
            for key, value in _report(rows, truth, share).items():
                if key.startswith("captured.") or key in ("denials", "total_expected_dollars"):
                    totals[key] = totals.get(key, 0.0) + value
            lists += 1
        previous, cut = cut, cut + pd.Timedelta(days=30)
    oracle = totals["captured.oracle"]
    for name in ("worklist", "amount", "age"):
        totals[f"ratio_to_oracle.{name}"] = totals[f"captured.{name}"] / oracle
    totals["lists"] = float(lists)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--work", type=Path, default=None, help="Keep data and MLflow here.")
    args = parser.parse_args()

    from simulator import SimulationConfig, simulate, write_simulation

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-worklist-"))
    data_dir = work / "data"
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if not (data_dir / "truth.parquet").exists():
        write_simulation(simulate(SimulationConfig(n_claims=args.claims, seed=args.seed)), data_dir)
    timings["simulate_s"] = time.perf_counter() - started

    tracking_uri = f"sqlite:///{(work / 'mlflow.db').resolve()}"
    started = time.perf_counter()
    settings = RecoveryTrainSettings(
        dataset=data_dir, out_dir=work / "recovery", force_promote=True
    )
    outcome = run_recovery_training(settings, tracking_uri)
    timings["train_s"] = time.perf_counter() - started

    dataset, _ = ClaimsDataset.read(data_dir)
    truth = pd.read_parquet(data_dir / "truth.parquet").set_index("claim_id")
    truth_p = truth["true_recovery_probability"]
    started = time.perf_counter()
    frame = denials_from_dataset(dataset, include_rejections=False)
    timings["denial_frame_s"] = time.perf_counter() - started
    test_from = pd.Timestamp(frame["denial_date"].quantile(0.8)).normalize()
    later = frame[frame["denial_date"] >= test_from].assign(worked_on=pd.NaT)
    later = later.reset_index(drop=True)

    model_service = load_worklist_service(tracking_uri, "models:/denial-recovery@champion")
    table_service = WorklistService(model=None)
    started = time.perf_counter()
    a_model = protocol_a(model_service, later, truth_p, args.share)
    timings["worklist_s"] = time.perf_counter() - started
    timings["worklist_denials_per_s"] = len(later) / timings["worklist_s"]
    results = {
        "claims": args.claims,
        "seed": args.seed,
        "share": args.share,
        "test_from": f"{test_from:%Y-%m-%d}",
        "later_denials": len(later),
        "recovery_counts": outcome.counts,
        "recovery_metrics": {k: v for k, v in outcome.metrics.items() if "." not in k},
        "recovery_truth": outcome.truth_metrics,
        "A_as_identified": a_model,
        "A_as_identified_table_rates": protocol_a(table_service, later, truth_p, args.share),
        "B_monthly_lists": protocol_b(model_service, later, truth_p, args.share),
        "timings": timings,
    }
    (work / "bench_worklist.json").write_text(json.dumps(results, indent=2, default=str))

    m = results["recovery_metrics"]
    t = results["recovery_truth"]
    print(f"# Worklist benchmark: {args.claims:,} simulated claims, seed {args.seed}")
    print(
        f"later period from {results['test_from']}: {len(later):,} denials; "
        f"recovery model trained on {outcome.counts['train_denials']:,} worked denials, "
        f"tested on {outcome.counts['test_denials']:,}"
    )
    print(
        f"recovery model: ROC-AUC {m['roc_auc']:.3f} (true probability "
        f"{t.get('bayes.roc_auc', float('nan')):.3f}), ECE {m['ece']:.3f}, Brier "
        f"{m['brier']:.3f}; Spearman vs true probability {t.get('truth.spearman', 0):.3f}"
    )
    print()
    print(
        f"| top {args.share:.0%} captured expected recovered $ | worklist | worklist (table "
        "rates) | amount only | oldest first | oracle |"
    )
    print("|---|---|---|---|---|---|")
    for label, key, table_key in (
        ("A. as identified", "A_as_identified", "A_as_identified_table_rates"),
        ("B. monthly lists", "B_monthly_lists", None),
    ):
        r = results[key]
        table_ratio = f"{results[table_key]['ratio_to_oracle.worklist']:.3f}" if table_key else "—"
        print(
            f"| {label} (ratio to oracle) | {r['ratio_to_oracle.worklist']:.3f} | "
            f"{table_ratio} | {r['ratio_to_oracle.amount']:.3f} | "
            f"{r['ratio_to_oracle.age']:.3f} | 1.000 (${r['captured.oracle']:,.0f}) |"
        )
    print()
    print("timings: " + ", ".join(f"{k} {v:,.1f}" for k, v in timings.items()))
    print(f"results: {work / 'bench_worklist.json'}")


if __name__ == "__main__":
    main()
