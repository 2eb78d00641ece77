"""Scoring with today's history: what keeping the history in the data set costs a `score`.

The history new claims are scored against is built from a data set (training.history_store)
once per version of its tables and cached beside them. In one run, on a data set folder:

(a) building the history from the data set (what the first `score` or API start after an
    `ingest` pays), and reading it from the cache (what every later one pays);
(b) explained scoring of the data set's latest ``--score`` claims with a loaded model;

and the ratios a user feels: a `score` of those claims with the history read from the cache,
and with it built, against the scoring alone. Target: the cached history adds <= 25% to
scoring 15,000 claims (issue 18: `score --history` took 48 s on 15,000 claims).

    .venv/bin/python benchmarks/bench_history.py --dataset work/demo/ingested \\
        --tracking-uri sqlite:///$PWD/work/demo/mlflow.db
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

TARGET_CACHED_OVERHEAD = 0.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, required=True, help="A data set folder.")
    parser.add_argument("--model", default="models:/denial-risk@champion")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--score", type=int, default=15_000, help="Latest claims to score.")
    args = parser.parse_args()

    from features.claim_tables import ClaimTables
    from features.schema import ClaimsDataset
    from serving.loading import load_service
    from training import history_store

    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        # A copy, so the data set's own cache is neither used nor replaced.
        dataset = Path(tmp) / "dataset"
        shutil.copytree(args.dataset, dataset, ignore=shutil.ignore_patterns(".*"))
        started = time.perf_counter()
        built = history_store.load_history(dataset, 5.0, 0.1)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        history_store.load_history(dataset, 5.0, 0.1)
        cached_s = time.perf_counter() - started
        print(f"(a) {built.as_of.describe()}")
        print(f"    built in {build_s:.2f} s, read from its cache in {cached_s:.2f} s")

        service = load_service(args.model, args.tracking_uri, history=dataset)
        whole, _ = ClaimsDataset.read(dataset)
        latest = whole.claims.sort_values("submission_date")["claim_id"].tail(args.score)
        tables = ClaimTables.from_dataset(whole).subset(latest)
        service.score_frame(tables.subset(tables.claims["claim_id"].head(200)), explain=True)
        started = time.perf_counter()
        service.score_frame(tables, explain=True)
        score_s = time.perf_counter() - started
    print(f"(b) {len(tables):,} claims scored with explanations in {score_s:.2f} s")
    cached = cached_s / score_s
    verdict = "met" if cached <= TARGET_CACHED_OVERHEAD else "NOT met"
    print(
        f"history read from its cache adds {cached:.0%} to the scoring (target <= "
        f"{TARGET_CACHED_OVERHEAD:.0%}: {verdict}); built, {build_s / score_s:.0%}"
    )


if __name__ == "__main__":
    main()
