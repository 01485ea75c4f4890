"""The tier policy: `tierPolicy` for every client, `setTierPolicy` for the operator."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Scope
from core.errors import DomainError
from points.rules.model import FundingShare, TierRule
from points.tiers.policy import set_tier_policy
from schema.context import Info
from schema.errors import UserError
from schema.mutation import Request, in_transaction
from schema.permissions import ANY_CLIENT, requires
from schema.relay import from_global_id
from schema.tiers.types import TierPolicy, tier_policy


@strawberry.input(description="One tier of a policy.")
class TierInput:
    code: str = strawberry.field(
        description="1 to 32 letters, digits, `_` or `-`, unique in the policy (`GOLD`);"
        " campaign conditions compare it as written."
    )
    name: str = strawberry.field(description="The name members see (1 to 100 characters).")
    threshold: int = strawberry.field(
        description="Qualifying points within the window that reach the tier: 0 or more,"
        " strictly ascending from one tier to the next (list the lowest tier first)."
    )
    multiplier: Decimal = strawberry.field(
        description="Multiplies a purchase's base points: 1 to 10, at most 6 decimals (1: no"
        " extra points; a multiplier below 1 would take points away and is refused)."
    )


@strawberry.input(description="A share of the extra points tiers give, and who pays it.")
class TierFundingInput:
    share: Decimal = strawberry.field(
        description="Above 0 and at most 1, at most 6 decimals; a policy's shares add up to"
        " exactly 1."
    )
    partner_id: strawberry.ID | None = strawberry.field(
        default=None, description="The paying partner's global id; null: the operator pays."
    )


@strawberry.input(description="A new version of the coalition's tier policy, in force at once.")
class SetTierPolicyInput:
    window_days: int = strawberry.field(
        description="The rolling window of qualifying points, 1 to 1096 days."
    )
    tiers: list[TierInput] = strawberry.field(
        description="At most 20 tiers, lowest threshold first; an empty list switches tiers"
        " off (members lose theirs at their next event or the next daily evaluation)."
    )
    grace_days: int = strawberry.field(
        default=0,
        description="Days a member may stay below its tier's threshold before the daily"
        " evaluation moves it down, 0 to 1096 (0: at the first evaluation that finds it below).",
    )
    funding: list[TierFundingInput] | None = strawberry.field(
        default=None,
        description="Who pays the tiers' extra points; empty or null: the partner where the"
        " purchase happens pays them.",
    )


@strawberry.type(description="The result of setTierPolicy.")
class TierPolicyPayload:
    policy: TierPolicy | None = strawberry.field(
        description="The new policy version; null when refused."
    )
    errors: list[UserError] = strawberry.field(
        description="Why it was refused (INVALID_TIER_POLICY, INVALID_FUNDING, INVALID_INPUT);"
        " empty when the policy was set."
    )


@strawberry.type
class TierQueries:
    @strawberry.field(
        description="The coalition's tier policy in force; null when none is set. Every client"
        " may read it (partners' apps show tiers to customers).",
        extensions=requires("tierPolicy", ANY_CLIENT),
    )
    async def tier_policy(self, info: Info) -> TierPolicy | None:
        found = await tier_policy(info)
        caller = info.context.caller
        return (
            None if found is None else TierPolicy.of(found, caller.partner_id, caller.is_operator)
        )


@strawberry.type
class TierMutations:
    @strawberry.mutation(
        description="Operator: set a new version of the tier policy. Members move to it"
        " lazily: upgrades at their next purchase, downgrades and the rest at the next daily"
        " evaluation (which sweeps every member once after a policy change).",
        extensions=requires("setTierPolicy", Scope.OPERATOR),
    )
    async def set_tier_policy(
        self, info: Info, input: Request[SetTierPolicyInput]
    ) -> TierPolicyPayload:
        caller = info.context.caller

        async def work(conn: AsyncConnection) -> TierPolicy:
            funding = [
                FundingShare(
                    funder=None
                    if f.partner_id is None
                    else from_global_id(f.partner_id, "Partner", ["funding", str(n), "partnerId"])[
                        1
                    ],
                    share=f.share,
                )
                for n, f in enumerate(input.funding or [])
            ]
            stored = await set_tier_policy(
                conn,
                actor=caller.client_id,
                window_days=input.window_days,
                grace_days=input.grace_days,
                tiers=[
                    TierRule(
                        code=t.code, name=t.name, threshold=t.threshold, multiplier=t.multiplier
                    )
                    for t in input.tiers
                ],
                funding=funding,
            )
            return TierPolicy.of(stored, caller.partner_id, caller.is_operator)

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return TierPolicyPayload(policy=None, errors=[UserError.of(result)])
        return TierPolicyPayload(policy=result, errors=[])
