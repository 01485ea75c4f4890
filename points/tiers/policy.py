"""The coalition's tier policy: versioned, validated, audited, and read cheaply on every earn.

Setting a policy appends a version (`tier_policies`, `tier_policy_tiers`) and bumps
`coalition_settings.tiers_revision` in the same transaction. Readers keep every version in
process memory keyed by that revision: an earn whose preflight reads `coalition_settings s`
selects `s.tiers_revision` and calls `policy_in_force(conn, revision, occurred_at)`, which
costs no query while the revision is the cached one (without the revision: one primary-key
read). Every process reloads at its next read after a change (the revision is in the
database, so all processes agree). A version is in force from its `effective_at` (when it was
set) until the next one: a purchase replayed later is priced with the version of its time.

Rules (refused with INVALID_TIER_POLICY, or INVALID_FUNDING for the funding, nothing saved):

- 0 to 20 tiers; codes 1 to 32 letters, digits, `_` or `-`, unique (case-sensitive: CEL
  conditions compare them as written); names 1 to 100 characters;
- thresholds (qualifying points within the window) whole numbers, the first ≥ 0, strictly
  ascending (the order given is the order of the tiers, lowest first);
- multipliers from 1 to 10, at most 6 decimals. A tier multiplies the base points of a
  purchase: the engine adds base × (multiplier − 1). Below 1 would take points away from the
  best customers, so it is refused (1 is a tier with benefits but no extra points);
- window 1 to 1096 days (three years and a leap day); grace 0 to 1096 days;
- funding: empty (the partner where the purchase happens pays the tier bonus) or shares above 0
  and at most 1, at most 6 decimals, summing to exactly 1, each funder a partner or the
  operator (null), none named twice.

An empty list of tiers switches tiers off: members lose theirs at their next event or at the
next daily evaluation (reason POLICY). A new policy applies to members lazily: see
`points.tiers.evaluation`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit
from core.errors import DomainError, ErrorCode
from points.rules.model import FundingShare, TierPolicyRule, TierRule

MAX_TIERS = 20
MAX_CODE_LENGTH = 32
MAX_NAME_LENGTH = 100
MAX_THRESHOLD = 1_000_000_000  # fits GraphQL's Int
MIN_MULTIPLIER = Decimal(1)
MAX_MULTIPLIER = Decimal(10)
MAX_DECIMALS = 6
MAX_WINDOW_DAYS = 1096
MAX_GRACE_DAYS = 1096
_CODE = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class StoredTierPolicy:
    """A policy version as stored: the rule the engine reads, and when and by whom it was set."""

    version: int
    effective_at: datetime
    created_by: str
    rule: TierPolicyRule

    def index(self, code: str | None) -> int | None:
        """The tier's position (0 = lowest), or None for no tier or a code not in the policy."""
        return tier_index(self.rule, code)

    def tier(self, code: str | None) -> TierRule | None:
        found = self.index(code)
        return None if found is None else self.rule.tiers[found]


def tier_index(rule: TierPolicyRule, code: str | None) -> int | None:
    if not code:
        return None
    for position, tier in enumerate(rule.tiers):
        if tier.code == code:
            return position
    return None


def qualifying_tier(rule: TierPolicyRule, points: int) -> int | None:
    """The highest tier `points` qualify for (its position), or None."""
    found: int | None = None
    for position, tier in enumerate(rule.tiers):
        if points >= tier.threshold:
            found = position
    return found


# ---- validation ------------------------------------------------------------------------------


def _refuse(message: str, *field: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_TIER_POLICY, message, list(field))


