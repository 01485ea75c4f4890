"""Moving members between tiers: upgrades from the outbox, downgrades at the daily evaluation.

One rule (`decide`) for both, given the policy in force, the member's tier row and its
qualifying points now (`points.tiers.qualifying`):

- **upgrade** (UPGRADE) as soon as the member qualifies for a higher tier than its own: the
  `transfer.booked` consumer (`CONSUMER`) re-evaluates the member of every EARN, BONUS and
  REVERSAL it is handed, within seconds of the booking (and of every `member.enrolled` when
  the policy has a tier from 0 points);
- **grace**: a member found below its tier's threshold gets `below_since` (the first time it
  is found so, by either path); found at or above it again, `below_since` is cleared;
- **downgrade** (DOWNGRADE) only at the daily evaluation, once the member has stayed below for
  at least `grace_days` (`now >= below_since + grace_days`; with 0 days, at the first daily
  evaluation that finds it below), to the highest tier its qualifying points reach then (none
  if they reach none). The consumer never downgrades, so a refund alone never costs a tier
  at once; it only starts the grace period;
- **policy** (POLICY): a member whose tier code is no longer in the policy is moved, by
  either path, to the highest tier it qualifies for under the new policy, without grace (its
  tier no longer exists).

A new policy applies lazily: nothing is rewritten when it is set. Members move on their next
event (upgrades, and POLICY moves) and at the next daily evaluation, which sweeps every member
once after each policy change (not only those with a tier: a lowered threshold may qualify
members who earned nothing since) and otherwise only the members with a tier.

Every change writes, in the transaction that makes it, the `member_tiers` row, a history row
(`member_tier_changes`) and a `member.tier_changed` outbox event (payload: member_id, from, to
— tier codes, null for none —, reason, at, qualifying_points, policy_version). Evaluations of
one member are serialised by transaction-level advisory locks (one per bucket of members,
256 buckets by a hash of the id, taken in ascending order: a delivery of a thousand members
holds at most 256 locks of PostgreSQL's shared lock table, and never deadlocks another), so a
delivery and the daily run racing over the same member change it once. The
outbox receipts make a redelivered event a no-op; a re-evaluation of an unchanged member
writes no event either way.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.ids import new_id
from ledger import outbox
from ledger.outbox import MEMBER_ENROLLED, TRANSFER_BOOKED
from outbox.delivery import Consumer, Event
from points.tiers.policy import StoredTierPolicy, current_policy, qualifying_tier
from points.tiers.qualifying import qualifying_points_of

log = logging.getLogger("coalition.tiers")

MEMBER_TIER_CHANGED = "member.tier_changed"
"""Outbox event of a tier change. Payload: member_id, from, to (codes; null: none), reason
(UPGRADE, DOWNGRADE, POLICY), at, qualifying_points, policy_version."""

# Transfers whose booking may change a member's standing: earned points and their reversals.
EVALUATED_CODES = frozenset({"EARN", "BONUS", "REVERSAL"})

_MEMBER_LOCK_CLASS = 724_140  # pg_advisory_xact_lock(class, bucket): members' tiers
_LOCK_BUCKETS = 256
_RUN_LOCK = 724_140_001  # pg_try_advisory_lock: one daily evaluation at a time
DEFAULT_CHUNK = 500


class Reason(StrEnum):
    UPGRADE = "UPGRADE"
    DOWNGRADE = "DOWNGRADE"
    POLICY = "POLICY"


@dataclass(frozen=True)
class Decision:
    """The member's standing after an evaluation; `reason` None: its tier did not change."""

    tier: str | None
    reason: Reason | None
    below_since: datetime | None


def decide(
    policy: StoredTierPolicy,
    current: str | None,
    below_since: datetime | None,
    qualifying: int,
    now: datetime,
    *,
    may_downgrade: bool,
) -> Decision:
    """The rule of the module docstring, as a pure function."""
    rule = policy.rule
    reached = qualifying_tier(rule, qualifying)
    reached_code = None if reached is None else rule.tiers[reached].code
    if current is None:
        if reached is None:
            return Decision(None, None, None)
        return Decision(reached_code, Reason.UPGRADE, None)
    held = policy.index(current)
    if held is None:  # its tier left the policy: re-mapped at once, no grace
        return Decision(reached_code, Reason.POLICY, None)
    if reached is not None and reached > held:
        return Decision(reached_code, Reason.UPGRADE, None)
    if reached == held:
        return Decision(current, None, None)
    since = below_since or now
    if may_downgrade and now >= since + timedelta(days=rule.grace_days):
        return Decision(reached_code, Reason.DOWNGRADE, None)
    return Decision(current, None, since)


