"""Scenario 7: a partner's day of purchases (100,000 rows) booked from a file, in-process.

A fresh database gets one partner and 20,000 members enrolled at it (with partner refs); a
CSV of the day's purchases (most rows naming the member by phone, some by partner ref) is
written under bench/out/, imported with `api.ingest_cli.ingest_file` (what `coalition
ingest` runs), then imported again (all replays). Afterwards SQL checks that the purchases'
head transfers and idempotency keys each number what was booked, that every transfer has its
lot, and that every member's wallet balance equals the sum of its lots.

`--campaigns`: the same import with the earn engine's rules live, against the same import
without, each on a fresh database, interleaved `--repeat` times: `bench.campaigns.install`'s
20 campaigns (3 match every purchase: a multiplier, a co-funded bonus with a budget, points
per unit with a monthly member limit) and its tier policy (a third of the members Gold). The
campaigns and the policy take effect when installed, so in this comparison both imports'
purchases happen within the second before the file is written (not the day before). Prints
earns/s of each run and the ratio of the means (the target is ≥ 0.8).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.setup import OUT, bench_database_url, process_cpu_seconds, seed
from db.engine import create_engine
from db.ids import new_id
from db.migrate import upgrade
from ledger.accounts import MEMBER_CODES, account_id

TARGET = 25_000  # earns/s
CAMPAIGN_RATIO_TARGET = 0.8  # with campaigns, against without


@dataclass(frozen=True)
class IngestFigures:
    rows: int
    members: int
    booked: int
    rejected: int
    seconds: float
    earns_per_second: float
    replay_seconds: float
    replayed: int
    transfers: int  # the purchases' head transfers (an EARN, or a BONUS when it has none)
    lots: int
    keys: int
    wallet_mismatches: int
    chunk: int
    jobs: int
    funding: str
    python_cpu_us: float  # CPU time per booked earn: this process (parse, validate, price)
    postgres_cpu_us: float  # and the database backends that booked it
    load_average: float  # the machine's 1-minute load when the import ended
    campaigns: bool = False  # bench.campaigns' 20 campaigns and tier policy were live
    bonus_transfers: int = 0  # BONUS transfers under a head (other funders' points)

    @property
    def idle_ceiling(self) -> float:
        """Earns/s the measured CPU cost allows on this machine's cores if nothing else ran."""
        per_earn = (self.python_cpu_us + self.postgres_cpu_us) / 1e6
        cores = os.cpu_count() or 1
        return min(cores / per_earn, 1e6 / self.python_cpu_us) if per_earn else 0.0

    @property
    def met(self) -> bool:
        return self.earns_per_second >= TARGET

    @property
    def verified(self) -> bool:
        return (
            self.transfers == self.keys == self.booked
            and self.lots == self.transfers + self.bonus_transfers
            and self.wallet_mismatches == 0
            and self.rejected == 0
        )


async def _seed_members(engine: AsyncEngine, partner_id: object, members: int) -> list[str]:
    phones = [f"+7913{n:07d}" for n in range(members)]
    member_ids = [new_id() for _ in phones]
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO members (id, phone) SELECT * FROM unnest(CAST(:ids AS uuid[]),"
                " CAST(:phones AS text[]))"
            ),
            {"ids": member_ids, "phones": phones},
        )
        accounts = [(account_id(c, m), str(c), m) for m in member_ids for c in MEMBER_CODES]
        await conn.execute(
            text(
                "INSERT INTO accounts (id, code, owner_id) SELECT * FROM unnest("
                "CAST(:a AS uuid[]), CAST(:c AS text[]), CAST(:o AS uuid[]))"
            ),
            {
                "a": [a[0] for a in accounts],
                "c": [a[1] for a in accounts],
                "o": [a[2] for a in accounts],
            },
        )
        await conn.execute(
            text(
                "INSERT INTO memberships (id, member_id, partner_id, partner_ref)"
                " SELECT uuid7(), m, CAST(:p AS uuid), 'C' || lpad(n::text, 7, '0')"
                " FROM unnest(CAST(:m AS uuid[])) WITH ORDINALITY AS x(m, n)"
            ),
            {"m": member_ids, "p": partner_id},
        )
        await conn.execute(text("ANALYZE"))
    return phones


