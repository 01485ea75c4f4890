"""GraphQL types of the coalition's tiers: the policy, a tier, a member's progress; and the
per-request loaders that give `Member.tier` and `Member.tierProgress` without N+1 reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import strawberry
from strawberry.dataloader import DataLoader

from points.rules.model import FundingShare, TierRule
from points.tiers.members import MemberTierRecord, member_tiers_of
from points.tiers.policy import StoredTierPolicy, current_policy
from points.tiers.qualifying import qualifying_points_of
from schema.context import Info
from schema.partners.types import Partner


@strawberry.type(
    description="A coalition tier (Bronze, Silver, Gold, ...): earned by qualifying points at"
    " all partners within the policy's window; it multiplies the base points of every purchase."
)
class Tier:
    code: str = strawberry.field(
        description='The tier\'s code, as campaign conditions see it (`member.tier == "GOLD"`).'
    )
    name: str = strawberry.field(description="The tier's name, for people.")
    threshold: int = strawberry.field(
        description="Qualifying points within the window that reach this tier."
    )
    multiplier: Decimal = strawberry.field(
        description="Multiplies a purchase's base points (1: no extra points; 1.5: half as many"
        " again, funded as the policy's `funding` says)."
    )

    @classmethod
    def of(cls, rule: TierRule) -> Tier:
        return cls(
            code=rule.code, name=rule.name, threshold=rule.threshold, multiplier=rule.multiplier
        )


@strawberry.type(description="A share of the extra points a tier gives, and who pays it.")
class TierFundingShare:
    operator: bool = strawberry.field(description="Whether the coalition operator pays it.")
    share: Decimal = strawberry.field(description="The share, above 0 and at most 1.")
    partner_id: strawberry.Private[uuid.UUID | None]

    @strawberry.field(description="The partner that pays it; null when the operator does.")
    async def partner(self, info: Info) -> Partner | None:
        if self.partner_id is None:
            return None
        found = await info.context.partners.load(self.partner_id)
        return Partner.of(found) if found else None

    @classmethod
    def of(cls, share: FundingShare) -> TierFundingShare:
        return cls(operator=share.funder is None, share=share.share, partner_id=share.funder)


@strawberry.type(
    description="The coalition's tier policy in force (a new version applies to members at"
    " their next purchase or refund and at the next daily evaluation)."
)
class TierPolicy:
    version: int = strawberry.field(description="The policy's version (1, 2, ...).")
    effective_at: datetime = strawberry.field(description="When this version was set.")
    window_days: int = strawberry.field(
        description="Qualifying points are those earned (EARN and bonus points, less their"
        " reversals) at all partners in the last `windowDays` days."
    )
    grace_days: int = strawberry.field(
        description="Days a member may stay below its tier's threshold before the daily"
        " evaluation moves it down (a refund alone never does it at once)."
    )
    tiers: list[Tier] = strawberry.field(description="The tiers, lowest threshold first.")
    funding: list[TierFundingShare] = strawberry.field(
        description="Who pays a tier's extra points: empty when the partner where the purchase"
        " happens pays them. A partner's client sees only its own share."
    )

    @classmethod
    def of(
        cls, policy: StoredTierPolicy, caller_partner: uuid.UUID | None, operator: bool
    ) -> TierPolicy:
        rule = policy.rule
        shares = [
            s
            for s in rule.funding
            if operator or (s.funder is not None and s.funder == caller_partner)
        ]
        return cls(
            version=policy.version,
            effective_at=policy.effective_at,
            window_days=rule.window_days,
            grace_days=rule.grace_days,
            tiers=[Tier.of(t) for t in rule.tiers],
            funding=[TierFundingShare.of(s) for s in shares],
        )


@strawberry.type(description="Where a member stands in the coalition's tiers.")
class TierProgress:
    qualifying_points: int = strawberry.field(
        description="Points earned at all partners within the window (less their reversals), now."
    )
    window_days: int = strawberry.field(description="The policy's rolling window, in days.")
    tier: Tier | None = strawberry.field(description="The member's tier; null when none.")
    next_tier: Tier | None = strawberry.field(
        description="The tier above the member's (the lowest when it has none); null at the top."
    )
    points_to_next: int | None = strawberry.field(
        description="Qualifying points still needed for `nextTier` (0: it qualifies and moves"
        " up within seconds); null at the top."
    )
    grace_ends_at: datetime | None = strawberry.field(
        description="When the member was found below its tier's threshold: when its grace"
        " period ends (from then the daily evaluation moves it down unless it has earned its"
        " way back); null otherwise."
    )


# ---- per-request loading ---------------------------------------------------------------------


async def tier_policy(info: Info) -> StoredTierPolicy | None:
    """The policy in force, read at most once per request (and cached across requests by
    its revision)."""
    loaders = info.context.loaders
    if "tier_policy" not in loaders:

        async def batch(keys: list[int]) -> list[StoredTierPolicy | None]:
            async with info.context.read() as conn:
                found = await current_policy(conn)
            return [found for _ in keys]

        loaders["tier_policy"] = DataLoader(load_fn=batch)
    found: StoredTierPolicy | None = await loaders["tier_policy"].load(1)
    return found


def member_tier_rows(info: Info) -> DataLoader[uuid.UUID, MemberTierRecord | None]:
    """Members' tier rows, one query per request whatever the number of members."""
    loaders = info.context.loaders
    if "member_tiers" not in loaders:

        async def batch(ids: list[uuid.UUID]) -> list[MemberTierRecord | None]:
            async with info.context.read() as conn:
                found = await member_tiers_of(conn, ids)
            return [found.get(i) for i in ids]

        loaders["member_tiers"] = DataLoader(load_fn=batch)
    loader: DataLoader[uuid.UUID, MemberTierRecord | None] = loaders["member_tiers"]
    return loader