@dataclass
class Counts:
    members: int = 0
    upgraded: int = 0
    downgraded: int = 0
    remapped: int = 0  # POLICY
    in_grace: int = 0  # below their tier's threshold, not (yet) moved down
    changes: list[uuid.UUID] = field(default_factory=list)  # the events written

    def add(self, other: Counts) -> None:
        self.members += other.members
        self.upgraded += other.upgraded
        self.downgraded += other.downgraded
        self.remapped += other.remapped
        self.in_grace += other.in_grace
        self.changes.extend(other.changes)


def _lock_key(member_id: uuid.UUID) -> int:
    """The member's lock bucket (a hash of its id)."""
    return zlib.crc32(member_id.bytes) % _LOCK_BUCKETS


_LOCK_MEMBERS = text(
    "SELECT count(pg_advisory_xact_lock(:cls, k)) FROM unnest(CAST(:keys AS int[])) AS k"
)
_ROWS = text(
    "SELECT member_id, tier_code, since, below_since FROM member_tiers"
    " WHERE member_id = ANY(CAST(:ids AS uuid[]))"
)
_UPSERT = text(
    """
    INSERT INTO member_tiers AS mt (member_id, tier_code, since, qualifying_points, evaluated_at,
                                    below_since, policy_version)
    SELECT u.member_id, u.tier_code, u.since, u.points, :now, u.below_since, :version
    FROM unnest(CAST(:ids AS uuid[]), CAST(:codes AS text[]), CAST(:sinces AS timestamptz[]),
                CAST(:points AS bigint[]), CAST(:belows AS timestamptz[]))
         AS u(member_id, tier_code, since, points, below_since)
    ORDER BY u.member_id
    ON CONFLICT (member_id) DO UPDATE SET
      tier_code = EXCLUDED.tier_code, since = EXCLUDED.since,
      qualifying_points = EXCLUDED.qualifying_points, evaluated_at = EXCLUDED.evaluated_at,
      below_since = EXCLUDED.below_since, policy_version = EXCLUDED.policy_version
    """
)
_DELETE = text("DELETE FROM member_tiers WHERE member_id = ANY(CAST(:ids AS uuid[]))")
_HISTORY = text(
    """
    INSERT INTO member_tier_changes (id, member_id, from_tier, to_tier, reason,
                                     qualifying_points, policy_version, event_id, at)
    SELECT u.id, u.member_id, u.from_tier, u.to_tier, u.reason, u.points, :version, u.event_id,
           :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:members AS uuid[]), CAST(:froms AS text[]),
                CAST(:tos AS text[]), CAST(:reasons AS text[]), CAST(:points AS bigint[]),
                CAST(:events AS uuid[]))
         AS u(id, member_id, from_tier, to_tier, reason, points, event_id)
    """
)


async def evaluate_members(
    conn: AsyncConnection,
    policy: StoredTierPolicy,
    member_ids: Sequence[uuid.UUID],
    now: datetime,
    *,
    may_downgrade: bool,
) -> Counts:
    """Evaluate these members at `now` in the caller's transaction (see the module docstring)."""
    ids = sorted(set(member_ids))
    counts = Counts(members=len(ids))
    if not ids:
        return counts
    keys = sorted({_lock_key(m) for m in ids})
    await conn.execute(_LOCK_MEMBERS, {"cls": _MEMBER_LOCK_CLASS, "keys": keys})
    rows = {r.member_id: r for r in await conn.execute(_ROWS, {"ids": ids})}
    points = await qualifying_points_of(conn, ids, window_days=policy.rule.window_days, now=now)
    keep: list[tuple[uuid.UUID, str, datetime, int, datetime | None]] = []
    drop: list[uuid.UUID] = []
    changes: list[tuple[uuid.UUID, str | None, str | None, Reason, int]] = []
    for member_id in ids:
        row = rows.get(member_id)
        current = None if row is None else row.tier_code
        qualifying = points.get(member_id, 0)
        decision = decide(
            policy,
            current,
            None if row is None else row.below_since,
            qualifying,
            now,
            may_downgrade=may_downgrade,
        )
        if decision.reason is not None:
            changes.append((member_id, current, decision.tier, decision.reason, qualifying))
        elif decision.below_since is not None:
            counts.in_grace += 1
        if decision.tier is None:
            if row is not None:
                drop.append(member_id)
            continue
        since = now if decision.reason is not None or row is None else row.since
        keep.append((member_id, decision.tier, since, qualifying, decision.below_since))
    if keep:
        await conn.execute(
            _UPSERT,
            {
                "ids": [k[0] for k in keep],
                "codes": [k[1] for k in keep],
                "sinces": [k[2] for k in keep],
                "points": [k[3] for k in keep],
                "belows": [k[4] for k in keep],
                "now": now,
                "version": policy.version,
            },
        )
    if drop:
        await conn.execute(_DELETE, {"ids": drop})
    if changes:
        await _record_changes(conn, policy, changes, now, counts)
    return counts


