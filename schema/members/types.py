"""GraphQL types of members and balances."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import strawberry

from core.caller import Caller
from core.errors import DomainError, ErrorCode
from ledger import queries
from members.phones import mask_phone
from members.service import MemberRecord
from schema.context import Info
from schema.errors import query_error
from schema.points.types import Transfer
from schema.relay import (
    After,
    Connection,
    First,
    Node,
    connection,
    decode_cursor,
    page_size,
    to_global_id,
)
from schema.tiers.types import Tier, TierProgress, member_tier_of, tier_progress_of

MAX_EXPIRING_DAYS = 3650


@strawberry.type(description="A member's points, coalition-wide (the same whichever partner asks).")
class Balance:
    available: int = strawberry.field(description="Spendable now (after holds).")
    pending: int = strawberry.field(description="Earned, not yet available (return window).")
    held: int = strawberry.field(description="Reserved by active holds.")
    debt: int = strawberry.field(
        description="Points owed after a reversal found too few; repaid by the next earns."
    )
    member_id: strawberry.Private[uuid.UUID]

    @strawberry.field(description="Points that expire within the given number of days.")
    async def expiring(
        self,
        info: Info,
        within_days: Annotated[
            int, strawberry.argument(description=f"0 to {MAX_EXPIRING_DAYS} days from now.")
        ] = 30,
    ) -> int:
        if not 0 <= within_days <= MAX_EXPIRING_DAYS:
            raise query_error(
                DomainError(
                    ErrorCode.INVALID_INPUT,
                    f"withinDays must be 0 to {MAX_EXPIRING_DAYS}",
                    ["withinDays"],
                )
            )
        async with info.context.read() as conn:
            return await queries.expiring(conn, self.member_id, within_days)


@strawberry.type(
    description="A customer of the coalition: one phone, one wallet shared by every partner."
    " A partner sees only members enrolled with it."
)
class Member(Node):
    phone: str = strawberry.field(
        description="E.164 (`+79123456789`); masked for partners (`+7912*****89`)."
    )
    partner_ref: str | None = strawberry.field(
        description="The calling partner's own reference for the member, if it gave one."
    )
    created_at: datetime = strawberry.field(description="When the member first enrolled.")
    member_id: strawberry.Private[uuid.UUID]

    @classmethod
    def of(cls, r: MemberRecord, caller: Caller) -> Member:
        return cls(
            id=to_global_id("Member", r.id),
            phone=r.phone if caller.is_operator else mask_phone(r.phone),
            partner_ref=r.partner_ref,
            created_at=r.created_at,
            member_id=r.id,
        )

    @strawberry.field(description="The member's points, coalition-wide.")
    async def balance(self, info: Info) -> Balance:
        b = await info.context.balances.load(self.member_id)
        return Balance(
            available=b.available,
            pending=b.pending,
            held=b.held,
            debt=b.debt,
            member_id=self.member_id,
        )

    @strawberry.field(
        description="History, newest first. A partner sees the transfers booked at it."
    )
    async def transfers(
        self, info: Info, first: First = None, after: After = None
    ) -> Connection[Transfer]:
        try:
            size = page_size(first)
            before = decode_cursor(after)
        except DomainError as exc:
            raise query_error(exc) from exc
        async with info.context.read() as conn:
            rows = await queries.member_transfers(
                conn,
                self.member_id,
                partner_id=None
                if info.context.caller.is_operator
                else info.context.caller.partner_id,
                before=before,
                limit=size + 1,
            )
        return connection([Transfer.of(r) for r in rows], [r.id for r in rows], size, before)

    @strawberry.field(
        description="The member's coalition tier; null when none (or when no tier policy is set)."
    )
    async def tier(self, info: Info) -> Tier | None:
        return await member_tier_of(info, self.member_id)

    @strawberry.field(
        description="The member's qualifying points, tier and what the next tier needs; null"
        " when no tier policy is set."
    )
    async def tier_progress(self, info: Info) -> TierProgress | None:
        return await tier_progress_of(info, self.member_id)
