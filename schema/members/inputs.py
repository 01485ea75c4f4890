"""The MemberRef input shared by every points mutation and the member query."""

from __future__ import annotations

import strawberry

from members.service import MemberRef as DomainMemberRef
from schema.relay import from_global_id


@strawberry.input(description="Names a member by exactly one of id, phone and partnerRef.")
class MemberRef:
    id: strawberry.ID | None = None
    phone: str | None = None
    partner_ref: str | None = None

    def to_domain(self) -> DomainMemberRef:
        return DomainMemberRef(
            id=from_global_id(self.id, "Member")[1] if self.id is not None else None,
            phone=self.phone,
            partner_ref=self.partner_ref,
        )
