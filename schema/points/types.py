"""GraphQL types of the ledger: transfers, holds, explanations."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.dataloader import DataLoader

from ledger.queries import HoldRecord, TransferRecord
from partners.settings import CoalitionSettings, load_settings
from schema.context import Info
from schema.enums import described_enum
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


class TransferCode(Enum):
    EARN = "EARN"
    BONUS = "BONUS"
    REDEEM = "REDEEM"
    REVERSAL = "REVERSAL"
    EXPIRY = "EXPIRY"
    ADJUSTMENT = "ADJUSTMENT"
    DEBT = "DEBT"
    DEBT_REPAYMENT = "DEBT_REPAYMENT"
    BREAKAGE_REVERSAL = "BREAKAGE_REVERSAL"


described_enum(
    TransferCode,
    name="TransferCode",
    description="What a transfer did to a member's points. New codes may be added (the"
    " contract names more to come, such as REFERRAL_BONUS): show an unknown one generically.",
    values={
        "EARN": "Points given for a purchase at a partner (they may be pending during its"
        " return window).",
        "BONUS": "Points of a purchase paid by a funder other than the partner where it"
        " happened (a campaign's co-funding partner, or the operator when `partner` is null),"
        " booked with the purchase's EARN and reversed with it.",
        "REDEEM": "Points burnt at a partner, by redeemPoints or a captured hold.",
        "REVERSAL": "All or part of an earn or a redemption taken back (a return, a refund);"
        " `reversalOf` is the original.",
        "EXPIRY": "Points that expired unused (breakage), one per member and issuer per sweep.",
        "ADJUSTMENT": "A correction booked by the operator: resolving a reconciliation break,"
        " or adjusting a member's points with a reason (`reason`; a credit's `partner` is the"
        " partner that funds it).",
        "DEBT": "Points the member owes: a reversal found fewer points than it had to take back.",
        "DEBT_REPAYMENT": "Points of a later earn or refund that repaid a debt first.",
        "BREAKAGE_REVERSAL": "Expired points taken back out of breakage when their earn was"
        " reversed (the member is not charged twice).",
    },
)


@strawberry.type(description="Who pays for some of an explanation line's points.")
class Funding:
    partner_id: strawberry.Private[uuid.UUID | None]
    points: int = strawberry.field(description="Points of the line this funder pays for.")

    @strawberry.field(
        description="The partner that pays (settles) these points; null for the coalition operator."
    )
    async def partner(self, info: Info) -> Partner | None:
        if self.partner_id is None:
            return None
        found = await info.context.partners.load(self.partner_id)
        return Partner.of(found) if found else None


@strawberry.type(description="One line of why points were given (an earn's explanation).")
class EarnExplanationLine:
    rule: str = strawberry.field(
        description="The rule that gave these points, for programs: `BASE_RATE`, `TIER` or"
        " `CAMPAIGN`; new rules appear as the earn engine grows."
    )
    description: str = strawberry.field(
        description="The same for people: what was applied, such as the rate and the amount."
    )
    points: int = strawberry.field(description="Points this line gave (the lines add up).")
    funded_by: list[Funding] = strawberry.field(
        description="Who pays for these points, with the points each pays (they add up to"
        " `points`): the partner where the purchase happened, a campaign's co-funders, or the"
        " operator."
    )
    campaign_id: strawberry.Private[str | None] = None

    @classmethod
    def of(cls, line: dict[str, Any], earned_at: uuid.UUID | None) -> EarnExplanationLine:
        """A stored line; lines booked before funding was recorded were paid by the partner
        where the purchase happened."""
        funded = line.get("funded_by")
        if funded is None:
            funded = [
                {"partner_id": str(earned_at) if earned_at else None, "points": line["points"]}
            ]
        return cls(
            rule=line["rule"],
            description=line["description"],
            points=line["points"],
            funded_by=[
                Funding(
                    partner_id=uuid.UUID(f["partner_id"]) if f["partner_id"] else None,
                    points=f["points"],
                )
                for f in funded
            ],
            campaign_id=line.get("campaign_id"),
        )


@strawberry.type(
    description="One immutable movement of points, booked by a partner's client, the operator"
    " or the platform itself (expiry). Corrections are new transfers, never edits."
)
class Transfer(Node):
    code: TransferCode = strawberry.field(description="What the transfer did.")
    points: int = strawberry.field(
        description="How many points moved (always positive; `code` gives the direction)."
    )
    reference: str | None = strawberry.field(
        description="The partner's own receipt or order id, as it was sent."
    )
    occurred_at: datetime = strawberry.field(
        description="When it happened at the partner (an earn's `occurredAt`; else when booked)."
    )
    created_at: datetime = strawberry.field(description="When it was booked.")
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

    @strawberry.field(
        description="The partner where it was booked; null for the platform's own (expiry)."
    )
    async def partner(self, info: Info) -> Partner | None:
        if self.record.partner_id is None:
            return None
        found = await info.context.partners.load(self.record.partner_id)
        return Partner.of(found) if found else None

    @strawberry.field(description="The member whose points moved, if the caller may see them.")
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
        return [EarnExplanationLine.of(line, self.record.partner_id) for line in lines]

    @strawberry.field(description="Why a reversal was booked, as its caller wrote it.")
    def reason(self) -> str | None:
        value = self.record.metadata.get("reason")
        return str(value) if value is not None else None


class HoldStatus(Enum):
    ACTIVE = "ACTIVE"
    CAPTURED = "CAPTURED"
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"


described_enum(
    HoldStatus,
    name="HoldStatus",
    description="Where a hold (two-phase redemption) stands.",
    values={
        "ACTIVE": "The points are reserved: out of `available`, counted in `held`.",
        "CAPTURED": "The points were redeemed (`transfer` is the redemption).",
        "VOIDED": "Released by voidHold; nothing was redeemed.",
        "EXPIRED": "Lapsed after its `ttlMinutes` without a capture; nothing was redeemed.",
    },
)


@strawberry.type(
    description="Points reserved at checkout by holdPoints, then captured (redeemed) or voided;"
    " an uncaptured hold lapses by itself at `expiresAt`."
)
class Hold(Node):
    points: int = strawberry.field(description="Points reserved.")
    reference: str = strawberry.field(description="The partner's own order id, as it was sent.")
    status: HoldStatus = strawberry.field(description="Where the hold stands.")
    expires_at: datetime = strawberry.field(description="When an uncaptured hold lapses by itself.")
    created_at: datetime = strawberry.field(description="When the hold was placed.")
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
