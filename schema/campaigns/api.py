"""Campaign queries and mutations: thin over points.campaigns (which checks, versions and
audits every change)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Scope
from core.errors import DomainError
from points.campaigns import queries, service
from points.campaigns.records import CampaignRecord
from points.campaigns.validation import CampaignSpec
from points.rules.model import CampaignStatus, Effect, FundingShare, LimitPeriod
from schema.campaigns.types import Campaign, CampaignStatusEnum, LimitPeriodEnum
from schema.context import Info
from schema.errors import UserError, query_error
from schema.mutation import Request, in_transaction
from schema.permissions import requires
from schema.relay import (
    After,
    Connection,
    First,
    connection,
    decode_cursor,
    from_global_id,
    page_size,
)

SCOPE = Scope.CAMPAIGNS_WRITE


@strawberry.input(
    description="What a matching purchase gets: any of a multiplier, bonus points and points"
    " per unit (they add up), optionally only for some lines. It must give something."
)
class CampaignEffectInput:
    multiplier: Decimal | None = strawberry.field(
        default=None,
        description='A multiplier on the base points of the qualifying amount ("2" doubles'
        " them): 1 to 100, at most 6 decimals (1 gives nothing extra).",
    )
    bonus_points: int | None = strawberry.field(
        default=None, description="Fixed points per matching purchase: 0 to 1000000000."
    )
    points_per_unit: Decimal | None = strawberry.field(
        default=None,
        description='Extra points per currency unit of the qualifying amount ("0.5"): 0 to'
        " 1000000, at most 6 decimals.",
    )
    categories: list[str] | None = strawberry.field(
        default=None,
        description="Only lines in these categories count (with `skus`: lines matching"
        " either); default: the whole purchase.",
    )
    skus: list[str] | None = strawberry.field(
        default=None,
        description="Only lines with these skus count (with `categories`: lines matching"
        " either); default: the whole purchase.",
    )


@strawberry.input(description="One funder's share of a campaign's points.")
class FundingShareInput:
    share: Decimal = strawberry.field(
        description='Above 0 and at most 1, at most 6 decimals ("0.5"); the shares of a'
        " campaign add up to exactly 1."
    )
    partner_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The paying partner's global id; null: the coalition operator pays.",
    )


_NAME = "A name for people and explanations (1 to 200 characters)."
_STARTS_AT = "From when purchases qualify (inclusive); default: now."
_ENDS_AT = "Until when purchases qualify (exclusive), after `startsAt`; default: no end."
_PARTNER_IDS = (
    "The partners (global ids) where it applies; default: every partner. A partner's client"
    " may name only itself (its campaigns apply only there)."
)
_STORE_IDS = "The partners' store ids where it applies; default: every store."
_CHANNELS = "The channels (`online`, `store`, `app`, ...) where it applies; default: every one."
_TIERS = "The member tier codes it targets; default: every member."
_CONDITION = (
    'A CEL expression a purchase must meet (default "true"), such as `purchase.amount >='
    " 1000.0 && purchase.weekday >= 6`; variables: purchase.amount (double),"
    " purchase.categories, purchase.skus, purchase.local_hour, purchase.weekday (1 = Monday),"
    " purchase.channel, purchase.store, member.tier, member.purchases, partner.slug. One that"
    " does not compile is refused with INVALID_CONDITION and the compiler's message."
)
_EFFECT = "What a matching purchase gets."
_FUNDING = (
    "Who pays, in shares adding up to exactly 1; default: the partner where the purchase"
    " happens. A partner's client may name only itself."
)
_PRIORITY = "Campaigns apply in priority order, highest first (-1000000 to 1000000; default 0)."
_EXCLUSIVE = "When it applies, campaigns after it (lower priority) do not (default false)."
_MAX_POINTS = "The most points it gives one purchase (at least 1); default: no cap."
_MEMBER_LIMIT = "The most points it gives one member per `limitPeriod` (at least 1); default: none."
_LIMIT_PERIOD = "The period `perMemberLimit` counts over (default CAMPAIGN: its whole life)."
_BUDGET = (
    "The most points it gives in total (at least 1), never overspent; default: no budget."
    " Changing it later adds or takes away the difference from what is left."
)


@strawberry.input(
    description="A new campaign. The operator's applies coalition-wide (or at `partnerIds`);"
    " a partner's client's applies only at that partner and is funded only by it."
)
class CreateCampaignInput:
    name: str = strawberry.field(description=_NAME)
    effect: CampaignEffectInput = strawberry.field(description=_EFFECT)
    starts_at: datetime | None = strawberry.field(default=None, description=_STARTS_AT)
    ends_at: datetime | None = strawberry.field(default=None, description=_ENDS_AT)
    partner_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description=_PARTNER_IDS
    )
    store_ids: list[str] | None = strawberry.field(default=None, description=_STORE_IDS)
    channels: list[str] | None = strawberry.field(default=None, description=_CHANNELS)
    tiers: list[str] | None = strawberry.field(default=None, description=_TIERS)
    condition: str | None = strawberry.field(default="true", description=_CONDITION)
    funding: list[FundingShareInput] | None = strawberry.field(default=None, description=_FUNDING)
    priority: int | None = strawberry.field(default=0, description=_PRIORITY)
    exclusive: bool | None = strawberry.field(default=False, description=_EXCLUSIVE)
    max_points_per_purchase: int | None = strawberry.field(default=None, description=_MAX_POINTS)
    per_member_limit: int | None = strawberry.field(default=None, description=_MEMBER_LIMIT)
    limit_period: LimitPeriodEnum | None = strawberry.field(  # type: ignore[valid-type]
        default=LimitPeriod.CAMPAIGN, description=_LIMIT_PERIOD
    )
    budget_points: int | None = strawberry.field(default=None, description=_BUDGET)
    draft: bool | None = strawberry.field(
        default=False,
        description="Create it as a DRAFT that gives nothing until `resumeCampaign` starts it"
        " (default false: ACTIVE from `startsAt`).",
    )


_KEEP = " Left out: unchanged; null: back to the default."


@strawberry.input(
    description="Changes to a DRAFT, ACTIVE or PAUSED campaign, saved as a new version that"
    " takes force now (purchases that happened before keep the version then in force)."
    " Only the fields given change; null puts a field back to its default (as when created)."
)
class UpdateCampaignInput:
    id: strawberry.ID = strawberry.field(description="The campaign's global id.")
    name: str | None = strawberry.field(default=strawberry.UNSET, description=_NAME)
    effect: CampaignEffectInput | None = strawberry.field(
        default=strawberry.UNSET, description=_EFFECT + " Replaces the whole effect."
    )
    starts_at: datetime | None = strawberry.field(
        default=strawberry.UNSET, description=_STARTS_AT + _KEEP
    )
    ends_at: datetime | None = strawberry.field(
        default=strawberry.UNSET, description=_ENDS_AT + _KEEP
    )
    partner_ids: list[strawberry.ID] | None = strawberry.field(
        default=strawberry.UNSET, description=_PARTNER_IDS + _KEEP
    )
    store_ids: list[str] | None = strawberry.field(
        default=strawberry.UNSET, description=_STORE_IDS + _KEEP
    )
    channels: list[str] | None = strawberry.field(
        default=strawberry.UNSET, description=_CHANNELS + _KEEP
    )
    tiers: list[str] | None = strawberry.field(default=strawberry.UNSET, description=_TIERS + _KEEP)
    condition: str | None = strawberry.field(
        default=strawberry.UNSET, description=_CONDITION + _KEEP
    )
    funding: list[FundingShareInput] | None = strawberry.field(
        default=strawberry.UNSET, description=_FUNDING + _KEEP
    )
    priority: int | None = strawberry.field(default=strawberry.UNSET, description=_PRIORITY + _KEEP)
    exclusive: bool | None = strawberry.field(
        default=strawberry.UNSET, description=_EXCLUSIVE + _KEEP
    )
    max_points_per_purchase: int | None = strawberry.field(
        default=strawberry.UNSET, description=_MAX_POINTS + _KEEP
    )
    per_member_limit: int | None = strawberry.field(
        default=strawberry.UNSET, description=_MEMBER_LIMIT + _KEEP
    )
    limit_period: LimitPeriodEnum | None = strawberry.field(  # type: ignore[valid-type]
        default=strawberry.UNSET, description=_LIMIT_PERIOD + _KEEP
    )
    budget_points: int | None = strawberry.field(
        default=strawberry.UNSET, description=_BUDGET + _KEEP
    )


@strawberry.input(description="The campaign to pause (it stops giving points until resumed).")
class PauseCampaignInput:
    id: strawberry.ID = strawberry.field(description="The campaign's global id.")


@strawberry.input(description="The DRAFT campaign to start, or the PAUSED one to resume.")
class ResumeCampaignInput:
    id: strawberry.ID = strawberry.field(description="The campaign's global id.")


@strawberry.input(description="The campaign to end for good.")
class EndCampaignInput:
    id: strawberry.ID = strawberry.field(description="The campaign's global id.")


@strawberry.input(description="The DRAFT or ENDED campaign to archive.")
class ArchiveCampaignInput:
    id: strawberry.ID = strawberry.field(description="The campaign's global id.")


@strawberry.type(description="The result of a campaign mutation.")
class CampaignPayload:
    campaign: Campaign | None = strawberry.field(
        description="The campaign as it stands after the change; null when refused."
    )
    errors: list[UserError] = strawberry.field(
        description="Why it was refused; empty when the change was saved (or there was"
        " nothing to change)."
    )


def _partner_ids(ids: list[strawberry.ID]) -> tuple[uuid.UUID, ...]:
    return tuple(
        from_global_id(raw, "Partner", ["partnerIds", str(i)])[1] for i, raw in enumerate(ids)
    )


def _funding(shares: list[FundingShareInput]) -> tuple[FundingShare, ...]:
    return tuple(
        FundingShare(
            funder=None
            if s.partner_id is None
            else from_global_id(s.partner_id, "Partner", ["funding", str(i), "partnerId"])[1],
            share=s.share,
        )
        for i, s in enumerate(shares)
    )


def _effect(e: CampaignEffectInput) -> Effect:
    return Effect(
        multiplier=e.multiplier,
        bonus_points=e.bonus_points,
        points_per_unit=e.points_per_unit,
        categories=tuple(e.categories or ()),
        skus=tuple(e.skus or ()),
    )


def _campaign_id(raw: strawberry.ID) -> uuid.UUID:
    return from_global_id(raw, "Campaign", ["id"])[1]


def _given(value: Any) -> bool:
    return value is not strawberry.UNSET


def _changes(input: UpdateCampaignInput) -> dict[str, Any]:
    """The fields the client sent, as CampaignSpec fields (None: back to the default)."""
    converters: dict[str, Callable[[Any], Any]] = {
        "partner_ids": _partner_ids,
        "funding": _funding,
        "effect": _effect,
        "store_ids": tuple,
        "channels": tuple,
        "tiers": tuple,
        "limit_period": LimitPeriod,
    }
    changes: dict[str, Any] = {}
    for name in (
        "name",
        "effect",
        "starts_at",
        "ends_at",
        "partner_ids",
        "store_ids",
        "channels",
        "tiers",
        "condition",
        "funding",
        "priority",
        "exclusive",
        "max_points_per_purchase",
        "per_member_limit",
        "limit_period",
        "budget_points",
    ):
        value = getattr(input, name)
        if not _given(value):
            continue
        convert = converters.get(name)
        changes[name] = value if value is None or convert is None else convert(value)
    return changes


def _spec(input: CreateCampaignInput) -> CampaignSpec:
    return CampaignSpec(
        name=input.name,
        effect=_effect(input.effect),
        starts_at=input.starts_at,
        ends_at=input.ends_at,
        partner_ids=_partner_ids(input.partner_ids or []),
        store_ids=tuple(input.store_ids or ()),
        channels=tuple(input.channels or ()),
        tiers=tuple(input.tiers or ()),
        condition="true" if input.condition is None else input.condition,
        funding=_funding(input.funding or []),
        priority=input.priority or 0,
        exclusive=bool(input.exclusive),
        max_points_per_purchase=input.max_points_per_purchase,
        per_member_limit=input.per_member_limit,
        limit_period=LimitPeriod(input.limit_period or LimitPeriod.CAMPAIGN),
        budget_points=input.budget_points,
    )


async def _run(
    info: Info, work: Callable[[AsyncConnection], Awaitable[CampaignRecord]]
) -> CampaignPayload:
    result = await in_transaction(info, work)
    if isinstance(result, DomainError):
        return CampaignPayload(campaign=None, errors=[UserError.of(result)])
    return CampaignPayload(campaign=Campaign.of(result), errors=[])


@strawberry.type
class CampaignQueries:
    @strawberry.field(
        description="Campaigns, newest first: every one for the operator, its own for a"
        " partner's client.",
        extensions=requires("campaigns", SCOPE),
    )
    async def campaigns(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        status: Annotated[
            CampaignStatusEnum | None,  # type: ignore[valid-type]
            strawberry.argument(description="Only campaigns in this status (default: all)."),
        ] = None,
    ) -> Connection[Campaign]:
        try:
            size = page_size(first)
            cursor = decode_cursor(after)
        except DomainError as exc:
            raise query_error(exc) from exc
        async with info.context.read() as conn:
            rows = await queries.list_campaigns(
                conn,
                info.context.caller,
                after=cursor,
                limit=size + 1,
                status=None if status is None else CampaignStatus(status),
            )
        return connection([Campaign.of(r) for r in rows], [r.id for r in rows], size, cursor)

    @strawberry.field(
        description="A campaign by its global id; null when missing or not the caller's"
        " (a partner's client sees its own partner's campaigns only).",
        extensions=requires("campaign", SCOPE),
    )
    async def campaign(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The campaign's global id.")],
    ) -> Campaign | None:
        try:
            campaign_id = _campaign_id(id)
        except DomainError as exc:
            raise query_error(exc) from exc
        async with info.context.read() as conn:
            found = await queries.get_campaign(conn, info.context.caller, campaign_id)
        return Campaign.of(found) if found else None


@strawberry.type
class CampaignMutations:
    @strawberry.mutation(
        description="Create a campaign (version 1): ACTIVE from `startsAt`, or a DRAFT. The"
        " operator's applies coalition-wide; a partner's client's (`campaigns:write`) applies"
        " only at that partner and is funded only by it.",
        extensions=requires("createCampaign", SCOPE),
    )
    async def create_campaign(
        self, info: Info, input: Request[CreateCampaignInput]
    ) -> CampaignPayload:
        async def work(conn: AsyncConnection) -> CampaignRecord:
            return await service.create_campaign(
                conn, info.context.caller, _spec(input), draft=bool(input.draft)
            )

        return await _run(info, work)

    @strawberry.mutation(
        description="Change a DRAFT, ACTIVE or PAUSED campaign: a new version in force from"
        " now (nothing changes, and no version is written, when nothing differs).",
        extensions=requires("updateCampaign", SCOPE),
    )
    async def update_campaign(
        self, info: Info, input: Request[UpdateCampaignInput]
    ) -> CampaignPayload:
        async def work(conn: AsyncConnection) -> CampaignRecord:
            return await service.update_campaign(
                conn, info.context.caller, _campaign_id(input.id), _changes(input)
            )

        return await _run(info, work)

    @strawberry.mutation(
        description="Pause an ACTIVE campaign (a new version): it gives nothing until resumed."
        " Pausing a PAUSED one changes nothing.",
        extensions=requires("pauseCampaign", SCOPE),
    )
    async def pause_campaign(
        self, info: Info, input: Request[PauseCampaignInput]
    ) -> CampaignPayload:
        async def work(conn: AsyncConnection) -> CampaignRecord:
            return await service.pause_campaign(conn, info.context.caller, _campaign_id(input.id))

        return await _run(info, work)

    @strawberry.mutation(
        description="Start a DRAFT campaign or resume a PAUSED one (a new version, ACTIVE)."
        " Resuming an ACTIVE one changes nothing.",
        extensions=requires("resumeCampaign", SCOPE),
    )
    async def resume_campaign(
        self, info: Info, input: Request[ResumeCampaignInput]
    ) -> CampaignPayload:
        async def work(conn: AsyncConnection) -> CampaignRecord:
            return await service.resume_campaign(conn, info.context.caller, _campaign_id(input.id))

        return await _run(info, work)

    @strawberry.mutation(
        description="End an ACTIVE or PAUSED campaign for good (a new version, ENDED): it"
        " gives nothing more and can no longer be changed.",
        extensions=requires("endCampaign", SCOPE),
    )
    async def end_campaign(self, info: Info, input: Request[EndCampaignInput]) -> CampaignPayload:
        async def work(conn: AsyncConnection) -> CampaignRecord:
            return await service.end_campaign(conn, info.context.caller, _campaign_id(input.id))

        return await _run(info, work)

    @strawberry.mutation(
        description="Archive a DRAFT or ENDED campaign (a new version, ARCHIVED): filed away,"
        " no longer changed. Purchases made while it was active keep its terms on replay.",
        extensions=requires("archiveCampaign", SCOPE),
    )
    async def archive_campaign(
        self, info: Info, input: Request[ArchiveCampaignInput]
    ) -> CampaignPayload:
        async def work(conn: AsyncConnection) -> CampaignRecord:
            return await service.archive_campaign(conn, info.context.caller, _campaign_id(input.id))

        return await _run(info, work)
