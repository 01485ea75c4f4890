"""A stateful property test of the points ledger against a model kept in Python.

Hypothesis drives random sequences of earns (three partners: one with pending days, one
with a short validity and a fractional earn rate), redemptions (often more than the member
has), full and partial reversals (also of transfers already reversed), holds with capture
and void, maturing of pending lots and expiry (lots made due with SQL, then
`expire_member`). After every step the tables must satisfy the ledger's invariants and
agree lot by lot with the model.

The domain code is async and the state machine is not: each step runs on a private event
loop in a thread with a private engine (the session loop of pytest-asyncio is not running
while a sync test runs, but it must not be replaced either).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, ClassVar, TypeVar

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import DomainError, ErrorCode
from db.engine import create_engine
from ledger import queries
from ledger.postings import expire_member
from partners.service import PartnerRecord
from tests.conftest import make_partner
from tests.ledger import helpers as h

T = TypeVar("T")

PICK = st.integers(0, 10**6)
STALE = st.integers(0, 4).map(lambda n: n == 0)  # now and then pick any, not a likely one
SHARE = st.integers(1, 12)  # tenths of what there is: 11 and 12 ask for more than that


def portion(total: int, share: int) -> int:
    """`share` tenths of `total`, rounded up (at least 1 point)."""
    return max(1, -(-max(total, 0) * share // 10)) if total > 0 else share


# (earn rate, pending days, validity days): one partner's points are pending for a while,
# another's expire sooner (so they are consumed first) and earn fractions that round down.
PARTNERS: tuple[tuple[str, int, int], ...] = (
    ("1", 0, 365),
    ("1.5", 5, 365),
    ("0.5", 0, 30),
)


class Loop:
    """An event loop in a daemon thread; `run` blocks until a coroutine finishes on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class Lot:
    id: uuid.UUID
    issuer: int
    points: int
    remaining: int
    expires_at: datetime
    spendable: bool  # available_at has passed
    expired: bool = False  # expires_at has passed
    expired_total: int = 0  # what expiry took from it
    from_breakage: int = 0  # what earn reversals took back from that breakage

    @property
    def order(self) -> tuple[datetime, uuid.UUID]:
        return (self.expires_at, self.id)


@dataclass
class Hold:
    partner: int
    points: int
    status: str = "ACTIVE"


@dataclass
class Model:
    """What the ledger should hold, lot by lot, by the rules of DESIGN.md."""

    lots: dict[uuid.UUID, Lot] = field(default_factory=dict)
    earn_lots: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    redeemed: dict[uuid.UUID, dict[uuid.UUID, int]] = field(default_factory=dict)
    points: dict[uuid.UUID, int] = field(default_factory=dict)
    owner: dict[uuid.UUID, int] = field(default_factory=dict)
    reversed: dict[uuid.UUID, int] = field(default_factory=lambda: defaultdict(int))
    holds: dict[uuid.UUID, Hold] = field(default_factory=dict)
    debts: list[int] = field(default_factory=list)
    reversed_points_last: int = 0

    def live(self) -> list[Lot]:
        """Unexpired lots with points, earliest expiry first."""
        return sorted(
            (x for x in self.lots.values() if x.remaining and not x.expired), key=lambda x: x.order
        )

    def available(self) -> int:
        return sum(x.remaining for x in self.live() if x.spendable)

    def held(self, *, excluding: uuid.UUID | None = None) -> int:
        return sum(
            x.points for k, x in self.holds.items() if x.status == "ACTIVE" and k != excluding
        )

    def balance(self) -> tuple[int, int, int, int]:
        held = self.held()
        pending = sum(x.remaining for x in self.live() if not x.spendable)
        return (max(0, self.available() - held), pending, held, sum(self.debts))

    def earn(self, transfer_id: uuid.UUID, lot: Lot) -> None:
        self.lots[lot.id] = lot
        self.earn_lots[transfer_id] = lot.id
        self.points[transfer_id] = lot.points
        self.owner[transfer_id] = lot.issuer
        for i, debt in enumerate(self.debts):  # oldest debt first, from the new lot
            repay = min(debt, lot.remaining)
            if repay:
                event("earn: repays debt")
            self.debts[i] -= repay
            lot.remaining -= repay

    def redeem(self, transfer_id: uuid.UUID, partner: int, points: int) -> None:
        taken: dict[uuid.UUID, int] = {}
        left = points
        for lot in self.live():
            if left and lot.spendable:
                take = min(left, lot.remaining)
                lot.remaining -= take
                taken[lot.id] = take
                left -= take
        assert left == 0
        self.redeemed[transfer_id] = taken
        self.points[transfer_id] = points
        self.owner[transfer_id] = partner

    def repay_from_refund(self, limit: int) -> None:
        """Debts are repaid from a refund before it is spendable (not from points that back
        holds), oldest debt first, from the earliest-expiring unexpired lots."""
        total = sum(x.remaining for x in self.live())
        left = min(limit, max(0, total - self.held()))
        for i, debt in enumerate(self.debts):
            repay = min(debt, left)
            if not repay:
                continue
            event("refund: repays debt")
            self.debts[i] -= repay
            left -= repay
            for lot in self.live():
                take = min(repay, lot.remaining)
                lot.remaining -= take
                repay -= take
            assert repay == 0

    def reverse(self, transfer_id: uuid.UUID, points: int) -> None:
        self.reversed[transfer_id] += points
        self.reversed_points_last = points
        if transfer_id in self.redeemed:  # back into the lots, latest expiry first
            net = self.redeemed[transfer_id]
            for lot_id in sorted(net, key=lambda i: self.lots[i].order, reverse=True):
                back = min(points, net[lot_id])
                net[lot_id] -= back
                self.lots[lot_id].remaining += back
                points -= back
            assert points == 0
            event("redemption reversed")
            self.repay_from_refund(self.reversed_points_last)
            return
        own = self.lots[self.earn_lots[transfer_id]]
        margin = max(0, self.available() - self.held())  # points not backing holds
        from_lot = min(points, own.remaining)
        if own.spendable and not own.expired:
            from_lot = min(from_lot, margin)
            margin -= from_lot
        own.remaining -= from_lot
        rest = points - from_lot
        from_breakage = min(rest, own.expired_total - own.from_breakage)
        own.from_breakage += from_breakage
        rest -= from_breakage
        if from_breakage:
            event("earn reversal: from breakage")
        if rest:
            event("earn reversal: clawback or debt")
        for lot in self.live():
            take = min(rest, lot.remaining, margin if lot.spendable else rest)
            if take > 0:
                lot.remaining -= take
                rest -= take
                if lot.spendable:
                    margin -= take
        if rest:
            event("earn reversal: debt")
            self.debts.append(rest)

    def expire(self) -> int:
        total = 0
        for lot in self.lots.values():
            if lot.expired and lot.remaining:
                lot.expired_total += lot.remaining
                total += lot.remaining
                lot.remaining = 0
        return total


