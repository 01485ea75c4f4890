"""The batch earn books exactly what single earns would, row by row, with their keys."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import ErrorCode
from members.service import MemberRef
from partners.settings import update_settings
from points.service import earn_points
from tests.batch.helpers import batch, enrolled, key, row
from tests.conftest import make_partner, partner_caller
from tests.ledger import helpers as h


async def _earns(engine: AsyncEngine, partner_id: uuid.UUID) -> list[Any]:
    """What a partner's earns booked, comparable across partners (no ids, no rate card)."""
    async with engine.connect() as c:
        rows = (
            await c.execute(
                text(
                    "SELECT t.member_id, t.reference, t.points, t.amount, t.occurred_at,"
                    " t.metadata_->'explanation' AS explanation, t.client_id IS NOT NULL AS by,"
                    " l.points AS lot_points, l.remaining, l.available_at, l.expires_at,"
                    " t.credit_account_id"
                    " FROM transfers t JOIN lots l ON l.transfer_id = t.id"
                    " WHERE t.partner_id = :p AND t.code = 'EARN' ORDER BY t.member_id, t.reference"
                ),
                {"p": partner_id},
            )
        ).all()
    own = str(partner_id)

    def named(explanation: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Who pays each line, with the partner named the same in both worlds."""
        return [
            {
                **line,
                "funded_by": [
                    {**f, "partner_id": "issuer" if f["partner_id"] == own else f["partner_id"]}
                    for f in line["funded_by"]
                ],
            }
            for line in explanation
        ]

    return [(*r[:5], named(r[5]), *r[6:]) for r in rows]


async def test_a_batch_books_what_single_earns_would(engine: AsyncEngine) -> None:
    single = await make_partner(engine, earn_rate="1.25", pending_days=3, points_validity_days=30)
    bulk = await make_partner(engine, earn_rate="1.25", pending_days=3, points_validity_days=30)
    members = await enrolled(engine, [single.id, bulk.id], 3)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    purchases = [  # (member, amount, reference, occurredAt)
        (0, "80.10", "A-1", at),
        (1, "13.37", "A-2", at + timedelta(minutes=1)),
        (0, "0.50", "A-3", at),  # 0 points: no transfer, like earnPoints
        (2, "1000", "A-4", None),
        (1, "2.00", "A-5", at - timedelta(days=2)),
    ]
    singles = []
    for n, amount, reference, occurred in purchases:
        async with engine.begin() as c:
            singles.append(
                await earn_points(
                    c,
                    partner_caller(single.id),
                    member=MemberRef(id=members[n][0]),
                    amount=Decimal(amount),
                    reference=reference,
                    occurred_at=occurred,
                    idempotency_key=key(),
                )
            )
    keys = [key() for _ in purchases]
    rows = [
        row(
            phone=members[n][1] if n != 1 else None,
            partner_ref=members[n][2] if n == 1 else None,
            amount=amount,
            reference=reference,
            occurred_at=occurred,
            idempotency_key=keys[i],
        )
        for i, (n, amount, reference, occurred) in enumerate(purchases)
    ]
    outcome = await batch(engine, partner_caller(bulk.id), rows)

    assert (outcome.booked, outcome.transfers, outcome.rejected, outcome.replayed) == (5, 4, [], [])
    assert outcome.points == sum(s.points for s in singles) == 100 + 16 + 1250 + 2
    mine, theirs = await _earns(engine, bulk.id), await _earns(engine, single.id)
    # Same points, amounts, explanations and lots; only "now" differs for the row without one.
    now_row = next(i for i, e in enumerate(mine) if e[1] == "A-4")
    assert [e for i, e in enumerate(mine) if i != now_row] == [
        e for i, e in enumerate(theirs) if i != now_row
    ]
    assert mine[now_row][:4] == theirs[now_row][:4]
    balances = [await h.balance(engine, m) for m, _, _ in members]  # both partners' earns
    assert [(b.available, b.pending) for b in balances] == [(0, 200), (0, 36), (0, 2500)]
    async with engine.connect() as c:
        await h.assert_invariants(c, [m for m, _, _ in members])

    # A batch row's key answers the single mutation too (same request: a replay).
    async with engine.begin() as c:
        again = await earn_points(
            c,
            partner_caller(bulk.id),
            member=MemberRef(partner_ref=members[1][2]),
            amount=Decimal("13.37"),
            reference="A-2",
            occurred_at=at + timedelta(minutes=1),
            idempotency_key=keys[1],
        )
        booked = await c.scalar(
            text("SELECT id FROM transfers WHERE partner_id = :p AND reference = 'A-2'"),
            {"p": bulk.id},
        )
    assert again.replayed and again.transfer_id == str(booked) and again.points == 16
    # The same explanation, each line paid by the partner where the purchase happened.
    assert orjson.loads(orjson.dumps(again.lines).replace(str(bulk.id).encode(), b"issuer")) == (
        orjson.loads(orjson.dumps(singles[1].lines).replace(str(single.id).encode(), b"issuer"))
    )


async def test_replaying_a_batch_books_nothing(engine: AsyncEngine) -> None:
    partner = await make_partner(engine)
    members = await enrolled(engine, [partner.id], 2)
    rows = [row(phone=p, amount=str(10 + i)) for i, (_, p, _) in enumerate(members)]
    first = await batch(engine, partner_caller(partner.id), rows)
    second = await batch(engine, partner_caller(partner.id), rows)

    assert (first.booked, first.points) == (2, 21)
    assert (second.booked, second.transfers, second.points, second.rejected) == (0, 0, 0, [])
    assert [(r.index, r.points) for r in second.replayed] == [(0, 10), (1, 11)]
    async with engine.connect() as c:
        ids = (
            await c.scalars(
                text("SELECT id FROM transfers WHERE partner_id = :p ORDER BY points"),
                {"p": partner.id},
            )
        ).all()
    assert [r.transfer_id for r in second.replayed] == [str(i) for i in ids]


async def test_a_key_reused_for_another_request_is_rejected_per_row(engine: AsyncEngine) -> None:
    partner = await make_partner(engine)
    (_, phone, _), (_, other, _) = await enrolled(engine, [partner.id], 2)
    caller = partner_caller(partner.id)
    used = key()
    await batch(engine, caller, [row(phone=phone, amount="10", idempotency_key=used)])

    twice = key()
    outcome = await batch(
        engine,
        caller,
        [
            row(phone=phone, amount="11", idempotency_key=used),  # another request
            row(phone=other, amount="5", idempotency_key=twice),
            row(phone=other, amount="5", idempotency_key=twice),  # the same again: replay
            row(phone=other, amount="6", idempotency_key=twice),  # the key, another request
            row(phone=phone, amount="7"),
            # As earnPoints: the key answers before the amount and the member are checked.
            row(phone=phone, amount="-1", idempotency_key=used),
            row(phone=phone, amount="10", idempotency_key=used),  # the first request: replay
        ],
    )
    assert [(r.index, r.code) for r in outcome.rejected] == [
        (0, ErrorCode.IDEMPOTENCY_KEY_REUSED),
        (3, ErrorCode.IDEMPOTENCY_KEY_REUSED),
        (5, ErrorCode.IDEMPOTENCY_KEY_REUSED),
    ]
    assert [(r.index, r.points) for r in outcome.replayed] == [(2, 5), (6, 10)]
    assert (outcome.booked, outcome.points) == (2, 12)


async def test_bad_rows_are_rejected_and_the_others_booked(engine: AsyncEngine) -> None:
    partner = await make_partner(engine, points_validity_days=10)
    stranger = await make_partner(engine)
    ((member, phone, ref),) = await enrolled(engine, [partner.id], 1)
    ((_, elsewhere, elsewhere_ref),) = await enrolled(engine, [stranger.id], 1)
    now = datetime.now(UTC)
    national = "8" + phone[2:]  # the same phone as people type it: normalized, then found
    rows = [
        row(phone=phone, amount="10"),
        row(phone="+79990000000", amount="10"),
        row(phone=phone, amount="-1"),
        row(phone=phone, amount="1.005"),
        row(phone="not a phone", amount="10"),
        row(phone=phone, reference=" "),
        row(phone=phone, occurred_at=now + timedelta(hours=1)),
        row(phone=phone, occurred_at=now - timedelta(days=11)),
        row(phone=phone, partner_ref=ref),
        row(phone=phone, idempotency_key="x" * 201),
        row(phone=elsewhere),  # enrolled at another partner only
        row(partner_ref=elsewhere_ref),  # another partner's reference
        row(partner_ref=ref, amount="20"),
        row(phone=national, amount="30"),
        row(member_id=member, amount="40"),
        row(phone=phone, occurred_at=datetime(2030, 1, 1)),  # no time zone
        # PostgreSQL text cannot hold NUL: refused per row, never sent to the database.
        row(phone=phone, reference="R\x00"),
        row(phone=phone, idempotency_key="k\x00"),
        row(partner_ref="c-\x00"),
        row(phone=phone, occurred_at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))),
        row(phone=phone, occurred_at=datetime(1960, 1, 1, tzinfo=UTC)),
    ]
    outcome = await batch(engine, partner_caller(partner.id), rows)
    assert [(r.index, r.code, r.field) for r in outcome.rejected] == [
        (1, ErrorCode.MEMBER_NOT_FOUND, ["member"]),
        (2, ErrorCode.INVALID_AMOUNT, ["amount"]),
        (3, ErrorCode.INVALID_AMOUNT, ["amount"]),
        (4, ErrorCode.INVALID_PHONE, ["member", "phone"]),
        (5, ErrorCode.INVALID_INPUT, ["reference"]),
        (6, ErrorCode.INVALID_INPUT, ["occurredAt"]),
        (7, ErrorCode.INVALID_INPUT, ["occurredAt"]),
        (8, ErrorCode.INVALID_INPUT, ["member"]),
        (9, ErrorCode.INVALID_INPUT, ["idempotencyKey"]),
        (10, ErrorCode.MEMBER_NOT_FOUND, ["member"]),
        (11, ErrorCode.MEMBER_NOT_FOUND, ["member"]),
        (15, ErrorCode.INVALID_INPUT, ["occurredAt"]),
        (16, ErrorCode.INVALID_INPUT, ["reference"]),
        (17, ErrorCode.INVALID_INPUT, ["idempotencyKey"]),
        (18, ErrorCode.INVALID_INPUT, ["member", "partnerRef"]),
        (19, ErrorCode.INVALID_INPUT, ["occurredAt"]),
        (20, ErrorCode.INVALID_INPUT, ["occurredAt"]),
    ]
    assert (outcome.booked, outcome.points) == (4, 100)
    assert (await h.balance(engine, member)).available == 100
    async with engine.connect() as c:
        stored = await c.scalar(
            text("SELECT count(*) FROM idempotency_keys WHERE client_id = :c"),
            {"c": partner_caller(partner.id).client_id},
        )
        await h.assert_invariants(c, [member])
    assert stored == 4  # rejected rows store no key: a corrected row may use it again


async def test_a_member_in_debt_repays_it_first(engine: AsyncEngine) -> None:
    grocer = await make_partner(engine)
    cinema = await make_partner(engine)
    (member, phone, _), (clear, clear_phone, _) = await enrolled(engine, [grocer.id, cinema.id], 2)
    earned = await h.earn(engine, grocer.id, member, 100)
    await h.redeem(engine, cinema.id, member, 100)
    assert earned.transfer_id is not None
    await h.reverse(engine, grocer.id, earned.transfer_id, None)
    assert (await h.balance(engine, member)).debt == 100

    outcome = await batch(
        engine,
        partner_caller(cinema.id),
        [
            row(phone=phone, amount="30"),
            row(phone=clear_phone, amount="50"),
            row(phone=phone, amount="90"),
        ],
    )
    assert (outcome.booked, outcome.transfers, outcome.points) == (3, 3, 170)
    bal = await h.balance(engine, member)
    assert (bal.available, bal.debt) == (20, 0), bal
    assert (await h.balance(engine, clear)).available == 50
    async with engine.connect() as c:
        repaid = (
            await c.execute(
                text(
                    "SELECT points FROM transfers WHERE member_id = :m AND code = 'DEBT_REPAYMENT'"
                    " ORDER BY id"
                ),
                {"m": member},
            )
        ).all()
        results = (
            await c.scalars(
                text(
                    "SELECT result->>'transfer_id' FROM idempotency_keys WHERE client_id = :c"
                    " AND operation = 'earnPoints'"
                ),
                {"c": partner_caller(cinema.id).client_id},
            )
        ).all()
        earns = (
            await c.scalars(
                text("SELECT id::text FROM transfers WHERE partner_id = :p AND code = 'EARN'"),
                {"p": cinema.id},
            )
        ).all()
        await h.assert_invariants(c, [member, clear])
    assert [r.points for r in repaid] == [30, 70]
    assert sorted(results) == sorted(earns)  # each key's result names its own transfer


async def test_issuance_funding_books_an_obligation_per_earn(engine: AsyncEngine) -> None:
    partner = await make_partner(engine, issue_price="0.5")
    members = await enrolled(engine, [partner.id], 2)
    try:
        async with engine.begin() as c:
            await update_settings(c, funding_model="ISSUANCE")
        outcome = await batch(
            engine,
            partner_caller(partner.id),
            [row(phone=p, amount=str(100 + i)) for i, (_, p, _) in enumerate(members)],
        )
    finally:
        async with engine.begin() as c:
            await update_settings(c, funding_model="REDEMPTION")
    assert outcome.transfers == 2
    async with engine.connect() as c:
        obligations = (
            await c.execute(
                text(
                    "SELECT o.kind, o.debtor_id, o.points, o.amount FROM obligations o"
                    " JOIN transfers t ON t.id = o.transfer_id WHERE t.partner_id = :p"
                    " ORDER BY o.points"
                ),
                {"p": partner.id},
            )
        ).all()
    assert [(o.kind, o.debtor_id, o.points, o.amount) for o in obligations] == [
        ("ISSUANCE", partner.id, 100, Decimal("5000")),
        ("ISSUANCE", partner.id, 101, Decimal("5050")),
    ]


async def test_concurrent_batches_share_members_and_keys(engine: AsyncEngine) -> None:
    partner = await make_partner(engine)
    members = await enrolled(engine, [partner.id], 4)
    caller = partner_caller(partner.id)

    def rows(prefix: str) -> list[Any]:
        return [
            row(phone=members[n % 4][1], amount=str(10 + n), reference=f"{prefix}{n}")
            for n in range(12)
        ]

    shared = [row(phone=members[n][1], amount="5", reference=f"S{n}") for n in range(4)]
    first, second = await asyncio.gather(
        batch(engine, caller, rows("A") + shared), batch(engine, caller, shared + rows("B"))
    )
    # One batch books the shared rows, the other finds their keys taken by then: replays.
    assert first.booked + second.booked == 28 and len(first.replayed + second.replayed) == 4
    assert first.rejected == second.rejected == []
    async with engine.connect() as c:
        count = await c.scalar(
            text("SELECT count(*) FROM transfers WHERE partner_id = :p"), {"p": partner.id}
        )
        await h.assert_invariants(c, [m for m, _, _ in members])
    assert count == 28
