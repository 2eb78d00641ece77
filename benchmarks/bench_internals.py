"""What each private library internal buys in a figure users feel: an API request's CPU.

Times single-claim requests (with explanations, top 5: the API's common call) and one
1,000-claim request through ``score_together``, the scoring work of a request without HTTP.
Each variant switches internals off in this process in favour of the public path the code
would otherwise take; every variant scores each claim in turns (rotating order), so all see
the machine's speed of the moment. CPU time of the scoring thread, not wall time: this shared
machine's load moves wall times by tens of percent. The project's rule: an internal stays only
if it buys at least 20%.

    .venv/bin/python benchmarks/bench_internals.py --model models/denial-risk --dataset work/sim
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _variants() -> dict[str, Callable[[], None]]:
    """Each internal's switch to its public path (the previous state restored by ``restore``).

    LightGBM's single-row entry (``lightgbm.basic._LIB``) and request tables recorded as checked
    while built (``DataFrame._mgr.blocks``) were measured by this script as of commit af16484
    and dropped (BENCHMARKS.md, private internals)."""
    import features.claim_arrays as claim_arrays
    import features.schema as schema

    original = (schema.column_array, schema.create_dataframe_from_blocks)

    def restore() -> None:
        schema.column_array, schema.create_dataframe_from_blocks = original
        claim_arrays.column_array = original[0]

    def column_reads() -> None:  # frame._mgr.iget_values -> frame[name].array
        def public(frame: Any, name: str) -> Any:
            return frame[name].array

        schema.column_array = claim_arrays.column_array = public

    def blocks() -> None:  # pandas.api.internals.create_dataframe_from_blocks -> pd.DataFrame
        schema.create_dataframe_from_blocks = None

    def chain(*steps: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            restore()
            for step in steps:
                step()

        return run

    return {
        "restore": restore,
        "as is": chain(),
        "_mgr.iget_values -> frame[name].array": chain(column_reads),
        "create_dataframe_from_blocks -> pd.DataFrame": chain(blocks),
        "all public": chain(column_reads, blocks),
    }


SETS = {
    "as-is": (
        "as is",
        "_mgr.iget_values -> frame[name].array",
        "create_dataframe_from_blocks -> pd.DataFrame",
        "all public",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Model URI or exported folder.")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI for a models:/ URI.")
    parser.add_argument("--dataset", type=Path, required=True, help="Claims to send.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=150, help="One-claim requests a round.")
    parser.add_argument("--batch", type=int, default=1_000, help="Claims in the batch request.")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_http import _claims

    from serving.api.scoring import prepare_request, score_together
    from serving.loading import load_service
    from serving.schemas import ScoreRequest

    service = load_service(args.model, args.tracking_uri)
    bodies = _claims(args.dataset, max(args.batch, args.requests))
    singles = [
        prepare_request(ScoreRequest.model_validate({"claims": [body], "explain": True}), 1)
        for body in bodies[: args.requests]
    ]
    batch = prepare_request(
        ScoreRequest.model_validate({"claims": bodies[: args.batch], "explain": True}),
        args.batch,
    )
    switches = _variants()
    names = list(SETS["as-is"])
    one: dict[str, list[float]] = {name: [] for name in names}
    many: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds + 1):  # round 0 warms caches and one-off set-ups
        for number, request in enumerate(singles):
            shift = (number + round_) % len(names)
            for name in names[shift:] + names[:shift]:
                switches[name]()
                started = time.thread_time()
                score_together(service, [request])
                if round_:
                    one[name].append(1000 * (time.thread_time() - started))
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            switches[name]()
            started = time.process_time()
            score_together(service, [batch])
            if round_:
                many[name].append(time.process_time() - started)
        switches["restore"]()
        print(f"round {round_} of {args.rounds} done", file=sys.stderr, flush=True)

    median = statistics.median
    print(
        f"{args.rounds} rounds of {args.requests} one-claim requests and one "
        f"{args.batch:,}-claim request per variant; CPU time, median"
    )
    base = names[0]
    print(
        f"{'variant':48s} {'1 claim':>9s} {'vs ' + base[:4]:>9s} {'1,000 claims':>13s} {'vs':>8s}"
    )
    for name in names:
        o, m = median(one[name]), median(many[name])
        print(
            f"{name:48s} {o:7.2f} ms {100 * (o / median(one[base]) - 1):+8.1f}% "
            f"{m:11.3f} s {100 * (m / median(many[base]) - 1):+7.1f}%"
        )


if __name__ == "__main__":
    main()
