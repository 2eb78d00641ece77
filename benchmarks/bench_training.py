"""Train on N simulated claims; report time, peak memory and quality against Bayes-optimal.

Targets (issue 3): training-set build + training + evaluation on 1,000,000 claims in <= 5 min
on 2 cores, <= 6 GB; on the later period ROC-AUC >= 0.97 x Bayes, ECE <= 0.02, reason top-1
accuracy >= 0.9 x Bayes.

The simulation runs in a child process first, so the peak memory reported is the training
run's own, as when a practice runs ``denial-risk train`` on data it already holds.

Run: .venv/bin/python benchmarks/bench_training.py --claims 200000
     .venv/bin/python benchmarks/bench_training.py --dataset work/sim   # an existing data set
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import tempfile
import time
from pathlib import Path

from simulator import SimulationConfig, simulate, write_simulation
from training.metrics import REPORTED_METRICS
from training.train import TrainSettings, run_training


def _simulate(claims: int, seed: int, folder: Path) -> None:
    write_simulation(simulate(SimulationConfig(n_claims=claims, seed=seed)), folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--claims", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dataset", type=Path, help="Train on this data set folder instead.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    dataset = args.dataset or work / "sim"
    if args.dataset is None:
        child = multiprocessing.get_context("spawn").Process(
            target=_simulate, args=(args.claims, args.seed, dataset)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"simulation failed with exit code {child.exitcode}")
    stages: list[tuple[str, float]] = []
    current: dict[str, str | float] = {"stage": "start", "since": time.perf_counter()}

    def progress(stage: str, fraction: float) -> None:
        now = time.perf_counter()
        stages.append((str(current["stage"]), now - float(current["since"])))
        current.update(stage=stage, since=now)

    started = time.perf_counter()
    outcome = run_training(
        TrainSettings(dataset=dataset, out_dir=work / "out"),
        f"sqlite:///{work / 'mlflow.db'}",
        progress,
    )
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    m, b = outcome.metrics, outcome.bayes_metrics
    print(f"claims: {outcome.counts['claims']:,}; {outcome.split}")
    print(
        f"train claims {outcome.counts['train_claims']:,}, test claims "
        f"{outcome.counts['test_claims']:,}"
    )
    print(
        f"train + evaluate + log: {seconds:.0f} s (target <= 300 s at 1M); "
        f"peak memory {peak_gb:.2f} GB (target <= 6 GB)"
    )
    for stage, took in stages[1:]:
        print(f"  {took:7.1f} s  {stage}")
    print("| metric | model | Bayes-optimal | ratio |")
    print("|---|---|---|---|")
    for name in REPORTED_METRICS:
        model = m.get(name, float("nan"))
        bayes = b.get(name)
        ratio = f"{model / bayes:.3f}" if bayes else "—"
        print(f"| {name} | {model:.4f} | {'—' if bayes is None else f'{bayes:.4f}'} | {ratio} |")
    for key in sorted(k for k in m if k.startswith("payer_type.") and k.endswith(".roc_auc")):
        print(f"  {key}: {m[key]:.4f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