def _decimals(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def check_rule(rule: TierPolicyRule) -> None:
    """Everything a policy must satisfy that needs no database (funders' existence aside)."""
    if not 1 <= rule.window_days <= MAX_WINDOW_DAYS:
        raise _refuse(f"windowDays must be 1 to {MAX_WINDOW_DAYS}", "windowDays")
    if not 0 <= rule.grace_days <= MAX_GRACE_DAYS:
        raise _refuse(f"graceDays must be 0 to {MAX_GRACE_DAYS}", "graceDays")
    if len(rule.tiers) > MAX_TIERS:
        raise _refuse(f"at most {MAX_TIERS} tiers", "tiers")
    seen: set[str] = set()
    previous: int | None = None
    for n, tier in enumerate(rule.tiers):
        at = ("tiers", str(n))
        if not 1 <= len(tier.code) <= MAX_CODE_LENGTH or not _CODE.fullmatch(tier.code):
            raise _refuse(
                f"a tier code is 1 to {MAX_CODE_LENGTH} letters, digits, '_' or '-'",
                *at,
                "code",
            )
        if tier.code in seen:
            raise _refuse(f"tier code {tier.code!r} is given twice", *at, "code")
        seen.add(tier.code)
        if not tier.name.strip() or len(tier.name) > MAX_NAME_LENGTH or "\x00" in tier.name:
            raise _refuse(f"a tier name is 1 to {MAX_NAME_LENGTH} characters", *at, "name")
        if not 0 <= tier.threshold <= MAX_THRESHOLD:
            raise _refuse(f"a threshold is 0 to {MAX_THRESHOLD} points", *at, "threshold")
        if previous is not None and tier.threshold <= previous:
            raise _refuse(
                "thresholds must be strictly ascending (lowest tier first)", *at, "threshold"
            )
        previous = tier.threshold
        m = tier.multiplier
        if not m.is_finite() or not MIN_MULTIPLIER <= m <= MAX_MULTIPLIER:
            raise _refuse(
                f"a multiplier is {MIN_MULTIPLIER} to {MAX_MULTIPLIER} (1: no extra points;"
                " below 1 would take points away)",
                *at,
                "multiplier",
            )
        if _decimals(m) > MAX_DECIMALS:
            raise _refuse(f"a multiplier has at most {MAX_DECIMALS} decimals", *at, "multiplier")
    check_funding_shares(rule.funding)


def _refuse_funding(message: str, *field: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_FUNDING, message, list(field))


def check_funding_shares(funding: Sequence[FundingShare]) -> None:
    funders: set[uuid.UUID | None] = set()
    total = Decimal(0)
    for n, share in enumerate(funding):
        at = ("funding", str(n))
        if not share.share.is_finite() or not 0 < share.share <= 1:
            raise _refuse_funding("a share is above 0 and at most 1", *at, "share")
        if _decimals(share.share) > MAX_DECIMALS:
            raise _refuse_funding(f"a share has at most {MAX_DECIMALS} decimals", *at, "share")
        if share.funder in funders:
            raise _refuse_funding("a funder is named twice", *at, "partnerId")
        funders.add(share.funder)
        total += share.share
    if funding and total != 1:
        raise _refuse_funding(f"the shares add up to {total}, not exactly 1", "funding")


async def _check_funders(conn: AsyncConnection, funding: Sequence[FundingShare]) -> None:
    wanted = [s.funder for s in funding if s.funder is not None]
    if not wanted:
        return
    rows = await conn.execute(
        text("SELECT id FROM partners WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": wanted}
    )
    known = {r.id for r in rows}
    for n, share in enumerate(funding):
        if share.funder is not None and share.funder not in known:
            raise _refuse_funding("no partner has this id", "funding", str(n), "partnerId")


# ---- writing ---------------------------------------------------------------------------------

_BUMP = text(
    "UPDATE coalition_settings SET tiers_revision = tiers_revision + 1, updated_at = now()"
    " WHERE id = 1 RETURNING tiers_revision"
)
_INSERT_POLICY = text(
    "INSERT INTO tier_policies (version, window_days, grace_days, funding, created_by)"
    " SELECT COALESCE(max(version), 0) + 1, :window, :grace, :funding, :by FROM tier_policies"
    " RETURNING version, effective_at"
).bindparams(bindparam("funding", type_=JSONB))
_INSERT_TIERS = text(
    "INSERT INTO tier_policy_tiers (policy_version, position, code, name, threshold, multiplier)"
    " SELECT :version, t.position - 1, t.code, t.name, t.threshold, t.multiplier"
    " FROM unnest(CAST(:codes AS text[]), CAST(:names AS text[]), CAST(:thresholds AS bigint[]),"
    "  CAST(:multipliers AS numeric[])) WITH ORDINALITY"
    "  AS t(code, name, threshold, multiplier, position)"
)


def _funding_json(funding: Sequence[FundingShare]) -> list[dict[str, Any]]:
    return [
        {"partner_id": None if s.funder is None else str(s.funder), "share": str(s.share)}
        for s in funding
    ]


async def set_tier_policy(
    conn: AsyncConnection,
    *,
    actor: str,
    window_days: int,
    grace_days: int,
    tiers: Sequence[TierRule],
    funding: Sequence[FundingShare] = (),
) -> StoredTierPolicy:
    """Validate and store a new version of the policy, in force from now; audited as a change
    of the coalition's settings. Members move to it lazily (`points.tiers.evaluation`)."""
    rule = TierPolicyRule(
        window_days=window_days,
        tiers=tuple(tiers),
        funding=tuple(funding),
        grace_days=grace_days,
    )
    check_rule(rule)
    await _check_funders(conn, rule.funding)
    # The settings row lock serialises concurrent policy changes (versions stay gapless).
    await conn.execute(_BUMP)
    row = (
        await conn.execute(
            _INSERT_POLICY,
            {
                "window": window_days,
                "grace": grace_days,
                "funding": _funding_json(rule.funding),
                "by": actor,
            },
        )
    ).one()
    if rule.tiers:
        await conn.execute(
            _INSERT_TIERS,
            {
                "version": row.version,
                "codes": [t.code for t in rule.tiers],
                "names": [t.name for t in rule.tiers],
                "thresholds": [t.threshold for t in rule.tiers],
                "multipliers": [t.multiplier for t in rule.tiers],
            },
        )
    stored = StoredTierPolicy(
        version=row.version, effective_at=row.effective_at, created_by=actor, rule=rule
    )
    await audit.record(
        conn,
        actor,
        audit.AuditAction.COALITION_SETTINGS_UPDATED,
        "CoalitionSettings",
        None,
        {"tierPolicy": policy_details(stored)},
    )
    return stored


def policy_details(policy: StoredTierPolicy) -> dict[str, Any]:
    """The policy as plain data (the audit log's details, the CLI's JSON)."""
    return {
        "version": policy.version,
        "windowDays": policy.rule.window_days,
        "graceDays": policy.rule.grace_days,
        "tiers": [
            {"code": t.code, "name": t.name, "threshold": t.threshold, "multiplier": t.multiplier}
            for t in policy.rule.tiers
        ],
        "funding": [{"partnerId": s.funder, "share": s.share} for s in policy.rule.funding],
    }


# ---- reading, cached by revision -------------------------------------------------------------

_REVISION = text("SELECT tiers_revision FROM coalition_settings WHERE id = 1")
# Every version (a policy changes a few times a year: the whole history is small), oldest first.
_LOAD = text(
    """
    SELECT s.tiers_revision, p.version, p.effective_at, p.window_days, p.grace_days, p.funding,
           p.created_by,
           (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                     'code', t.code, 'name', t.name, 'threshold', t.threshold,
                     'multiplier', t.multiplier::text) ORDER BY t.position), '[]')
            FROM tier_policy_tiers t WHERE t.policy_version = p.version) AS tiers
    FROM coalition_settings s LEFT JOIN tier_policies p ON true
    WHERE s.id = 1
    ORDER BY p.version
    """
)

# Per database (tests open several in one process): (revision, every version, oldest first).
_cache: dict[str, tuple[int, tuple[StoredTierPolicy, ...]]] = {}


def _database(conn: AsyncConnection) -> str:
    return str(conn.engine.url)


def _parse(row: Any) -> StoredTierPolicy:
    tiers = tuple(
        TierRule(
            code=t["code"],
            name=t["name"],
            threshold=int(t["threshold"]),
            multiplier=_plain(Decimal(t["multiplier"])),
        )
        for t in row.tiers
    )
    funding = tuple(
        FundingShare(
            funder=None if f["partner_id"] is None else uuid.UUID(f["partner_id"]),
            share=Decimal(f["share"]),
        )
        for f in row.funding
    )
    return StoredTierPolicy(
        version=row.version,
        effective_at=row.effective_at,
        created_by=row.created_by,
        rule=TierPolicyRule(
            window_days=row.window_days, tiers=tiers, funding=funding, grace_days=row.grace_days
        ),
    )


def _plain(value: Decimal) -> Decimal:
    """Without the column's trailing zeros ("1.500000" is 1.5, "2.000000" is 2)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


async def _versions(conn: AsyncConnection, revision: int | None) -> tuple[StoredTierPolicy, ...]:
    """Every version, from the cache while `revision` (read now when None) is the cached one."""
    if revision is None:
        revision = int(await conn.scalar(_REVISION) or 0)
    cached = _cache.get(_database(conn))
    if cached is not None and cached[0] == revision:
        return cached[1]
    rows = (await conn.execute(_LOAD)).all()
    versions = tuple(_parse(r) for r in rows if r.version is not None)
    _cache[_database(conn)] = (int(rows[0].tiers_revision), versions)
    return versions


async def policy_versions(conn: AsyncConnection, limit: int) -> list[StoredTierPolicy]:
    """The latest `limit` versions, newest first (the console's history)."""
    return list(reversed(await _versions(conn, None)))[:limit]


def _at(versions: tuple[StoredTierPolicy, ...], at: datetime | None) -> StoredTierPolicy | None:
    if at is None:
        return versions[-1] if versions else None
    in_force = [v for v in versions if v.effective_at <= at]
    return in_force[-1] if in_force else None


async def current_policy(
    conn: AsyncConnection, revision: int | None = None, at: datetime | None = None
) -> StoredTierPolicy | None:
    """The policy version in force (at `at`, default now), or None when none was (or no policy
    was ever set). `revision`: `coalition_settings.tiers_revision` as the caller just read it
    (an earn's preflight selects `s.tiers_revision`); then no query at all while it is the
    cached one. Without it, one primary-key read."""
    return _at(await _versions(conn, revision), at)


async def policy_in_force(
    conn: AsyncConnection, revision: int | None = None, at: datetime | None = None
) -> TierPolicyRule | None:
    """The engine's rule of the policy in force (at `at`: a replayed purchase is priced with
    the version in force when it happened); see `current_policy`."""
    stored = await current_policy(conn, revision, at)
    return None if stored is None else stored.rule


async def policy_for_revision(conn: AsyncConnection, revision: int) -> TierPolicyRule | None:
    """The rule in force now, given the revision the caller just read (no query when cached)."""
    return await policy_in_force(conn, revision)
