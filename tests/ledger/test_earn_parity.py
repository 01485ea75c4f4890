"""Parity: the same purchases booked one by one (`ledger_book_earn`, the single earn) and as
one batch (`ledger.bulk`, set-based, with the rows that repay a debt booked through
`ledger_book_earn` too, their keys claimed by the batch) leave exactly the same rows behind.

Every row the earns write is compared, ids and creation times aside: transfers (code, points,
partner, member, reference, amount, metadata, occurred_at of the purchases), lots (issuer,
points, remaining, available_at, expires_at), consumptions, debts, obligations, outbox events
and idempotency keys (operation, request hash, result). The world has a member in debt to two
creditors, a member without debt, a zero-point purchase and a partner with a return window
(pending days), under both funding models.

The batch writes its rows' `transfer.booked` events itself, from the rows its INSERT returns
(the hook skips them for it): in each world every event must also be exactly what the hook's
subscriber writes for its transfer as stored (created_at included), one per transfer, and each
member's purchases must reach the relay in the order they were booked.

With campaigns (`test_..._with_campaigns`): each world has the same campaigns, aimed at its
own earning partner (a co-funded bonus, operator-funded points, a multiplier, a category
campaign priced on lines, a first-purchase bonus judged on `member.purchases`, a small budget
that runs out and a large one, a monthly member limit) and the same tier policy, and the
comparison adds the BONUS transfers and their lots (`parent_id`), the budget slots, the
members' campaign usage and `members.purchases`. The small budget cannot take the batch's
draws set-based, so its members' rows go one by one (priced again when refused), while the
member limit and the large budget are taken set-based.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.caller import OPERATOR_PARTY, Caller, Scope
from ledger import bulk, earn_once
from ledger.earn_once import EarnToBook
from ledger.outbox import TRANSFER_BOOKED, TRANSFER_BOOKED_COLUMNS, TRANSFER_BOOKED_VALUES
from members.service import MemberRef
from partners.service import PartnerRecord
from points.batch import EarnRow
from points.campaigns.limits import split_evenly
from points.campaigns.service import create_campaign
from points.campaigns.validation import CampaignSpec
from points.rules.model import Effect, FundingShare, LimitPeriod, PurchaseLine, TierRule
from points.service import earn_points
from points.tiers.policy import current_policy, set_tier_policy
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
    cofunder: PartnerRecord | None = None  # pays shares of campaigns (campaign worlds)
    campaigns: dict[uuid.UUID, str] | None = None  # the world's campaigns by name


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
        self.names[str(OPERATOR_PARTY)] = "operator"
        if world.cofunder is not None:
            self.names[str(world.cofunder.id)] = "cofunder"
            self.names[f"test-{world.cofunder.id}"] = "client:cofunder"
        for campaign, name in (world.campaigns or {}).items():
            self.names[str(campaign)] = f"campaign {name}"

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


async def _picture(
    engine: AsyncEngine,
    world: World,
    references: set[str] | None = None,
    *,
    delivery_order: bool = True,
) -> dict[str, Any]:
    label = Labels(world)
    members = world.members
    out: dict[str, Any] = {}
    async with engine.connect() as c:
        transfers = (
            await c.execute(
                text(
                    "SELECT id, code, points, partner_id, member_id, client_id, reference,"
                    " amount, metadata_, occurred_at, reversal_of_id, parent_id FROM transfers"
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
        # (A BONUS without a reference is named by its head's.)
        by_id = {t.id: t for t in transfers}
        seen: dict[tuple[Any, ...], int] = {}
        for t in transfers:
            reference = by_id[t.parent_id].reference if t.parent_id else t.reference
            key = (t.code, reference, label(t.member_id), label(t.partner_id))
            seen[key] = seen.get(key, 0) + 1
            label.add(t.id, "transfer " + "/".join(map(str, (*key, seen[key]))))
        for d in debts:
            label.add(d.id, f"debt {label(d.member_id)}/{label(d.creditor_partner_id)}")
        purchases = references or {ref for _, _, ref, _, _ in PURCHASES}
        in_purchase = {
            t.id for t in transfers if t.reference in purchases or t.parent_id is not None
        }
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
                t.occurred_at if t.id in in_purchase else None,
                label(t.reversal_of_id),
                label(t.parent_id),
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
                *((r.available_at, r.expires_at) if r.transfer_id in in_purchase else ()),
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
                            if k != "occurred_at"
                            or uuid.UUID(e.payload["transfer_id"]) in in_purchase
                        }
                    )
                ),
            )
            for e in events
        )
        await _check_events(c, members)
        out["members.purchases"] = sorted(
            (label(r.id), r.purchases)
            for r in await c.execute(
                text("SELECT id, purchases FROM members WHERE id = ANY(:m)"), {"m": members}
            )
        )
        if world.campaigns:
            campaigns = list(world.campaigns)
            out["budget slots"] = await _budgets(c, label, campaigns, members)
            out["usage"] = sorted(
                (label(r.campaign_id), label(r.member_id), r.period_start, r.points)
                for r in await c.execute(
                    text(
                        "SELECT campaign_id, member_id, period_start, points"
                        " FROM campaign_member_usage WHERE campaign_id = ANY(:c)"
                    ),
                    {"c": campaigns},
                )
            )
        # The relay's order: by writing transaction, then event id. A member's purchases (its
        # EARN events) must come in the order they were booked. Rows a batch books one by one
        # (an indebted member's first ones) are one transaction's events made in the same
        # millisecond at times, unordered among themselves (as before the batch wrote its own
        # events); the member's later, set-based rows come after them all.
        delivered: dict[str, list[str]] = {}
        for e in await c.execute(
            text(
                "SELECT member_id, payload->>'reference' AS reference FROM outbox"
                " WHERE member_id = ANY(:m) AND type = :t AND payload->>'code' = 'EARN'"
                " AND payload->>'reference' = ANY(:purchases) ORDER BY xact_id, id"
            ),
            {"m": members, "t": TRANSFER_BOOKED, "purchases": sorted(purchases)},
        ):
            delivered.setdefault(label(e.member_id), []).append(e.reference)
        if delivery_order:
            out["delivery order"] = {
                member: (sorted(refs[:-1]), refs[-1]) for member, refs in sorted(delivered.items())
            }
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


async def _budgets(
    c: AsyncConnection, label: Labels, campaigns: list[uuid.UUID], members: list[uuid.UUID]
) -> list[tuple[Any, ...]]:
    """Each budget's slots. Members hash to different slots in each world, so a budget of
    several slots is compared by what is left in all and by each slot giving exactly the
    budgeted draws of the members hashing to it (the large budget never borrows); a budget
    of one slot (the small one, which runs dry) by that slot."""
    slots = {
        r.campaign_id: list(r.remaining)
        for r in await c.execute(
            text(
                "SELECT campaign_id, array_agg(remaining ORDER BY slot) AS remaining"
                " FROM campaign_budget_slots WHERE campaign_id = ANY(:c) GROUP BY campaign_id"
            ),
            {"c": campaigns},
        )
    }
    drawn = (
        await c.execute(
            text(
                "SELECT (d->>'id')::uuid AS campaign, t.member_id, (d->>'points')::bigint AS points"
                " FROM transfers t CROSS JOIN jsonb_array_elements(t.metadata_->'campaigns') d"
                " WHERE t.member_id = ANY(:m) AND (d->>'budgeted')::boolean"
            ),
            {"m": members},
        )
    ).all()
    hashes = {
        r.id: int(r.h)
        for r in await c.execute(
            text("SELECT id, abs(hashtext(id::text)::bigint) AS h FROM members WHERE id = ANY(:m)"),
            {"m": members},
        )
    }
    out = []
    for campaign, remaining in slots.items():
        taken = [0] * len(remaining)
        for d in drawn:
            if d.campaign == campaign:
                taken[hashes[d.member_id] % len(remaining)] += d.points
        budget = sum(remaining) + sum(taken)
        expected = [
            part - t for part, t in zip(split_evenly(budget, len(remaining)), taken, strict=True)
        ]
        by_hash = remaining == expected if len(remaining) > 1 else remaining
        out.append((label(campaign), sum(remaining), by_hash))
    return sorted(out)


async def _check_events(c: AsyncConnection, members: list[uuid.UUID]) -> None:
    """One `transfer.booked` per transfer of the members, each exactly what the hook's
    subscriber (`outbox_transfers_booked`) writes for that transfer as it is stored."""
    per_transfer = (
        await c.execute(
            text(
                "SELECT t.id, t.code, count(o.id) AS events FROM transfers t"
                " LEFT JOIN outbox o ON o.type = :t AND o.payload->>'transfer_id' = t.id::text"
                " WHERE t.member_id = ANY(:m) GROUP BY t.id, t.code"
            ),
            {"m": members, "t": TRANSFER_BOOKED},
        )
    ).all()
    assert per_transfer and all(r.events == 1 for r in per_transfer), per_transfer
    differing = (
        await c.execute(
            text(
                "SELECT o.id, o.type, o.occurred_at, o.partner_id, o.member_id, o.payload,"
                " e.type, e.occurred_at, e.partner_id, e.member_id, e.payload"
                " FROM outbox o JOIN transfers t ON o.payload->>'transfer_id' = t.id::text"
                f" CROSS JOIN LATERAL (SELECT {TRANSFER_BOOKED_VALUES})"
                f" AS e({TRANSFER_BOOKED_COLUMNS})"
                " WHERE t.member_id = ANY(:m) AND o.type = :t"
                " AND (o.type, o.occurred_at, o.partner_id, o.member_id, o.payload)"
                " IS DISTINCT FROM (e.type, e.occurred_at, e.partner_id, e.member_id, e.payload)"
            ),
            {"m": members, "t": TRANSFER_BOOKED},
        )
    ).all()
    assert differing == []


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
    assert one["delivery order"] == {
        "member 0": (["P1", "P3"], "P6"),
        "member 1": (["P2"], "P5"),
    }
    if funding == "ISSUANCE":
        assert any("ISSUANCE" in o for o in one["obligations"])


# ---- with campaigns and a tier --------------------------------------------------------------

OPERATOR = Caller(
    client_id="test-operator", partner_id=None, scopes=frozenset({str(Scope.OPERATOR)})
)
GOLD = TierRule("PARITY_GOLD", "Parity gold", 1_000_000, Decimal("1.5"))
COFFEE = (PurchaseLine("espresso", "coffee", Decimal(2), Decimal("40")),)

# (member, amount, reference, idempotency key, lines, store, channel). Member 0 owes 150 (its
# first rows repay it one by one), member 2 is PARITY_GOLD, rows at store S1 draw on the small
# budget (40 points, 16 slots: the batch cannot take 15-point draws from one slot set-based).
CAMPAIGN_PURCHASES: list[
    tuple[int, str, str, str, tuple[PurchaseLine, ...], str | None, str | None]
] = [
    (0, "30", "C1", "c1", (), None, None),
    (
        1,
        "100",
        "C2",
        "c2",
        (*COFFEE, PurchaseLine("bread", "bakery", Decimal(1), Decimal("60"))),
        "S1",
        None,
    ),
    (0, "150", "C3", "c3", (), None, "app"),
    (0, "0.40", "C4", "c4", (), None, None),  # 0 points: counted as a purchase all the same
    (1, "12.5", "C5", "c5", (), "S1", None),
    (3, "0.60", "C6", "c6", (), None, None),  # the EARN has no points: a BONUS heads it
    (0, "45", "C7", "c7", (), None, None),
    (2, "80", "C8", "c8", (), "S1", None),  # the small budget has 10 left: capped
    (1, "60", "C9", "c9", (), "S1", None),  # and then nothing
    (
        3,
        "200",
        "C10",
        "c10",
        (PurchaseLine("beans", "coffee", Decimal(2), Decimal("200")),),
        None,
        "app",
    ),
    (2, "30", "C11", "c11", (), None, None),
    (3, "50", "C12", "c12", (), None, None),
    (2, "20", "C13", "c13", (), None, None),  # the member limit (25 a month) has 5 left
    (3, "70", "C14", "c14", (), None, None),  # and here nothing
]


def _campaign_specs(issuer: uuid.UUID, cofunder: uuid.UUID) -> dict[str, CampaignSpec]:
    at_issuer: dict[str, Any] = {"partner_ids": (issuer,)}
    spent = "purchase.amount >= 1.0"
    return {
        "welcome": CampaignSpec(
            name="Welcome",
            effect=Effect(bonus_points=50),
            condition="member.purchases == 0",
            funding=(FundingShare(None, Decimal(1)),),
            **at_issuer,
        ),
        "co-funded": CampaignSpec(
            name="Cross-brand week",
            effect=Effect(bonus_points=21),
            condition=spent,
            funding=(
                FundingShare(issuer, Decimal("0.5")),
                FundingShare(cofunder, Decimal("0.3")),
                FundingShare(None, Decimal("0.2")),
            ),
            **at_issuer,
        ),
        "operator": CampaignSpec(
            name="Operator per unit",
            effect=Effect(points_per_unit=Decimal("0.1")),
            condition=spent,
            funding=(FundingShare(None, Decimal(1)),),
            **at_issuer,
        ),
        "double": CampaignSpec(
            name="Double points", effect=Effect(multiplier=Decimal(2)), priority=10, **at_issuer
        ),
        "coffee": CampaignSpec(
            name="Coffee triple",
            effect=Effect(multiplier=Decimal(3), categories=("coffee",)),
            funding=(FundingShare(cofunder, Decimal(1)),),
            **at_issuer,
        ),
        "small budget": CampaignSpec(
            name="Store S1 bonus",
            effect=Effect(bonus_points=15),
            store_ids=("S1",),
            budget_points=40,
            **at_issuer,
        ),
        "large budget": CampaignSpec(
            name="Cofunder's budget",
            effect=Effect(bonus_points=5),
            condition=spent,
            funding=(FundingShare(cofunder, Decimal(1)),),
            budget_points=1_000_000,
            **at_issuer,
        ),
        "limit": CampaignSpec(
            name="Ten a visit",
            effect=Effect(bonus_points=10),
            condition=spent,
            per_member_limit=25,
            limit_period=LimitPeriod.MONTH,
            **at_issuer,
        ),
        "tiny": CampaignSpec(
            name="Small change",
            effect=Effect(bonus_points=3),
            condition="purchase.amount < 1.0 && purchase.amount > 0.5",
            funding=(FundingShare(None, Decimal(1)),),
            **at_issuer,
        ),
    }


async def _campaign_world(engine: AsyncEngine, policy_version: int) -> World:
    issuer = await make_partner(engine, pending_days=3, issue_price="0.80")
    c1, c2, cofunder = (
        await make_partner(engine),
        await make_partner(engine),
        await make_partner(engine),
    )
    ids = [m for m, _, _ in await enrolled(engine, [issuer.id, c1.id, c2.id], 4)]
    await owe(engine, ids[0], (c1, 100), (c2, 50))
    campaigns: dict[uuid.UUID, str] = {}
    async with engine.begin() as c:
        for name, spec in _campaign_specs(issuer.id, cofunder.id).items():
            campaigns[(await create_campaign(c, OPERATOR, spec)).id] = name
        # The small budget in one slot: members hash to other slots in each world, and a
        # budget that runs dry borrows from siblings in slot order.
        small = next(k for k, v in campaigns.items() if v == "small budget")
        await c.execute(
            text("DELETE FROM campaign_budget_slots WHERE campaign_id = :c AND slot > 0"),
            {"c": small},
        )
        await c.execute(
            text("UPDATE campaign_budget_slots SET remaining = 40 WHERE campaign_id = :c"),
            {"c": small},
        )
        await c.execute(
            text(
                "INSERT INTO member_tiers (member_id, tier_code, since, qualifying_points,"
                " evaluated_at, policy_version) VALUES (:m, :t, now(), 0, now(), :v)"
            ),
            {"m": ids[2], "t": GOLD.code, "v": policy_version},
        )
    return World(issuer, c1, c2, ids, cofunder=cofunder, campaigns=campaigns)


def _rows_of(world: World, at: datetime) -> list[EarnRow]:
    return [
        EarnRow(
            MemberRef(id=world.members[n]),
            Decimal(amount),
            reference,
            f"{world.issuer.id}-{k}",
            at,
            lines,
            store,
            channel,
        )
        for n, amount, reference, k, lines, store, channel in CAMPAIGN_PURCHASES
    ]


@pytest.mark.parametrize("funding", ["REDEMPTION", "ISSUANCE"])
async def test_single_earns_and_a_batch_book_the_same_rows_with_campaigns(
    engine: AsyncEngine, funding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.connect() as c:
        before = await current_policy(c)
    async with engine.begin() as c:
        policy = await set_tier_policy(
            c, actor="test", window_days=365, grace_days=30, tiers=(GOLD,)
        )
    try:
        singles = await _campaign_world(engine, policy.version)
        batched = await _campaign_world(engine, policy.version)
        async with engine.connect() as c:
            at = await c.scalar(text("SELECT now()"))  # after every campaign took effect
        assert isinstance(at, datetime)
        async with coalition_terms(engine, funding_model=funding):
            single_points = 0
            for r in _rows_of(singles, at):
                async with engine.begin() as c:
                    single = await earn_points(
                        c,
                        partner_caller(singles.issuer.id),
                        member=r.member,
                        amount=r.amount,
                        reference=r.reference,
                        occurred_at=r.occurred_at,
                        idempotency_key=r.idempotency_key,
                        lines=r.lines,
                        store_id=r.store_id,
                        channel=r.channel,
                    )
                single_points += single.points
            alone: list[int] = []
            original = earn_once.book_earn_once

            async def counted(conn: AsyncConnection, earn: EarnToBook, **kwargs: Any) -> Any:
                alone.append(earn.total_points)
                return await original(conn, earn, **kwargs)

            monkeypatch.setattr(bulk, "book_earn_once", counted)
            outcome = await batch(engine, partner_caller(batched.issuer.id), _rows_of(batched, at))
            monkeypatch.undo()
    finally:
        async with engine.begin() as c:
            await set_tier_policy(
                c,
                actor="test",
                window_days=before.rule.window_days if before else 365,
                grace_days=before.rule.grace_days if before else 0,
                tiers=before.rule.tiers if before else (),
                funding=before.rule.funding if before else (),
            )
    assert (outcome.booked, outcome.rejected) == (len(CAMPAIGN_PURCHASES), [])
    assert outcome.points == single_points
    references = {ref for _, _, ref, *_ in CAMPAIGN_PURCHASES}
    one = await _picture(engine, singles, references, delivery_order=False)
    other = await _picture(engine, batched, references, delivery_order=False)
    assert one.keys() == other.keys()
    for table in one:
        assert one[table] == other[table], table
    assert outcome.transfers == sum(
        1 for t in one["transfers"] if t[1] in ("EARN", "BONUS") and t[9] is not None
    )

    # The world holds what it was built for.
    transfers = one["transfers"]
    bonuses = [t for t in transfers if t[1] == "BONUS"]
    assert {t[3] for t in bonuses} == {"cofunder", "operator"}
    assert any(t[11] is None and t[6] == "C6" for t in bonuses)  # a BONUS heading C6
    assert all(t[11] is not None for t in bonuses if t[6] is None)  # the others point at it
    text_of = str(one["transfers"])
    for words in (
        "capped by the campaign's budget (10 of 15)",
        "capped by your limit this month (5 of 10)",
        "Parity gold tier",
        "on 40 of coffee",
        "Campaign 'Welcome'",
    ):
        assert words in text_of, words
    assert dict(one["members.purchases"])["member 0"] >= 4
    slots = {name: (left, by_hash) for name, left, by_hash in one["budget slots"]}
    assert slots["campaign small budget"] == (0, [0])
    assert slots["campaign large budget"] == (1_000_000 - 5 * 12, True)
    # The small budget's members (1 and 2) and member 0's debt went one by one; members 0 and
    # 3's limit and the large budget set-based.
    assert 0 < len(alone) < len(CAMPAIGN_PURCHASES)
    if funding == "ISSUANCE":
        assert any("BONUS" in str(o) for o in one["obligations"])
