"""GraphQL types of campaigns: a campaign, its versions, effect and funding shares."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.dataloader import DataLoader

from points.campaigns import queries
from points.campaigns.records import CampaignRecord, CampaignVersionRecord
from points.rules.model import CampaignRule, CampaignStatus, Effect, FundingShare, LimitPeriod
from schema.context import Info
from schema.enums import described_enum
from schema.partners.types import Partner
from schema.relay import to_global_id

CampaignStatusEnum = described_enum(
    CampaignStatus,
    name="CampaignStatus",
    description="Where a campaign (or one of its versions) stands. Only an ACTIVE version"
    " gives points, and only within its schedule (`startsAt` to `endsAt`).",
    values={
        "DRAFT": "Being prepared: gives nothing until `resumeCampaign` starts it.",
        "ACTIVE": "Gives points to matching purchases within its schedule (reaching `endsAt`"
        " does not change the status).",
        "PAUSED": "Stopped for now: gives nothing until `resumeCampaign`.",
        "ENDED": "Stopped for good: gives nothing, can no longer be changed; can be archived.",
        "ARCHIVED": "Filed away: gives nothing, can no longer be changed.",
    },
)

LimitPeriodEnum = described_enum(
    LimitPeriod,
    name="LimitPeriod",
    description="The period a campaign's `perMemberLimit` counts over, in the coalition's time"
    " zone.",
    values={
        "DAY": "Each calendar day.",
        "WEEK": "Each week, Monday to Sunday.",
        "MONTH": "Each calendar month.",
        "CAMPAIGN": "The whole life of the campaign.",
    },
)


async def _partner(info: Info, partner_id: uuid.UUID | None) -> Partner | None:
    if partner_id is None:
        return None
    found = await info.context.partners.load(partner_id)
    return Partner.of(found) if found else None


@strawberry.type(
    description="What a matching purchase gets. Its parts add up; each counts the qualifying"
    " amount: the purchase amount, or with `categories`/`skus` the sum of the matching lines"
    " (no matching line: the campaign gives nothing)."
)
class CampaignEffect:
    multiplier: Decimal | None = strawberry.field(
        description="A multiplier on the base points of the qualifying amount: 2 doubles them"
        " (the extra is base × (multiplier − 1)); null: none."
    )
    bonus_points: int | None = strawberry.field(
        description="Fixed points per matching purchase; null: none."
    )
    points_per_unit: Decimal | None = strawberry.field(
        description="Extra points per currency unit of the qualifying amount; null: none."
    )
    categories: list[str] = strawberry.field(
        description="Only lines in these categories count (with `skus`: lines matching"
        " either); empty: the whole purchase."
    )
    skus: list[str] = strawberry.field(
        description="Only lines with these skus count (with `categories`: lines matching"
        " either); empty: the whole purchase."
    )

    @classmethod
    def of(cls, e: Effect) -> CampaignEffect:
        return cls(
            multiplier=e.multiplier,
            bonus_points=e.bonus_points,
            points_per_unit=e.points_per_unit,
            categories=list(e.categories),
            skus=list(e.skus),
        )


@strawberry.type(
    name="FundingShare",
    description="Who pays for a share of a campaign's points (they settle to this funder).",
)
class FundingShareType:
    share: Decimal = strawberry.field(
        description="The funder's part, above 0 and at most 1 (\"0.5\"); a campaign's shares"
        " add up to exactly 1. Points are split by the largest remainder, so they add up."
    )
    funder_id: strawberry.Private[uuid.UUID | None]

    @strawberry.field(description="The partner that pays; null for the coalition operator.")
    async def partner(self, info: Info) -> Partner | None:
        return await _partner(info, self.funder_id)

    @classmethod
    def of(cls, f: FundingShare) -> FundingShareType:
        return cls(share=f.share, funder_id=f.funder)


@strawberry.interface(description="What one version of a campaign says.")
class CampaignDefinition:
    rule: strawberry.Private[CampaignRule]

    @strawberry.field(description="The campaign's name, as shown in explanations.")
    def name(self) -> str:
        return self.rule.name

    @strawberry.field(
        description="The status this version set (on a Campaign: its current status)."
    )
    def status(self) -> CampaignStatusEnum:  # type: ignore[valid-type]
        return self.rule.status

    @strawberry.field(
        description="The version number, 1 when created and one more per change (on a"
        " Campaign: its current version)."
    )
    def version(self) -> int:
        return self.rule.version

    @strawberry.field(description="From when purchases qualify (inclusive).")
    def starts_at(self) -> datetime:
        return self.rule.starts_at

    @strawberry.field(description="Until when purchases qualify (exclusive); null: no end.")
    def ends_at(self) -> datetime | None:
        return self.rule.ends_at

    @strawberry.field(
        description="The partners where it applies; empty: every partner. A partner's own"
        " campaign applies only at that partner."
    )
    async def partners(self, info: Info) -> list[Partner]:
        found = [await _partner(info, p) for p in sorted(self.rule.partner_ids)]
        return [p for p in found if p is not None]

    @strawberry.field(description="The partners' store ids where it applies; empty: every store.")
    def store_ids(self) -> list[str]:
        return sorted(self.rule.store_ids)

    @strawberry.field(description="The channels where it applies; empty: every channel.")
    def channels(self) -> list[str]:
        return sorted(self.rule.channels)

    @strawberry.field(description="The member tiers (codes) it targets; empty: every member.")
    def tiers(self) -> list[str]:
        return sorted(self.rule.tiers)

    @strawberry.field(
        description='The CEL condition a purchase must meet ("true": every purchase), such as'
        " `purchase.amount >= 1000.0 && purchase.local_hour < 12`."
    )
    def condition(self) -> str:
        return self.rule.condition

    @strawberry.field(description="What a matching purchase gets.")
    def effect(self) -> CampaignEffect:
        return CampaignEffect.of(self.rule.effect)

    @strawberry.field(
        description="Who pays for the campaign's points, in shares adding up to 1; empty: the"
        " partner where the purchase happens pays."
    )
    def funding(self) -> list[FundingShareType]:
        return [FundingShareType.of(f) for f in self.rule.funding]

    @strawberry.field(description="Campaigns apply in priority order, highest first.")
    def priority(self) -> int:
        return self.rule.priority

    @strawberry.field(
        description="When it applies to a purchase, campaigns after it (lower priority) do not."
    )
    def exclusive(self) -> bool:
        return self.rule.exclusive

    @strawberry.field(description="The most points it gives one purchase; null: no cap.")
    def max_points_per_purchase(self) -> int | None:
        return self.rule.max_points_per_purchase

    @strawberry.field(
        description="The most points it gives one member per `limitPeriod`; null: no limit."
    )
    def per_member_limit(self) -> int | None:
        return self.rule.per_member_limit

    @strawberry.field(description="The period `perMemberLimit` counts over.")
    def limit_period(self) -> LimitPeriodEnum:  # type: ignore[valid-type]
        return self.rule.limit_period

    @strawberry.field(
        description="The most points it gives in total (never overspent); null: no budget."
    )
    def budget_points(self) -> int | None:
        return self.rule.budget_points


@strawberry.type(description="One version of a campaign: its definition from `effectiveAt` on.")
class CampaignVersion(CampaignDefinition):
    effective_at: datetime = strawberry.field(
        description="When this version took force: a purchase is judged by the version in"
        " force when it happened (`occurredAt`)."
    )
    changed_by: str = strawberry.field(
        description="Who made the change: the API client id (`staff:<email>` from the console)."
    )

    @classmethod
    def of(cls, r: CampaignVersionRecord) -> CampaignVersion:
        return cls(rule=r.rule, effective_at=r.effective_at, changed_by=r.changed_by)


@strawberry.type(
    description="A campaign: extra points for purchases that meet its targeting and"
    " condition, paid for by its funders. The fields show its current version; `versions`"
    " its history."
)
class Campaign(CampaignDefinition):
    id: strawberry.ID = strawberry.field(
        description="The campaign's global id (opaque, stable): pass it to `campaign(id:)` and"
        " to the campaign mutations."
    )
    created_at: datetime = strawberry.field(description="When the campaign was created.")
    created_by: str = strawberry.field(description="The API client id that created it.")
    budget_left: int | None = strawberry.field(
        description="What is left of the budget; null: no budget."
    )
    record: strawberry.Private[CampaignRecord]

    @classmethod
    def of(cls, r: CampaignRecord) -> Campaign:
        return cls(
            id=to_global_id("Campaign", r.id),
            rule=r.rule,
            created_at=r.created_at,
            created_by=r.created_by,
            budget_left=r.budget_left,
            record=r,
        )

    @strawberry.field(
        description="The partner that owns the campaign (it applies only there and it pays);"
        " null: a coalition-wide campaign of the operator."
    )
    async def owner(self, info: Info) -> Partner | None:
        return await _partner(info, self.record.owner_partner_id)

    @strawberry.field(description="When the current version took force.")
    def effective_at(self) -> datetime:
        return self.record.current.effective_at

    @strawberry.field(description="Every version, oldest first: what changed, when and by whom.")
    async def versions(self, info: Info) -> list[CampaignVersion]:
        loaders = info.context.loaders
        if "campaign_versions" not in loaders:

            async def batch(ids: list[uuid.UUID]) -> list[list[CampaignVersionRecord]]:
                async with info.context.read() as conn:
                    found = await queries.versions_of(conn, ids)
                return [found[i] for i in ids]

            loaders["campaign_versions"] = DataLoader(load_fn=batch)
        versions: list[CampaignVersionRecord] = await loaders["campaign_versions"].load(
            self.record.id
        )
        return [CampaignVersion.of(v) for v in versions]
