"""Write a simulation to disk atomically, and print its realised figures next to the targets."""

from __future__ import annotations

import json
from pathlib import Path

from features.atomic import atomic_folder
from simulator.engine import SimulationResult

TRUTH_FILE = "truth.parquet"
SUMMARY_FILE = "summary.json"


def write_simulation(
    result: SimulationResult, out_dir: Path, overwrite: bool = False, x12: bool = False
) -> None:
    """Write the data set tables, ``truth.parquet`` and ``summary.json`` into ``out_dir``, and
    with ``x12`` the claims as 837P files and the outcomes as 835 files under ``x12/``.

    Everything is written to a hidden sibling folder first and renamed into place at the end, so
    a crash never leaves a half-written folder that looks complete.

    Raises
    ------
    FileExistsError
        ``out_dir`` exists and is not empty, and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is a file; choose a folder path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out_dir} already exists and is not empty; choose another folder or pass "
            "overwrite=True (--overwrite) to replace it"
        )
    with atomic_folder(out_dir) as staging:
        result.dataset.write(staging)
        result.truth.to_parquet(staging / TRUTH_FILE, index=False)
        with open(staging / SUMMARY_FILE, "w", encoding="utf-8") as handle:
            json.dump(result.summary, handle, indent=2)
        if x12:
            from features.x12.writer import write_835, write_837p

            # Faithful: a line the practice sent without a pointer stays without one, as the
            # payer saw it (pyx12 flags such lines; the data are kept).
            write_837p(result.dataset, staging / "x12" / "837", faithful_defects=True)
            write_835(result.dataset, staging / "x12" / "835")


def _pct(value: float) -> str:
    return f"{100 * value:5.1f}%"


def format_summary(summary: dict) -> str:
    """A short table of realised figures against their targets.

    The targets are the published figures the default world is calibrated to; a drawn world
    (``--world-seed``) is meant to differ from them, within plausible bounds.
    """
    low, high = summary["target_denial_rate"]
    world = summary.get("world", {})
    seed = world.get("world_seed")
    rows = [
        ("world", "default" if seed is None else f"drawn, seed {seed}", ""),
        ("payers", f"{len(world.get('payers', []))}", ""),
        (
            "claims (first submissions + corrected)",
            f"{summary['n_first_submissions']:,} + {summary['n_corrected_claims']:,}",
            "",
        ),
        (
            "front-end rejections",
            _pct(summary["rejection_rate"]),
            _pct(summary["target_rejection_rate"]),
        ),
        ("initial denial rate", _pct(summary["denial_rate"]), f"{100 * low:.0f}-{100 * high:.0f}%"),
        ("mean true denial probability", _pct(summary["mean_true_denial_probability"]), ""),
    ]
    for payer_type, target in summary["target_denial_rate_by_payer_type"].items():
        realised = summary["denial_rate_by_payer_type"].get(payer_type)
        shown = "no such payer" if realised is None else _pct(realised)
        rows.append((f"  denial rate, {payer_type}", shown, _pct(target)))
    for category, target in summary["target_cause_mix"].items():
        realised = summary["cause_mix"].get(category, 0.0)
        rows.append((f"  share of denials, {category}", _pct(realised), _pct(target)))
    low, high = summary["target_never_reworked_share"]
    rows.append(
        (
            "denials never reworked",
            _pct(summary["never_reworked_share"]),
            f"{100 * low:.0f}-{100 * high:.0f}%",
        )
    )
    rows.append(("worked denials recovered", _pct(summary["recovered_share_of_worked"]), ""))
    width = max(len(r[0]) for r in rows)
    target = "target" if seed is None else "default's"
    lines = [f"{'figure':<{width}}  {'realised':>17}  {target:>9}"]
    lines += [f"{name:<{width}}  {value:>17}  {target:>9}" for name, value, target in rows]
    return "\n".join(lines)
