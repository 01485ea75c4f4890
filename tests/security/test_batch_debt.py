"""A batch for a member in debt books the rows that repay the debt one by one, and the rest
set-based, with exactly the outcome of single earns.

Every row of an indebted member used to go through the ordinary posting (seven statements a
row while the member's lock was held): a 5,000-row `earnPointsBatch` held one member for
seconds, and any other partner's hold or redemption on that member waited for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.caller import OPERATOR_PARTY
from ledger import bulk, earn_once
from ledger.earn_once import EarnToBook
from members.service import MemberRef
from partners.service import PartnerRecord
from points.service import earn_points
from tests.batch.helpers import batch, enrolled, key, row
from tests.conftest import Api, make_partner, partner_api, partner_caller
from tests.ledger import helpers as h

BATCH = """mutation($input: EarnPointsBatchInput!) { earnPointsBatch(input: $input) {
  booked replayed rejected transfers points
  rejectedRows { index code } replayedRows { index transferId points } errors { code } } }"""
EARN = """mutation($input: EarnPointsInput!) { earnPoints(input: $input) {
  transfer { id } errors { code } } }"""
BALANCE = """query($ref: MemberRef!) { member(ref: $ref) {
  balance { available debt } } }"""
TRANSFER = """query($id: ID!) { transfer(id: $id) { code reference points } }"""


@contextmanager
def counting_postings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Count the rows a batch books one by one, through the single earn (`ledger_book_earn`,
    called by `earn_once.book_earn_once`), with their points."""
    calls: list[int] = []
    original = earn_once.book_earn_once

    async def counted(conn: AsyncConnection, earn: EarnToBook, **kwargs: Any) -> Any:
        assert kwargs["key"] is None  # the batch claimed the row's key with the others'
        calls.append(earn.points)
        return await original(conn, earn, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(bulk, "book_earn_once", counted)
        yield calls


@contextmanager
def counting_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every statement the engine sends (round trips) while the block runs."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(str(args[2]))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def owe(engine: AsyncEngine, member_id: uuid.UUID, *debts: tuple[PartnerRecord, int]) -> None:
    """Put the member in debt to each creditor, oldest first: earn there, spend it all, then
    have the earns reversed (nothing left to claw back)."""
    earned = [await h.earn(engine, creditor.id, member_id, points) for creditor, points in debts]
    for creditor, points in debts:
        await h.redeem(engine, creditor.id, member_id, points)
    for (creditor, _), earn in zip(debts, earned, strict=True):
        assert earn.transfer_id is not None
        await h.reverse(engine, creditor.id, earn.transfer_id, None)


# ---- parity with single earns -----------------------------------------------------------


@dataclass
class World:
    """A batch partner, two creditors, two indebted members and one without debt."""

    issuer: PartnerRecord
    c1: PartnerRecord
    c2: PartnerRecord
    members: list[uuid.UUID]

    def role(self, party: uuid.UUID | None) -> str:
        roles = {self.issuer.id: "issuer", self.c1.id: "c1", self.c2.id: "c2", OPERATOR_PARTY: "op"}
        return roles.get(party, str(party)) if party is not None else "none"


async def _world(engine: AsyncEngine) -> World:
    issuer, c1, c2 = [await make_partner(engine) for _ in range(3)]
    ids = [m for m, _, _ in await enrolled(engine, [issuer.id, c1.id, c2.id], 3)]
    world = World(issuer, c1, c2, ids)
    await owe(engine, ids[0], (c1, 100), (c2, 50))
    await owe(engine, ids[1], (c1, 40))
    assert [(await h.balance(engine, m)).debt for m in ids] == [150, 40, 0]
    return world


AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
PURCHASES = [  # (member, amount, reference, occurredAt): one expiry for most, so lot order counts
    (0, "30", "R1", AT),  # repays c1 30
    (1, "100", "R2", AT),  # repays c1 40: the second member is clear
    (0, "80", "R3", AT),  # repays c1 70 and c2 10
    (2, "20", "R4", AT),
    (0, "60", "R5", AT),  # repays c2 40: clear, 20 left in its lot
    (1, "10", "R6", AT),
    (0, "0.50", "R7", AT),  # 0 points: no transfer
    (0, "5", "R8", AT),
    (0, "70", "R9", AT),
    (0, "15", "R10", AT - timedelta(hours=1)),  # expires first
]


async def _picture(engine: AsyncEngine, world: World) -> dict[str, Any]:
    """What the members and partners of a world see, in roles instead of ids."""
    picture: dict[str, Any] = {}
    async with engine.connect() as c:
        for n, member in enumerate(world.members):
            bal = await h.balance(engine, member)
            lots = await c.execute(
                text(
                    "SELECT t.reference, l.issuer_partner_id, l.points, l.remaining,"
                    " l.available_at, l.expires_at FROM lots l JOIN transfers t"
                    " ON t.id = l.transfer_id WHERE l.member_id = :m ORDER BY l.expires_at, l.id"
                ),
                {"m": member},
            )
            transfers = await c.execute(
                text(
                    "SELECT code, points, partner_id, reference, amount, occurred_at"
                    " FROM transfers WHERE member_id = :m ORDER BY id"
                ),
                {"m": member},
            )
            debts = await c.execute(
                text(
                    "SELECT creditor_partner_id, points, remaining FROM debts WHERE member_id = :m"
                    " ORDER BY created_at, id"
                ),
                {"m": member},
            )
            consumed = await c.execute(
                text(
                    "SELECT t.reference, x.kind, x.issuer_partner_id, x.redeemer_partner_id,"
                    " x.points FROM consumptions x JOIN lots l ON l.id = x.lot_id"
                    " JOIN transfers t ON t.id = l.transfer_id WHERE l.member_id = :m"
                    " AND l.issuer_partner_id = :issuer"
                ),
                {"m": member, "issuer": world.issuer.id},
            )
            picture[f"member {n}"] = {
                "balance": (bal.available, bal.pending, bal.held, bal.debt),
                "lots": [  # the times of the batch's lots (the setup's are "now": they differ)
                    (
                        r.reference,
                        world.role(r.issuer_partner_id),
                        r.points,
                        r.remaining,
                        *(
                            (r.available_at, r.expires_at)
                            if r.issuer_partner_id == world.issuer.id
                            else ()
                        ),
                    )
                    for r in lots
                ],
                "transfers": sorted(
                    (
                        r.code,
                        r.points,
                        world.role(r.partner_id),
                        r.reference,
                        r.amount,
                        r.occurred_at if r.partner_id == world.issuer.id else None,
                    )
                    for r in transfers
                ),
                "debts": [
                    (world.role(r.creditor_partner_id), r.points, r.remaining) for r in debts
                ],
                "consumptions": sorted(
                    (
                        r.reference,
                        r.kind,
                        world.role(r.issuer_partner_id),
                        world.role(r.redeemer_partner_id),
                        r.points,
                    )
                    for r in consumed
                ),
            }
            # The order a member's history lists the issuer's earns in (by id).
            earns = await c.scalars(
                text(
                    "SELECT reference FROM transfers WHERE member_id = :m AND partner_id = :p"
                    " AND code = 'EARN' ORDER BY id"
                ),
                {"m": member, "p": world.issuer.id},
            )
            picture[f"member {n}"]["earn order"] = list(earns)
        obligations = await c.execute(
            text(
                "SELECT o.kind, o.debtor_id, o.creditor_id, o.points, o.unit_price, o.amount"
                " FROM obligations o JOIN transfers t ON t.id = o.transfer_id"
                " WHERE t.member_id = ANY(:m)"
            ),
            {"m": world.members},
        )
        picture["obligations"] = sorted(
            (r.kind, world.role(r.debtor_id), world.role(r.creditor_id), *tuple(r)[3:])
            for r in obligations
        )
        await h.assert_invariants(c, world.members)
    return picture


async def test_a_batch_for_indebted_members_books_what_single_earns_would(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    singles, batched = await _world(engine), await _world(engine)
    for n, amount, reference, occurred in PURCHASES:
        async with engine.begin() as c:
            await earn_points(
                c,
                partner_caller(singles.issuer.id),
                member=MemberRef(id=singles.members[n]),
                amount=Decimal(amount),
                reference=reference,
                occurred_at=occurred,
                idempotency_key=key(),
            )
    rows = [
        row(member_id=batched.members[n], amount=amount, reference=reference, occurred_at=at)
        for n, amount, reference, at in PURCHASES
    ]
    with counting_postings(monkeypatch) as one_by_one:
        outcome = await batch(engine, partner_caller(batched.issuer.id), rows)
    assert (outcome.booked, outcome.transfers, outcome.rejected) == (10, 9, [])
    # Only the rows that clear a debt go through the single posting: R1, R2, R3, R5.
    assert one_by_one == [30, 100, 80, 60]

    # Then both worlds spend the same: the lots consumed must be the same ones.
    for world in (singles, batched):
        await h.redeem(engine, world.c2.id, world.members[0], 80)
        await h.redeem(engine, world.c1.id, world.members[1], 65)

    expected, got = await _picture(engine, singles), await _picture(engine, batched)
    assert got == expected
    assert got["member 0"]["balance"] == (30, 0, 0, 0)
    assert got["member 0"]["earn order"] == [r for n, _, r, _ in PURCHASES if n == 0 and r != "R7"]
    assert ("DEBT_REPAYMENT", "issuer", "c2", 40) in [o[:4] for o in got["obligations"]]


# ---- not one by one ---------------------------------------------------------------------


async def test_an_indebted_members_rows_are_booked_set_based_after_the_debt(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer, creditor = await make_partner(engine), await make_partner(engine)
    (debtor, phone, _), (other, other_phone, _) = await enrolled(
        engine, [issuer.id, creditor.id], 2
    )
    await owe(engine, debtor, (creditor, 95))
    rows = [row(phone=phone, amount="10", reference=f"D{n}") for n in range(300)]
    rows += [row(phone=other_phone, amount="3", reference=f"O{n}") for n in range(50)]
    with counting_postings(monkeypatch) as one_by_one:
        outcome = await batch(engine, partner_caller(issuer.id), rows)
    # 95 owed: the first ten rows of 10 points repay it, the 290 others need no posting each.
    assert one_by_one == [10] * 10
    assert (outcome.booked, outcome.transfers, outcome.points) == (350, 350, 3150)
    bal = await h.balance(engine, debtor)
    assert (bal.available, bal.debt) == (3000 - 95, 0)
    assert (await h.balance(engine, other)).available == 150
    async with engine.connect() as c:
        repaid = await c.scalars(
            text(
                "SELECT points FROM transfers WHERE member_id = :m AND code = 'DEBT_REPAYMENT'"
                " AND partner_id = :p ORDER BY id"
            ),
            {"m": debtor, "p": creditor.id},
        )
        assert list(repaid) == [10] * 9 + [5]
        await h.assert_invariants(c, [debtor, other])


async def test_the_batchs_statements_do_not_grow_with_an_indebted_members_rows(
    engine: AsyncEngine,
) -> None:
    """A batch of 20 and a batch of 400 rows for a member owing 25 send as many statements
    (the lock is held for the same work, whatever the number of rows)."""
    issuer, creditor = await make_partner(engine), await make_partner(engine)
    members = await enrolled(engine, [issuer.id, creditor.id], 2)
    sent: dict[int, list[str]] = {}
    for (member, phone, _), size in zip(members, (20, 400), strict=True):
        await owe(engine, member, (creditor, 25))
        rows = [row(phone=phone, amount="10") for _ in range(size)]
        with counting_statements(engine) as statements:
            outcome = await batch(engine, partner_caller(issuer.id), rows)
        assert outcome.booked == size
        assert (await h.balance(engine, member)).debt == 0
        sent[size] = statements
    assert len(sent[400]) == len(sent[20])


# ---- per-row answers over HTTP ----------------------------------------------------------


def _rows(api: Api, rows: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = api.data(BATCH, {"input": {"rows": rows}})["earnPointsBatch"]
    assert result["errors"] == [], result
    return result


async def test_a_batch_with_an_indebted_member_still_answers_every_row(
    engine: AsyncEngine, server: str
) -> None:
    issuer, creditor = await make_partner(engine), await make_partner(engine)
    (debtor, phone, _), (_, clear_phone, _) = await enrolled(engine, [issuer.id, creditor.id], 2)
    await owe(engine, debtor, (creditor, 100))
    api = await partner_api(engine, server, issuer.id)
    earlier_key = key()
    earlier = api.data(
        EARN,
        {
            "input": {
                "member": {"phone": clear_phone},
                "amount": "7",
                "reference": "EARLIER",
                "idempotencyKey": earlier_key,
            }
        },
    )["earnPoints"]["transfer"]["id"]

    def r(member: str, amount: str, reference: str, k: str | None = None) -> dict[str, Any]:
        return {
            "member": {"phone": member},
            "amount": amount,
            "reference": reference,
            "idempotencyKey": k or key(),
        }

    k0, k4 = key(), key()
    rows = [
        r(phone, "30", "B0", k0),  # repays 30 of the debt
        r(clear_phone, "7", "EARLIER", earlier_key),  # an earnPoints call's key: replayed
        r(phone, "-5", "B2"),  # INVALID_AMOUNT
        r("+79990000001", "5", "B3"),  # MEMBER_NOT_FOUND
        r(phone, "80", "B4", k4),  # repays the other 70
        r(phone, "80", "B4", k4),  # the same row again: replays row 4
        r(phone, "31", "B0", k0),  # row 0's key, another request: IDEMPOTENCY_KEY_REUSED
        r(phone, "0.5", "B7"),  # 0 points: booked, no transfer
        r(phone, "40", "B8"),  # debt cleared: booked set-based
        r(clear_phone, "20", "B9"),
    ]
    result = _rows(api, rows)
    assert (result["booked"], result["replayed"], result["rejected"]) == (5, 2, 3)
    assert (result["transfers"], result["points"]) == (4, 170)
    assert [(x["index"], x["code"]) for x in result["rejectedRows"]] == [
        (2, "INVALID_AMOUNT"),
        (3, "MEMBER_NOT_FOUND"),
        (6, "IDEMPOTENCY_KEY_REUSED"),
    ]
    replayed = {x["index"]: x for x in result["replayedRows"]}
    assert sorted(replayed) == [1, 5]
    assert (replayed[1]["transferId"], replayed[1]["points"]) == (earlier, 7)
    row4 = api.data(TRANSFER, {"id": replayed[5]["transferId"]})["transfer"]
    assert (row4, replayed[5]["points"]) == (
        {"code": "EARN", "reference": "B4", "points": 80},
        80,
    )
    balance = api.data(BALANCE, {"ref": {"phone": phone}})["member"]["balance"]
    assert balance == {"available": 50, "debt": 0}

    # Sending the batch again books nothing; each row's key names its own transfer.
    again = _rows(api, rows)
    assert (again["booked"], again["transfers"], again["points"]) == (0, 0, 0)
    assert [x["index"] for x in again["replayedRows"]] == [0, 1, 4, 5, 7, 8, 9]
    for x in again["replayedRows"]:
        if x["transferId"] is None:
            assert (x["index"], x["points"]) == (7, 0)
            continue
        booked = api.data(TRANSFER, {"id": x["transferId"]})["transfer"]
        assert (booked["code"], booked["reference"], booked["points"]) == (
            "EARN",
            rows[x["index"]]["reference"],
            x["points"],
        )
