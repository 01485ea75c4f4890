"""Who is calling: the authenticated API client, as the domain sees it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    MEMBERS_READ = "members:read"
    MEMBERS_WRITE = "members:write"
    POINTS_EARN = "points:earn"
    POINTS_REDEEM = "points:redeem"
    POINTS_REVERSE = "points:reverse"
    SETTLEMENT_READ = "settlement:read"
    RECONCILIATION_WRITE = "reconciliation:write"
    CAMPAIGNS_WRITE = "campaigns:write"
    OPERATOR = "operator"


ALL_SCOPES = frozenset(str(s) for s in Scope)

OPERATOR_PARTY = uuid.UUID(int=0)
"""The coalition operator as a settlement party (it has no partner row)."""


@dataclass(frozen=True)
class Caller:
    client_id: str
    partner_id: uuid.UUID | None  # None: the coalition operator
    scopes: frozenset[str]

    @property
    def is_operator(self) -> bool:
        return self.partner_id is None and Scope.OPERATOR in self.scopes

    def has(self, scope: str) -> bool:
        return scope in self.scopes or self.is_operator

    def can_see_partner(self, partner_id: uuid.UUID | None) -> bool:
        return self.is_operator or (partner_id is not None and partner_id == self.partner_id)
