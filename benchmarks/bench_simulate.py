"""Simulate and write N claims; report wall time and peak memory (issue: 1M in <= 60 s, <= 4 GB).

Run: .venv/bin/python benchmarks/bench_simulate.py --claims 1000000 [--world-seed K]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from simulator import SimulationConfig, simulate, write_simulation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--world-seed", type=int, default=None, help="a drawn world (default: the default world)"
    )
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp()) / "sim"
    started = time.perf_counter()
    result = simulate(
        SimulationConfig(n_claims=args.claims, seed=args.seed, world_seed=args.world_seed)
    )
    simulated = time.perf_counter()
    write_simulation(result, out)
    done = time.perf_counter()
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1024**2
    print(f"claims: {args.claims:,}")
    print(
        f"simulate: {simulated - started:.1f} s; write: {done - simulated:.1f} s; "
        f"total: {done - started:.1f} s (target <= 60 s)"
    )
    print(f"peak memory: {peak_gb:.2f} GB (target <= 4 GB); on disk: {size_mb:.0f} MB")
    shutil.rmtree(out.parent)


if __name__ == "__main__":
    main()
