"""The MemberRef input shared by every points mutation and the member query."""

from __future__ import annotations

import strawberry

from members.service import MemberRef as DomainMemberRef
from schema.relay import from_global_id


def _given(value: str | None) -> str | None:
    """UNSET (the field left out) as None; None itself cannot reach here (@oneOf)."""
    return value if isinstance(value, str) else None


@strawberry.input(
    one_of=True,
    description="Names a member by exactly one of its fields (a `@oneOf` input: giving none,"
    " two, or a null is a GraphQL error before anything runs).",
)
class MemberRef:
    id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="The member's global id (`Member.id`)."
    )
    phone: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="The member's phone in any usual format (`+79123456789`,"
        " `8 912 345-67-89`); read in the coalition's default region when it has no country"
        " code. One phone is one member coalition-wide.",
    )
    partner_ref: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="The calling partner's own reference for the member, as given to"
        " enrollMember (a partner's client only).",
    )

    def to_domain(self, path: tuple[str, ...] = ("member",)) -> DomainMemberRef:
        """`path`: where this MemberRef sits in the input, for the field of a malformed id."""
        member_id = _given(self.id)
        return DomainMemberRef(
            id=from_global_id(member_id, "Member", [*path, "id"])[1]
            if member_id is not None
            else None,
            phone=_given(self.phone),
            partner_ref=_given(self.partner_ref),
        )
