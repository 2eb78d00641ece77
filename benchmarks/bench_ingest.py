"""Benchmark X12 ingest: write 837P + 835 for N claims, time ``ingest_paths`` (2 workers).

Usage::

    .venv/bin/python benchmarks/bench_ingest.py --claims 20000 --workers 2

Prints claims/s for each pyx12 validation depth. "Claims" counts each claim once although
both its 837P claim and its 835 payment are read (the target is >= 1,500 claims/s for the
837P + 835 pair). Uses ``simulator.simulate`` when it exists, else a synthetic builder here.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import ClaimsDataset, validate_table
from features.x12 import ingest_paths, write_835, write_837p

PROCEDURES = np.array(["99213", "99214", "93000", "80053", "36415", "71046", "J1100", "97110"])
DIAGNOSES = np.array(["I10", "E119", "M5416", "J069", "Z0000", "R079", "K219", "F419"])
PAYERS = [("60054", "AETNA", "CI"), ("00435", "MEDICARE B", "MB"), ("77027", "MEDICAID", "MC")]


def synthetic_dataset(n_claims: int, seed: int = 0) -> ClaimsDataset:
    """A contract-valid data set: 1-4 lines and 1-3 diagnoses per claim, one 835 each."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"B{i:08d}" for i in range(n_claims)])
    payer = rng.integers(0, len(PAYERS), n_claims)
    start = pd.Timestamp("2025-01-06") + pd.to_timedelta(rng.integers(0, 180, n_claims), "D")
    n_lines = rng.integers(1, 5, n_claims)
    n_dx = rng.integers(1, 4, n_claims)
    line_claim = np.repeat(np.arange(n_claims), n_lines)
    line_no = np.concatenate([np.arange(1, k + 1) for k in n_lines])
    charge = rng.integers(50, 500, len(line_claim)).astype(float)
    total = np.bincount(line_claim, weights=charge, minlength=n_claims)
    lines = pd.DataFrame(
        {
            "claim_id": ids[line_claim],
            "line_number": line_no,
            "procedure_code": PROCEDURES[rng.integers(0, len(PROCEDURES), len(line_claim))],
            "modifier_1": np.where(rng.random(len(line_claim)) < 0.2, "25", None),
            "modifier_2": None,
            "modifier_3": None,
            "modifier_4": None,
            "units": 1.0,
            "line_charge": charge,
            "service_date": start[line_claim],
            "diagnosis_pointers": "1",
            "revenue_code": None,
        }
    )
    dx_claim = np.repeat(np.arange(n_claims), n_dx)
    diagnoses = pd.DataFrame(
        {
            "claim_id": ids[dx_claim],
            "position": np.concatenate([np.arange(1, k + 1) for k in n_dx]),
            "code": DIAGNOSES[rng.integers(0, len(DIAGNOSES), len(dx_claim))],
        }
    )
    claims = pd.DataFrame(
        {
            "claim_id": ids,
            "submission_date": start + pd.Timedelta(days=3),
            "claim_type": "professional",
            "frequency_code": "1",
            "original_payer_claim_number": None,
            "payer_id": [PAYERS[p][0] for p in payer],
            "payer_name": [PAYERS[p][1] for p in payer],
            "claim_filing_indicator": [PAYERS[p][2] for p in payer],
            "payer_type": [{"CI": "commercial", "MB": "medicare", "MC": "medicaid"}[PAYERS[p][2]]
                           for p in payer],
            "billing_npi": "1234567893",
            "rendering_npi": "1245319599",
            "referring_npi": None,
            "provider_taxonomy": "207Q00000X",
            "place_of_service": "11",
            "total_charge": total,
            "service_date_from": start,
            "service_date_to": start,
            "patient_id": [f"M{i % 5000:07d}" for i in range(n_claims)],
            "patient_birth_date": pd.Timestamp("1970-01-01"),
            "patient_sex": "F",
            "prior_auth_number": None,
            "referral_number": None,
            "has_other_coverage": False,
        }
    )  # fmt: skip
    denied = rng.random(n_claims) < 0.12
    # payers pay in weekly check runs
    remit_date = (start + pd.Timedelta(days=21)).to_period("W").start_time
    remits = pd.DataFrame(
        {
            "remit_id": [f"R{i}" for i in range(n_claims)],
            "claim_id": ids,
            "payer_claim_number": [f"P{i:010d}" for i in range(n_claims)],
            "status_code": np.where(denied, "4", "1"),
            "total_charge": total,
            "paid_amount": np.where(denied, 0.0, np.round(total * 0.7, 2)),
            "patient_responsibility": np.where(denied, 0.0, np.round(total * 0.1, 2)),
            "remit_date": remit_date,
            "payer_id": claims["payer_id"],
            "payer_name": claims["payer_name"],
        }
    )
    remit_lines = lines[["claim_id", "line_number", "procedure_code", "line_charge", "units"]]
    remit_lines = remit_lines.assign(
        remit_id=remit_lines["claim_id"].map(dict(zip(ids, remits["remit_id"], strict=True))),
        paid_amount=np.where(denied[line_claim], 0.0, np.round(charge * 0.7, 2)),
    )
    adjustments = pd.DataFrame(
        {
            "remit_id": remit_lines["remit_id"],
            "claim_id": remit_lines["claim_id"],
            "line_number": remit_lines["line_number"],
            "group_code": np.where(denied[line_claim], "CO", "CO"),
            "carc": np.where(denied[line_claim], "197", "45"),
            "amount": np.where(denied[line_claim], charge, np.round(charge * 0.2, 2)),
            "quantity": None,
        }
    )
    tables = {
        "claims": claims, "lines": lines, "diagnoses": diagnoses, "remittances": remits,
        "remit_lines": remit_lines, "adjustments": adjustments,
    }  # fmt: skip
    return ClaimsDataset(**{k: validate_table(k, v)[0] for k, v in tables.items()})


