"""Points mutations (earn, redeem, reverse, holds) and the transfer query."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Scope
from core.errors import DomainError
from points import service as ops
from schema.context import Info
from schema.errors import UserError, query_error
from schema.members.inputs import MemberRef
from schema.members.types import Member
from schema.mutation import Request, in_transaction
from schema.permissions import requires
from schema.points.purchase import PurchaseLineInput, lines_of
from schema.points.types import EarnExplanationLine, Hold, Transfer
from schema.relay import from_global_id


async def _transfer(info: Info, raw: str | None) -> Transfer | None:
    if raw is None:
        return None
    found = await info.context.transfers.load(uuid.UUID(raw))
    return Transfer.of(found) if found else None


async def _member(info: Info, raw: str) -> Member | None:
    found = await info.context.members.load(uuid.UUID(raw))
    return Member.of(found, info.context.caller) if found else None


async def _hold(info: Info, raw: str) -> Hold | None:
    found = await info.context.holds.load(uuid.UUID(raw))
    return Hold.of(found) if found else None


@strawberry.input(description="A purchase at the calling partner to give points for.")
class EarnPointsInput:
    member: MemberRef = strawberry.field(
        description="The member, by exactly one of id, phone and partnerRef."
    )
    amount: Decimal = strawberry.field(
        description='Purchase amount in currency units ("1499.90"): positive, at most the'
        " currency's decimals (2 for RUB)."
    )
    reference: str = strawberry.field(
        description="The partner's own receipt or order id (1 to 200 characters)."
    )
    idempotency_key: str = strawberry.field(
        description="Unique per API client (1 to 200 characters): a replay with the same key"
        " returns the first answer and books nothing; the same key with another request is"
        " refused with IDEMPOTENCY_KEY_REUSED."
    )
    occurred_at: datetime | None = strawberry.field(
        default=None,
        description="When the purchase happened (default now): not in the future, and not so"
        " old that its points would already have expired. Prices in force then apply.",
    )
    lines: list[PurchaseLineInput] | None = strawberry.field(
        default=None,
        description="The receipt's lines (at most 500), for campaigns that price categories or"
        " skus; they must add up to `amount` exactly.",
    )
    store_id: str | None = strawberry.field(
        default=None,
        description="The partner's own store id, for campaigns aimed at stores (1 to 100"
        " characters).",
    )
    channel: str | None = strawberry.field(
        default=None,
        description="Where the purchase was made, as campaigns name it (`online`, `store`,"
        " `app`; 1 to 100 characters).",
    )


@strawberry.type(description="The result of earnPoints.")
class EarnPointsPayload:
    points: int = strawberry.field(
        description="Points given: the base rate (floor(amount × earnRate) by the rate card in"
        " force), the member's tier and the campaigns that applied (0 when refused)."
    )
    explanation: list[EarnExplanationLine] = strawberry.field(
        description="Why that many points, one line per rule."
    )
    errors: list[UserError] = strawberry.field(
        description="Why the earn was refused; empty when it was booked (or replayed)."
    )
    transfer_id: strawberry.Private[str | None] = None
    member_id: strawberry.Private[str | None] = None

    # Loaded only when selected: a till that asks for `points` costs no extra query.
    @strawberry.field(description="The EARN transfer; null when refused or 0 points.")
    async def transfer(self, info: Info) -> Transfer | None:
        return await _transfer(info, self.transfer_id)

    @strawberry.field(description="The member, with the new balance; null when refused.")
    async def member(self, info: Info) -> Member | None:
        return await _member(info, self.member_id) if self.member_id else None


@strawberry.input(description="Points to burn at the calling partner.")
class RedeemPointsInput:
    member: MemberRef = strawberry.field(
        description="The member, by exactly one of id, phone and partnerRef."
    )
    points: int = strawberry.field(
        description="Points to burn: positive, at most the member's available points."
    )
    reference: str = strawberry.field(
        description="The partner's own receipt or order id (1 to 200 characters)."
    )
    idempotency_key: str = strawberry.field(
        description="Unique per API client (1 to 200 characters): a replay with the same key"
        " returns the first answer and books nothing; the same key with another request is"
        " refused with IDEMPOTENCY_KEY_REUSED."
    )


@strawberry.type(description="The result of redeemPoints.")
class RedeemPointsPayload:
    points: int = strawberry.field(description="Points burnt (0 when refused).")
    value: Decimal | None = strawberry.field(
        description="Money value of the points burnt (points × pointValue, in currency"
        " units); null when refused."
    )
    errors: list[UserError] = strawberry.field(
        description="Why the redemption was refused; empty when it was booked (or replayed)."
    )
    transfer_id: strawberry.Private[str | None] = None
    member_id: strawberry.Private[str | None] = None

    # Loaded only when selected, as for earnPoints.
    @strawberry.field(description="The REDEEM transfer; null when refused.")
    async def transfer(self, info: Info) -> Transfer | None:
        return await _transfer(info, self.transfer_id)

    @strawberry.field(description="The member, with the new balance; null when refused.")
    async def member(self, info: Info) -> Member | None:
        return await _member(info, self.member_id) if self.member_id else None


@strawberry.input(description="An earn or a redemption the caller booked, to take back.")
class ReverseTransferInput:
    transfer_id: strawberry.ID = strawberry.field(
        description="The EARN or REDEEM transfer's global id."
    )
    idempotency_key: str = strawberry.field(
        description="Unique per API client (1 to 200 characters): a replay with the same key"
        " returns the first answer and books nothing; the same key with another request is"
        " refused with IDEMPOTENCY_KEY_REUSED."
    )
    points: int | None = strawberry.field(
        default=None,
        description="How many points to reverse (a partial return); default all that remain.",
    )
    reason: str | None = strawberry.field(
        default=None, description="Why, for the record (`Transfer.reason`)."
    )


@strawberry.type(description="The result of reverseTransfer.")
class ReverseTransferPayload:
    transfer: Transfer | None = strawberry.field(
        description="The REVERSAL transfer; null when refused."
    )
    member: Member | None = strawberry.field(
        description="The member, with the new balance (and any debt); null when refused."
    )
    errors: list[UserError] = strawberry.field(
        description="Why the reversal was refused; empty when it was booked (or replayed)."
    )


@strawberry.input(description="Points to reserve at checkout (two-phase redemption).")
class HoldPointsInput:
    member: MemberRef = strawberry.field(
        description="The member, by exactly one of id, phone and partnerRef."
    )
    points: int = strawberry.field(
        description="Points to reserve: positive, at most the member's available points."
    )
    reference: str = strawberry.field(
        description="The partner's own receipt or order id (1 to 200 characters)."
    )
    idempotency_key: str = strawberry.field(
        description="Unique per API client (1 to 200 characters): a replay with the same key"
        " returns the first answer and books nothing; the same key with another request is"
        " refused with IDEMPOTENCY_KEY_REUSED."
    )
    ttl_minutes: int = strawberry.field(
        default=15,
        description="Minutes until an uncaptured hold lapses by itself (1 to 10080, a week).",
    )


@strawberry.input(description="A hold to redeem.")
class CaptureHoldInput:
    hold_id: strawberry.ID = strawberry.field(description="The ACTIVE hold's global id.")
    idempotency_key: str = strawberry.field(
        description="Unique per API client (1 to 200 characters): a replay with the same key"
        " returns the first answer and books nothing; the same key with another request is"
        " refused with IDEMPOTENCY_KEY_REUSED."
    )
    points: int | None = strawberry.field(
        default=None,
        description="Points to redeem, at most those held (the rest is released); default all.",
    )


@strawberry.input(description="A hold to release without redeeming.")
class VoidHoldInput:
    hold_id: strawberry.ID = strawberry.field(description="The ACTIVE hold's global id.")
    idempotency_key: str = strawberry.field(
        description="Unique per API client (1 to 200 characters): a replay with the same key"
        " returns the first answer and books nothing; the same key with another request is"
        " refused with IDEMPOTENCY_KEY_REUSED."
    )


@strawberry.type(description="The result of holdPoints, captureHold and voidHold.")
class HoldPayload:
    hold: Hold | None = strawberry.field(description="The hold as it now stands.")
    transfer: Transfer | None = strawberry.field(
        description="The REDEEM transfer a capture booked; null otherwise."
    )
    member: Member | None = strawberry.field(
        description="The member, with the new balance; null when refused."
    )
    errors: list[UserError] = strawberry.field(
        description="Why the request was refused; empty when it was done (or replayed)."
    )


def _errors(result: Any) -> list[UserError]:
    return [UserError.of(result)] if isinstance(result, DomainError) else []


@strawberry.input(
    description="A purchase to price as earnPoints would, with nothing booked (no reference or"
    " key: a quote changes nothing)."
)
class QuoteEarnInput:
    member: MemberRef = strawberry.field(
        description="The member, by exactly one of id, phone and partnerRef."
    )
    amount: Decimal = strawberry.field(
        description='Purchase amount in currency units ("1499.90"), as for earnPoints.'
    )
    occurred_at: datetime | None = strawberry.field(
        default=None, description="When the purchase happens (default now)."
    )
    lines: list[PurchaseLineInput] | None = strawberry.field(
        default=None, description="The receipt's lines, as for earnPoints."
    )
    store_id: str | None = strawberry.field(
        default=None, description="The partner's own store id, as for earnPoints."
    )
    channel: str | None = strawberry.field(
        default=None, description="Where the purchase is made, as for earnPoints."
    )


@strawberry.type(description="What earnPoints would give for a purchase now (nothing booked).")
class EarnQuote:
    points: int = strawberry.field(description="Points the purchase would earn (0 when refused).")
    explanation: list[EarnExplanationLine] = strawberry.field(
        description="Why that many points, one line per rule, with who would pay each."
    )
    errors: list[UserError] = strawberry.field(
        description="Why the purchase cannot be priced (the errors earnPoints would give)."
    )


@strawberry.type
class PointsQueries:
    @strawberry.field(
        description="Price a purchase at the calling partner with the same engine as"
        " earnPoints (base rate, tier, campaigns, caps and budgets as they stand now) and book"
        " nothing: what a till shows before payment. A campaign whose budget runs out between"
        " the quote and the earn gives what is left at the earn.",
        extensions=requires("quoteEarn", Scope.POINTS_EARN),
    )
    async def quote_earn(
        self,
        info: Info,
        input: Annotated[QuoteEarnInput, strawberry.argument(description="The purchase to price.")],
    ) -> EarnQuote:
        partner_id = info.context.caller.partner_id
        try:
            async with info.context.read() as conn:
                quote = await ops.quote_earn(
                    conn,
                    info.context.caller,
                    member=input.member.to_domain(),
                    amount=input.amount,
                    occurred_at=input.occurred_at,
                    lines=lines_of(input.lines),
                    store_id=input.store_id,
                    channel=input.channel,
                )
        except DomainError as exc:
            return EarnQuote(points=0, explanation=[], errors=[UserError.of(exc)])
        return EarnQuote(
            points=quote.points,
            explanation=[EarnExplanationLine.of(line, partner_id) for line in quote.lines],
            errors=[],
        )

    @strawberry.field(
        description="A transfer booked at the calling partner (any, for the operator).",
        extensions=requires("transfer", Scope.MEMBERS_READ),
    )
    async def transfer(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The transfer's global id.")],
    ) -> Transfer | None:
        try:
            _, raw = from_global_id(id, "Transfer")
        except DomainError as exc:
            raise query_error(exc) from exc
        found = await info.context.transfers.load(raw)
        return Transfer.of(found) if found else None


@strawberry.type
class PointsMutations:
    @strawberry.mutation(
        description="Give points for a purchase at the calling partner.",
        extensions=requires("earnPoints", Scope.POINTS_EARN),
    )
    async def earn_points(self, info: Info, input: Request[EarnPointsInput]) -> EarnPointsPayload:
        async def work(conn: AsyncConnection) -> ops.EarnOutcome:
            return await ops.earn_points(
                conn,
                info.context.caller,
                member=input.member.to_domain(),
                amount=input.amount,
                reference=input.reference,
                occurred_at=input.occurred_at,
                idempotency_key=input.idempotency_key,
                lines=lines_of(input.lines),
                store_id=input.store_id,
                channel=input.channel,
            )

        result = await in_transaction(info, work, autocommit=True)
        if isinstance(result, DomainError):
            return EarnPointsPayload(points=0, explanation=[], errors=_errors(result))
        if result.transfer is not None:
            info.context.transfers.prime(result.transfer.id, result.transfer)
        return EarnPointsPayload(
            points=result.points,
            explanation=[
                EarnExplanationLine.of(line, info.context.caller.partner_id)
                for line in result.lines
            ],
            errors=[],
            transfer_id=result.transfer_id,
            member_id=result.member_id,
        )

    @strawberry.mutation(
        description="Burn points at the calling partner.",
        extensions=requires("redeemPoints", Scope.POINTS_REDEEM),
    )
    async def redeem_points(
        self, info: Info, input: Request[RedeemPointsInput]
    ) -> RedeemPointsPayload:
        async def work(conn: AsyncConnection) -> ops.RedeemOutcome:
            return await ops.redeem_points(
                conn,
                info.context.caller,
                member=input.member.to_domain(),
                points=input.points,
                reference=input.reference,
                idempotency_key=input.idempotency_key,
            )

        result = await in_transaction(info, work, autocommit=True)
        if isinstance(result, DomainError):
            return RedeemPointsPayload(points=0, value=None, errors=_errors(result))
        if result.transfer is not None:
            info.context.transfers.prime(result.transfer.id, result.transfer)
        return RedeemPointsPayload(
            points=result.points,
            value=Decimal(result.value),
            errors=[],
            transfer_id=result.transfer_id,
            member_id=result.member_id,
        )

    @strawberry.mutation(
        description="Reverse all or part of an earn or a redemption booked by the caller.",
        extensions=requires("reverseTransfer", Scope.POINTS_REVERSE),
    )
    async def reverse_transfer(
        self, info: Info, input: Request[ReverseTransferInput]
    ) -> ReverseTransferPayload:
        async def work(conn: AsyncConnection) -> ops.ReverseOutcome:
            _, transfer_id = from_global_id(input.transfer_id, "Transfer", ["transferId"])
            return await ops.reverse_transfer(
                conn,
                info.context.caller,
                transfer_id=transfer_id,
                points=input.points,
                reason=input.reason,
                idempotency_key=input.idempotency_key,
            )

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return ReverseTransferPayload(transfer=None, member=None, errors=_errors(result))
        return ReverseTransferPayload(
            transfer=await _transfer(info, result.transfer_id),
            member=await _member(info, result.member_id),
            errors=[],
        )

    @strawberry.mutation(
        description="Reserve points at checkout; capture or void them later.",
        extensions=requires("holdPoints", Scope.POINTS_REDEEM),
    )
    async def hold_points(self, info: Info, input: Request[HoldPointsInput]) -> HoldPayload:
        async def work(conn: AsyncConnection) -> ops.HoldOutcome:
            return await ops.hold_points(
                conn,
                info.context.caller,
                member=input.member.to_domain(),
                points=input.points,
                reference=input.reference,
                ttl_minutes=input.ttl_minutes,
                idempotency_key=input.idempotency_key,
            )

        return await _hold_payload(info, await in_transaction(info, work))

    @strawberry.mutation(
        description="Redeem held points (all, or fewer: the rest is released).",
        extensions=requires("captureHold", Scope.POINTS_REDEEM),
    )
    async def capture_hold(self, info: Info, input: Request[CaptureHoldInput]) -> HoldPayload:
        async def work(conn: AsyncConnection) -> ops.HoldOutcome:
            _, hold_id = from_global_id(input.hold_id, "Hold", ["holdId"])
            return await ops.capture_hold(
                conn,
                info.context.caller,
                hold_id=hold_id,
                points=input.points,
                idempotency_key=input.idempotency_key,
            )

        return await _hold_payload(info, await in_transaction(info, work))

    @strawberry.mutation(
        description="Release a hold without redeeming.",
        extensions=requires("voidHold", Scope.POINTS_REDEEM),
    )
    async def void_hold(self, info: Info, input: Request[VoidHoldInput]) -> HoldPayload:
        async def work(conn: AsyncConnection) -> ops.HoldOutcome:
            _, hold_id = from_global_id(input.hold_id, "Hold", ["holdId"])
            return await ops.void_hold(
                conn, info.context.caller, hold_id=hold_id, idempotency_key=input.idempotency_key
            )

        return await _hold_payload(info, await in_transaction(info, work))


async def _hold_payload(info: Info, result: ops.HoldOutcome | DomainError) -> HoldPayload:
    if isinstance(result, DomainError):
        return HoldPayload(hold=None, transfer=None, member=None, errors=_errors(result))
    return HoldPayload(
        hold=await _hold(info, result.hold_id),
        transfer=await _transfer(info, result.transfer_id),
        member=await _member(info, result.member_id),
        errors=[],
    )
