"""Train on N simulated claims; report time, peak memory and quality against Bayes-optimal.

Targets (issue 3): training-set build + training + evaluation on 1,000,000 claims in <= 5 min
on 2 cores, <= 6 GB; on the later period ROC-AUC >= 0.97 x Bayes, ECE <= 0.02, reason top-1
accuracy >= 0.9 x Bayes.

Run: .venv/bin/python benchmarks/bench_training.py --claims 200000
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from simulator import SimulationConfig, simulate, write_simulation
from training.metrics import REPORTED_METRICS
from training.train import TrainSettings, run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--claims", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    write_simulation(simulate(SimulationConfig(n_claims=args.claims, seed=args.seed)), work / "sim")
    stages: list[tuple[str, float]] = []
    last = [time.perf_counter()]

    def progress(stage: str, fraction: float) -> None:
        now = time.perf_counter()
        stages.append((stage, now - last[0]))
        last[0] = now

    started = time.perf_counter()
    outcome = run_training(
        TrainSettings(dataset=work / "sim", out_dir=work / "out"),
        f"sqlite:///{work / 'mlflow.db'}",
        progress,
    )
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    m, b = outcome.metrics, outcome.bayes_metrics
    print(f"claims: {args.claims:,}; {outcome.split}")
    print(
        f"train claims {outcome.counts['train_claims']:,}, test claims "
        f"{outcome.counts['test_claims']:,}"
    )
    print(
        f"train + evaluate + log: {seconds:.0f} s (target <= 300 s at 1M); "
        f"peak memory {peak_gb:.2f} GB (target <= 6 GB, includes the simulation)"
    )
    for stage, took in stages[1:]:
        print(f"  {took:7.1f} s  before '{stage}'")
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
