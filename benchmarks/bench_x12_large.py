"""Ingest of 50 MB hostile X12 files, each in a fresh process: time and peak memory.

Three files, each read in ``envelope`` and ``full`` mode (issue 20):

- ``837-repeated-segment``: our writer's 837P with one DTP segment repeated until the file is
  50 MB (2.5 million times in a row);
- ``835-repeated-segment``: our writer's 835 with one CAS segment repeated likewise;
- ``837-one-element``: our writer's 837P with one 50 MB element (a REF*G1 authorization).

Each run is a child process that ingests the file and reports its own peak RSS
(``getrusage(RUSAGE_SELF)`` at its end; the parent's ``RUSAGE_CHILDREN`` would give the largest
child so far, not each one's). The claim holding the damage must be quarantined with a reason and
every other claim ingested. Targets: each run <= 15 s (from the child's start, imports and all)
and <= 1 GB peak; exits 1 if one is missed.

    .venv/bin/python benchmarks/bench_x12_large.py [--mb 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.utils, as the command above is run from the checkout

SECONDS = 15.0
PEAK_MB = 1024


def write_files(folder: Path, mb: float) -> dict[str, Path]:
    """The three 50 MB files, built from our writer's small 837P and 835."""
    from features.x12 import write_835, write_837p
    from tests.unit.test_x12_roundtrip import make_dataset
    from tests.utils.x12_fuzz import repeated_segment

    dataset = make_dataset()
    claims = write_837p(dataset, folder / "base")[0].read_text()
    remit = write_835(dataset, folder / "base")[0].read_text()
    size = int(mb * 1e6)
    files = {
        "837-repeated-segment": repeated_segment(claims, "DTP*472*", size),
        "835-repeated-segment": repeated_segment(remit, "CAS*", size),
        "837-one-element": claims.replace("REF*G1*AUTH123", "REF*G1*" + "9" * size),
    }
    paths = {}
    for name, text in files.items():
        paths[name] = folder / f"{name}.x12"
        paths[name].write_text(text)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0)
    args = parser.parse_args()
    from tests.utils.x12_fuzz import ingest_in_child

    missed = False
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(Path(tmp), args.mb)
        for name, path in paths.items():
            for mode in ("envelope", "full"):
                seconds, got = ingest_in_child(path, mode, timeout=600)
                ok = seconds <= SECONDS and got["peak_mb"] <= PEAK_MB
                adds_up = got["read"] == got["ingested"] + got["quarantined"]
                ok = ok and adds_up and got["quarantined"] == 1 and bool(got["reasons"])
                missed |= not ok
                print(
                    f"{name:22s} {path.stat().st_size / 1e6:5.1f} MB {mode:8s} "
                    f"{seconds:5.1f} s  peak {got['peak_mb']:5.0f} MB  read {got['read']} "
                    f"ingested {got['ingested']} quarantined {got['quarantined']}  "
                    f"{'ok' if ok else 'MISSED'}\n    {got['reasons'][:1]}"
                )
    print(f"targets: <= {SECONDS:.0f} s and <= {PEAK_MB} MB a run")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