def write_purchases(
    path: Path,
    rows: int,
    members: int,
    *,
    seed_value: int = 7,
    since: datetime | None = None,
) -> None:
    """A day of purchases: 80 % name the member by phone, 20 % by the partner's reference.
    With `since`, they happen within the second after it instead of during yesterday."""
    rng = random.Random(seed_value)
    day = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["phone", "partner_ref", "amount", "reference", "occurred_at", "idempotency_key"]
        )
        stamp = day.strftime("%Y%m%d")
        for i in range(rows):
            n = rng.randrange(members)
            by_phone = rng.random() < 0.8
            amount = Decimal(rng.randrange(1_000, 1_500_000)) / 100
            if since is None:
                at = day + timedelta(seconds=rng.randrange(86_400))
            else:
                at = since + timedelta(microseconds=rng.randrange(1_000_000))
            writer.writerow(
                [
                    f"+7913{n:07d}" if by_phone else "",
                    "" if by_phone else f"C{n + 1:07d}",
                    str(amount),
                    f"R{stamp}-{i:07d}",
                    at.isoformat(),
                    f"pos-{stamp}-{i:07d}",
                ]
            )


class _Backends:
    """CPU time of this benchmark's PostgreSQL backends (and of any started later)."""

    NAME = "coalition_bench_ingest"

    def __init__(self) -> None:
        self.start = {p.pid: process_cpu_seconds(p) for p in self._processes()}

    def _processes(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(p.info.get("cmdline") or [])
            if cmdline.startswith("postgres:") and f" {self.NAME} " in f"{cmdline} ":
                found.append(p)
        return found

    def cpu_seconds(self) -> float:
        return sum(process_cpu_seconds(p) - self.start.get(p.pid, 0.0) for p in self._processes())


async def _verify(engine: AsyncEngine, client_id: str) -> tuple[int, ...]:
    async with engine.connect() as conn:
        heads, bonuses = (
            await conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE parent_id IS NULL),"
                    " count(*) FILTER (WHERE parent_id IS NOT NULL)"
                    " FROM transfers WHERE code IN ('EARN', 'BONUS') AND client_id = :c"
                ),
                {"c": client_id},
            )
        ).one()
        lots = await conn.scalar(
            text(
                "SELECT count(*) FROM lots l JOIN transfers t ON t.id = l.transfer_id"
                " WHERE t.client_id = :c"
            ),
            {"c": client_id},
        )
        keys = await conn.scalar(
            text("SELECT count(*) FROM idempotency_keys WHERE client_id = :c"), {"c": client_id}
        )
        # Every wallet: credits minus debits equals the points left in its lots.
        mismatches = await conn.scalar(
            text(
                """
                WITH moves AS (
                  SELECT credit_account_id AS account, points FROM transfers
                  UNION ALL SELECT debit_account_id, -points FROM transfers
                ), balances AS (
                  SELECT a.owner_id AS member_id, sum(m.points) AS balance
                  FROM moves m JOIN accounts a ON a.id = m.account
                  WHERE a.code = 'MEMBER_WALLET' GROUP BY a.owner_id
                ), lotted AS (
                  SELECT member_id, sum(remaining) AS remaining FROM lots GROUP BY member_id
                )
                SELECT count(*) FROM balances b FULL JOIN lotted l USING (member_id)
                WHERE COALESCE(b.balance, 0) <> COALESCE(l.remaining, 0)
                """
            )
        )
    return (
        int(heads or 0),
        int(bonuses or 0),
        int(lots or 0),
        int(keys or 0),
        int(mismatches or 0),
    )


