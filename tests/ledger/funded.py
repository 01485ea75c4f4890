"""Shared steps of the funded-bonus tests: ledger-level bookings (the earn as
`ledger.earn_once` books it, redemptions, reversals), campaigns with budget slots, and the
ledger's invariants for purchases split into an EARN and BONUS transfers."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.caller import OPERATOR_PARTY
from db.ids import new_id
from ledger import postings
from ledger.accounts import AccountCode, account_id
from ledger.earn_once import (
    CampaignDraw,
    EarnToBook,
    KeyTaken,
    bonuses_for,
    book_earn_once,
)
from ledger.redeem_once import RedeemToBook, book_redeem_once
from members.service import enroll
from partners.settings import update_settings
from tests.conftest import partner_caller, unique_phone

OPERATOR = None  # a funder of None is the operator, as in the engine's model


def key() -> str:
    return secrets.token_hex(8)


async def new_member(engine: AsyncEngine, *partner_ids: uuid.UUID) -> uuid.UUID:
    phone = unique_phone()
    member_id: uuid.UUID | None = None
    async with engine.begin() as c:
        for partner_id in partner_ids:
            member_id = (
                await enroll(c, partner_caller(partner_id), phone=phone, partner_ref=None)
            ).id
    assert member_id is not None
    return member_id


def earn_of(
    member_id: uuid.UUID,
    issuer_id: uuid.UUID,
    by_funder: dict[uuid.UUID | None, int],
    *,
    draws: tuple[CampaignDraw, ...] = (),
    purchase: bool = True,
    reference: str | None = None,
    metadata: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> EarnToBook:
    """A purchase at `issuer_id` whose points `by_funder` pay (None: the operator)."""
    own, bonuses = bonuses_for(by_funder, issuer_id)
    at = occurred_at or datetime.now().astimezone()
    return EarnToBook(
        member_id=member_id,
        issuer_id=issuer_id,
        client_id=f"test-{issuer_id}",
        transfer_id=new_id(),
        lot_id=new_id(),
        points=own,
        reference=reference or f"receipt-{key()}",
        amount=Decimal("100.00"),
        metadata=metadata if metadata is not None else {"explanation": []},
        occurred_at=at,
        available_at=at - timedelta(seconds=1),
        expires_at=at + timedelta(days=365),
        bonuses=bonuses,
        draws=draws,
        purchase=purchase,
    )


async def book(
    engine: AsyncEngine, earn: EarnToBook, *, idempotency_key: str | None = None
) -> datetime | KeyTaken | None:
    """As `earnPoints` books: one statement on an autocommit connection."""
    async with engine.connect() as c:
        auto = await c.execution_options(isolation_level="AUTOCOMMIT")
        return await book_earn_once(
            auto,
            earn,
            key=idempotency_key or key(),
            request_hash="h",
            result={"transfer_id": str(earn.head_id)},
        )


async def redeem(
    engine: AsyncEngine, redeemer_id: uuid.UUID, member_id: uuid.UUID, points: int
) -> uuid.UUID:
    transfer_id = new_id()
    async with engine.connect() as c:
        auto = await c.execution_options(isolation_level="AUTOCOMMIT")
        booked = await book_redeem_once(
            auto,
            RedeemToBook(
                member_id=member_id,
                redeemer_id=redeemer_id,
                client_id=f"test-{redeemer_id}",
                transfer_id=transfer_id,
                points=points,
                reference=f"basket-{key()}",
            ),
            key=key(),
            request_hash="h",
            result={},
        )
    assert isinstance(booked, datetime)
    return transfer_id


async def reverse(engine: AsyncEngine, transfer_id: uuid.UUID, points: int | None) -> uuid.UUID:
    async with engine.begin() as c:
        row = (
            await c.execute(
                text("SELECT id, code, points, member_id, partner_id FROM transfers WHERE id = :t"),
                {"t": transfer_id},
            )
        ).one()
        return await postings.reverse(
            c,
            postings.OriginalTransfer(
                id=row.id,
                code=row.code,
                points=int(row.points),
                member_id=row.member_id,
                partner_id=row.partner_id,
            ),
            points=points,
            client_id="test-reverse",
            reason="refund",
        )


@asynccontextmanager
async def funding(engine: AsyncEngine, model: str, **changes: Any) -> AsyncIterator[None]:
    """The coalition's funding model (and prices) for one test; the defaults come back."""
    async with engine.begin() as c:
        await update_settings(c, funding_model=model, **changes)
    try:
        yield
    finally:
        async with engine.begin() as c:
            await update_settings(
                c, funding_model="REDEMPTION", point_value=Decimal("1.00"), clearing_fee=Decimal(0)
            )


async def new_campaign(engine: AsyncEngine, slots: list[int] | None = None) -> uuid.UUID:
    """A campaign row (what the budget tables reference) with `slots` as its budget slots."""
    campaign_id = new_id()
    async with engine.begin() as c:
        await c.execute(
            text(
                "INSERT INTO campaigns (id, owner_partner_id, name, status, current_version,"
                " created_by) VALUES (:id, NULL, 'test campaign', 'ACTIVE', 1, 'test')"
            ),
            {"id": campaign_id},
        )
        for slot, remaining in enumerate(slots or []):
            await c.execute(
                text(
                    "INSERT INTO campaign_budget_slots (campaign_id, slot, remaining)"
                    " VALUES (:c, :s, :r)"
                ),
                {"c": campaign_id, "s": slot, "r": remaining},
            )
    return campaign_id