class LedgerMachine(RuleBasedStateMachine):
    loop: ClassVar[Loop]
    engine: ClassVar[AsyncEngine]
    partners: ClassVar[list[PartnerRecord]]

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.member = uuid.uuid4()
        self.hold_ids: list[uuid.UUID] = []
        self.last_earn: tuple[int, int, str, str | None] | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run(coro)

    def pid(self, index: int) -> uuid.UUID:
        return self.partners[index].id

    def attempt(self, coro: Coroutine[Any, Any, T], expected: ErrorCode | None) -> T | None:
        """Run an operation that the model says fails with `expected` (or succeeds: None)."""
        try:
            result = self.run(coro)
        except DomainError as exc:
            assert exc.code == expected, f"{exc.code}: {exc.message}; the model expected {expected}"
            return None
        assert expected is None, f"succeeded; the model expected {expected}"
        return result

    @initialize(amounts=st.lists(st.integers(1, 120), min_size=1, max_size=3))
    def enroll(self, amounts: list[int]) -> None:
        self.member = self.run(h.new_member(self.engine, [p.id for p in self.partners]))
        for partner, amount in enumerate(amounts):
            self.earn(partner, amount)

    @rule(partner=st.integers(0, 2), amount=st.integers(1, 120))
    def earn(self, partner: int, amount: int) -> None:
        points = int(
            (Decimal(amount) * Decimal(PARTNERS[partner][0])).to_integral_value(
                rounding=ROUND_FLOOR
            )
        )
        key = h.key()
        outcome = self.run(
            h.earn(self.engine, self.pid(partner), self.member, amount, idempotency_key=key)
        )
        assert outcome.points == points
        self.last_earn = (partner, amount, key, outcome.transfer_id)
        if not points:
            assert outcome.transfer_id is None
            return
        assert outcome.transfer_id is not None
        transfer_id = uuid.UUID(outcome.transfer_id)
        row = self.run(self._lot_row(transfer_id))
        self.model.earn(
            transfer_id,
            Lot(row.id, partner, points, points, row.expires_at, spendable=row.spendable),
        )

    async def _lot_row(self, transfer_id: uuid.UUID) -> Any:
        async with self.engine.connect() as c:
            return (
                await c.execute(
                    text(
                        "SELECT id, expires_at, available_at <= now() AS spendable"
                        " FROM lots WHERE transfer_id = :t"
                    ),
                    {"t": transfer_id},
                )
            ).one()

    @precondition(lambda self: self.last_earn is not None)
    @rule(change=st.booleans())
    def replay_earn(self, change: bool) -> None:
        assert self.last_earn is not None
        partner, amount, key, transfer_id = self.last_earn
        coro = h.earn(
            self.engine, self.pid(partner), self.member, amount + change, idempotency_key=key
        )
        outcome = self.attempt(coro, ErrorCode.IDEMPOTENCY_KEY_REUSED if change else None)
        if outcome is not None:
            assert outcome.replayed and outcome.transfer_id == transfer_id

    def spendable(self) -> int:
        return self.model.available() - self.model.held()

    @rule(partner=st.integers(0, 2), share=SHARE)
    def redeem(self, partner: int, share: int) -> None:
        points = portion(self.spendable(), share)
        enough = self.spendable() >= points
        outcome = self.attempt(
            h.redeem(self.engine, self.pid(partner), self.member, points),
            None if enough else ErrorCode.INSUFFICIENT_POINTS,
        )
        if outcome is not None:
            transfer_id = uuid.UUID(outcome.transfer_id)
            self.model.redeem(transfer_id, partner, points)

    @precondition(lambda self: self.model.earn_lots)
    @rule(pick=PICK, stale=STALE, share=st.none() | SHARE)
    def reverse_earn(self, pick: int, stale: bool, share: int | None) -> None:
        self.reverse(self._pick(list(self.model.earn_lots), pick, stale), share)

    @precondition(lambda self: self.model.redeemed)
    @rule(pick=PICK, stale=STALE, share=st.none() | SHARE)
    def reverse_redemption(self, pick: int, stale: bool, share: int | None) -> None:
        self.reverse(self._pick(list(self.model.redeemed), pick, stale), share)

    def _pick(self, transfers: list[uuid.UUID], pick: int, stale: bool) -> uuid.UUID:
        """Mostly a transfer not fully reversed yet; with `stale`, any of them."""
        open_ = [t for t in transfers if self.model.reversed[t] < self.model.points[t]]
        choices = open_ if open_ and not stale else transfers
        return choices[pick % len(choices)]

    def reverse(self, transfer_id: uuid.UUID, share: int | None) -> None:
        """Reverse all (share None) or a share of what is left, sometimes more than that."""
        left = self.model.points[transfer_id] - self.model.reversed[transfer_id]
        points = None if share is None else portion(left, share)
        expected = None
        if left <= 0:
            expected = ErrorCode.ALREADY_REVERSED
        elif points is not None and points > left:
            expected = ErrorCode.INVALID_AMOUNT
        partner = self.pid(self.model.owner[transfer_id])
        event(f"reverse: {expected}")
        outcome = self.attempt(h.reverse(self.engine, partner, transfer_id, points), expected)
        if outcome is not None:
            assert outcome.points == (points or left)
            self.model.reverse(transfer_id, points or left)

    @rule(
        partner=st.integers(0, 2),
        share=SHARE,
        then=st.sampled_from([None, "capture", "capture part", "void"]),
    )
    def hold(self, partner: int, share: int, then: str | None) -> None:
        """A hold, sometimes resolved at once (the capture and void rules do it later)."""
        points = portion(self.spendable(), share)
        enough = self.spendable() >= points
        outcome = self.attempt(
            h.hold(self.engine, self.pid(partner), self.member, points),
            None if enough else ErrorCode.INSUFFICIENT_POINTS,
        )
        if outcome is None:
            return
        hold_id = uuid.UUID(outcome.hold_id)
        self.model.holds[hold_id] = Hold(partner, points)
        self.hold_ids.append(hold_id)
        if then == "void":
            self._void(hold_id)
        elif then is not None:
            self._capture(hold_id, (points + 1) // 2 if then == "capture part" else None)

    def _hold(self, pick: int, stale: bool) -> uuid.UUID:
        """Mostly an active hold; with `stale`, any of them."""
        active = [k for k in self.hold_ids if self.model.holds[k].status == "ACTIVE"]
        choices = active if active and not stale else self.hold_ids
        return choices[pick % len(choices)]

    @precondition(lambda self: self.hold_ids)
    @rule(pick=PICK, stale=STALE, share=st.none() | SHARE)
    def capture(self, pick: int, stale: bool, share: int | None) -> None:
        hold_id = self._hold(pick, stale)
        points = None if share is None else portion(self.model.holds[hold_id].points, share)
        self._capture(hold_id, points)

    def _capture(self, hold_id: uuid.UUID, points: int | None) -> None:
        hold = self.model.holds[hold_id]
        wanted = hold.points if points is None else points
        expected = None
        if hold.status != "ACTIVE":
            expected = ErrorCode.HOLD_NOT_ACTIVE
        elif wanted > hold.points:
            expected = ErrorCode.INVALID_AMOUNT
        elif self.model.available() - self.model.held(excluding=hold_id) < wanted:
            expected = ErrorCode.INSUFFICIENT_POINTS
        event(f"capture: {expected}")
        outcome = self.attempt(
            h.capture(self.engine, self.pid(hold.partner), hold_id, points), expected
        )
        if outcome is not None:
            assert outcome.transfer_id is not None
            transfer_id = uuid.UUID(outcome.transfer_id)
            hold.status = "CAPTURED"
            self.model.redeem(transfer_id, hold.partner, wanted)

    @precondition(lambda self: self.hold_ids)
    @rule(pick=PICK, stale=STALE)
    def void(self, pick: int, stale: bool) -> None:
        self._void(self._hold(pick, stale))

    def _void(self, hold_id: uuid.UUID) -> None:
        hold = self.model.holds[hold_id]
        expected = None if hold.status == "ACTIVE" else ErrorCode.HOLD_NOT_ACTIVE
        if self.attempt(h.void(self.engine, self.pid(hold.partner), hold_id), expected):
            hold.status = "VOIDED"

    @precondition(lambda self: any(not x.spendable for x in self.model.live()))
    @rule(pick=PICK)
    def mature(self, pick: int) -> None:
        """The return window of a pending lot passes (test setup by SQL)."""
        pending = [x for x in self.model.live() if not x.spendable]
        lot = pending[pick % len(pending)]
        self.run(
            self._sql(
                "UPDATE lots SET available_at = now() - interval '1 second' WHERE id = :l", l=lot.id
            )
        )
        lot.spendable = True

    @precondition(lambda self: any(x.remaining for x in self.model.lots.values()))
    @rule(picks=st.lists(PICK, min_size=1, max_size=2))
    def expire(self, picks: list[int]) -> None:
        """Some lots pass their expiry (test setup by SQL), then the member's expiry runs."""
        lots = [x for x in self.model.lots.values() if not x.expired and x.remaining]
        chosen = {lots[p % len(lots)].id for p in picks} if lots else set()
        if chosen:
            self.run(self._make_due(list(chosen)))
        expected = self.model.expire()
        event(f"expiry: {'points' if expected else 'nothing'}")
        self.run(self._expire_and_check(expected))

    async def _sql(self, sql: str, **params: Any) -> None:
        async with self.engine.begin() as c:
            await c.execute(text(sql), params)

    async def _make_due(self, chosen: list[uuid.UUID]) -> None:
        async with self.engine.begin() as c:
            await h.make_due(c, chosen)
            rows = await c.execute(
                text("SELECT id, expires_at FROM lots WHERE id = ANY(:ids)"), {"ids": chosen}
            )
            for row in rows:
                lot = self.model.lots[row.id]
                lot.expires_at, lot.expired, lot.spendable = row.expires_at, True, True

    async def _expire_and_check(self, expected: int) -> None:
        async with self.engine.begin() as c:
            assert await expire_member(c, self.member) == expected

    @invariant()
    def ledger_agrees_with_model(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        async with self.engine.connect() as c:
            await h.assert_invariants(c, [self.member])
            lots = dict(
                (
                    await c.execute(
                        text("SELECT id, remaining FROM lots WHERE member_id = :m"),
                        {"m": self.member},
                    )
                ).all()
            )
            assert lots == {i: x.remaining for i, x in self.model.lots.items()}
            bal = await queries.balance(c, self.member)
            assert (bal.available, bal.pending, bal.held, bal.debt) == self.model.balance()
            reversed_points = dict(
                (
                    await c.execute(
                        text(
                            "SELECT reversal_of_id, sum(points) FROM transfers WHERE member_id = :m"
                            " AND code = 'REVERSAL' GROUP BY reversal_of_id"
                        ),
                        {"m": self.member},
                    )
                ).all()
            )
            assert reversed_points == {k: v for k, v in self.model.reversed.items() if v}
            statuses = dict(
                (
                    await c.execute(
                        text("SELECT id, status FROM holds WHERE member_id = :m"),
                        {"m": self.member},
                    )
                ).all()
            )
            assert statuses == {k: x.status for k, x in self.model.holds.items()}


def test_ledger_matches_its_model(database_url: str) -> None:
    loop = Loop()
    engine = create_engine(database_url, pool_size=2)
    try:
        LedgerMachine.loop = loop
        LedgerMachine.engine = engine
        LedgerMachine.partners = [
            loop.run(
                make_partner(engine, earn_rate=rate, pending_days=days, points_validity_days=valid)
            )
            for rate, days, valid in PARTNERS
        ]
        run_state_machine_as_test(
            LedgerMachine,
            settings=settings(
                max_examples=50,
                stateful_step_count=20,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        loop.run(engine.dispose())
        loop.close()