async def _run(
    url: str,
    rows: int,
    members: int,
    chunk: int,
    jobs: int,
    issuance: bool,
    campaigns: bool | None,
) -> IngestFigures:
    from api.ingest_cli import ingest_file
    from partners.settings import update_settings
    from points.campaigns.catalog import clear_cache
    from points.pricing import forget_budgets

    # Each run's database is new under the same name: nothing cached from the last one.
    clear_cache()
    forget_budgets()
    engine = create_engine(url, pool_size=max(2, jobs))
    try:
        seeded = await seed(engine, partners=1, members=0, points=1)
        partner_id = seeded.partners[0]
        if issuance:
            async with engine.begin() as conn:
                await update_settings(conn, funding_model="ISSUANCE")
        await _seed_members(engine, partner_id, members)
        # One file per process: the suite's two database passes run this side by side, and a
        # file rewritten by the other pass between the import and its re-run is not a replay.
        path = OUT / f"ingest-purchases-{os.getpid()}.csv"
        since = None
        if campaigns is not None:  # a comparison: both imports' purchases happen just now
            if campaigns:
                from bench.campaigns import install

                await install(engine, [partner_id])
                async with engine.begin() as conn:
                    await conn.execute(text("ANALYZE"))
            async with engine.connect() as conn:
                since = await conn.scalar(text("SELECT now()"))
            await asyncio.sleep(1.0)  # the purchases' second has passed when the file is read
        write_purchases(path, rows, members, since=since)
        backends = _Backends()
        python_began = time.process_time()
        first = await ingest_file(engine, "bench-0", path, chunk=chunk, jobs=jobs)
        python_cpu = time.process_time() - python_began
        postgres_cpu = backends.cpu_seconds()
        load = os.getloadavg()[0]
        again = await ingest_file(engine, "bench-0", path, chunk=chunk, jobs=jobs)
        transfers, bonuses, lots, keys, mismatches = await _verify(engine, "ingest:bench-0")
    finally:
        await engine.dispose()
    return IngestFigures(
        rows=rows,
        members=members,
        booked=first.booked,
        rejected=len(first.rejected) + len(again.rejected),
        seconds=first.seconds,
        earns_per_second=first.earns_per_second,
        replay_seconds=again.seconds,
        replayed=again.replayed,
        transfers=transfers,
        lots=lots,
        keys=keys,
        wallet_mismatches=mismatches,
        chunk=chunk,
        jobs=jobs,
        funding="ISSUANCE" if issuance else "REDEMPTION",
        python_cpu_us=python_cpu / max(first.booked, 1) * 1e6,
        postgres_cpu_us=postgres_cpu / max(first.booked, 1) * 1e6,
        load_average=load,
        campaigns=bool(campaigns),
        bonus_transfers=bonuses,
    )


def run_ingest(
    rows: int = 100_000,
    members: int = 20_000,
    chunk: int = 10_000,
    jobs: int = 2,
    issuance: bool = False,
    campaigns: bool | None = None,
) -> IngestFigures:
    """One import on a fresh database. `campaigns`: None for the scenario as it always ran
    (yesterday's purchases, no rules); False or True for one side of the comparison."""
    url = bench_database_url("coalition_bench_ingest")
    upgrade(url)  # alembic runs its own event loop: before ours
    return asyncio.run(_run(url, rows, members, chunk, jobs, issuance, campaigns))


def run_comparison(
    repeat: int = 2,
    rows: int = 100_000,
    members: int = 20_000,
    chunk: int = 10_000,
    jobs: int = 2,
    issuance: bool = False,
) -> list[IngestFigures]:
    """Without and with campaigns, alternately, `repeat` times each (each a fresh database)."""
    runs = []
    for _ in range(repeat):
        for campaigns in (False, True):
            runs.append(run_ingest(rows, members, chunk, jobs, issuance, campaigns))
    return runs


def ratio(runs: list[IngestFigures]) -> float:
    """Mean earns/s with campaigns over mean earns/s without."""
    with_ = [f.earns_per_second for f in runs if f.campaigns]
    without = [f.earns_per_second for f in runs if not f.campaigns]
    if not with_ or not without:
        return 0.0
    return (sum(with_) / len(with_)) / (sum(without) / len(without))


