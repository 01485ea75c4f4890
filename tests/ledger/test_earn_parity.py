"""Parity: the same purchases booked one by one (`ledger_book_earn`, the single earn) and as
one batch (`ledger.bulk`, set-based, with the rows that repay a debt booked through
`ledger_book_earn` too, their keys claimed by the batch) leave exactly the same rows behind.

Every row the earns write is compared, ids and creation times aside: transfers (code, points,
partner, member, reference, amount, metadata, occurred_at of the purchases), lots (issuer,
points, remaining, available_at, expires_at), consumptions, debts, obligations, outbox events
and idempotency keys (operation, request hash, result). The world has a member in debt to two
creditors, a member without debt, a zero-point purchase and a partner with a return window
(pending days), under both funding models.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from members.service import MemberRef
from partners.service import PartnerRecord
from points.service import earn_points
from tests.batch.helpers import batch, enrolled, row
from tests.conftest import make_partner, partner_caller
from tests.ledger import helpers as h
from tests.security.test_batch_debt import owe
from tests.settlement.helpers import coalition_terms

AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
PURCHASES = [  # (member, amount, reference, occurred_at, idempotency key)
    (0, "30", "P1", AT, "k1"),  # repays c1 30
    (1, "100", "P2", AT, "k2"),
    (0, "150", "P3", AT, "k3"),  # repays c1 70 and c2 50, keeps 30
    (0, "0.40", "P4", AT, "k4"),  # 0 points: a key, no transfer
    (1, "12.5", "P5", AT - timedelta(hours=1), "k5"),
    (0, "45", "P6", AT, "k6"),
]


@dataclass
class World:
    issuer: PartnerRecord  # the earning partner, with a 3-day return window
    c1: PartnerRecord
    c2: PartnerRecord
    members: list[uuid.UUID]


async def _world(engine: AsyncEngine) -> World:
    issuer = await make_partner(engine, pending_days=3, issue_price="0.80")
    c1, c2 = await make_partner(engine), await make_partner(engine)
    ids = [m for m, _, _ in await enrolled(engine, [issuer.id, c1.id, c2.id], 2)]
    await owe(engine, ids[0], (c1, 100), (c2, 50))
    assert [(await h.balance(engine, m)).debt for m in ids] == [150, 0]
    return World(issuer, c1, c2, ids)


class Labels:
    """Replaces the ids of one world with names the other world shares."""

    def __init__(self, world: World) -> None:
        self.names: dict[str, str] = {
            str(world.issuer.id): "issuer",
            str(world.c1.id): "c1",
            str(world.c2.id): "c2",
            f"test-{world.issuer.id}": "client:issuer",
            f"test-{world.c1.id}": "client:c1",
            f"test-{world.c2.id}": "client:c2",
        }
        for n, member in enumerate(world.members):
            self.names[str(member)] = f"member {n}"

    def add(self, value: Any, name: str) -> None:
        self.names[str(value)] = name

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self(v) for k, v in sorted(value.items())}
        if isinstance(value, list | tuple):
            return type(value)(self(v) for v in value)
        if isinstance(value, uuid.UUID | str) and str(value) in self.names:
            return self.names[str(value)]
        return value


async def _picture(engine: AsyncEngine, world: World) -> dict[str, Any]:
    label = Labels(world)
    members = world.members
    out: dict[str, Any] = {}
    async with engine.connect() as c:
        transfers = (
            await c.execute(
                text(
                    "SELECT id, code, points, partner_id, member_id, client_id, reference,"
                    " amount, metadata_, occurred_at, reversal_of_id FROM transfers"
                    " WHERE member_id = ANY(:m) ORDER BY id"
                ),
                {"m": members},
            )
        ).all()
        debts = (
            await c.execute(
                text(
                    "SELECT id, member_id, creditor_partner_id, points, remaining FROM debts"
                    " WHERE member_id = ANY(:m) ORDER BY created_at, id"
                ),
                {"m": members},
            )
        ).all()
        cards = await c.execute(
            text("SELECT id, partner_id FROM rate_cards WHERE partner_id = ANY(:p)"),
            {"p": [world.issuer.id, world.c1.id, world.c2.id]},
        )
        for card in cards:
            label.add(card.id, f"rate card {label(card.partner_id)}")
        # Names first: a transfer by its code, reference, member and rank among equals.
        seen: dict[tuple[Any, ...], int] = {}
        for t in transfers:
            key = (t.code, t.reference, label(t.member_id), label(t.partner_id))
            seen[key] = seen.get(key, 0) + 1
            label.add(t.id, "transfer " + "/".join(map(str, (*key, seen[key]))))
        for d in debts:
            label.add(d.id, f"debt {label(d.member_id)}/{label(d.creditor_partner_id)}")
        purchases = {ref for _, _, ref, _, _ in PURCHASES}
        out["transfers"] = sorted(
            (
                label(t.id),
                t.code,
                t.points,
                label(t.partner_id),
                label(t.member_id),
                label(t.client_id),
                t.reference,
                t.amount,
                label(dict(t.metadata_)),
                t.occurred_at if t.reference in purchases else None,
                label(t.reversal_of_id),
            )
            for t in transfers
        )
        lots = await c.execute(
            text(
                "SELECT l.transfer_id, l.issuer_partner_id, l.points, l.remaining,"
                " l.available_at, l.expires_at, l.member_id FROM lots l"
                " WHERE l.member_id = ANY(:m)"
            ),
            {"m": members},
        )
        out["lots"] = sorted(
            (
                label(r.transfer_id),
                label(r.issuer_partner_id),
                label(r.member_id),
                r.points,
                r.remaining,
                *((r.available_at, r.expires_at) if r.issuer_partner_id == world.issuer.id else ()),
            )
            for r in lots
        )
        consumptions = await c.execute(
            text(
                "SELECT x.transfer_id, l.transfer_id AS lot_transfer, x.kind,"
                " x.issuer_partner_id, x.redeemer_partner_id, x.points"
                " FROM consumptions x JOIN lots l ON l.id = x.lot_id WHERE l.member_id = ANY(:m)"
            ),
            {"m": members},
        )
        out["consumptions"] = sorted(tuple(label(tuple(r))) for r in consumptions)
        out["debts"] = sorted(
            (label(d.id), label(d.member_id), label(d.creditor_partner_id), d.points, d.remaining)
            for d in debts
        )
        obligations = await c.execute(
            text(
                "SELECT o.transfer_id, o.kind, o.issuer_id, o.debtor_id, o.creditor_id,"
                " o.points, o.unit_price, o.amount FROM obligations o"
                " JOIN transfers t ON t.id = o.transfer_id WHERE t.member_id = ANY(:m)"
            ),
            {"m": members},
        )
        out["obligations"] = sorted(tuple(str(v) for v in label(tuple(r))) for r in obligations)
        events = await c.execute(
            text(
                "SELECT type, partner_id, member_id, payload - 'created_at' AS payload"
                " FROM outbox WHERE member_id = ANY(:m) AND type = 'transfer.booked'"
            ),
            {"m": members},
        )
        out["outbox"] = sorted(
            (
                e.type,
                label(e.partner_id),
                label(e.member_id),
                str(
                    label(
                        {
                            k: v
                            for k, v in e.payload.items()
                            if k != "occurred_at" or e.payload.get("reference") in purchases
                        }
                    )
                ),
            )
            for e in events
        )
        keys = await c.execute(
            text(
                "SELECT key, operation, result FROM idempotency_keys"
                " WHERE client_id = :c AND key LIKE :prefix"
            ),
            {"c": f"test-{world.issuer.id}", "prefix": f"{world.issuer.id}-%"},
        )
        out["keys"] = sorted(
            (k.key.split("-", 5)[-1], k.operation, str(label(dict(k.result)))) for k in keys
        )
        await h.assert_invariants(c, members)
    return out


@pytest.mark.parametrize("funding", ["REDEMPTION", "ISSUANCE"])
async def test_single_earns_and_a_batch_book_the_same_rows(
    engine: AsyncEngine, funding: str
) -> None:
    singles, batched = await _world(engine), await _world(engine)
    async with coalition_terms(engine, funding_model=funding):
        for n, amount, reference, occurred, k in PURCHASES:
            async with engine.begin() as c:
                await earn_points(
                    c,
                    partner_caller(singles.issuer.id),
                    member=MemberRef(id=singles.members[n]),
                    amount=Decimal(amount),
                    reference=reference,
                    occurred_at=occurred,
                    idempotency_key=f"{singles.issuer.id}-{k}",
                )
        rows = [
            row(
                member_id=batched.members[n],
                amount=amount,
                reference=reference,
                occurred_at=occurred,
                idempotency_key=f"{batched.issuer.id}-{k}",
            )
            for n, amount, reference, occurred, k in PURCHASES
        ]
        outcome = await batch(engine, partner_caller(batched.issuer.id), rows)
    assert (outcome.booked, outcome.rejected) == (len(PURCHASES), [])
    one, other = await _picture(engine, singles), await _picture(engine, batched)
    assert one.keys() == other.keys()
    for table in one:
        assert one[table] == other[table], table
    assert len(one["keys"]) == len(PURCHASES)
    assert any(kind == "DEBT_REPAYMENT" for _, kind, *_ in one["transfers"])
    if funding == "ISSUANCE":
        assert any("ISSUANCE" in o for o in one["obligations"])
