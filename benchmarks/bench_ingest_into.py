"""Benchmark ``ingest --into``: append a world's last month of 837/835 files to a data set built
from the earlier ones, against ingesting every file afresh; then the same files again (no-op).

Usage::

    .venv/bin/python benchmarks/bench_ingest_into.py WORLD_X12_DIR 2025-12-01 --work DIR

The files are split with ``/work/shared/tools/split_x12.py`` (837s by BHT04, 835s by payment
date): the earlier ones build the data set (``--out``), the later 837s and 835s are appended
(``--into``). Times are wall seconds of ``ingest_paths``/``ingest_into`` plus ``write_ingest``,
measured in one run, with the appended data set checked equal to the fresh one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from features.schema import ClaimsDataset, read_manifest
from features.x12.ingest import ingest_into, ingest_paths, write_ingest

SPLIT = Path("/work/shared/tools/split_x12.py")


def split(world: Path, cut: str, work: Path) -> tuple[Path, Path]:
    """(earlier files, later files) under ``work``."""
    earlier, later = work / "earlier", work / "later"
    for folder in (earlier, later, work / "all", work / "none"):
        shutil.rmtree(folder, ignore_errors=True)
    run = [sys.executable, str(SPLIT), str(world), cut]
    print(subprocess.check_output([*run, str(earlier), str(later)], text=True).strip())  # noqa: S603
    # The later 835s: split_x12 drops them, so take every file and keep those not earlier.
    everything = [sys.executable, str(SPLIT), str(world), "99991231", str(work / "all")]
    subprocess.check_output([*everything, str(work / "none")], text=True)  # noqa: S603
    for path in (work / "all").iterdir():
        if not (earlier / path.name).exists() and not (later / path.name).exists():
            shutil.move(path, later / path.name)
    shutil.rmtree(work / "all")
    shutil.rmtree(work / "none")
    return earlier, later


def timed(label: str, run) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.1f} s")
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", type=Path, help="a world's x12 folder (837/ and 835/ inside)")
    parser.add_argument("cut", help="first day of the appended period, YYYY-MM-DD")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    options = {"workers": args.workers, "validation": "envelope"}
    earlier, later = split(args.world, args.cut.replace("-", ""), args.work)
    n_later = sum(1 for _ in later.iterdir())
    data = args.work / "dataset"
    shutil.rmtree(data, ignore_errors=True)

    def build():  # type: ignore[no-untyped-def]
        result = ingest_paths([earlier], **options)
        write_ingest(result, data)
        return result

    def append():  # type: ignore[no-untyped-def]
        result = ingest_into([later], data, **options)
        write_ingest(result, data)
        return result

    def fresh():  # type: ignore[no-untyped-def]
        result = ingest_paths([earlier, later], **options)
        write_ingest(result, args.work / "fresh")
        return result

    base_s, _ = timed("build the data set from the earlier files (--out)", build)
    append_s, appended = timed(f"append the later {n_later:,} files (--into)", append)
    fresh_s, everything = timed("ingest every file afresh (--out)", fresh)
    noop_s, noop = timed("the later files again (--into, no-op)", append)
    manifest = read_manifest(data)
    all_noop_s, _ = timed("every file again (--into, no-op)", lambda: ingest_into(
        [earlier, later], data, **options))  # fmt: skip

    a, b = ClaimsDataset.read(data)[0], everything.dataset  # type: ignore[attr-defined]
    for name in a.table_names():
        x, y = getattr(a, name), getattr(b, name)
        keys = list(x.columns[:2])
        pd.testing.assert_frame_equal(
            x.sort_values(keys).reset_index(drop=True), y.sort_values(keys).reset_index(drop=True)
        )
    if read_manifest(data) != manifest:
        raise SystemExit("a no-op append changed the manifest")
    summary = appended.summary  # type: ignore[attr-defined]
    figures = {
        "later_files": n_later,
        "build_s": round(base_s, 1),
        "append_s": round(append_s, 1),
        "fresh_all_s": round(fresh_s, 1),
        "noop_later_s": round(noop_s, 1),
        "noop_all_s": round(all_noop_s, 1),
        "append / fresh": round(append_s / fresh_s, 3),
        "noop later / append": round(noop_s / append_s, 3),
        "claims_added": summary["claims_added"],
        "remittances_added": summary["remittances_added"],
        "remittances_for_earlier_claims": summary["remittances_for_earlier_claims"],
        "noop_claims_duplicate": noop.summary["claims_duplicate"],  # type: ignore[attr-defined]
        "rows": manifest.rows if manifest else None,
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
