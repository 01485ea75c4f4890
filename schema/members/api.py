"""Member queries and the enrollMember mutation."""

from __future__ import annotations

from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Scope
from core.errors import DomainError
from members.service import enroll, find_member, find_member_with_balance
from schema.context import Info
from schema.errors import UserError, query_error
from schema.members.inputs import MemberRef
from schema.members.types import Member
from schema.mutation import Request, in_transaction
from schema.permissions import requires
from schema.selection import selects


@strawberry.input(description="A customer to enroll at the calling partner.")
class EnrollMemberInput:
    phone: str = strawberry.field(
        description="The customer's phone in any usual format (`8 912 345-67-89`,"
        " `+79123456789`): one phone is one member coalition-wide."
    )
    partner_ref: str | None = strawberry.field(
        default=None,
        description="The partner's own reference for the customer (1 to 200 characters),"
        " unique at the partner; usable later in `MemberRef.partnerRef`.",
    )


@strawberry.type(description="The result of enrollMember.")
class EnrollMemberPayload:
    member: Member | None = strawberry.field(
        description="The member (new, or already enrolled); null when refused."
    )
    errors: list[UserError] = strawberry.field(
        description="Why the enrollment was refused; empty when it succeeded."
    )


@strawberry.type
class MemberQueries:
    @strawberry.field(
        description="A member the caller may see, or null.",
        extensions=requires("member", Scope.MEMBERS_READ),
    )
    async def member(
        self,
        info: Info,
        ref: Annotated[
            MemberRef, strawberry.argument(description="The member, by exactly one field.")
        ],
    ) -> Member | None:
        caller = info.context.caller
        try:
            async with info.context.read() as conn:
                if selects(info, "balance"):  # the till's question: one round trip, not two
                    found, balance = await find_member_with_balance(
                        conn, caller, ref.to_domain(("ref",))
                    )
                    info.context.balances.prime(found.id, balance)
                else:
                    found = await find_member(conn, caller, ref.to_domain(("ref",)))
        except DomainError as exc:
            if exc.code == "MEMBER_NOT_FOUND":
                return None
            raise query_error(exc) from exc
        return Member.of(found, caller)


@strawberry.type
class MemberMutations:
    @strawberry.mutation(
        description="Enroll a phone at the calling partner (idempotent per phone and partner).",
        extensions=requires("enrollMember", Scope.MEMBERS_WRITE),
    )
    async def enroll_member(
        self, info: Info, input: Request[EnrollMemberInput]
    ) -> EnrollMemberPayload:
        caller = info.context.caller

        async def work(conn: AsyncConnection) -> Member:
            record = await enroll(conn, caller, phone=input.phone, partner_ref=input.partner_ref)
            return Member.of(record, caller)

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return EnrollMemberPayload(member=None, errors=[UserError.of(result)])
        return EnrollMemberPayload(member=result, errors=[])
