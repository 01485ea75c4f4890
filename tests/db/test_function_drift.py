"""The SQL functions in the migrated database are exactly the ones the code defines.

Migrations carry their SQL as literals and import no domain module, so an old migration
installs the same thing forever. The current definition of each posting function has one
canonical copy in its domain package; editing it without a migration that installs the new
text fails here (and so does a migration whose text differs from the code).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import bulk
from ledger.earn_sql import BOOK_EARN
from ledger.events import POSTING_BEGIN, POSTING_BOOKED
from ledger.outbox import OUTBOX_TRANSFERS_BOOKED, TRANSFER_BOOKED_VALUES
from ledger.redeem_sql import BOOK_REDEEM
from settlement.booking import PERIOD_LOCK
from settlement.booking_sql import BOOK_OBLIGATIONS_FUNCTION

CANONICAL = {
    "ledger_book_earn": BOOK_EARN,
    "ledger_book_redeem": BOOK_REDEEM,
    "ledger_posting_begin": POSTING_BEGIN,
    "ledger_posting_booked": POSTING_BOOKED,
    "settlement_book_obligations": BOOK_OBLIGATIONS_FUNCTION,
    "outbox_transfers_booked": OUTBOX_TRANSFERS_BOOKED,
}

MIGRATIONS = Path(__file__).resolve().parents[2] / "db" / "migrations" / "versions"


def _norm(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


def _parts(create: str) -> tuple[str, str, list[str]]:
    """(arguments, body, settings) of a CREATE FUNCTION … AS $fn$ … $fn$ statement."""
    head, body, _ = create.split("$fn$")
    args = re.search(r"FUNCTION\s+\w+\s*\((.*?)\)\s*RETURNS", head, re.S)
    assert args is not None, head
    settings = [f"{k}={v}" for k, v in re.findall(r"\bSET\s+(\w+)\s*=\s*(\w+)", head)]
    return _norm(args.group(1)), _norm(body), settings


@pytest.mark.parametrize("name", sorted(CANONICAL))
async def test_the_installed_function_is_the_codes(engine: AsyncEngine, name: str) -> None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT pg_get_function_arguments(p.oid), p.prosrc, p.proconfig"
                    " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " WHERE n.nspname = current_schema() AND p.proname = :name"
                ),
                {"name": name},
            )
        ).one()
    args, body, settings = _parts(CANONICAL[name])
    assert _norm(row[1]) == body, (
        f"{name}: the code's text differs from the migrated database's; add a migration"
    )
    assert _norm(row[0]).replace("timestamp with time zone", "timestamptz") == args
    assert sorted(row[2] or []) == sorted(settings)


async def test_each_function_has_one_signature(engine: AsyncEngine) -> None:
    """A new argument makes a new function: its migration drops the old signature. Two
    `ledger_posting_booked`s would make the SQL postings' one-argument call ambiguous."""
    async with engine.connect() as conn:
        overloaded = (
            await conn.execute(
                text(
                    "SELECT p.proname, array_agg(p.oid::regprocedure::text) FROM pg_proc p"
                    " JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " WHERE n.nspname = current_schema() AND p.proname = ANY(:names)"
                    " GROUP BY p.proname HAVING count(*) > 1"
                ),
                {"names": sorted(CANONICAL)},
            )
        ).all()
    assert overloaded == []


def test_the_batch_writes_the_event_the_hook_writes() -> None:
    """A batch chunk writes its `transfer.booked` events itself (`ledger_posting_booked` with
    `p_events_written` skips them), from the one definition the hook's subscriber uses."""
    assert TRANSFER_BOOKED_VALUES in OUTBOX_TRANSFERS_BOOKED
    assert TRANSFER_BOOKED_VALUES in bulk._BOOK.text
    assert "p_events_written" in POSTING_BOOKED


def test_the_hook_takes_settlements_period_lock() -> None:
    assert f"pg_advisory_xact_lock_shared({PERIOD_LOCK})" in POSTING_BEGIN


def test_migrations_import_no_domain_code() -> None:
    allowed = {"alembic", "sqlalchemy", "__future__"}
    for path in sorted(MIGRATIONS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{path.name} imports {roots - allowed}"


async def test_the_operator_accounts_of_0015_are_the_ledgers(engine: AsyncEngine) -> None:
    """Migration 0015 opens the operator's partner accounts (issuance, redemption, breakage)
    under literal ids: they must be the ones `ledger.accounts.account_id` derives for the
    operator party, which the postings use."""
    from core.caller import OPERATOR_PARTY
    from ledger.accounts import PARTNER_CODES, account_id

    expected = {(account_id(code, OPERATOR_PARTY), str(code)) for code in PARTNER_CODES}
    source = (MIGRATIONS / "0015_funded_bonus.py").read_text()
    for id_, code in expected:
        assert f'("{id_}", "{code}")' in source
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, code FROM accounts WHERE owner_id = :o"), {"o": OPERATOR_PARTY}
        )
        assert expected <= {(r.id, r.code) for r in rows}
