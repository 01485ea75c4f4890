"""Parity: a redemption booked by `redeemPoints` and by a hold's capture consumes the same lots,
in the same order, with the same obligations. Both book through the one redemption, the SQL
function `ledger_book_redeem` (a capture with `p_hold`: its key claimed by `captureHold`, the
hold's own points spendable, `hold_id` in the transfer's metadata)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import make_partner
from tests.ledger import helpers as h

REDEMPTIONS = [50, 70, 25]  # across lots of two issuers with different expiries


async def _book(engine: AsyncEngine, *, by_capture: bool) -> tuple[uuid.UUID, dict[str, Any]]:
    a = await make_partner(engine, points_validity_days=365)
    b = await make_partner(engine, points_validity_days=30)  # its points expire first
    r = await make_partner(engine)
    roles = {a.id: "a", b.id: "b", r.id: "r"}
    member = await h.new_member(engine, [a.id, b.id, r.id])
    for partner, amount in ((a, 60), (b, 40), (a, 30), (b, 20)):
        await h.earn(engine, partner.id, member, amount)
    for points in REDEMPTIONS:
        if by_capture:
            held = await h.hold(engine, r.id, member, points)
            done = await h.capture(engine, r.id, held.hold_id, None)
            assert done.transfer_id is not None
        else:
            await h.redeem(engine, r.id, member, points)
    async with engine.connect() as c:
        consumed = await c.execute(
            text(
                "SELECT t.points AS redeemed, x.kind, l.issuer_partner_id, l.points AS lot_points,"
                " x.redeemer_partner_id, x.points FROM consumptions x"
                " JOIN transfers t ON t.id = x.transfer_id JOIN lots l ON l.id = x.lot_id"
                " WHERE l.member_id = :m ORDER BY t.id, l.expires_at, l.id"
            ),
            {"m": member},
        )
        lots = await c.execute(
            text(
                "SELECT issuer_partner_id, points, remaining FROM lots WHERE member_id = :m"
                " ORDER BY expires_at, id"
            ),
            {"m": member},
        )
        obligations = await c.execute(
            text(
                "SELECT t.points AS redeemed, o.kind, o.issuer_id, o.debtor_id, o.creditor_id,"
                " o.points, o.amount FROM obligations o JOIN transfers t ON t.id = o.transfer_id"
                " WHERE t.member_id = :m ORDER BY t.id, o.kind, o.issuer_id"
            ),
            {"m": member},
        )
        redeems = await c.execute(
            text(
                "SELECT code, points, partner_id, metadata_ ? 'hold_id' AS captured"
                " FROM transfers WHERE member_id = :m AND code = 'REDEEM' ORDER BY id"
            ),
            {"m": member},
        )
        picture = {
            "consumptions": [
                (
                    r.redeemed,
                    r.kind,
                    roles[r.issuer_partner_id],
                    r.lot_points,
                    roles[r.redeemer_partner_id],
                    r.points,
                )
                for r in consumed
            ],
            "lots": [(roles[r.issuer_partner_id], r.points, r.remaining) for r in lots],
            "obligations": sorted(
                (
                    r.redeemed,
                    r.kind,
                    roles.get(r.issuer_id),
                    roles.get(r.debtor_id, "op"),
                    roles.get(r.creditor_id, "op"),
                    r.points,
                    r.amount,
                )
                for r in obligations
            ),
            "redeems": [(r.code, r.points, roles[r.partner_id], r.captured) for r in redeems],
            "balance": (await h.balance(engine, member)).available,
        }
        await h.assert_invariants(c, [member])
    return member, picture


async def test_the_sql_function_and_the_python_posting_redeem_alike(engine: AsyncEngine) -> None:
    _, by_function = await _book(engine, by_capture=False)
    _, by_capture = await _book(engine, by_capture=True)
    assert [r[3] for r in by_function["redeems"]] == [False] * len(REDEMPTIONS)
    assert [r[3] for r in by_capture["redeems"]] == [True] * len(REDEMPTIONS)
    for picture in (by_function, by_capture):
        picture["redeems"] = [r[:3] for r in picture["redeems"]]
    assert by_function == by_capture
    assert by_function["balance"] == 150 - sum(REDEMPTIONS)
    assert len(by_function["consumptions"]) > len(REDEMPTIONS)  # some spanned two lots
    assert {o[1] for o in by_function["obligations"]} >= {"REDEMPTION"}


async def test_a_capture_spends_its_own_hold_and_leaves_the_others_reserved(
    engine: AsyncEngine,
) -> None:
    partner = await make_partner(engine)
    member = await h.new_member(engine, [partner.id])
    await h.earn(engine, partner.id, member, 100)
    first = await h.hold(engine, partner.id, member, 60)
    second = await h.hold(engine, partner.id, member, 40)
    # Nothing is spendable outside the holds, yet each capture spends its own hold's points.
    await h.capture(engine, partner.id, first.hold_id, None)
    assert (await h.balance(engine, member)).available == 0
    await h.capture(engine, partner.id, second.hold_id, None)
    bal = await h.balance(engine, member)
    assert (bal.available, bal.held) == (0, 0)
    async with engine.connect() as c:
        holds = await c.scalars(
            text(
                "SELECT t.metadata_->>'hold_id' FROM holds x JOIN transfers t"
                " ON t.id = x.transfer_id WHERE x.member_id = :m ORDER BY x.id"
            ),
            {"m": member},
        )
        assert list(holds) == [str(first.hold_id), str(second.hold_id)]
        await h.assert_invariants(c, [member])