async def slots_of(engine: AsyncEngine, campaign_id: uuid.UUID) -> list[int]:
    async with engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT remaining FROM campaign_budget_slots WHERE campaign_id = :c ORDER BY slot"
            ),
            {"c": campaign_id},
        )
        return [int(r.remaining) for r in rows]


async def member_slot(engine: AsyncEngine, member_id: uuid.UUID, slots: int) -> int:
    """The slot the booking draws a member's points from first."""
    async with engine.connect() as c:
        value = await c.scalar(
            text("SELECT abs(hashtext(CAST(:m AS uuid)::text)::bigint) % :n"),
            {"m": member_id, "n": slots},
        )
    return int(value)


async def usage_of(
    engine: AsyncEngine, campaign_id: uuid.UUID, member_id: uuid.UUID, period: date
) -> int | None:
    async with engine.connect() as c:
        value = await c.scalar(
            text(
                "SELECT points FROM campaign_member_usage"
                " WHERE campaign_id = :c AND member_id = :m AND period_start = :p"
            ),
            {"c": campaign_id, "m": member_id, "p": period},
        )
    return None if value is None else int(value)


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as c:
        return list((await c.execute(text(sql), params)).all())


def party(funder: uuid.UUID | None) -> uuid.UUID:
    return OPERATOR_PARTY if funder is None else funder


def issuance(funder: uuid.UUID | None) -> uuid.UUID:
    return account_id(AccountCode.PARTNER_ISSUANCE, party(funder))


async def ledger_problems(conn: AsyncConnection, member_id: uuid.UUID) -> list[str]:
    """The points ledger's invariants for one member whose purchases may have BONUS parts."""
    problems: list[str] = []
    wallet = account_id(AccountCode.MEMBER_WALLET, member_id)
    debt_account = account_id(AccountCode.MEMBER_DEBT, member_id)
    transfers = (
        await conn.execute(
            text(
                "SELECT id, code, points, partner_id, reversal_of_id, parent_id,"
                " debit_account_id, credit_account_id FROM transfers WHERE member_id = :m"
            ),
            {"m": member_id},
        )
    ).all()
    lots = {
        r.transfer_id: r
        for r in await conn.execute(
            text(
                "SELECT l.transfer_id, l.issuer_partner_id, l.points, l.remaining,"
                " COALESCE((SELECT sum(points) FROM consumptions WHERE lot_id = l.id), 0)"
                "  AS consumed FROM lots l WHERE l.member_id = :m"
            ),
            {"m": member_id},
        )
    }
    wallet_balance = sum(
        (t.points if t.credit_account_id == wallet else 0)
        - (t.points if t.debit_account_id == wallet else 0)
        for t in transfers
    )
    debt_balance = sum(
        (t.points if t.debit_account_id == debt_account else 0)
        - (t.points if t.credit_account_id == debt_account else 0)
        for t in transfers
    )
    remaining = sum(int(lot.remaining) for lot in lots.values())
    if wallet_balance != remaining:
        problems.append(f"wallet {wallet_balance} != lots remaining {remaining}")
    debts = int(
        await conn.scalar(
            text("SELECT COALESCE(sum(remaining), 0) FROM debts WHERE member_id = :m"),
            {"m": member_id},
        )
        or 0
    )
    if debt_balance != debts:
        problems.append(f"debt account {debt_balance} != debts {debts}")
    for each in lots.values():
        if each.remaining != each.points - each.consumed or not 0 <= each.remaining <= each.points:
            problems.append(f"lot of {each.transfer_id}: {each.remaining} of {each.points}")
    by_id = {t.id: t for t in transfers}
    for t in transfers:
        if t.code in ("EARN", "BONUS"):
            lot = lots.get(t.id)
            if lot is None or lot.points != t.points or lot.issuer_partner_id != t.partner_id:
                problems.append(f"{t.code} {t.id}: no lot of its funder")
            if t.debit_account_id != issuance(t.partner_id):
                problems.append(f"{t.code} {t.id}: not from its funder's issuance account")
            reversed_points = sum(
                r.points for r in transfers if r.reversal_of_id == t.id and r.code == "REVERSAL"
            )
            if reversed_points > t.points:
                problems.append(f"{t.code} {t.id}: reversed {reversed_points} of {t.points}")
        if t.code == "BONUS" and t.parent_id is not None:
            head = by_id.get(t.parent_id)
            if head is None or head.code not in ("EARN", "BONUS") or head.parent_id is not None:
                problems.append(f"BONUS {t.id}: its parent is no head")
    return problems


async def assert_ledger(engine: AsyncEngine, *member_ids: uuid.UUID) -> None:
    async with engine.connect() as c:
        problems = [p for m in member_ids for p in await ledger_problems(c, m)]
    assert not problems, "\n".join(problems)
