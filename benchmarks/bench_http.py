"""HTTP latency and throughput of the scoring API on loopback.

Starts ``serving.server.run`` in a subprocess (1 and/or 2 uvicorn workers) with a model from
the registry, then:

* holds ``--clients`` concurrent keep-alive connections (default 20) sending single-claim
  requests with explanations for ``--duration`` seconds (default 60; the first ``--warmup``
  seconds are not counted), once per ``--rate``: paced at that many requests/s in total (each
  latency counted from when its request was due, so queueing is not hidden), and with 0 as a
  closed loop (each client sends again as soon as it is answered: the saturation throughput);
  reports p50/p90/p99 latency, requests/s and errors;
* times a ``--batch``-claim request (default 1,000) a few times;

and, before the server starts, times one claim scored in this process without HTTP: this
machine's speed drifts by tens of percent within an hour, and the latencies move with it.

Targets: p50 <= 15 ms, p99 <= 50 ms, >= 200 req/s, 0 errors; 1,000-claim batch <= 1.5 s.

The load generator is self-contained (asyncio sockets speaking HTTP/1.1), bounded in time,
loopback only. It shares the machine's cores with the server, which the figures include.

    .venv/bin/python benchmarks/bench_http.py --model models:/denial-risk@champion \\
        --tracking-uri sqlite:///work/mlflow.db --dataset work/sim
    .venv/bin/python benchmarks/bench_http.py            # simulates and trains a small model
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
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
        process = subprocess.Popen(  # noqa: S603 (this python running our own server code)
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


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for the API.

    A load generator in Python competes with the server for the same two cores; a bare
    socket client costs a fraction of a general HTTP library per request, so the figures
    measure the server rather than the client.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @property
    def closed_by_server(self) -> bool:
        """Whether the server has closed this connection (its worker exited, say) while it
        was idle: an HTTP client opens a new one then rather than send on it.

        As httpx does, the socket itself is asked: an idle HTTP/1.1 connection with anything
        to read has been closed (its FIN or reset may wait there, unseen by the event loop, when
        a client sends again as soon as it has read an answer)."""
        if self.reader is None or self.writer is None:
            return False
        if self.reader.at_eof() or self.reader.exception() is not None:
            return True
        sock = self.writer.get_extra_info("socket")
        return sock is not None and bool(select.select([sock], [], [], 0)[0])

    async def post(self, path: str, body: bytes) -> int:
        return (await self.exchange("POST", path, body))[0]

    async def exchange(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request and read its answer: (status, body). Raises
        ``ConnectionResetError`` when the server closes the connection instead of answering."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        # Narrows the type for mypy (opened with the writer).
        assert self.reader is not None  # noqa: S101
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nX-API-Key: {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode("ascii") + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("the server closed the connection without an answer")
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        answer = await self.reader.readexactly(length)
        return int(status_line.split()[1]), answer

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


REQUEST_TIMEOUT_SECONDS = 180.0
"""A client gives up on an answer after this long (the API's own scoring timeout is 120 s)."""

_MODEL_VERSION = re.compile(rb'"model_version":\s*"([^"]*)"')


@dataclass
class Request:
    """One request as the client saw it (times from ``time.perf_counter``)."""

    due: float  # when the schedule had it sent (paced), else when it was sent
    sent: float
    answered: float
    status: str  # the HTTP status, or the exception that ended the exchange
    client_port: int | None  # the connection's local port: which worker served it
    version: str | None = None  # model_version of a 200 answer


@dataclass
class Load:
    requests: list[Request] = field(default_factory=list)
    started: float = 0.0
    seconds: float = 0.0

    def failed(self) -> list[Request]:
        return [r for r in self.requests if r.status != "200"]

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.requests:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts


async def drive(
    url: str,
    bodies: list[bytes],
    clients: int,
    seconds: float,
    rate: float,
    load: Load,
    versions: bool = False,
) -> None:
    """``clients`` keep-alive connections sending ``bodies`` in turn for ``seconds``; each
    request is appended to ``load.requests`` as it ends (with its answer's model version when
    ``versions``).

    With ``rate`` (requests/s over all clients) each client sends on a fixed schedule, and a
    request's latency counts from when it was *due*, so a slow server cannot hide its delay
    by slowing the clients down (no coordinated omission). Without it, each client sends its
    next request as soon as the last one is answered (a closed loop: throughput at saturation).
    A client whose idle connection the server closed opens a new one before sending (as httpx
    does); a request without an answer counts as failed, and its client waits 0.1 s and
    connects again.
    """
    host, port = url.removeprefix("http://").split(":")
    load.started = started = time.perf_counter()
    stop_at = started + seconds
    interval = clients / rate if rate else 0.0

    async def client(offset: int) -> None:
        connection = _Connection(host, int(port))
        i, due = offset, started + interval * offset / clients
        try:
            while due < stop_at:
                if rate:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                if connection.closed_by_server:
                    await connection.close()
                    connection = _Connection(host, int(port))
                sent = time.perf_counter()
                version = None
                try:
                    status, answer = await asyncio.wait_for(
                        connection.exchange("POST", "/v1/claims/score", bodies[i % len(bodies)]),
                        REQUEST_TIMEOUT_SECONDS,
                    )
                    outcome = str(status)
                    if versions and status == 200:
                        found = _MODEL_VERSION.search(answer)
                        version = found.group(1).decode() if found else None
                except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as error:
                    outcome = type(error).__name__
                answered = time.perf_counter()
                client_port = (
                    connection.writer.get_extra_info("sockname")[1] if connection.writer else None
                )
                load.requests.append(
                    Request(due if rate else sent, sent, answered, outcome, client_port, version)
                )
                if outcome != "200" and not outcome.isdigit():
                    await connection.close()
                    connection = _Connection(host, int(port))
                    await asyncio.sleep(0.1)  # as a client would before trying again
                i += clients
                due = due + interval if rate else time.perf_counter()
        finally:
            await connection.close()

    await asyncio.gather(*(client(k) for k in range(clients)))
    load.seconds = time.perf_counter() - started


async def _load(
    url: str,
    claims: list[dict[str, Any]],
    clients: int,
    duration: float,
    warmup: float,
    rate: float | None,
) -> dict[str, Any]:
    """One claim per request for ``warmup`` + ``duration`` seconds (see :func:`drive`); the
    figures of the requests due after the warm-up."""
    bodies = [
        json.dumps({"claims": [claim], "explain": True, "top_k": 5}).encode() for claim in claims
    ]
    load = Load()
    await drive(url, bodies, clients, warmup + duration, rate or 0.0, load)
    counted = [r for r in load.requests if r.due >= load.started + warmup]
    statuses: dict[str, int] = {}
    for r in counted:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    return {
        "latencies": [r.answered - r.due for r in counted],
        "statuses": statuses,
        "seconds": load.seconds - warmup,
        "answered": len(load.requests),  # warm-up included: what the server's CPU was spent on
        "all_seconds": load.seconds,
    }


def _cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """CPU time used so far by the server and its worker processes."""
    import psutil  # a dev dependency, as the benchmarks are

    tree = psutil.Process(process.pid)
    total = 0.0
    for member in [tree, *tree.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


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


def _in_process_ms(model: str, tracking_uri: str, claims: list[dict[str, Any]]) -> float:
    """Median time to score one claim with explanations in this process, no HTTP: what the
    machine gives right now. Its speed drifts by tens of percent within an hour, and the
    latencies above move with it; this figure, taken in the same run, says how fast it was."""
    from serving.api.scoring import prepare_request, score_together
    from serving.loading import load_service
    from serving.schemas import ScoreRequest

    service = load_service(model, tracking_uri)
    times = []
    for number, claim in enumerate(claims[:300]):
        request = ScoreRequest.model_validate({"claims": [claim], "explain": True, "top_k": 5})
        prepared = prepare_request(request, max_batch_claims=1)
        started = time.perf_counter()
        score_together(service, [prepared])
        if number >= 50:  # after the first calls' one-off set-up
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the model and the claims to send (see :func:`model_and_claims`)."""
    parser.add_argument("--model", help="Model URI (default: simulate and train a small one).")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI for --model.")
    parser.add_argument("--dataset", type=Path, help="Data set folder to take claims from.")
    parser.add_argument("--claims", type=int, default=30_000, help="Claims to simulate.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-rounds", type=int, help="Cap boosting rounds when training.")
    parser.add_argument("--work", type=Path, help="Keep simulation, model and logs here.")


def model_and_claims(
    args: argparse.Namespace, work: Path, claims: int
) -> tuple[str, str, list[dict[str, Any]]]:
    """The model URI, its tracking URI and the latest ``claims`` claims of the data set:
    ``--model`` and ``--dataset`` when both are given, else simulated and trained in ``work``."""
    if args.model and args.dataset:
        model, tracking_uri, dataset = args.model, args.tracking_uri, args.dataset
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_scoring import _prepare

        dataset, model, tracking_uri = _prepare(args, work)
    return model, tracking_uri or "", _claims(dataset, claims)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[250.0, 0.0],
        help="Total requests/s the clients send on schedule; 0 runs a closed loop instead.",
    )
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=1_000, help="Claims in the batch request.")
    parser.add_argument("--batch-repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-http-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        model, tracking_uri, claims = model_and_claims(args, work, max(args.batch, 2_000))
        print(f"{len(claims):,} recent claims as request bodies; model {model}")
        print(f"machine: {os.cpu_count()} CPUs; load generator in this process (asyncio sockets)")
        print(f"one claim scored with explanations in process (no HTTP), median: "
              f"{_in_process_ms(model, tracking_uri, claims):.1f} ms")  # fmt: skip

        for workers in args.workers:
            log_path = work / f"server-{workers}w.log"
            process, url = _start_server(model, tracking_uri, workers, log_path)
            try:
                for rate in args.rate:
                    server_cpu, generator_cpu = _cpu_seconds(process), time.process_time()
                    result = asyncio.run(
                        _load(url, claims, args.clients, args.duration, args.warmup, rate)
                    )
                    result["server_cpu"] = _cpu_seconds(process) - server_cpu
                    result["generator_cpu"] = time.process_time() - generator_cpu
                    _report(workers, args, rate, result)
                batch = _batch_latency(url, claims[: args.batch], args.batch_repeat)
            finally:
                _stop(process)
            print(f"{args.batch:,}-claim batch with explanations: median "
                  f"{statistics.median(batch):.2f} s, best {min(batch):.2f} s, "
                  f"worst {max(batch):.2f} s over {len(batch)}   (target <= 1.5 s)")  # fmt: skip


def _report(workers: int, args: argparse.Namespace, rate: float, result: dict[str, Any]) -> None:
    latencies = result["latencies"]
    ok = result["statuses"].get("200", 0)
    errors = {k: v for k, v in result["statuses"].items() if k != "200"}
    ms = [x * 1000 for x in latencies]
    load = f"paced at {rate:,.0f} req/s" if rate else "closed loop (next request on answer)"
    print(f"\n== {workers} worker(s), {args.clients} clients, {load}, {args.duration:.0f} s "
          "of single-claim requests with explanations ==")  # fmt: skip
    print(f"requests: {len(latencies):,} ({ok:,} ok), errors: {errors or 0}")
    print(f"throughput: {len(latencies) / result['seconds']:,.1f} req/s   (target >= 200)")
    print(f"latency ms: p50 {_percentile(ms, 50):.1f} (target <= 15)  "
          f"p90 {_percentile(ms, 90):.1f}  p99 {_percentile(ms, 99):.1f} "
          f"(target <= 50)  max {max(ms, default=float('nan')):.1f}")  # fmt: skip
    # Over the whole load (warm-up included): how busy the cores were, and with what.
    run_seconds = result["all_seconds"]
    cores = os.cpu_count() or 1
    print(f"CPU: server {1000 * result['server_cpu'] / max(result['answered'], 1):.1f} ms per "
          "request; "
          f"server {result['server_cpu'] / run_seconds:.2f} + load generator "
          f"{result['generator_cpu'] / run_seconds:.2f} of {cores} cores busy")  # fmt: skip


if __name__ == "__main__":
    main()
