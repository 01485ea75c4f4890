"""Benchmark fixtures: a database of its own, partners with clients, members with points."""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.embedded import embedded_socket_dir
from db.ids import new_id
from ledger.accounts import MEMBER_CODES, account_id
from ledger.earn_once import EarnToBook, book_earn_once
from partners.clients import create_client
from partners.service import create_partner

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
BENCH_DATA = ROOT / ".coalition-bench"
PARTNER_SCOPES = ["members:read", "members:write", "points:earn", "points:redeem"]


def _admin_and_url(name: str) -> tuple[list[str], str]:
    """psql on the maintenance database, and the URL of database `name`: on DATABASE_URL's
    server when set, else in the benchmarks' own embedded cluster."""
    import pgserver

    psql = str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql")
    server = os.environ.get("DATABASE_URL")
    if server:
        base = server.rsplit("/", 1)[0]
        url = f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
        return [psql, f"{base}/postgres"], url
    socket_dir = embedded_socket_dir(BENCH_DATA / "pg")
    admin = [psql, "-h", socket_dir, "-U", "postgres", "-d", "postgres"]
    return admin, f"postgresql+asyncpg://postgres@/{name}?host={socket_dir}"


def _on_server(name: str, *statements: str) -> str:
    """Run statements on the maintenance database; the URL of database `name`."""
    admin, url = _admin_and_url(name)
    for sql in statements:
        subprocess.run([*admin, "-qc", sql], check=True, capture_output=True)
    return url


def _drop(name: str) -> str:
    return f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'


def bench_database_url(name: str = "coalition_bench") -> str:
    """A fresh database (an earlier run's is dropped first)."""
    return _on_server(name, _drop(name), f'CREATE DATABASE "{name}"')


def drop_bench_database(name: str) -> None:
    """Remove a benchmark's database (the tests of the harness clean up after themselves)."""
    _on_server(name, _drop(name))


def process_cpu_seconds(process: psutil.Process) -> float:
    """CPU time a process has used so far (0 for one that has ended meanwhile)."""
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


@dataclass(frozen=True)
class Seeded:
    partners: list[uuid.UUID]
    clients: list[tuple[str, str]]  # (client_id, secret) per partner, same order
    phones: list[str]


async def seed(engine: AsyncEngine, *, partners: int, members: int, points: int) -> Seeded:
    """Partners with clients; members enrolled at every partner, each funded with points."""
    partner_ids: list[uuid.UUID] = []
    clients: list[tuple[str, str]] = []
    async with engine.begin() as conn:
        for i in range(partners):
            p = await create_partner(
                conn, name=f"Bench partner {i}", slug=f"bench-{i}", earn_rate=Decimal("0.1")
            )
            c = await create_client(conn, partner_id=p.id, scopes=PARTNER_SCOPES, name="bench")
            partner_ids.append(p.id)
            clients.append((c.client_id, c.client_secret))
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
        accounts = [
            (account_id(code, m), str(code), m) for m in member_ids for code in MEMBER_CODES
        ]
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
                "INSERT INTO memberships (id, member_id, partner_id)"
                " SELECT uuid7(), m, p FROM unnest(CAST(:m AS uuid[])) AS m,"
                " unnest(CAST(:p AS uuid[])) AS p"
            ),
            {"m": member_ids, "p": partner_ids},
        )
    now = datetime.now(UTC)
    for start in range(0, len(member_ids), 500):
        async with engine.begin() as conn:
            for i, member_id in enumerate(member_ids[start : start + 500]):
                # The single earn (ledger_book_earn), without an idempotency key.
                earn = EarnToBook(
                    member_id=member_id,
                    issuer_id=partner_ids[(start + i) % len(partner_ids)],
                    client_id=None,
                    transfer_id=new_id(),
                    lot_id=new_id(),
                    points=points,
                    reference=f"seed-{start + i}",
                    amount=None,
                    metadata={},
                    occurred_at=now,
                    available_at=now,
                    expires_at=now + timedelta(days=365),
                )
                await book_earn_once(conn, earn, key=None)
    return Seeded(partner_ids, clients, phones)
