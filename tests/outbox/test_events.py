"""The outbox, write side: every posting type writes one `transfer.booked` event per transfer
in its own transaction, enrolment writes `member.enrolled`, and the table is append-only."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import postings
from ledger.accounts import OPERATOR_ADJUSTMENT_ACCOUNT, AccountCode, account_id
from ledger.outbox import MEMBER_ENROLLED, TRANSFER_BOOKED
from members.service import MemberRef, enroll
from points.service import earn_points
from tests.batch.helpers import batch, enrolled, row
from tests.conftest import make_partner, partner_caller, unique_phone
from tests.ledger import helpers as h
from tests.outbox.helpers import transfer_events


async def _transfers(engine: AsyncEngine, where: str, params: dict[str, Any]) -> list[Any]:
    async with engine.connect() as c:
        return list(
            (
                await c.execute(
                    text(
                        "SELECT id, code, points, partner_id, member_id, reference,"
                        " reversal_of_id, amount, occurred_at, created_at FROM transfers"
                        f" WHERE {where} ORDER BY id"
                    ),
                    params,
                )
            ).all()
        )


def _check_events(transfers: list[Any], events: list[Any]) -> None:
    """One event per transfer, saying what a consumer needs to know of it."""
    by_transfer = {e.payload["transfer_id"]: e for e in events}
    assert len(events) == len(by_transfer) == len(transfers), (transfers, events)
    for t in transfers:
        e = by_transfer[str(t.id)]
        assert e.type == TRANSFER_BOOKED
        assert (e.partner_id, e.member_id, e.occurred_at) == (
            t.partner_id,
            t.member_id,
            t.created_at,
        )
        p = e.payload
        assert p["code"] == t.code and p["points"] == t.points
        assert p["partner_id"] == (str(t.partner_id) if t.partner_id else None)
        assert p["member_id"] == (str(t.member_id) if t.member_id else None)
        assert p["reference"] == t.reference
        assert p["reversal_of_id"] == (str(t.reversal_of_id) if t.reversal_of_id else None)
        assert p["amount"] == (None if t.amount is None else str(t.amount))
        assert p["created_at"] is not None and p["occurred_at"] is not None


async def test_every_posting_type_writes_one_event_per_transfer(engine: AsyncEngine) -> None:
    grocer = await make_partner(engine)
    cinema = await make_partner(engine)
    member = await h.new_member(engine, [grocer.id, cinema.id])

    earned = await h.earn(engine, grocer.id, member, 300)  # the single earn (SQL function)
    burnt = await h.redeem(engine, cinema.id, member, 50)  # the single redemption (SQL)
    await h.reverse(engine, cinema.id, burnt.transfer_id, 20)  # a redemption reversal
    held = await h.hold(engine, cinema.id, member, 30)
    await h.capture(engine, cinema.id, held.hold_id, None)  # hold capture
    second = await h.earn(engine, grocer.id, member, 40)
    async with engine.begin() as c:  # expiry
        assert second.transfer_id is not None
        await h.make_due(c, [(await h.lot_of(c, second.transfer_id)).id])
    async with engine.begin() as c:
        assert await postings.expire_member(c, member) == 40
    # An earn reversal beyond the balance leaves a debt; the next earn repays it (two transfers).
    assert earned.transfer_id is not None
    await h.reverse(engine, grocer.id, earned.transfer_id, None)
    await h.earn(engine, grocer.id, member, 500)
    async with engine.begin() as c:  # an operator adjustment (no member)
        adjustment = await postings.adjust(
            c,
            debit=OPERATOR_ADJUSTMENT_ACCOUNT,
            credit=account_id(AccountCode.PARTNER_ISSUANCE, grocer.id),
            points=7,
            partner_id=grocer.id,
            client_id="test",
            reference="adjust-1",
            metadata={},
        )

    transfers = await _transfers(
        engine, "member_id = :m OR id = :a", {"m": member, "a": adjustment}
    )
    codes = {t.code for t in transfers}
    assert codes >= {"EARN", "REDEEM", "REVERSAL", "EXPIRY", "DEBT", "DEBT_REPAYMENT", "ADJUSTMENT"}
    _check_events(transfers, await transfer_events(engine, [t.id for t in transfers]))


async def test_a_batch_writes_an_event_per_row_set_based(engine: AsyncEngine) -> None:
    partner = await make_partner(engine)
    members = await enrolled(engine, [partner.id], 3)
    # The second member owes points first, so the batch books its row one by one.
    earned = await h.earn(engine, partner.id, members[1][0], 100)
    await h.redeem(engine, partner.id, members[1][0], 80)
    assert earned.transfer_id is not None
    await h.reverse(engine, partner.id, earned.transfer_id, None)
    rows = [row(member_id=m[0], amount="120", reference=f"till-{i}") for i, m in enumerate(members)]
    outcome = await batch(engine, partner_caller(partner.id), rows)
    assert not outcome.rejected
    transfers = await _transfers(
        engine,
        "partner_id = :p AND reference LIKE 'till-%'",
        {"p": partner.id},
    )
    repayments = await _transfers(
        engine, "member_id = :m AND code = 'DEBT_REPAYMENT'", {"m": members[1][0]}
    )
    assert len(transfers) == 3 and len(repayments) == 1
    written = await transfer_events(engine, [t.id for t in transfers + repayments])
    _check_events(transfers + repayments, written)
    # The set-based rows' events come from the batch's own INSERT, which gives each its
    # transfer's id (the hook, which would read the transfers back, skips them); the indebted
    # member's row went through the single earn, whose hook wrote its events.
    event_of = {e.payload["transfer_id"]: e.id for e in written}
    set_based = [t for t in transfers if t.member_id != members[1][0]]
    assert len(set_based) == 2
    assert all(event_of[str(t.id)] == t.id for t in set_based)


async def test_an_event_is_written_in_its_postings_transaction(engine: AsyncEngine) -> None:
    partner = await make_partner(engine)
    member = await h.new_member(engine, [partner.id])
    async with engine.connect() as c:
        await c.begin()
        earned = await earn_points(
            c,
            partner_caller(partner.id),
            member=MemberRef(id=member),
            amount=Decimal(100),
            reference="rolled-back",
            occurred_at=None,
            idempotency_key=h.key(),
        )
        assert earned.transfer_id is not None
        # Seen inside the transaction, written by it...
        same = await c.scalar(
            text(
                "SELECT xact_id = pg_current_xact_id() FROM outbox"
                " WHERE payload->>'transfer_id' = :t"
            ),
            {"t": earned.transfer_id},
        )
        assert same is True
        await c.rollback()
    # ...and gone with it.
    assert await transfer_events(engine, [uuid.UUID(earned.transfer_id)]) == []
    assert await _transfers(engine, "id = :t", {"t": uuid.UUID(earned.transfer_id)}) == []

    # A Python posting (a reversal) rolled back leaves no event either.
    kept = await h.earn(engine, partner.id, member, 100)
    async with engine.connect() as c:
        await c.begin()
        original = postings.OriginalTransfer(
            uuid.UUID(kept.transfer_id), "EARN", 100, member, partner.id
        )
        reversal = await postings.reverse(c, original, points=10, client_id="t", reason=None)
        await c.rollback()
    assert await transfer_events(engine, [reversal]) == []
    assert len(await transfer_events(engine, [uuid.UUID(kept.transfer_id)])) == 1


async def _enrolment_events(engine: AsyncEngine, member_id: uuid.UUID) -> list[Any]:
    async with engine.connect() as c:
        return list(
            (
                await c.execute(
                    text(
                        "SELECT partner_id, member_id, payload FROM outbox"
                        " WHERE type = :t AND member_id = :m ORDER BY xact_id, id"
                    ),
                    {"t": MEMBER_ENROLLED, "m": member_id},
                )
            ).all()
        )


async def test_enrolment_writes_member_enrolled_once_per_partner(engine: AsyncEngine) -> None:
    grocer = await make_partner(engine)
    cinema = await make_partner(engine)
    phone = unique_phone()
    async with engine.begin() as c:
        first = await enroll(c, partner_caller(grocer.id), phone=phone, partner_ref=None)
    async with engine.begin() as c:  # again, now naming a partnerRef: no new enrolment
        await enroll(c, partner_caller(grocer.id), phone=phone, partner_ref="g-7")
    async with engine.begin() as c:
        await enroll(c, partner_caller(cinema.id), phone=phone, partner_ref="c-7")
    async with engine.connect() as c:  # rolled back: no event
        await c.begin()
        other = await enroll(c, partner_caller(cinema.id), phone=unique_phone(), partner_ref=None)
        await c.rollback()

    events = await _enrolment_events(engine, first.id)
    assert [(e.partner_id, e.payload) for e in events] == [
        (
            grocer.id,
            {
                "member_id": str(first.id),
                "partner_id": str(grocer.id),
                "partner_ref": None,
                "new_member": True,
            },
        ),
        (
            cinema.id,
            {
                "member_id": str(first.id),
                "partner_id": str(cinema.id),
                "partner_ref": "c-7",
                "new_member": False,
            },
        ),
    ]
    assert await _enrolment_events(engine, other.id) == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE outbox SET type = 'x' WHERE id = (SELECT id FROM outbox LIMIT 1)",
        "DELETE FROM outbox WHERE id = (SELECT id FROM outbox LIMIT 1)",
        "TRUNCATE outbox",
    ],
)
async def test_the_outbox_is_append_only(engine: AsyncEngine, statement: str) -> None:
    partner = await make_partner(engine)
    await h.new_member(engine, [partner.id])  # at least one event exists
    with pytest.raises(DBAPIError, match="append-only"):
        async with engine.begin() as c:
            await c.execute(text(statement))
