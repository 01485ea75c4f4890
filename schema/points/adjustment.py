"""The operator's member adjustment (`adjustMemberPoints`): a credit or a debit with a reason."""

from __future__ import annotations

import uuid

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Scope
from core.errors import DomainError
from points import adjustment
from schema.context import Info
from schema.errors import UserError
from schema.members.inputs import MemberRef
from schema.members.types import Member
from schema.mutation import Request, in_transaction
from schema.permissions import requires
from schema.points.types import Transfer
from schema.relay import from_global_id


@strawberry.input(description="A correction of a member's points, with a reason.")
class AdjustMemberPointsInput:
    member: MemberRef = strawberry.field(
        description="The member, by exactly one of id, phone and partnerRef."
    )
    points: int = strawberry.field(
        description="Signed and non-zero: positive credits the member (a new lot funded by"
        " `fundedBy`), negative debits the spendable balance oldest expiry first (never below"
        " zero)."
    )
    reason: str = strawberry.field(
        description="Why, for the member's history and the audit log (1 to 500 characters)."
    )
    idempotency_key: str = strawberry.field(
        description="Unique per API client (1 to 200 characters): a replay with the same key"
        " returns the first answer and books nothing; the same key with another request is"
        " refused with IDEMPOTENCY_KEY_REUSED."
    )
    funded_by: strawberry.ID | None = strawberry.field(
        default=None,
        description="The partner that pays for a credit (its points' issuer); required when"
        " points > 0, ignored for a debit.",
    )


@strawberry.type(description="The result of adjustMemberPoints.")
class AdjustMemberPointsPayload:
    transfer: Transfer | None = strawberry.field(
        description="The ADJUSTMENT transfer (its reason is the one given); null when refused."
    )
    member: Member | None = strawberry.field(
        description="The member, with the new balance; null when refused."
    )
    errors: list[UserError] = strawberry.field(
        description="Why the adjustment was refused; empty when it was booked (or replayed)."
    )


@strawberry.type
class AdjustmentMutations:
    @strawberry.mutation(
        description="Credit or debit a member's points with a reason (operator only).",
        extensions=requires("adjustMemberPoints", Scope.OPERATOR),
    )
    async def adjust_member_points(
        self, info: Info, input: Request[AdjustMemberPointsInput]
    ) -> AdjustMemberPointsPayload:
        caller = info.context.caller

        async def work(conn: AsyncConnection) -> adjustment.AdjustmentOutcome:
            funded_by: uuid.UUID | None = None
            if input.funded_by is not None and input.points > 0:
                _, funded_by = from_global_id(input.funded_by, "Partner", ["fundedBy"])
            return await adjustment.adjust_member_points(
                conn,
                caller,
                actor=caller.client_id,
                member=input.member.to_domain(),
                points=input.points,
                funded_by=funded_by,
                reason=input.reason,
                idempotency_key=input.idempotency_key,
            )

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return AdjustMemberPointsPayload(
                transfer=None, member=None, errors=[UserError.of(result)]
            )
        transfer = await info.context.transfers.load(uuid.UUID(result.transfer_id))
        member = await info.context.members.load(uuid.UUID(result.member_id))
        return AdjustMemberPointsPayload(
            transfer=Transfer.of(transfer) if transfer else None,
            member=Member.of(member, caller) if member else None,
            errors=[],
        )