def report_comparison(runs: list[IngestFigures]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    table = Table(title="Scenario 7 with and without the earn engine's campaigns (interleaved)")
    for column in (
        "run",
        "campaigns",
        "rows",
        "seconds",
        "earns/s",
        "BONUS transfers",
        "Python µs/earn",
        "PostgreSQL µs/earn",
        "load",
        "verified",
    ):
        table.add_column(column, justify="right")
    for n, f in enumerate(runs, start=1):
        table.add_row(
            str(n),
            "20 + tiers" if f.campaigns else "none",
            f"{f.rows:,}",
            f"{f.seconds:.2f}",
            f"{f.earns_per_second:,.0f}",
            f"{f.bonus_transfers:,}",
            f"{f.python_cpu_us:.0f}",
            f"{f.postgres_cpu_us:.0f}",
            f"{f.load_average:.1f}",
            "yes" if f.verified else "NO",
        )
    console.print(table)
    found = ratio(runs)
    met = "met" if found >= CAMPAIGN_RATIO_TARGET else "NOT met"
    console.print(
        f"with campaigns / without: {found:.2f} (mean earns/s; target ≥"
        f" {CAMPAIGN_RATIO_TARGET}: {met})"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ingest-campaigns.json").write_text(
        json.dumps(
            {
                "runs": [{**asdict(f), "verified": f.verified} for f in runs],
                "ratio": found,
                "target": CAMPAIGN_RATIO_TARGET,
            },
            indent=2,
        )
    )


def report(figures: IngestFigures) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    table = Table(title="Scenario 7: batch ingestion of a partner's day of purchases")
    for column in (
        "rows",
        "members",
        "chunk × jobs",
        "funding",
        "seconds",
        "earns/s",
        f"≥ {TARGET:,} earns/s",
        "re-run (replays)",
        "verified",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        f"{figures.rows:,}",
        f"{figures.members:,}",
        f"{figures.chunk:,} × {figures.jobs}",
        figures.funding,
        f"{figures.seconds:.2f}",
        f"{figures.earns_per_second:,.0f}",
        "met" if figures.met else "NOT met",
        f"{figures.replayed:,} in {figures.replay_seconds:.2f} s",
        "yes" if figures.verified else "NO",
    )
    console.print(table)
    console.print(
        f"CPU per earn: Python {figures.python_cpu_us:.0f} µs, PostgreSQL"
        f" {figures.postgres_cpu_us:.0f} µs; load average {figures.load_average:.1f} on"
        f" {os.cpu_count()} cores (other work shares them); the measured CPU cost allows"
        f" ~{figures.idle_ceiling:,.0f} earns/s on these cores left to this import alone"
    )
    console.print(
        f"head transfers {figures.transfers:,} (and {figures.bonus_transfers:,} BONUS), lots"
        f" {figures.lots:,}, idempotency keys {figures.keys:,} (booked {figures.booked:,});"
        f" wallets ≠ sum of lots: {figures.wallet_mismatches}; rejected rows: {figures.rejected}"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ingest.json").write_text(
        json.dumps(
            {
                **asdict(figures),
                "met": figures.met,
                "verified": figures.verified,
                "idle_ceiling": figures.idle_ceiling,
            },
            indent=2,
        )
    )


def run_command(parsed: Any) -> None:
    """`python -m bench ingest ...` once its arguments are parsed."""
    if parsed.campaigns:
        report_comparison(
            run_comparison(
                repeat=parsed.repeat,
                rows=parsed.rows,
                members=parsed.members,
                chunk=parsed.chunk,
                jobs=parsed.jobs,
                issuance=parsed.issuance,
            )
        )
        return
    report(
        run_ingest(
            rows=parsed.rows,
            members=parsed.members,
            chunk=parsed.chunk,
            jobs=parsed.jobs,
            issuance=parsed.issuance,
        )
    )


def register(sub: Any) -> None:
    """Add `python -m bench ingest` to the bench's subcommands."""
    parser = sub.add_parser(
        "ingest", help="scenario 7: book a day of 100,000 purchases from a file"
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=10_000, help="rows per transaction")
    parser.add_argument("--jobs", type=int, default=2, help="lanes: transactions in flight")
    parser.add_argument(
        "--issuance", action="store_true", help="issuance funding (an obligation per earn)"
    )
    parser.add_argument(
        "--campaigns",
        action="store_true",
        help="compare with bench.campaigns' 20 live campaigns and tier policy (target ≥ 0.8×)",
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="with --campaigns: runs of each, interleaved"
    )
