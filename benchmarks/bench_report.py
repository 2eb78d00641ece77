"""The denial analytics report: payer-change detection on simulated worlds, and build time.

Two measurements (issue 19), each printed as a table for BENCHMARKS.md:

``detection``
    Simulated practices of the default world whose payers never change a rule (no drift, no
    provider joining late): every alert on them is a false alert, counted per year of the
    history the detector watched (after its warm-up). Then the same practices with one rule
    change injected at a known date in a known payer (``simulator.DriftEvent``): the delay from
    the change to the first alert at that payer for that kind of denial. The simulator's
    knowledge is used to MEASURE only; the detector (features/payer_change.py) reads the data
    set as a practice has it.

``build``
    ``denial-risk report`` over a data set folder (default: a 1M-claim simulation written with
    ``denial-risk simulate --claims 1000000``): the seconds from reading the folder to the HTML
    and JSON written.

    python benchmarks/bench_report.py detection --worlds 4 --claims 60000
    python benchmarks/bench_report.py build --dataset /path/to/sim1m
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pandas as pd

from features.analytics import denial_facts
from features.payer_change import DetectorSettings, alert_events, weekly_alerts
from simulator import DriftEvent, SimulationConfig, default_world_spec, simulate
from simulator.spec import PracticeHabits, codes_of

CHANGES: dict[str, tuple[DriftEvent, set[str]]] = {
    "auth_add: northstar, physical therapy codes need authorization": (
        DriftEvent("auth_add", "northstar", codes=tuple(sorted(codes_of("physical_therapy")))),
        {"authorization", "197", "198"},
    ),
    "lenient_withdraw: bluebonnet, weak diagnoses refused for brain and lumbar MRI": (
        DriftEvent("lenient_withdraw", "bluebonnet", groups=("mri_brain", "mri_lumbar")),
        {"medical_necessity", "11", "167", "50"},
    ),
    "exclusion_add: evergreen_ma, cardiac imaging no longer covered (CARC 96)": (
        DriftEvent(
            "exclusion_add",
            "evergreen_ma",
            codes=tuple(sorted(codes_of("cardiac_imaging"))),
            carc="96",
        ),
        {"non_covered", "96"},
    ),
}
"""Injected changes and the reasons (category or CARC) an alert must name to count as a hit."""


def _world(drift: tuple[DriftEvent, ...]):  # noqa: ANN202
    spec = default_world_spec()
    habits = dataclasses.replace(PracticeHabits(), late_joiners=())
    return dataclasses.replace(spec, drift=drift, habits=habits)


def _alerts(config: SimulationConfig, settings: DetectorSettings) -> tuple[pd.DataFrame, dict]:
    result = simulate(config)
    facts = denial_facts(result.dataset)
    alerts = weekly_alerts(alert_events(facts), settings)
    payers = {p.key: p.payer_id for p in config.world_spec().payers}
    first = facts.claims["remit_date"].min()
    watched_days = (facts.claims["remit_date"].max() - first).days - 7 * settings.warmup_weeks
    return alerts, {"payers": payers, "watched_years": watched_days / 365.25}


def detection(worlds: int, claims: int, settings: DetectorSettings) -> None:
    false_alerts, years = 0, 0.0
    for seed in range(1, worlds + 1):
        config = SimulationConfig(n_claims=claims, seed=seed, world=_world(()))
        alerts, info = _alerts(config, settings)
        false_alerts += len(alerts)
        years += info["watched_years"]
        print(
            f"stationary world, seed {seed}: {len(alerts)} alerts over "
            f"{info['watched_years']:.2f} years watched"
        )
        for row in alerts.itertuples(index=False):
            print(
                f"    {row.detected:%Y-%m-%d} {row.payer_id} {row.procedure} {row.reason} "
                f"baseline {row.baseline_rate} since {row.rate_since_start}"
            )
    print(
        f"\nfalse alerts per year: {false_alerts / years:.2f} ({false_alerts} in {years:.1f} "
        f"practice-years, {worlds} worlds of {claims:,} claims)\n"
    )
    for name, (event, reasons) in CHANGES.items():
        delays = []
        for seed in range(1, worlds + 1):
            config = SimulationConfig(n_claims=claims, seed=seed, world=_world((event,)))
            alerts, info = _alerts(config, settings)
            changed = pd.Timestamp(config.drift_date)
            payer = info["payers"][event.payer]
            hits = alerts[
                (alerts["payer_id"] == payer)
                & alerts["reason"].isin(reasons)
                & (alerts["detected"] >= changed)
            ]
            delay = (hits["detected"].min() - changed).days if len(hits) else None
            others = len(alerts) - len(hits)
            delays.append(delay)
            print(
                f"{name}, seed {seed}: change {changed:%Y-%m-%d}, first alert "
                f"{'none' if delay is None else f'{delay} days later'}; {others} other "
                "alerts"
            )
        found = [d for d in delays if d is not None]
        median = f"{pd.Series(found).median():.0f}" if found else "n/a"
        print(
            f"  detected {len(found)}/{len(delays)}, median delay {median} days, delays {delays}\n"
        )


def build(dataset: Path, out: Path) -> None:
    from serving.report import run_report

    started = time.perf_counter()
    written, timings = run_report(dataset, out, timings=True)
    total = time.perf_counter() - started
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    print(f"report over {dataset}: {total:.1f} s ({steps}); wrote {', '.join(map(str, written))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    det = sub.add_parser("detection")
    det.add_argument("--worlds", type=int, default=4)
    det.add_argument("--claims", type=int, default=60_000)
    bld = sub.add_parser("build")
    bld.add_argument("--dataset", type=Path, required=True)
    bld.add_argument("--out", type=Path, default=Path("work/bench-report/report.html"))
    args = parser.parse_args()
    if args.what == "detection":
        detection(args.worlds, args.claims, DetectorSettings())
    else:
        build(args.dataset, args.out)


if __name__ == "__main__":
    main()
