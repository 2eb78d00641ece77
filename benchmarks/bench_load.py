"""Load, soak, model reload and worker kill: the scoring API under load on loopback (issue 20).

Each check starts a real server (``serving.server.run``, as ``denial-risk serve`` does) on a
loopback port, drives it with ``--clients`` keep-alive connections sending single-claim requests
with explanations (the load generator of ``bench_http.py``), prints its figures and checks its
target; the command exits 1 when any target is missed.

* ``steady``: ``--duration`` (60 s) of load; target: every request answered 200.
* ``soak``: ``--duration`` (600 s) of load; the resident memory (RSS) of every server process,
  the supervisor and each worker, sampled every ``--sample-every`` seconds; target: the total at
  the end is less than 10% above the total after ``--warmup`` (60 s), and every request is
  answered 200.
* ``reload``: ``--reloads`` calls of ``POST /v1/admin/reload`` (the server's one way to take a
  new model without a restart) spread over ``--duration`` of load; before each, the champion
  alias is moved to another complete version when the registry has one (as
  ``denial-risk promote`` does), and put back at the end. Targets: every request answered 200,
  every reload answered 200, and every request sent after a reload has answered is scored by
  the model that reload loaded.
* ``kill``: SIGKILL of one of the ``--workers`` (2) worker processes ``--kill-at`` seconds into
  ``--duration`` of load. Targets: the requests that fail are only those the killed worker
  had in flight: sent on its connections before it was gone (its exit closes its sockets only
  once the kernel has freed its memory, a few hundred ms), at most one per connection; and
  the supervisor starts a replacement that listens (within ``--replace-within`` seconds).
* ``all``: the four in turn, each with its own server.

A client whose idle connection the server closed opens a new one before sending (as httpx and
browsers do); a request that gets no answer counts as failed. ``--rate`` paces all clients
together at that many requests/s (0: each sends again as soon as it is answered). The load
generator is bounded in time and loopback only; it shares the machine's cores with the server.
Counts and ratios, not latencies, are the targets: this machine's speed drifts by tens of
percent within an hour.

    .venv/bin/python benchmarks/bench_load.py all --model models:/denial-risk@champion \\
        --tracking-uri sqlite:///work/mlflow.db --dataset work/sim
    .venv/bin/python benchmarks/bench_load.py kill        # simulates and trains a small model
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from bench_http import (  # noqa: E402
    Load,
    _Connection,
    _percentile,
    _start_server,
    _stop,
    add_model_arguments,
    drive,
    model_and_claims,
)

RSS_GROWTH_LIMIT = 0.10


async def _under_load(
    args: argparse.Namespace,
    url: str,
    bodies: list[bytes],
    side: Callable[[Load], Awaitable[None]],
    versions: bool = False,
) -> Load:
    """The load for ``args.duration`` seconds with ``side`` (sampling, reloading, killing)
    running beside it on the same event loop."""
    load = Load()
    await asyncio.gather(
        drive(url, bodies, args.clients, args.duration, args.rate, load, versions), side(load)
    )
    return load


async def _at(load: Load, seconds: float) -> None:
    """Wait until ``seconds`` into the load."""
    while not load.started:
        await asyncio.sleep(0.01)
    await asyncio.sleep(max(0.0, load.started + seconds - time.perf_counter()))


def _server_processes(server: subprocess.Popen[bytes]) -> list[psutil.Process]:
    root = psutil.Process(server.pid)
    return [root, *root.children(recursive=True)]


def _workers(server: subprocess.Popen[bytes], port: int) -> list[psutil.Process]:
    """The server's processes listening on ``port`` (each worker has its own socket)."""
    listening = []
    for process in _server_processes(server):
        try:
            connections = process.net_connections("tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in connections):
            listening.append(process)
    return listening


def _held(worker: psutil.Process, port: int) -> set[int]:
    """The client ports of the connections ``worker`` holds on ``port``."""
    return {
        c.raddr.port
        for c in worker.net_connections("tcp")
        if c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


def _wait_gone(process: psutil.Process) -> None:
    """Until ``process`` has exited, every thread of it: its sockets are closed by the last
    one (a zombie its parent has not reaped yet counts; its first thread turns zombie while
    others may still be ending)."""
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE and process.num_threads() <= 1:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.001)


def _rss(server: subprocess.Popen[bytes]) -> dict[int, int]:
    """Resident bytes of each server process (supervisor, workers, helpers), by pid."""
    sizes = {}
    for process in _server_processes(server):
        try:
            sizes[process.pid] = process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return sizes


def _summary(name: str, load: Load) -> None:
    ok = load.statuses().get("200", 0)
    errors = {k: v for k, v in load.statuses().items() if k != "200"}
    ms = sorted(1000 * (r.answered - r.due) for r in load.requests if r.status == "200")
    print(
        f"{name}: {len(load.requests):,} requests in {load.seconds:.1f} s "
        f"({len(load.requests) / max(load.seconds, 1e-9):,.1f}/s), {ok:,} answered 200, "
        f"errors: {errors or 0}"
    )
    if ms:
        print(
            f"  latency (from when due), ms: p50 {_percentile(ms, 50):.1f}  p99 "
            f"{_percentile(ms, 99):.1f}  max {ms[-1]:.1f}  (the machine's speed of the hour)"
        )


Check = tuple[str, bool]
"""A target and whether it was met."""


# -- the checks --------------------------------------------------------------------------------


def check_steady(args: argparse.Namespace, ctx: _Context) -> list[Check]:
    server, url = ctx.start(args.workers, "steady")
    try:
        load = asyncio.run(_under_load(args, url, ctx.bodies, _nothing))
    finally:
        _stop(server)
    _summary(f"steady, {args.workers} worker(s), {args.clients} clients", load)
    failed = len(load.failed())
    return [(f"0 failed of {len(load.requests):,} requests (got {failed})", failed == 0)]


async def _nothing(load: Load) -> None:
    return None


def check_soak(args: argparse.Namespace, ctx: _Context) -> list[Check]:
    server, url = ctx.start(args.workers, "soak")
    samples: list[tuple[float, dict[int, int]]] = []

    async def sample(load: Load) -> None:
        await _at(load, 0)
        step = 0
        while True:
            samples.append((step * args.sample_every, await asyncio.to_thread(_rss, server)))
            step += 1
            if step * args.sample_every >= args.duration:
                return  # the last sample is taken once the load has ended
            await _at(load, step * args.sample_every)

    try:
        load = asyncio.run(_under_load(args, url, ctx.bodies, sample))
        samples.append((load.seconds, _rss(server)))  # at the end, before the server stops
    finally:
        _stop(server)
    _summary(f"soak, {args.workers} worker(s), {args.clients} clients", load)
    after_warmup = next(s for t, s in samples if t >= args.warmup)
    at_end = samples[-1][1]
    total_warm, total_end = sum(after_warmup.values()), sum(at_end.values())
    growth = total_end / total_warm - 1
    mb = 1 / 2**20
    print(f"  RSS of the server's processes (MB; pid: size), every {args.sample_every:.0f} s:")
    for t, sizes in samples:
        if t in (0, samples[-1][0]) or t % 60 < args.sample_every:
            parts = ", ".join(f"{pid}: {size * mb:,.0f}" for pid, size in sorted(sizes.items()))
            print(f"    {t:6.0f} s  total {sum(sizes.values()) * mb:,.0f}  ({parts})")
    second_half = [(t, sum(s.values())) for t, s in samples if t >= args.duration / 2]
    slope = _slope(second_half) * 60 * mb if len(second_half) > 2 else float("nan")
    print(
        f"  after {args.warmup:.0f} s of warm-up {total_warm * mb:,.0f} MB, at the end "
        f"{total_end * mb:,.0f} MB: {100 * growth:+.1f}%; over the second half "
        f"{slope:+.2f} MB/min"
    )
    failed = len(load.failed())
    return [
        (
            f"RSS growth after warm-up < {100 * RSS_GROWTH_LIMIT:.0f}% (got {100 * growth:+.1f}%)",
            growth < RSS_GROWTH_LIMIT,
        ),
        (f"0 failed of {len(load.requests):,} requests (got {failed})", failed == 0),
    ]


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of ``points`` (per second)."""
    xs, ys = [p[0] for p in points], [float(p[1]) for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


@dataclass
class _Reload:
    started: float
    answered: float
    status: int | str
    version: str | None
    detail: str


def check_reload(args: argparse.Namespace, ctx: _Context) -> list[Check]:
    from training import registry

    client, name, alias = ctx.registry()
    champion = other = None
    if client is not None:
        champion = registry.champion_version(client, name, alias)
        complete = [
            str(v.version)
            for v in client.search_model_versions(f"name='{name}'")
            if str(v.version) != champion
            and registry.incomplete_reason(client, name, str(v.version)) is None
        ]
        other = max(complete, key=int) if complete else None
    aliases_before = _aliases(client, name)
    if other is None:
        print("reload: no second complete version to promote; each reload loads the same one")
    else:
        print(f"reload: the champion alias moves between versions {champion} and {other}")
    server, url = ctx.start(args.workers, "reload")
    host, port = url.removeprefix("http://").split(":")
    reloads: list[_Reload] = []
    rss: list[int] = []  # the server's, before each reload and after the last

    async def reload_now(load: Load) -> None:
        for number in range(args.reloads):
            await _at(load, args.duration * (number + 1) / (args.reloads + 1))
            rss.append(sum((await asyncio.to_thread(_rss, server)).values()))
            if other is not None and client is not None:
                target = other if number % 2 == 0 else champion
                await asyncio.to_thread(registry.promote, client, name, str(target), alias)
            started = time.perf_counter()
            connection = _Connection(host, int(port))
            try:
                status, answer = await connection.exchange("POST", "/v1/admin/reload")
                body = json.loads(answer)
                reloads.append(
                    _Reload(
                        started,
                        time.perf_counter(),
                        status,
                        body.get("version"),
                        json.dumps(body)[:200],
                    )
                )
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                reloads.append(
                    _Reload(started, time.perf_counter(), type(error).__name__, None, str(error))
                )
            finally:
                await connection.close()
        await asyncio.sleep(1)  # the replaced model's last requests answered
        rss.append(sum((await asyncio.to_thread(_rss, server)).values()))

    try:
        load = asyncio.run(_under_load(args, url, ctx.bodies, reload_now, versions=True))
    finally:
        _stop(server)
        _restore_aliases(client, name, aliases_before)
    _summary(f"reload, {args.workers} worker(s), {args.clients} clients", load)
    stale = 0
    for number, done in enumerate(reloads):
        until = reloads[number + 1].started if number + 1 < len(reloads) else float("inf")
        after = [r for r in load.requests if done.answered < r.sent < until and r.version]
        wrong = sum(r.version != done.version for r in after)
        stale += wrong
        during = [r for r in load.requests if done.started <= r.sent <= done.answered]
        slowest = max((r.answered - r.sent for r in during), default=float("nan"))
        print(
            f"  reload {number + 1}: {done.status} in {done.answered - done.started:.1f} s "
            f"({done.detail}); {len(during)} requests sent meanwhile, slowest "
            f"{slowest:.2f} s; of the {len(after):,} sent after it answered, "
            f"{wrong:,} scored by another version"
        )
    sizes = ", ".join(f"{size / 2**20:,.0f}" for size in rss)
    print(f"  RSS of the server's processes before each reload and after the last, MB: {sizes}")
    failed = len(load.failed())
    reloaded = sum(r.status == 200 for r in reloads)
    return [
        (f"0 failed of {len(load.requests):,} requests (got {failed})", failed == 0),
        (f"{args.reloads} reloads answered 200 (got {reloaded})", reloaded == args.reloads),
        (
            f"0 requests scored by the replaced model after a reload answered (got {stale:,})",
            stale == 0,
        ),
    ]


def _aliases(client: Any, name: str) -> dict[str, str]:
    if client is None:
        return {}
    return {str(a): str(v) for a, v in client.get_registered_model(name).aliases.items()}


def _restore_aliases(client: Any, name: str, aliases: dict[str, str]) -> None:
    if client is None:
        return
    for alias in _aliases(client, name):
        if alias not in aliases:
            client.delete_registered_model_alias(name, alias)
    for alias, version in aliases.items():
        client.set_registered_model_alias(name, alias, version)


def check_kill(args: argparse.Namespace, ctx: _Context) -> list[Check]:
    if args.workers < 2:
        return [("kill needs --workers 2 or more", False)]
    server, url = ctx.start(args.workers, "kill")
    port = int(url.rsplit(":", 1)[1])
    killed: dict[str, Any] = {}
    serving: dict[int, int] = {}

    async def kill_and_look(load: Load) -> None:
        await asyncio.gather(kill(load), look(load))

    async def look(load: Load) -> None:
        """Which worker serves the clients near the load's end (once the replacement is up)."""
        await _at(load, args.duration - 1)
        for worker in await asyncio.to_thread(_workers, server, port):
            serving[worker.pid] = len(_held(worker, port))

    async def kill(load: Load) -> None:
        await _at(load, args.kill_at)
        before = await asyncio.to_thread(_workers, server, port)
        victim = before[0]
        held = _held(victim, port)
        signalled = time.perf_counter()
        victim.send_signal(signal.SIGKILL)
        # "In flight" means sent before the worker was gone, which the kernel takes a moment
        # after the signal to make so (its sockets are closed as it exits).
        await asyncio.to_thread(_wait_gone, victim)
        killed.update(pid=victim.pid, ports=held, at=time.perf_counter(), signalled=signalled)
        # Past the load's end too: a worker loads its model in 10-40 s on a busy machine.
        while time.perf_counter() < killed["at"] + args.replace_within:
            workers = await asyncio.to_thread(_workers, server, port)
            new = [w.pid for w in workers if w.pid not in {b.pid for b in before}]
            if len(workers) == args.workers and new:
                killed["replaced"] = time.perf_counter()
                killed["replacement"] = new[0]
                return
            await asyncio.sleep(0.25)

    try:
        load = asyncio.run(_under_load(args, url, ctx.bodies, kill_and_look))
    finally:
        _stop(server)
    log = ctx.log_path("kill").read_text(errors="replace")
    _summary(f"kill, {args.workers} workers, {args.clients} clients", load)
    signalled, gone, ports = killed["signalled"], killed["at"], killed["ports"]
    in_flight = [r for r in load.requests if r.sent <= signalled < r.answered]
    on_victim = [r for r in in_flight if r.client_port in ports]
    failed = load.failed()
    # What a kill may cost: a request sent on one of the worker's connections before the worker
    # was gone, at most one per connection (a client sends its next request only once
    # answered). Anything else (on another worker, on a new connection, on one the worker's
    # exit had closed) is a failure the kill should not have caused.
    besides = [r for r in failed if not (r.client_port in ports and r.sent <= gone)]
    print(
        f"  SIGKILL of worker {killed['pid']} at {signalled - load.started:.1f} s: it held "
        f"{len(ports)} of {args.clients} connections, {len(on_victim)} with a request in "
        f"flight ({len(in_flight)} in flight on all workers); every thread of it gone "
        f"{1000 * (gone - signalled):.0f} ms later"
    )
    if "replaced" in killed:
        print(
            f"  replacement worker {killed['replacement']} listening "
            f"{killed['replaced'] - gone:.1f} s after the kill"
        )
    else:
        print(f"  no replacement worker listening {args.replace_within:.0f} s after the kill")
    print(f"  keep-alive connections per worker (pid: count) 1 s before the load's end: {serving}")
    print(
        f"  failed: {len(failed)} of {len(load.requests):,} "
        f"({', '.join(f'{r.status} sent {r.sent - signalled:+.3f} s' for r in failed[:12])}"
        f"{', ...' if len(failed) > 12 else ''}; times from the signal)"
    )
    return [
        (
            f"only requests in flight on the killed worker fail, at most one per connection it "
            f"held: {len(failed)} failed, it held {len(ports)}; {len(besides)} failures besides",
            not besides and len(failed) <= len(ports),
        ),
        (
            "the supervisor replaced the worker ('worker_replaced' logged, a new one listening)",
            "replaced" in killed and '"event": "worker_replaced"' in log,
        ),
    ]


# -- set-up ------------------------------------------------------------------------------------


@dataclass
class _Context:
    model: str
    tracking_uri: str
    work: Path
    bodies: list[bytes]

    def log_path(self, check: str) -> Path:
        return self.work / f"server-{check}.log"

    def start(self, workers: int, check: str) -> tuple[subprocess.Popen[bytes], str]:
        server, url = _start_server(self.model, self.tracking_uri, workers, self.log_path(check))
        print(f"\n== {check}: server pid {server.pid} on {url}, {workers} worker(s) ==")
        return server, url

    def registry(self) -> tuple[Any, str, str]:
        """An MLflow client, the model's name and alias, when the model is a registry alias."""
        found = re.fullmatch(r"models:/([^/@]+)@(.+)", self.model)
        if not found:
            return None, "", ""
        from training import registry

        return registry.configure(self.tracking_uri), found.group(1), found.group(2)


CHECKS = {"steady": check_steady, "soak": check_soak, "reload": check_reload, "kill": check_kill}
DEFAULT_DURATION = {"steady": 60.0, "soak": 600.0, "reload": 60.0, "kill": 60.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("check", choices=[*CHECKS, "all"])
    add_model_arguments(parser)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="Total requests/s on schedule; 0: closed loop."
    )
    parser.add_argument("--duration", type=float, help="Seconds of load (default per check).")
    parser.add_argument("--warmup", type=float, default=60.0, help="soak: RSS baseline at.")
    parser.add_argument("--sample-every", type=float, default=10.0, help="soak: RSS sampling.")
    parser.add_argument("--reloads", type=int, default=4)
    parser.add_argument("--kill-at", type=float, default=20.0, help="kill: seconds into load.")
    parser.add_argument(
        "--replace-within", type=float, default=120.0, help="kill: seconds to wait for it."
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-load-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        model, tracking_uri, claims = model_and_claims(args, work, 2_000)
        bodies = [
            json.dumps({"claims": [claim], "explain": True, "top_k": 5}).encode()
            for claim in claims
        ]
        print(f"{len(bodies):,} recent claims as single-claim bodies; model {model}; "
              f"{os.cpu_count()} CPUs shared by the server and this load generator")  # fmt: skip
        context = _Context(model, tracking_uri, work, bodies)
        results: list[tuple[str, Check]] = []
        for name in CHECKS if args.check == "all" else [args.check]:
            check_args = argparse.Namespace(**vars(args))
            check_args.duration = args.duration or DEFAULT_DURATION[name]
            results.extend((name, check) for check in CHECKS[name](check_args, context))
        print("\n== targets ==")
        for name, (target, met) in results:
            print(f"{'met   ' if met else 'MISSED'}  {name}: {target}")
        print(f"server logs in {work}" if args.work else "")
    sys.exit(0 if all(met for _, (_, met) in results) else 1)


if __name__ == "__main__":
    main()
