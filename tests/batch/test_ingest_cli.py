"""`coalition ingest` as an operator runs it: a real process, a real file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.batch.helpers import enrolled
from tests.cli.test_cli import env_with, run
from tests.conftest import make_partner

HEADER = "phone,partner_ref,amount,reference,occurred_at,idempotency_key\n"


async def _earned(engine: AsyncEngine, partner_id: object) -> list[tuple[str, int]]:
    async with engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT reference, points FROM transfers WHERE partner_id = :p AND code = 'EARN'"
                " ORDER BY reference"
            ),
            {"p": partner_id},
        )
        return [(r.reference, int(r.points)) for r in rows]


async def test_ingest_books_a_file_once(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    partner = await make_partner(engine, earn_rate="0.1")
    (_, phone, _), (_, _, ref) = await enrolled(engine, [partner.id], 2)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    purchases = tmp_path / "day.csv"
    purchases.write_text(
        HEADER
        + f"{phone},,120.50,R-1,,k-1\n"
        + f",{ref},99.99,R-2,{yesterday},k-2\n"
        + ",nobody,10,R-3,,k-3\n"
        + f"{phone},,-5,R-4,,k-4\n"
        + "\n"
        + f'"{phone}",,"1000",R-5,,k-5\n'
    )
    env = env_with(DATABASE_URL=database_url)
    first = run(
        ["ingest", "--partner", partner.slug, "--file", str(purchases), "--chunk", "2"], env
    )
    assert first.returncode == 0, first.stderr
    assert "booked 3 " in first.stdout and "replayed 0" in first.stdout
    assert "rejected 2" in first.stdout and "earns/s" in first.stdout
    assert "line 4: MEMBER_NOT_FOUND" in first.stdout
    assert "line 5: INVALID_AMOUNT" in first.stdout
    assert await _earned(engine, partner.id) == [("R-1", 12), ("R-2", 9), ("R-5", 100)]

    again = run(["ingest", "--partner", partner.slug, "--file", str(purchases)], env)
    assert again.returncode == 0, again.stderr
    assert "booked 0 " in again.stdout and "replayed 3" in again.stdout
    assert await _earned(engine, partner.id) == [("R-1", 12), ("R-2", 9), ("R-5", 100)]


async def test_a_malformed_file_is_rejected_whole(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    partner = await make_partner(engine)
    ((_, phone, _),) = await enrolled(engine, [partner.id], 1)
    env = env_with(DATABASE_URL=database_url)
    bad_amount = tmp_path / "bad.csv"
    bad_amount.write_text(HEADER + f"{phone},,10,R-1,,k-1\n{phone},,ten,R-2,,k-2\n")
    result = run(["ingest", "--partner", partner.slug, "--file", str(bad_amount)], env)
    assert result.returncode == 1
    assert "line 3" in result.stderr and "amount 'ten' is not a number" in result.stderr
    assert "nothing was booked" in result.stderr

    short = tmp_path / "short.csv"
    short.write_text(HEADER + f"{phone},,10,R-1,,k-1\n{phone},,10,R-2\n")
    result = run(["ingest", "--partner", partner.slug, "--file", str(short)], env)
    assert result.returncode == 1 and "line 3: expected 6 fields, found 4" in result.stderr

    no_header = tmp_path / "no-header.csv"
    no_header.write_text(f"{phone},,10,R-1,,k-1\n")
    result = run(["ingest", "--partner", partner.slug, "--file", str(no_header)], env)
    assert result.returncode == 1 and "line 1" in result.stderr

    assert await _earned(engine, partner.id) == []
