"""`earnPointsBatch`: many purchases of the calling partner in one call, per-row results."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Scope
from core.errors import DomainError
from core.errors import ErrorCode as DomainErrorCode
from points import batch as ops
from schema.context import Info
from schema.errors import ErrorCode, UserError
from schema.members.inputs import MemberRef
from schema.mutation import Request, in_transaction
from schema.permissions import requires
from schema.points.purchase import PurchaseLineInput, lines_of
from schema.relay import to_global_id

MAX_ROWS = 5_000


@strawberry.input(description="One purchase of a batch, as earnPoints takes it.")
class EarnRowInput:
    member: MemberRef = strawberry.field(
        description="The member, by exactly one of id, phone and partnerRef."
    )
    amount: Decimal = strawberry.field(
        description="Purchase amount in currency units: positive, at most the currency's decimals."
    )
    reference: str = strawberry.field(
        description="The partner's own receipt or order id (1 to 200 characters)."
    )
    idempotency_key: str = strawberry.field(
        description="Unique per API client, shared with earnPoints: a row whose key already"
        " booked the same purchase is replayed (listed in replayedRows), not booked again."
    )
    occurred_at: datetime | None = strawberry.field(
        default=None,
        description="When the purchase happened (default now). Prices in force then apply.",
    )
    lines: list[PurchaseLineInput] | None = strawberry.field(
        default=None,
        description="The receipt's lines (at most 500), as for earnPoints; they must add up to"
        " `amount` exactly (INVALID_LINES rejects the row).",
    )
    store_id: str | None = strawberry.field(
        default=None, description="The partner's own store id, as for earnPoints."
    )
    channel: str | None = strawberry.field(
        default=None, description="Where the purchase was made, as for earnPoints."
    )


@strawberry.input(description="A batch of purchases at the calling partner.")
class EarnPointsBatchInput:
    rows: list[EarnRowInput] = strawberry.field(
        description=f"At most {MAX_ROWS:,} purchases, each with its own idempotencyKey."
    )


@strawberry.type(description="A row of the batch that was not booked, and why.")
class EarnRowError:
    index: int = strawberry.field(description="The row's position in `rows`, from 0.")
    code: ErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="Why the row was refused, as earnPoints would refuse it."
    )
    message: str = strawberry.field(description="The same for people.")
    field: list[str] | None = strawberry.field(
        description="The path of the field within the row (`rows[index]`), as the client"
        ' wrote it: `["amount"]`, `["member", "phone"]`; null when it concerns no single'
        " field."
    )


@strawberry.type(description="A row whose idempotencyKey was already used for the same purchase.")
class EarnRowReplay:
    index: int = strawberry.field(description="The row's position in `rows`, from 0.")
    transfer_id: strawberry.ID | None = strawberry.field(
        description="The transfer the key booked first (null: it earned 0 points)."
    )
    points: int = strawberry.field(description="Points the key booked first.")


@strawberry.type(description="The result of earnPointsBatch: counts, and the rows not booked.")
class EarnPointsBatchPayload:
    booked: int = strawberry.field(description="Rows booked by this call.")
    replayed: int = strawberry.field(description="Rows whose key had already booked them.")
    rejected: int = strawberry.field(description="Rows not booked (see rejectedRows).")
    transfers: int = strawberry.field(
        description="Transfers booked: each purchase's EARN, and a BONUS per other funder of"
        " its points (0-point rows book none)."
    )
    points: int = strawberry.field(description="Points booked by this call.")
    rejected_rows: list[EarnRowError] = strawberry.field(
        description="The rows not booked, in row order, with why."
    )
    replayed_rows: list[EarnRowReplay] = strawberry.field(
        description="The rows whose key had already booked them, in row order."
    )
    errors: list[UserError] = strawberry.field(
        description="Why the whole batch was refused (then nothing was booked)."
    )


def _refused(error: DomainError) -> EarnPointsBatchPayload:
    return EarnPointsBatchPayload(
        booked=0,
        replayed=0,
        rejected=0,
        transfers=0,
        points=0,
        rejected_rows=[],
        replayed_rows=[],
        errors=[UserError.of(error)],
    )


@strawberry.type
class PointsBatchMutations:
    @strawberry.mutation(
        description=(
            "Give points for many purchases at the calling partner (a day's file, say) in one"
            " transaction. Each row is validated and booked as earnPoints would; rows that fail"
            " are listed in rejectedRows and the others are booked. Replaying rows books nothing."
        ),
        extensions=requires("earnPointsBatch", Scope.POINTS_EARN),
    )
    async def earn_points_batch(
        self, info: Info, input: Request[EarnPointsBatchInput]
    ) -> EarnPointsBatchPayload:
        if len(input.rows) > MAX_ROWS:
            return _refused(
                DomainError(
                    DomainErrorCode.INVALID_INPUT,
                    f"at most {MAX_ROWS:,} rows per call ({len(input.rows):,} given)",
                    ["rows"],
                )
            )
        rows: list[ops.EarnRow] = []
        indexes: list[int] = []  # rows[j] is input row indexes[j]
        refused: list[EarnRowError] = []  # rows whose member id is not even an id
        for index, row in enumerate(input.rows):
            try:
                member = row.member.to_domain()
            except DomainError as exc:
                refused.append(
                    EarnRowError(
                        index=index, code=exc.code, message=exc.message, field=exc.field or None
                    )
                )
                continue
            rows.append(
                ops.EarnRow(
                    member,
                    row.amount,
                    row.reference,
                    row.idempotency_key,
                    row.occurred_at,
                    lines_of(row.lines),
                    row.store_id,
                    row.channel,
                )
            )
            indexes.append(index)

        async def work(conn: AsyncConnection) -> ops.BatchOutcome:
            return await ops.earn_points_batch(conn, info.context.caller, rows)

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return _refused(result)
        rejected = refused + [
            EarnRowError(
                index=indexes[r.index], code=r.code, message=r.message, field=r.field or None
            )
            for r in result.rejected
        ]
        rejected.sort(key=lambda e: e.index)
        return EarnPointsBatchPayload(
            booked=result.booked,
            replayed=len(result.replayed),
            rejected=len(rejected),
            transfers=result.transfers,
            points=result.points,
            rejected_rows=rejected,
            replayed_rows=[
                EarnRowReplay(
                    index=indexes[r.index],
                    transfer_id=to_global_id("Transfer", r.transfer_id) if r.transfer_id else None,
                    points=r.points,
                )
                for r in result.replayed
            ],
            errors=[],
        )
