"""GraphQL types of the ledger: transfers, holds, explanations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.dataloader import DataLoader

from ledger.queries import HoldRecord, TransferRecord
from partners.settings import CoalitionSettings, load_settings
from schema.context import Info
from schema.partners.types import Partner
from schema.relay import Node, to_global_id

if TYPE_CHECKING:
    from schema.members.types import Member


async def coalition_settings(info: Info) -> CoalitionSettings:
    """The coalition's settings, read at most once per request."""
    loaders = info.context.loaders
    if "coalition_settings" not in loaders:

        async def batch(keys: list[int]) -> list[CoalitionSettings]:
            async with info.context.read() as conn:
                found = await load_settings(conn)
            return [found for _ in keys]

        loaders["coalition_settings"] = DataLoader(load_fn=batch)
    found: CoalitionSettings = await loaders["coalition_settings"].load(1)
    return found


@strawberry.enum
class TransferCode(Enum):
    EARN = "EARN"
    REDEEM = "REDEEM"
    REVERSAL = "REVERSAL"
    EXPIRY = "EXPIRY"
    ADJUSTMENT = "ADJUSTMENT"
    DEBT = "DEBT"
    DEBT_REPAYMENT = "DEBT_REPAYMENT"
    BREAKAGE_REVERSAL = "BREAKAGE_REVERSAL"


@strawberry.type(description="One line of why points were given.")
class EarnExplanationLine:
    rule: str
    description: str
    points: int


@strawberry.type
class Transfer(Node):
    code: TransferCode
    points: int
    reference: str | None
    occurred_at: datetime
    created_at: datetime
    record: strawberry.Private[TransferRecord]

    @classmethod
    def of(cls, r: TransferRecord) -> Transfer:
        return cls(
            id=to_global_id("Transfer", r.id),
            code=TransferCode(r.code),
            points=r.points,
            reference=r.reference,
            occurred_at=r.occurred_at,
            created_at=r.created_at,
            record=r,
        )

    @strawberry.field(description="The purchase amount, for earns.")
    async def amount(self, info: Info) -> Decimal | None:
        if self.record.amount is None:
            return None
        settings = await coalition_settings(info)
        return settings.money(self.record.amount)

    @strawberry.field
    async def partner(self, info: Info) -> Partner | None:
        if self.record.partner_id is None:
            return None
        found = await info.context.partners.load(self.record.partner_id)
        return Partner.of(found) if found else None

    @strawberry.field
    async def member(
        self, info: Info
    ) -> Annotated[Member, strawberry.lazy("schema.members.types")] | None:
        from schema.members.types import Member

        if self.record.member_id is None:
            return None
        found = await info.context.members.load(self.record.member_id)
        return Member.of(found, info.context.caller) if found else None

    @strawberry.field(description="The transfer this one reverses, if visible to the caller.")
    async def reversal_of(self, info: Info) -> Transfer | None:
        if self.record.reversal_of_id is None:
            return None
        found = await info.context.transfers.load(self.record.reversal_of_id)
        return Transfer.of(found) if found else None

    @strawberry.field(description="Why the points were given (earns).")
    def explanation(self) -> list[EarnExplanationLine]:
        lines = self.record.metadata.get("explanation", [])
        return [EarnExplanationLine(**line) for line in lines]

    @strawberry.field
    def reason(self) -> str | None:
        value = self.record.metadata.get("reason")
        return str(value) if value is not None else None


@strawberry.enum
class HoldStatus(Enum):
    ACTIVE = "ACTIVE"
    CAPTURED = "CAPTURED"
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"


@strawberry.type
class Hold(Node):
    points: int
    reference: str
    status: HoldStatus
    expires_at: datetime
    created_at: datetime
    record: strawberry.Private[HoldRecord]

    @classmethod
    def of(cls, r: HoldRecord) -> Hold:
        return cls(
            id=to_global_id("Hold", r.id),
            points=r.points,
            reference=r.reference,
            status=HoldStatus(r.status),
            expires_at=r.expires_at,
            created_at=r.created_at,
            record=r,
        )

    @strawberry.field(description="The redemption a capture booked.")
    async def transfer(self, info: Info) -> Transfer | None:
        if self.record.transfer_id is None:
            return None
        found = await info.context.transfers.load(self.record.transfer_id)
        return Transfer.of(found) if found else None
