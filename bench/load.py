"""HTTP scenarios 1–6: the server as production runs it, driven by wrk in other processes.

wrk (Debian's package) is a C load generator: on a 2-core machine shared with the server it
takes far less CPU per request than a Python client would, so the figures describe the
server, not the load generator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import campaigns
from bench.setup import BENCH_DATA, OUT, bench_database_url, process_cpu_seconds, seed
from db.engine import create_engine
from db.migrate import upgrade

LUA = Path(__file__).resolve().parent / "lua"


@dataclass(frozen=True)
class Figures:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    http_errors: int
    errors: int
    # CPU per request (ms): the server's processes, and PostgreSQL's. Scenario 5's two rows
    # share one measurement over both request streams.
    server_cpu_ms: float = 0.0
    postgres_cpu_ms: float = 0.0


@dataclass(frozen=True)
class CpuSample:
    server: float  # seconds of CPU used so far by the server (supervisor and workers)
    postgres: float  # and by every PostgreSQL process on the machine


def cpu_sample(server_pid: int) -> CpuSample:
    root = psutil.Process(server_pid)
    server = sum(map(process_cpu_seconds, [root, *root.children(recursive=True)]))
    # A backend that ends between two samples takes its CPU with it (counted as 0).
    postgres = sum(
        process_cpu_seconds(p)
        for p in psutil.process_iter(["name"])
        if (p.info["name"] or "").startswith("postgres")
    )
    return CpuSample(server, postgres)


def with_cpu(figures: list[Figures], before: CpuSample, after: CpuSample) -> list[Figures]:
    """The figures with the CPU used between two samples, per request of them all."""
    requests = sum(f.requests for f in figures) or 1
    server = 1e3 * (after.server - before.server) / requests
    postgres = 1e3 * (after.postgres - before.postgres) / requests
    return [dataclasses.replace(f, server_cpu_ms=server, postgres_cpu_ms=postgres) for f in figures]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    url: str, port: int, workers: int, settings: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        COALITION_ENV="production",
        COALITION_TOKEN_TTL="7200",
        COALITION_DATA_DIR=str(BENCH_DATA),
        COALITION_EXPIRY_INTERVAL="0",
        # The load generator is one client per partner hammering on purpose: no rate limit
        # (`bench limits` measures it on).
        COALITION_RATE_LIMIT_CAPACITY="0",
    )
    env.update(settings or {})
    log = (OUT / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(process)
    raise RuntimeError("the server did not start; see bench/out/server.log")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def _tokens(base: str, clients: list[tuple[str, str]]) -> list[str]:
    tokens = []
    for client_id, secret in clients:
        r = httpx.post(
            f"{base}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            timeout=30,
        )
        r.raise_for_status()
        tokens.append(r.json()["access_token"])
    return tokens


def _book_replays(
    base: str, tokens: list[str], phones: list[str], count: int
) -> list[dict[str, str]]:
    """Earns booked once now, replayed identically by scenario 6."""
    query = "mutation($i: EarnPointsInput!) { earnPoints(input: $i) { points errors { code } } }"
    replays = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for n in range(count):
            item = {
                "token": tokens[n % len(tokens)],
                "phone": phones[n % len(phones)],
                "amount": "1234.50",
                "reference": f"replay-{n}",
                "key": f"replay-key-{n}",
            }
            body = {
                "query": query,
                "variables": {
                    "i": {
                        "member": {"phone": item["phone"]},
                        "amount": item["amount"],
                        "reference": item["reference"],
                        "idempotencyKey": item["key"],
                    }
                },
            }
            r = http.post(
                "/graphql", json=body, headers={"Authorization": f"Bearer {item['token']}"}
            )
            r.raise_for_status()
            replays.append(item)
    return replays


def _lua_list(values: list[str]) -> str:
    return "{" + ",".join(json.dumps(v) for v in values) + "}"


def write_setup(tokens: list[str], phones: list[str], replays: list[dict[str, str]]) -> Path:
    path = OUT / "setup.lua"
    rows = ",".join(
        "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in r.items()) + "}" for r in replays
    )
    path.write_text(
        f"TOKENS = {_lua_list(tokens)}\nPHONES = {_lua_list(phones)}\nREPLAYS = {{{rows}}}\n"
    )
    return path


def wrk(
    script: str,
    base: str,
    *,
    connections: int,
    seconds: int,
    setup: Path,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    env = dict(os.environ, BENCH_SETUP=str(setup), BENCH_LUA=str(LUA), **(extra_env or {}))
    return subprocess.Popen(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA / script),
            base,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def figures(name: str, process: subprocess.Popen[str]) -> Figures:
    out, err = process.communicate()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"wrk printed no figures for {name}: {out}\n{err}")
    data: dict[str, Any] = json.loads(lines[-1])
    return Figures(
        name,
        data["rps"],
        data["p50_ms"],
        data["p99_ms"],
        data["requests"],
        data["http_errors"],
        data["errors"],
    )


async def _install_campaigns(url: str, partners: list[Any]) -> None:
    """Scenarios 7 and 8 run with 20 live campaigns and a tier policy (installed after the
    plain scenarios, which the server notices through the catalog's revision)."""
    engine = create_engine(url, pool_size=1)
    try:
        await campaigns.install(engine, partners)
    finally:
        await engine.dispose()


def run_load(*, workers: int, connections: int, seconds: int, members: int) -> list[Figures]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    OUT.mkdir(parents=True, exist_ok=True)
    url = bench_database_url()
    upgrade(url)

    async def _seed() -> Any:
        engine = create_engine(url, pool_size=2)
        try:
            return await seed(engine, partners=20, members=members, points=1_000_000)
        finally:
            await engine.dispose()

    seeded = asyncio.run(_seed())
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(url, port, workers)
    try:
        tokens = _tokens(base, seeded.clients)
        replays = _book_replays(base, tokens, seeded.phones, 200)
        setup = write_setup(tokens, seeded.phones, replays)

        def run(script: str, **extra: dict[str, str]) -> subprocess.Popen[str]:
            return wrk(
                script,
                base,
                connections=connections,
                seconds=seconds,
                setup=setup,
                extra_env=extra.get("env"),
            )

        def measured(*runs: tuple[str, Callable[[], subprocess.Popen[str]]]) -> list[Figures]:
            """Run these wrk processes side by side, with the CPU they cost the machine."""
            before = cpu_sample(server.pid)
            started = [(name, start()) for name, start in runs]
            done = [figures(name, process) for name, process in started]
            return with_cpu(done, before, cpu_sample(server.pid))

        half = connections // 2

        def beside(script: str) -> Callable[[], subprocess.Popen[str]]:
            return lambda: wrk(script, base, connections=half, seconds=seconds, setup=setup)

        results = measured(("1 ceiling {__typename}", lambda: run("typename.lua")))
        results += measured(("2 earn, 20 partners", lambda: run("earn.lua")))
        results += measured(("3 earn, hot issuer", lambda: run("earn.lua", env={"BENCH_HOT": "1"})))
        results += measured(("4 redeem", lambda: run("redeem.lua")))
        results += measured(
            ("5 balance reads under earn load", beside("balance.lua")),
            ("5 (the earns meanwhile)", beside("earn.lua")),
        )
        results += measured(("6 idempotent replays", lambda: run("replay.lua")))
        asyncio.run(_install_campaigns(url, seeded.partners))
        results += measured(("7 earn, 20 campaigns + tiers", lambda: run("earn.lua")))
        results += measured(("8 quoteEarn, 20 campaigns", lambda: run("quote.lua")))
    finally:
        stop_server(server)
    return results