def qualifying_points_loader(info: Info, window_days: int) -> DataLoader[uuid.UUID, int]:
    """Members' qualifying points now, one query per request."""
    loaders = info.context.loaders
    name = f"qualifying_points:{window_days}"
    if name not in loaders:

        async def batch(ids: list[uuid.UUID]) -> list[int]:
            async with info.context.read() as conn:
                found = await qualifying_points_of(
                    conn, ids, window_days=window_days, now=datetime.now(UTC)
                )
            return [found.get(i, 0) for i in ids]

        loaders[name] = DataLoader(load_fn=batch)
    loader: DataLoader[uuid.UUID, int] = loaders[name]
    return loader


async def member_tier_of(info: Info, member_id: uuid.UUID) -> Tier | None:
    """`Member.tier`: the member's tier in the policy in force (null when none, or while a
    tier just removed from the policy awaits the member's re-evaluation)."""
    policy = await tier_policy(info)
    if policy is None:
        return None
    row = await member_tier_rows(info).load(member_id)
    rule = policy.tier(row.tier_code) if row is not None else None
    return None if rule is None else Tier.of(rule)


async def tier_progress_of(info: Info, member_id: uuid.UUID) -> TierProgress | None:
    """`Member.tierProgress`; null when no tier policy is set."""
    policy = await tier_policy(info)
    if policy is None:
        return None
    rule = policy.rule
    row = await member_tier_rows(info).load(member_id)
    points = await qualifying_points_loader(info, rule.window_days).load(member_id)
    held = policy.index(row.tier_code) if row is not None else None
    above = 0 if held is None else held + 1
    upper = rule.tiers[above] if above < len(rule.tiers) else None
    grace_ends = None
    if row is not None and held is not None and row.below_since is not None:
        grace_ends = row.below_since + timedelta(days=rule.grace_days)
    return TierProgress(
        qualifying_points=points,
        window_days=rule.window_days,
        tier=None if held is None else Tier.of(rule.tiers[held]),
        next_tier=None if upper is None else Tier.of(upper),
        points_to_next=None if upper is None else max(0, upper.threshold - points),
        grace_ends_at=grace_ends,
    )