def build_dataset(n_claims: int, seed: int) -> ClaimsDataset:
    try:
        from simulator import SimulationConfig, simulate  # type: ignore[attr-defined]
    except ImportError:
        return synthetic_dataset(n_claims, seed)
    return simulate(SimulationConfig(n_claims=n_claims, seed=seed)).dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--claims-per-file", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--validation", choices=["full", "envelope", "both"], default="both")
    args = parser.parse_args()

    dataset = build_dataset(args.claims, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        started = time.perf_counter()
        paths = write_837p(dataset, out, claims_per_file=args.claims_per_file)
        paths += write_835(dataset, out, claims_per_file=args.claims_per_file)
        write_s = time.perf_counter() - started
        size_mb = sum(p.stat().st_size for p in paths) / 1e6
        print(
            f"wrote {len(dataset.claims)} claims + {len(dataset.remittances)} remittances "
            f"in {len(paths)} files ({size_mb:.1f} MB) in {write_s:.1f}s"
        )
        modes = ["envelope", "full"] if args.validation == "both" else [args.validation]
        for mode in modes:
            started = time.perf_counter()
            result = ingest_paths(paths, workers=args.workers, validation=mode)  # type: ignore[arg-type]
            seconds = time.perf_counter() - started
            got = result.dataset
            if (len(got.claims), len(got.remittances)) != (
                len(dataset.claims),
                len(dataset.remittances),
            ):
                raise SystemExit(
                    f"ingest read {len(got.claims)} claims and {len(got.remittances)} remittances "
                    f"of {len(dataset.claims)} and {len(dataset.remittances)} written; "
                    f"quarantined:\n{result.quarantine.head()}"
                )
            print(
                f"validation={mode:8s} workers={args.workers}: {seconds:.1f}s, "
                f"{len(got.claims) / seconds:,.0f} claims/s (837P + 835), "
                f"quarantined={len(result.quarantine)}"
            )


if __name__ == "__main__":
    main()
