"""`python -m bench load|close`: measured figures and the ratios the performance targets name."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import ingest
from bench.load import Figures, run_load
from bench.setup import OUT

console = Console(width=160)


def _by_prefix(results: list[Figures], prefix: str) -> Figures:
    return next(r for r in results if r.name.startswith(prefix))


def report_load(results: list[Figures], connections: int) -> None:
    table = Table(title=f"HTTP scenarios ({connections} connections)")
    for column in (
        "scenario",
        "req/s",
        "p50 ms",
        "p99 ms",
        "requests",
        "HTTP errors",
        "GraphQL errors",
        "server CPU ms/req",
        "PostgreSQL CPU ms/req",
    ):
        table.add_column(column, justify="right" if column != "scenario" else "left")
    for r in results:
        table.add_row(
            r.name,
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.requests:,}",
            str(r.http_errors),
            str(r.errors),
            f"{r.server_cpu_ms:.2f}",
            f"{r.postgres_cpu_ms:.2f}",
        )
    console.print(table)
    ceiling = _by_prefix(results, "1 ")
    earn = _by_prefix(results, "2 ")
    hot = _by_prefix(results, "3 ")
    replay = _by_prefix(results, "6 ")
    engine = _by_prefix(results, "7 ")
    quote = _by_prefix(results, "8 ")
    ratios = Table(title="Targets")
    for column in ("target", "measured", "met"):
        ratios.add_column(column)
    checks = [
        ("earn ≥ 0.5 × ceiling", earn.rps / ceiling.rps, earn.rps / ceiling.rps >= 0.5),
        ("earn p99 ≤ 50 ms", earn.p99_ms, earn.p99_ms <= 50),
        ("hot issuer ≥ 0.9 × spread", hot.rps / earn.rps, hot.rps / earn.rps >= 0.9),
        ("replay ≥ 3 × new earns", replay.rps / earn.rps, replay.rps / earn.rps >= 3),
        ("earn with campaigns ≥ 0.8 × plain", engine.rps / earn.rps, engine.rps / earn.rps >= 0.8),
        ("quoteEarn ≥ 1 × plain earns", quote.rps / earn.rps, quote.rps / earn.rps >= 1),
    ]
    for name, value, met in checks:
        ratios.add_row(name, f"{value:.2f}", "yes" if met else "NO")
    console.print(ratios)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "load.json").write_text(json.dumps([asdict(r) for r in results], indent=2))


def report_limits(results: list[Any], args: argparse.Namespace) -> None:
    lease = args.lease or args.capacity // 10
    table = Table(
        title=f"Rate limit cost ({args.workers} workers, {args.connections} connections;"
        f" capacity {args.capacity:,}, restore {args.restore:,}/s, lease {lease:,} points)"
    )
    for column in (
        "scenario",
        "limit",
        "req/s",
        "vs off",
        "p99 ms",
        "GraphQL errors",
        "server CPU ms/req",
        "PostgreSQL CPU ms/req",
        "lease statements",
        "per 1000 req",
    ):
        table.add_column(column, justify="left" if column in ("scenario", "limit") else "right")
    off = {r.figures.name: r.figures.rps for r in results if r.mode == "off"}
    for r in sorted(results, key=lambda r: r.figures.name):
        f = r.figures
        table.add_row(
            f.name,
            r.mode,
            f"{f.rps:,.0f}",
            f"{f.rps / off[f.name]:.2f}" if off.get(f.name) else "",
            f"{f.p99_ms:.1f}",
            str(f.errors),
            f"{f.server_cpu_ms:.2f}",
            f"{f.postgres_cpu_ms:.2f}",
            str(r.leases) if r.mode == "shared" else "",
            f"{r.leases_per_1000:.2f}" if r.mode == "shared" else "",
        )
    console.print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "limits.json").write_text(
        json.dumps([{"mode": r.mode, "leases": r.leases, **asdict(r.figures)} for r in results])
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load", help="HTTP scenarios 1-8 against `coalition serve`")
    load.add_argument("--workers", type=int, default=2)
    load.add_argument("--connections", type=int, default=32)
    load.add_argument("--seconds", type=int, default=10)
    load.add_argument("--members", type=int, default=2000)
    close = sub.add_parser("close", help="scenario 8: close a period of 1,000,000 obligations")
    close.add_argument("--obligations", type=int, default=1_000_000)
    close.add_argument("--partners", type=int, default=50)
    ingest.register(sub)
    limits = sub.add_parser(
        "limits", help="scenarios 1-3 with the rate limit off, per process and shared"
    )
    limits.add_argument("--workers", type=int, default=2)
    limits.add_argument("--connections", type=int, default=32)
    limits.add_argument("--seconds", type=int, default=10)
    limits.add_argument("--members", type=int, default=2000)
    # Per client; high enough that nothing is refused at this machine's rates.
    limits.add_argument("--capacity", type=int, default=100_000)
    limits.add_argument("--restore", type=int, default=100_000)
    limits.add_argument(
        "--lease", type=int, default=0, help="points a lease (0: 10 %% of capacity)"
    )
    soak = sub.add_parser("soak", help="scenario 2 for N minutes, sampling server memory")
    soak.add_argument("--minutes", type=float, default=10)
    soak.add_argument("--workers", type=int, default=2)
    soak.add_argument("--connections", type=int, default=32)
    soak.add_argument("--members", type=int, default=2000)
    args = parser.parse_args()
    if args.command == "ingest":
        ingest.run_command(args)
    elif args.command == "load":
        results = run_load(
            workers=args.workers,
            connections=args.connections,
            seconds=args.seconds,
            members=args.members,
        )
        report_load(results, args.connections)
    elif args.command == "limits":
        from bench.limits import run_limits

        report_limits(
            run_limits(
                workers=args.workers,
                connections=args.connections,
                seconds=args.seconds,
                members=args.members,
                capacity=args.capacity,
                restore=args.restore,
                lease=args.lease,
            ),
            args,
        )
    elif args.command == "soak":
        from bench.soak import run_soak

        result = run_soak(
            minutes=args.minutes,
            workers=args.workers,
            connections=args.connections,
            members=args.members,
        )
        table = Table(title=f"Soak: scenario 2 for {result.minutes:g} minutes")
        for column in (
            "requests",
            "req/s",
            "RSS after 1 min",
            "RSS last",
            "RSS max",
            "growth",
            "target ≤ 10 %",
        ):
            table.add_column(column, justify="right")
        table.add_row(
            f"{result.requests:,}",
            f"{result.rps:,.0f}",
            f"{result.rss_after_warmup_mib:.0f} MiB",
            f"{result.rss_last_mib:.0f} MiB",
            f"{result.rss_max_mib:.0f} MiB",
            f"{result.growth_percent:.1f} %",
            "met" if result.growth_percent <= 10 else "NOT MET",
        )
        console.print(table)
    elif args.command == "close":
        from bench.close import run_close

        figures = run_close(args.obligations, args.partners)
        table = Table(title="Scenario 8: period close")
        for column in (
            "obligations",
            "partners",
            "seed s",
            "close s",
            "positions",
            "instructions",
            "peak RSS MiB",
            "target ≤ 5 s",
        ):
            table.add_column(column, justify="right")
        table.add_row(
            f"{figures.obligations:,}",
            str(figures.partners),
            f"{figures.seed_seconds:.1f}",
            f"{figures.close_seconds:.2f}",
            str(figures.positions),
            str(figures.instructions),
            f"{figures.peak_rss_mib:.0f}",
            "met" if figures.close_seconds <= 5 else "NOT MET",
        )
        console.print(table)


if __name__ == "__main__":
    main()