async def _record_changes(
    conn: AsyncConnection,
    policy: StoredTierPolicy,
    changes: list[tuple[uuid.UUID, str | None, str | None, Reason, int]],
    now: datetime,
    counts: Counts,
) -> None:
    events: list[uuid.UUID] = []
    for member_id, before, after, reason, qualifying in changes:
        payload: dict[str, Any] = {
            "member_id": str(member_id),
            "from": before,
            "to": after,
            "reason": str(reason),
            "at": now.isoformat(),
            "qualifying_points": qualifying,
            "policy_version": policy.version,
        }
        events.append(
            await outbox.record(
                conn, MEMBER_TIER_CHANGED, partner_id=None, member_id=member_id, payload=payload
            )
        )
        if reason is Reason.UPGRADE:
            counts.upgraded += 1
        elif reason is Reason.DOWNGRADE:
            counts.downgraded += 1
        else:
            counts.remapped += 1
    await conn.execute(
        _HISTORY,
        {
            "ids": [new_id() for _ in changes],
            "members": [c[0] for c in changes],
            "froms": [c[1] for c in changes],
            "tos": [c[2] for c in changes],
            "reasons": [str(c[3]) for c in changes],
            "points": [c[4] for c in changes],
            "events": events,
            "now": now,
            "version": policy.version,
        },
    )
    counts.changes.extend(events)


async def _db_now(conn: AsyncConnection) -> datetime:
    found = await conn.scalar(text("SELECT now()"))
    assert isinstance(found, datetime)
    return found


# ---- the outbox consumer ---------------------------------------------------------------------


def _members_to_evaluate(events: Sequence[Event], policy: StoredTierPolicy) -> list[uuid.UUID]:
    from_zero = any(t.threshold == 0 for t in policy.rule.tiers)
    found: set[uuid.UUID] = set()
    for event in events:
        if event.member_id is None:
            continue
        earned = event.type == TRANSFER_BOOKED and event.payload.get("code") in EVALUATED_CODES
        enrolled = event.type == MEMBER_ENROLLED and from_zero
        if earned or enrolled:
            found.add(event.member_id)
    return sorted(found)


async def handle(conn: AsyncConnection, events: Sequence[Event]) -> None:
    """Re-evaluate the members of these events now: upgrades and POLICY moves, never a
    downgrade (a refund only starts the grace period)."""
    policy = await current_policy(conn)
    if policy is None:
        return
    members = _members_to_evaluate(events, policy)
    if members:
        await evaluate_members(conn, policy, members, await _db_now(conn), may_downgrade=False)


CONSUMER = Consumer(
    name="tiers", types=frozenset({TRANSFER_BOOKED, MEMBER_ENROLLED}), handle=handle
)


# ---- the daily evaluation --------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationReport:
    as_of: datetime
    policy_version: int | None  # None: no policy, nothing evaluated
    full_sweep: bool  # every member, not only those with a tier
    members: int
    upgraded: int
    downgraded: int
    remapped: int
    in_grace: int


_NEXT_WITH_TIER = text(
    "SELECT member_id AS id FROM member_tiers WHERE member_id > :after ORDER BY member_id LIMIT :n"
)
_NEXT_MEMBER = text("SELECT id FROM members WHERE id > :after ORDER BY id LIMIT :n")


