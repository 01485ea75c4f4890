"""`viewer` (who am I) and `node` (any object by global id)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from core.audit import get_entry
from core.caller import Scope
from core.errors import DomainError
from partners.service import get_partner
from schema.audit import AuditEntry
from schema.context import Info
from schema.errors import query_error
from schema.members.types import Member
from schema.partners.types import Partner
from schema.permissions import ANY_CLIENT, requires
from schema.points.types import Hold, Transfer
from schema.relay import Node, from_global_id
from schema.settlement.types import SettlementPeriod
from settlement.periods import get_period

# What a caller must hold to fetch each type through `node` (visibility is checked too).
NODE_SCOPES = {
    "Member": "members:read",
    "Transfer": "members:read",
    "Hold": "members:read",
    "Partner": ANY_CLIENT,
    "SettlementPeriod": "settlement:read",
    "AuditEntry": Scope.OPERATOR,  # the audit log is the operator's alone
}


@strawberry.type(description="The API client behind the token.")
class Viewer:
    client_id: str = strawberry.field(description="The OAuth client id (`cl_...`).")
    scopes: list[str] = strawberry.field(
        description="The scopes the token grants, sorted (`@hasScope` on each field says"
        " which it needs)."
    )
    partner_id: strawberry.Private[object]

    @strawberry.field(description="The caller's partner; null for the operator.")
    async def partner(self, info: Info) -> Partner | None:
        if info.context.caller.partner_id is None:
            return None
        async with info.context.read() as conn:
            found = await get_partner(conn, info.context.caller.partner_id)
        return Partner.of(found) if found else None


@strawberry.type
class ViewerQueries:
    @strawberry.field(
        description="Who is calling: the client, its scopes and its partner.",
        extensions=requires("viewer", ANY_CLIENT),
    )
    def viewer(self, info: Info) -> Viewer:
        caller = info.context.caller
        return Viewer(
            client_id=caller.client_id, scopes=sorted(caller.scopes), partner_id=caller.partner_id
        )

    @strawberry.field(
        description="Any object by its global id; null when missing or not visible.",
        extensions=requires("node", ANY_CLIENT),
    )
    async def node(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A global id.")],
    ) -> Node | None:
        try:
            type_name, raw = from_global_id(id)
        except DomainError as exc:
            raise query_error(exc) from exc
        caller = info.context.caller
        scope = NODE_SCOPES.get(type_name)
        if scope is None:
            return None
        if scope == Scope.OPERATOR and not caller.is_operator:
            return None
        if scope != ANY_CLIENT and not caller.has(scope):
            return None
        ctx = info.context
        if type_name == "Member":
            member = await ctx.members.load(raw)
            return Member.of(member, caller) if member else None
        if type_name == "Transfer":
            transfer = await ctx.transfers.load(raw)
            return Transfer.of(transfer) if transfer else None
        if type_name == "Hold":
            hold = await ctx.holds.load(raw)
            return Hold.of(hold) if hold else None
        if type_name == "SettlementPeriod":
            async with ctx.read() as conn:
                period = await get_period(conn, raw)
            return SettlementPeriod.of(period) if period else None
        if type_name == "AuditEntry":
            async with ctx.read() as conn:
                entry = await get_entry(conn, raw)
            return AuditEntry.of(entry) if entry else None
        partner = await ctx.partners.load(raw)
        if partner is None or not (caller.is_operator or caller.partner_id == partner.id):
            return None
        return Partner.of(partner)
