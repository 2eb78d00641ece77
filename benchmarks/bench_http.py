"""HTTP latency and throughput of the scoring API on loopback.

Starts ``serving.server.run`` in a subprocess (1 and/or 2 uvicorn workers) with a model from
the registry, then:

* holds ``--clients`` concurrent clients (default 20) sending single-claim requests with
  explanations for ``--duration`` seconds (default 60; the first ``--warmup`` seconds are not
  counted) and reports p50/p90/p99 latency, requests/s and errors;
* times a ``--batch``-claim request (default 1,000) a few times.

Targets: p50 <= 15 ms, p99 <= 50 ms, >= 200 req/s, 0 errors; 1,000-claim batch <= 1.5 s.

The load generator is self-contained (asyncio + httpx), bounded in time, loopback only. It
shares the machine's cores with the server, which the figures include.

    .venv/bin/python benchmarks/bench_http.py --model models:/denial-risk@champion \\
        --tracking-uri sqlite:///work/mlflow.db --dataset work/sim
    .venv/bin/python benchmarks/bench_http.py            # simulates and trains a small model
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

KEY = "benchmark-api-key-0123456789abcdef"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_server(
    model: str, tracking_uri: str, workers: int, log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "DENIAL_RISK_MODEL_URI": model,
        "DENIAL_RISK_TRACKING_URI": tracking_uri,
        "DENIAL_RISK_API_KEYS": json.dumps([KEY]),
        "DENIAL_RISK_MAX_BATCH_CLAIMS": "5000",
    }
    code = (
        "from denial_risk.settings import Settings; from serving.server import run; "
        f"run('127.0.0.1', {port}, Settings(), workers={workers})"
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"server not ready within 180 s; see {log_path}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()  # SIGTERM: uvicorn finishes requests in flight and exits
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _load(
    url: str, claims: list[dict[str, Any]], clients: int, duration: float, warmup: float
) -> dict[str, Any]:
    """``clients`` loops sending one claim per request until ``duration`` has passed."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    started = time.perf_counter()
    counted_from = started + warmup
    stop_at = started + warmup + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": KEY}, limits=limits, timeout=120
    ) as client:

        async def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < stop_at:
                body = {"claims": [claims[i % len(claims)]], "explain": True, "top_k": 5}
                i += clients
                sent = time.perf_counter()
                try:
                    answer = await client.post("/v1/claims/score", json=body)
                    status = str(answer.status_code)
                except httpx.HTTPError as error:
                    status = type(error).__name__
                done = time.perf_counter()
                if done >= counted_from:  # completed after the warm-up: counted
                    latencies.append(done - sent)
                    statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(worker(k) for k in range(clients)))
    # Requests in flight at the deadline are waited for and counted, so the window ends here.
    elapsed = time.perf_counter() - counted_from
    return {"latencies": latencies, "statuses": statuses, "seconds": elapsed}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _batch_latency(url: str, claims: list[dict[str, Any]], repeat: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=120) as client:
        for _ in range(repeat):
            started = time.perf_counter()
            answer = client.post("/v1/claims/score", json={"claims": claims, "explain": True})
            times.append(time.perf_counter() - started)
            if answer.status_code != 200 or answer.json()["scored"] != len(claims):
                raise RuntimeError(
                    f"batch request failed: {answer.status_code} {answer.text[:300]}"
                )
    return times


def _claims(dataset: Path, n: int) -> list[dict[str, Any]]:
    from features.claim_tables import ClaimTables
    from features.schema import ClaimsDataset
    from serving.api.scoring import claims_payload

    data, _ = ClaimsDataset.read(dataset)
    tables = ClaimTables.from_dataset(data)
    latest = tables.claims.sort_values("submission_date").tail(n)["claim_id"]
    return claims_payload(tables.subset(latest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="Model URI (default: simulate and train a small one).")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI for --model.")
    parser.add_argument("--dataset", type=Path, help="Data set folder to take claims from.")
    parser.add_argument("--claims", type=int, default=30_000, help="Claims to simulate.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-rounds", type=int, help="Cap boosting rounds when training.")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=1_000, help="Claims in the batch request.")
    parser.add_argument("--batch-repeat", type=int, default=5)
    parser.add_argument("--work", type=Path, help="Keep simulation, model and logs here.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-http-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        if args.model and args.dataset:
            model, tracking_uri, dataset = args.model, args.tracking_uri, args.dataset
        else:
            sys.path.insert(0, str(Path(__file__).parent))
            from bench_scoring import _prepare

            prepare_args = argparse.Namespace(
                dataset=args.dataset,
                claims=args.claims,
                seed=args.seed,
                model=args.model,
                tracking_uri=args.tracking_uri,
                max_rounds=args.max_rounds,
            )
            dataset, model, tracking_uri = _prepare(prepare_args, work)
        claims = _claims(dataset, max(args.batch, 2_000))
        print(f"{len(claims):,} recent claims as request bodies; model {model}")
        print(f"machine: {os.cpu_count()} CPUs; load generator in this process (asyncio+httpx)")

        for workers in args.workers:
            log_path = work / f"server-{workers}w.log"
            process, url = _start_server(model, tracking_uri, workers, log_path)
            try:
                result = asyncio.run(_load(url, claims, args.clients, args.duration, args.warmup))
                batch = _batch_latency(url, claims[: args.batch], args.batch_repeat)
            finally:
                _stop(process)
            latencies = result["latencies"]
            ok = result["statuses"].get("200", 0)
            errors = {k: v for k, v in result["statuses"].items() if k != "200"}
            ms = [x * 1000 for x in latencies]
            print(f"\n== {workers} worker(s), {args.clients} clients, {args.duration:.0f} s "
                  "of single-claim requests with explanations ==")  # fmt: skip
            print(f"requests: {len(latencies):,} ({ok:,} ok), errors: {errors or 0}")
            print(f"throughput: {len(latencies) / result['seconds']:,.1f} req/s   (target >= 200)")
            print(f"latency ms: p50 {_percentile(ms, 50):.1f} (target <= 15)  "
                  f"p90 {_percentile(ms, 90):.1f}  p99 {_percentile(ms, 99):.1f} "
                  f"(target <= 50)  max {max(ms, default=float('nan')):.1f}")  # fmt: skip
            print(f"{args.batch:,}-claim batch with explanations: median "
                  f"{statistics.median(batch):.2f} s, best {min(batch):.2f} s, "
                  f"worst {max(batch):.2f} s over {len(batch)}   (target <= 1.5 s)")  # fmt: skip


if __name__ == "__main__":
    main()
