"""One member's balance under parallel transactions on real connections: no double spend, no
lost update, no deadlock, one effect per idempotency key."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import DomainError, ErrorCode
from db.engine import create_engine
from members.service import MemberRef
from points.service import earn_points
from tests.api.helpers import EARN, Shop, make_shop
from tests.conftest import make_partner, partner_caller, unique_phone
from tests.ledger import helpers as h

T = TypeVar("T")
PARALLEL = 20


@pytest.fixture
async def wide(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine whose pool holds every transaction of a test at once."""
    eng = create_engine(database_url, pool_size=PARALLEL)
    async with eng.connect() as c:  # open the pool's connections before the race starts
        await c.execute(text("SELECT 1"))
    yield eng
    await eng.dispose()


async def _outcomes(calls: list[Awaitable[T]]) -> tuple[list[T], list[ErrorCode]]:
    """Run all calls at once; expected failures are returned, anything else (a deadlock, a
    serialization failure, a constraint violation) fails the test."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    done: list[T] = []
    refused: list[ErrorCode] = []
    for result in results:
        if isinstance(result, DomainError):
            refused.append(result.code)
        elif isinstance(result, BaseException):
            raise result
        else:
            done.append(result)
    return done, refused


async def test_parallel_redemptions_never_overspend(wide: AsyncEngine) -> None:
    shop = await make_partner(wide)
    member = await h.new_member(wide, [shop.id])
    await h.earn(wide, shop.id, member, 100)

    done, refused = await _outcomes([h.redeem(wide, shop.id, member, 10) for _ in range(20)])

    assert len(done) == 10
    assert refused == [ErrorCode.INSUFFICIENT_POINTS] * 10
    assert len({d.transfer_id for d in done}) == 10
    bal = await h.balance(wide, member)
    assert (bal.available, bal.pending, bal.held, bal.debt) == (0, 0, 0, 0)
    async with wide.connect() as c:
        await h.assert_invariants(c, [member])


async def test_parallel_holds_never_reserve_more_than_available(wide: AsyncEngine) -> None:
    shop = await make_partner(wide)
    member = await h.new_member(wide, [shop.id])
    await h.earn(wide, shop.id, member, 100)

    done, refused = await _outcomes([h.hold(wide, shop.id, member, 30) for _ in range(8)])
    assert len(done) == 3 and refused == [ErrorCode.INSUFFICIENT_POINTS] * 5
    # Captures, voids and redemptions racing against each other.
    calls: list[Awaitable[Any]] = [h.capture(wide, shop.id, done[0].hold_id, None)]
    calls += [h.void(wide, shop.id, done[1].hold_id), h.capture(wide, shop.id, done[1].hold_id, 5)]
    calls += [h.capture(wide, shop.id, done[2].hold_id, 20) for _ in range(3)]
    calls += [h.redeem(wide, shop.id, member, 10) for _ in range(4)]
    await _outcomes(calls)
    bal = await h.balance(wide, member)
    assert bal.held == 0 and bal.available >= 0
    async with wide.connect() as c:
        spent = await c.scalar(
            text("SELECT sum(points) FROM transfers WHERE member_id = :m AND code = 'REDEEM'"),
            {"m": member},
        )
        statuses = await c.scalar(
            text("SELECT count(*) FROM holds WHERE member_id = :m AND status = 'ACTIVE'"),
            {"m": member},
        )
        await h.assert_invariants(c, [member])
    assert statuses == 0
    assert bal.available == 100 - int(spent or 0)


async def test_parallel_earns_redemptions_and_reversals_from_three_partners(
    wide: AsyncEngine,
) -> None:
    rng = random.Random(20240601)
    partners = [
        await make_partner(wide),
        await make_partner(wide, earn_rate="2"),
        await make_partner(wide, pending_days=5),
    ]
    member = await h.new_member(wide, [p.id for p in partners])
    # Something to reverse, booked before the race: (transfer id, the partner that booked it).
    targets = [((await h.earn(wide, p.id, member, 60)).transfer_id, p.id) for p in partners]
    for i in (0, 1, 0):
        targets.append(
            ((await h.redeem(wide, partners[i].id, member, 25)).transfer_id, partners[i].id)
        )
    for _ in range(3):
        calls: list[Awaitable[Any]] = []
        for _ in range(PARALLEL):
            roll = rng.random()
            partner = rng.choice(partners)
            if roll < 0.35:
                calls.append(h.earn(wide, partner.id, member, rng.randint(1, 40)))
            elif roll < 0.7:
                calls.append(h.redeem(wide, partner.id, member, rng.randint(1, 60)))
            else:
                transfer_id, owner = rng.choice(targets)
                calls.append(h.reverse(wide, owner, transfer_id, rng.choice([None, 5, 7])))
        _, refused = await _outcomes(calls)
        assert set(refused) <= {
            ErrorCode.INSUFFICIENT_POINTS,
            ErrorCode.ALREADY_REVERSED,
            ErrorCode.INVALID_AMOUNT,
        }, refused
        async with wide.connect() as c:
            await h.assert_invariants(c, [member])
    await _check_net_position(wide, member)


async def _check_net_position(engine: AsyncEngine, member: uuid.UUID) -> None:
    """What the member holds net of debts equals what the booked operations add up to."""
    async with engine.connect() as c:
        row = (
            await c.execute(
                text(
                    "SELECT"
                    " COALESCE(sum(points) FILTER (WHERE code = 'EARN'), 0) AS earned,"
                    " COALESCE(sum(points) FILTER (WHERE code = 'REDEEM'), 0) AS redeemed,"
                    " COALESCE(sum(t.points) FILTER (WHERE code = 'REVERSAL' AND EXISTS ("
                    "   SELECT 1 FROM transfers o WHERE o.id = t.reversal_of_id"
                    "   AND o.code = 'EARN')), 0) AS unearned,"
                    " COALESCE(sum(t.points) FILTER (WHERE code = 'REVERSAL' AND EXISTS ("
                    "   SELECT 1 FROM transfers o WHERE o.id = t.reversal_of_id"
                    "   AND o.code = 'REDEEM')), 0) AS refunded"
                    " FROM transfers t WHERE member_id = :m"
                ),
                {"m": member},
            )
        ).one()
        lots = await c.scalar(
            text("SELECT COALESCE(sum(remaining), 0) FROM lots WHERE member_id = :m"),
            {"m": member},
        )
        debts = await c.scalar(
            text("SELECT COALESCE(sum(remaining), 0) FROM debts WHERE member_id = :m"),
            {"m": member},
        )
    expected = row.earned - row.redeemed - row.unearned + row.refunded
    assert int(lots or 0) - int(debts or 0) == expected


async def test_parallel_full_reversals_of_one_transfer_book_one(wide: AsyncEngine) -> None:
    shop = await make_partner(wide)
    other = await make_partner(wide)
    member = await h.new_member(wide, [shop.id, other.id])
    earned = await h.earn(wide, shop.id, member, 100)
    burnt = await h.redeem(wide, other.id, member, 40)

    done, refused = await _outcomes(
        [h.reverse(wide, other.id, burnt.transfer_id, None) for _ in range(5)]
        + [h.reverse(wide, shop.id, earned.transfer_id, None) for _ in range(5)]
    )

    assert len(done) == 2
    assert refused == [ErrorCode.ALREADY_REVERSED] * 8
    bal = await h.balance(wide, member)
    assert (bal.available, bal.debt) == (0, 0), bal
    async with wide.connect() as c:
        await h.assert_invariants(c, [member])


async def test_parallel_earns_with_one_idempotency_key_book_one_transfer(
    wide: AsyncEngine,
) -> None:
    shop = await make_partner(wide)
    member = await h.new_member(wide, [shop.id])
    same_key = h.key()

    async def call() -> Any:
        async with wide.begin() as c:
            return await earn_points(
                c,
                partner_caller(shop.id),
                member=MemberRef(id=member),
                amount=Decimal("42"),
                reference="receipt-42",
                occurred_at=None,
                idempotency_key=same_key,
            )

    done, refused = await _outcomes([call() for _ in range(10)])

    assert refused == []
    assert len({d.transfer_id for d in done}) == 1 and done[0].transfer_id is not None
    assert sorted(d.replayed for d in done) == [False] + [True] * 9
    assert {d.points for d in done} == {42}
    async with wide.connect() as c:
        booked = await c.scalar(
            text("SELECT count(*) FROM transfers WHERE member_id = :m"), {"m": member}
        )
        await h.assert_invariants(c, [member])
    assert booked == 1
    assert (await h.balance(wide, member)).available == 42


# ---- deadlocks and serialization failures are retried by the mutation layer ---------------
#
# A real deadlock cannot be produced on demand, so PostgreSQL is made to report one: a trigger
# on the table a mutation writes raises the SQLSTATE for its first `failures` runs, counted in
# a sequence (nextval survives the rollback of the failed attempt, so it counts every attempt
# the server made). The trigger fires only for one test partner's rows.


@asynccontextmanager
async def _failing_writes(
    engine: AsyncEngine, table: str, partner_id: uuid.UUID, state: str, failures: int
) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """`table`'s inserts for the partner fail with `state` the first `failures` times; yields
    a function returning how many inserts were attempted."""
    name = f"fail_{uuid.uuid4().hex[:12]}"
    async with engine.begin() as c:
        await c.execute(text(f"CREATE SEQUENCE {name}"))
        await c.execute(
            text(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                f" IF nextval('{name}') <= {failures} THEN"
                f"   RAISE EXCEPTION 'injected {state}' USING ERRCODE = '{state}';"
                " END IF; RETURN NEW; END $$"
            )
        )
        await c.execute(
            text(
                f"CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW"
                f" WHEN (NEW.partner_id = '{partner_id}') EXECUTE FUNCTION {name}()"
            )
        )

    async def attempts() -> int:
        async with engine.connect() as c:
            row = (await c.execute(text(f"SELECT last_value, is_called FROM {name}"))).one()
        return int(row.last_value) if row.is_called else 0

    try:
        yield attempts
    finally:
        async with engine.begin() as c:
            await c.execute(text(f"DROP TRIGGER {name} ON {table}"))
            await c.execute(text(f"DROP FUNCTION {name}()"))
            await c.execute(text(f"DROP SEQUENCE {name}"))


async def _earn_over_http(shop: Shop, phone: str, idempotency_key: str) -> dict[str, Any]:
    body = await asyncio.to_thread(
        shop.api.gql,
        EARN,
        {
            "input": {
                "member": {"phone": phone},
                "amount": "70",
                "reference": "receipt-retry",
                "idempotencyKey": idempotency_key,
            }
        },
    )
    return body


@pytest.mark.parametrize("state", ["40P01", "40001"])  # deadlock, serialization failure
async def test_a_deadlocked_earn_is_retried_and_booked_once(
    engine: AsyncEngine, server: str, state: str
) -> None:
    shop = await make_shop(engine, server)
    phone = unique_phone()
    await asyncio.to_thread(shop.enroll, phone)
    ikey = h.key()
    async with _failing_writes(engine, "transfers", shop.raw_id, state, failures=1) as attempts:
        body = await _earn_over_http(shop, phone, ikey)
        assert await attempts() == 2  # the failed attempt and the one that booked it
    assert "errors" not in body, body
    assert body["data"]["earnPoints"]["errors"] == []
    assert body["data"]["earnPoints"]["points"] == 70
    assert await asyncio.to_thread(shop.balance, {"phone": phone}) == {
        "available": 70,
        "pending": 0,
        "held": 0,
        "debt": 0,
    }
    async with engine.connect() as c:
        booked = await c.scalar(
            text("SELECT count(*) FROM transfers WHERE partner_id = :p"), {"p": shop.raw_id}
        )
    assert booked == 1


async def test_a_deadlocked_transaction_is_retried(engine: AsyncEngine, server: str) -> None:
    """The same for a mutation run in a BEGIN ... COMMIT transaction (enrollMember)."""
    shop = await make_shop(engine, server)
    phone = unique_phone()
    async with _failing_writes(engine, "memberships", shop.raw_id, "40P01", failures=1) as tries:
        member = await asyncio.to_thread(shop.enroll, phone, "CARD-7")
        assert await tries() == 2
    assert member["partnerRef"] == "CARD-7"
    async with engine.connect() as c:
        enrolled = await c.scalar(
            text("SELECT count(*) FROM memberships WHERE partner_id = :p"), {"p": shop.raw_id}
        )
    assert enrolled == 1


async def test_retries_are_bounded_and_other_errors_are_not_retried(
    engine: AsyncEngine, server: str
) -> None:
    from schema.mutation import MAX_ATTEMPTS

    shop = await make_shop(engine, server)
    phone = unique_phone()
    await asyncio.to_thread(shop.enroll, phone)
    ikey = h.key()
    # Deadlocked every time: given up after MAX_ATTEMPTS, nothing booked, no key kept.
    async with _failing_writes(engine, "transfers", shop.raw_id, "40P01", failures=99) as tries:
        body = await _earn_over_http(shop, phone, ikey)
        assert await tries() == MAX_ATTEMPTS
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INTERNAL_ERROR"]
    # Any other database error is not a race: it is not run again.
    async with _failing_writes(engine, "transfers", shop.raw_id, "XX000", failures=99) as tries:
        body = await _earn_over_http(shop, phone, ikey)
        assert await tries() == 1
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INTERNAL_ERROR"]
    async with engine.connect() as c:
        booked = await c.scalar(
            text("SELECT count(*) FROM transfers WHERE partner_id = :p"), {"p": shop.raw_id}
        )
    assert booked == 0
    # Nothing was kept, not even the key: the same request now books once.
    body = await _earn_over_http(shop, phone, ikey)
    assert body["data"]["earnPoints"]["errors"] == [] and body["data"]["earnPoints"]["points"] == 70