async def evaluate_tiers(
    engine: AsyncEngine,
    *,
    now: datetime | None = None,
    members: Sequence[uuid.UUID] | None = None,
    full: bool = False,
    chunk: int = DEFAULT_CHUNK,
) -> EvaluationReport:
    """Evaluate members at `now` (default: the database's clock) with downgrades allowed: the
    given `members`, else every member when `full`, else every member with a tier; `chunk`
    members per transaction (a stopped run leaves finished chunks done, and can simply run
    again). Records no run (see `run_daily`)."""
    async with engine.connect() as conn:
        at = now or await _db_now(conn)
        policy = await current_policy(conn)
    total = Counts()
    if policy is None:
        return _report(at, None, full, total)
    after = uuid.UUID(int=0)
    given = sorted(set(members)) if members is not None else None
    while True:
        async with engine.begin() as conn:
            if given is not None:
                ids = [m for m in given if m > after][:chunk]
            else:
                query = _NEXT_MEMBER if full else _NEXT_WITH_TIER
                ids = [r.id for r in await conn.execute(query, {"after": after, "n": chunk})]
            if not ids:
                break
            policy = await current_policy(conn) or policy  # a change mid-run applies at once
            total.add(await evaluate_members(conn, policy, ids, at, may_downgrade=True))
        after = ids[-1]
    return _report(at, policy.version, full, total)


def _report(at: datetime, version: int | None, full: bool, c: Counts) -> EvaluationReport:
    return EvaluationReport(
        as_of=at,
        policy_version=version,
        full_sweep=full,
        members=c.members,
        upgraded=c.upgraded,
        downgraded=c.downgraded,
        remapped=c.remapped,
        in_grace=c.in_grace,
    )


_LAST_RUNS = text(
    "SELECT (SELECT max(as_of) FROM tier_evaluations) AS last_as_of,"
    " (SELECT max(policy_version) FROM tier_evaluations WHERE full_sweep) AS last_full"
)
_RECORD_RUN = text(
    "INSERT INTO tier_evaluations (id, as_of, policy_version, full_sweep, members, upgraded,"
    " downgraded, remapped, started_at)"
    " VALUES (:id, :as_of, :version, :full, :members, :upgraded, :downgraded, :remapped,"
    " :started)"
)


@contextlib.asynccontextmanager
async def _run_lock(engine: AsyncEngine) -> AsyncIterator[bool]:
    """A session-level lock held while one daily evaluation runs (released if the process
    dies: its connection closes)."""
    async with engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        taken = bool(await auto.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": _RUN_LOCK}))
        try:
            yield taken
        finally:
            if taken:
                await auto.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _RUN_LOCK})


async def run_daily(
    engine: AsyncEngine,
    *,
    now: datetime | None = None,
    force: bool = False,
    full: bool | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> EvaluationReport | None:
    """The daily evaluation, when due: no run yet on this UTC day, or the policy changed since
    the last sweep over every member (`force`: regardless). A sweep over every member runs
    after each policy change (`full` overrides). Returns None when not run: not due, another
    run holds the lock, or no policy. A run is recorded in `tier_evaluations`."""
    async with _run_lock(engine) as taken:
        if not taken:
            return None
        async with engine.connect() as conn:
            at = now or await _db_now(conn)
            policy = await current_policy(conn)
            last = (await conn.execute(_LAST_RUNS)).one()
        if policy is None:
            return None
        changed = last.last_full is None or last.last_full < policy.version
        ran_today = last.last_as_of is not None and (
            last.last_as_of.astimezone(UTC).date() >= at.astimezone(UTC).date()
        )
        if not (force or changed or not ran_today):
            return None
        started = datetime.now(UTC)
        report = await evaluate_tiers(
            engine, now=at, full=changed if full is None else full, chunk=chunk
        )
        if report.policy_version is not None:
            async with engine.begin() as conn:
                await conn.execute(
                    _RECORD_RUN,
                    {
                        "id": new_id(),
                        "as_of": at,
                        "version": report.policy_version,
                        "full": report.full_sweep,
                        "members": report.members,
                        "upgraded": report.upgraded,
                        "downgraded": report.downgraded,
                        "remapped": report.remapped,
                        "started": started,
                    },
                )
        log.info(
            "tier evaluation: %d members, %d up, %d down, %d re-mapped, %d in grace%s",
            report.members,
            report.upgraded,
            report.downgraded,
            report.remapped,
            report.in_grace,
            " (every member, after a policy change)" if report.full_sweep else "",
        )
        return report
