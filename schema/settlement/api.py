"""Settlement queries and mutations: periods, close, payments, partner reports, breaks."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit
from core.audit import AuditAction
from core.caller import Scope
from core.errors import DomainError
from partners.settings import load_settings
from schema.audit import break_details, payment_details, report_details
from schema.context import Info
from schema.enums import described_enum
from schema.errors import UserError, query_error
from schema.mutation import Request, in_transaction
from schema.permissions import requires
from schema.relay import (
    After,
    Connection,
    First,
    connection,
    decode_cursor,
    from_global_id,
    page_size,
)
from schema.settlement.types import (
    PartnerReport,
    PaymentInstruction,
    ReconciliationBreak,
    ReportRecordKind,
    SettlementPeriod,
)
from settlement import close, payments, periods, reconciliation
from settlement.records import ReportLine


@strawberry.input(description="Which period to close, and where.")
class CloseSettlementPeriodInput:
    cutoff: datetime | None = strawberry.field(
        default=None, description="Default now; not before the period's start, not in the future."
    )
    period_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The OPEN period you mean to close: a retried close of an already closed"
        " period is refused instead of closing the next one.",
    )


@strawberry.type(description="The result of closeSettlementPeriod.")
class CloseSettlementPeriodPayload:
    period: SettlementPeriod | None = strawberry.field(
        description="The period just closed, with its settlement; null when refused."
    )
    errors: list[UserError] = strawberry.field(
        description="Why it was refused; empty when the period was closed."
    )


@strawberry.input(description="A payment instruction the bank has executed.")
class RecordSettlementPaymentInput:
    instruction_id: strawberry.ID = strawberry.field(
        description="The payment instruction's global id."
    )
    bank_reference: str = strawberry.field(
        description="The bank's reference of the payment (1 to 200 characters)."
    )


@strawberry.type(description="The result of recordSettlementPayment.")
class RecordSettlementPaymentPayload:
    instruction: PaymentInstruction | None = strawberry.field(
        description="The instruction, now paid; null when refused."
    )
    period: SettlementPeriod | None = strawberry.field(
        description="Its period (SETTLED once its last payment is recorded)."
    )
    errors: list[UserError] = strawberry.field(
        description="Why it was refused; empty when the payment was recorded."
    )


@strawberry.input(description="One record of a partner's own account of the period.")
class ReportRecordInput:
    reference: str = strawberry.field(
        description="The partner's reference (a reversal: its original transfer's reference)."
    )
    kind: ReportRecordKind = strawberry.field(description="What the record is.")
    points: int = strawberry.field(description="Points, positive.")
    amount: Decimal | None = strawberry.field(
        default=None, description="EARN: the purchase amount; REDEEM: the points' value."
    )


@strawberry.input(description="A partner's own record of a closed period.")
class SubmitPartnerReportInput:
    period_id: strawberry.ID = strawberry.field(description="The period's global id.")
    records: list[ReportRecordInput] = strawberry.field(
        description="Every earn, redemption and reversal the partner has for the period."
    )
    partner_id: strawberry.ID | None = strawberry.field(
        default=None, description="Operator only: the partner the report is for."
    )


@strawberry.type(description="The result of submitPartnerReport.")
class SubmitPartnerReportPayload:
    report: PartnerReport | None = strawberry.field(
        description="The stored report with the breaks found; null when refused."
    )
    errors: list[UserError] = strawberry.field(
        description="Why it was refused (then nothing was stored)."
    )


class BreakResolution(Enum):
    ACCEPT = "ACCEPT"
    ADJUST = "ADJUST"


described_enum(
    BreakResolution,
    name="BreakResolution",
    description="How the operator resolves a reconciliation break.",
    values={
        "ACCEPT": "Accept the difference with a note; nothing is booked.",
        "ADJUST": "Book an ADJUSTMENT transfer against the operator's adjustment account, and"
        " its obligation in the OPEN period.",
    },
)


@strawberry.input(description="A reconciliation break to resolve.")
class ResolveReconciliationBreakInput:
    break_id: strawberry.ID = strawberry.field(description="The break's global id.")
    action: BreakResolution = strawberry.field(description="How to resolve it.")
    note: str | None = strawberry.field(
        default=None, description="Why (required to ACCEPT; at most 1000 characters)."
    )
    points: int | None = strawberry.field(
        default=None,
        description="ADJUST: signed points (positive: the operator owes the partner);"
        " default from the break.",
    )


@strawberry.type(description="The result of resolveReconciliationBreak.")
class ResolveReconciliationBreakPayload:
    break_: ReconciliationBreak | None = strawberry.field(
        name="break", description="The break, now resolved; null when refused."
    )
    errors: list[UserError] = strawberry.field(
        description="Why it was refused; empty when the break was resolved."
    )


@strawberry.type
class SettlementQueries:
    @strawberry.field(
        description="Settlement periods, oldest first.",
        extensions=requires("settlementPeriods", Scope.SETTLEMENT_READ),
    )
    async def settlement_periods(
        self, info: Info, first: First = None, after: After = None
    ) -> Connection[SettlementPeriod]:
        try:
            size = page_size(first)
            cursor = decode_cursor(after)
        except DomainError as exc:
            raise query_error(exc) from exc
        async with info.context.read() as conn:
            rows = await periods.list_periods(conn, cursor, size + 1)
        return connection(
            [SettlementPeriod.of(r) for r in rows], [r.id for r in rows], size, cursor
        )

    @strawberry.field(
        description="A settlement period by its global id, or null.",
        extensions=requires("settlementPeriod", Scope.SETTLEMENT_READ),
    )
    async def settlement_period(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The period's global id.")],
    ) -> SettlementPeriod | None:
        try:
            _, period_id = from_global_id(id, "SettlementPeriod")
        except DomainError as exc:
            raise query_error(exc) from exc
        async with info.context.read() as conn:
            found = await periods.get_period(conn, period_id)
        return SettlementPeriod.of(found) if found else None

    @strawberry.field(
        description="The period now OPEN (where new bookings land).",
        extensions=requires("currentSettlementPeriod", Scope.SETTLEMENT_READ),
    )
    async def current_settlement_period(self, info: Info) -> SettlementPeriod:
        async with info.context.read() as conn:
            return SettlementPeriod.of(await periods.current_period(conn))


@strawberry.type
class SettlementMutations:
    @strawberry.mutation(
        description="Close the OPEN period at the cutoff and compute its settlement.",
        extensions=requires("closeSettlementPeriod", Scope.OPERATOR),
    )
    async def close_settlement_period(
        self, info: Info, input: Request[CloseSettlementPeriodInput]
    ) -> CloseSettlementPeriodPayload:
        async def work(conn: AsyncConnection) -> SettlementPeriod:
            expected = (
                from_global_id(input.period_id, "SettlementPeriod", ["periodId"])[1]
                if input.period_id is not None
                else None
            )
            # The period is checked under the close's lock: parallel closes of one period
            # close it once, the others get PERIOD_NOT_FOUND.
            closed = await close.close_period(conn, input.cutoff, expected)
            await audit.record(
                conn,
                info.context.caller.client_id,
                AuditAction.SETTLEMENT_PERIOD_CLOSED,
                "SettlementPeriod",
                closed.id,
                {"cutoff": closed.cutoff, "status": closed.status},
            )
            return SettlementPeriod.of(closed)

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return CloseSettlementPeriodPayload(period=None, errors=[UserError.of(result)])
        return CloseSettlementPeriodPayload(period=result, errors=[])

    @strawberry.mutation(
        description="Mark a payment instruction paid; the period is SETTLED with the last one.",
        extensions=requires("recordSettlementPayment", Scope.OPERATOR),
    )
    async def record_settlement_payment(
        self, info: Info, input: Request[RecordSettlementPaymentInput]
    ) -> RecordSettlementPaymentPayload:
        async def work(conn: AsyncConnection) -> tuple[PaymentInstruction, SettlementPeriod]:
            _, instruction_id = from_global_id(
                input.instruction_id, "PaymentInstruction", ["instructionId"]
            )
            paid = await payments.record_payment(conn, instruction_id, input.bank_reference)
            exponent = (await load_settings(conn)).currency_exponent
            period = await periods.require_period(conn, paid.period_id)
            await audit.record(
                conn,
                info.context.caller.client_id,
                AuditAction.SETTLEMENT_PAYMENT_RECORDED,
                "PaymentInstruction",
                paid.id,
                payment_details(paid, period.status),
            )
            return PaymentInstruction.of(paid, exponent), SettlementPeriod.of(period)

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return RecordSettlementPaymentPayload(
                instruction=None, period=None, errors=[UserError.of(result)]
            )
        return RecordSettlementPaymentPayload(instruction=result[0], period=result[1], errors=[])

    @strawberry.mutation(
        description="Submit the partner's own record of a period; breaks come back at once.",
        extensions=requires("submitPartnerReport", Scope.RECONCILIATION_WRITE),
    )
    async def submit_partner_report(
        self, info: Info, input: Request[SubmitPartnerReportInput]
    ) -> SubmitPartnerReportPayload:
        async def work(conn: AsyncConnection) -> PartnerReport:
            _, period_id = from_global_id(input.period_id, "SettlementPeriod", ["periodId"])
            partner_id = (
                from_global_id(input.partner_id, "Partner", ["partnerId"])[1]
                if input.partner_id
                else None
            )
            lines = [
                ReportLine(
                    reference=r.reference, kind=r.kind.value, points=r.points, amount=r.amount
                )
                for r in input.records
            ]
            report = await reconciliation.submit_report(
                conn, info.context.caller, period_id, lines, partner_id=partner_id
            )
            await audit.record(
                conn,
                info.context.caller.client_id,
                AuditAction.PARTNER_REPORT_SUBMITTED,
                "PartnerReport",
                report.id,
                report_details(report),
            )
            return PartnerReport.of(report)

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return SubmitPartnerReportPayload(report=None, errors=[UserError.of(result)])
        return SubmitPartnerReportPayload(report=result, errors=[])

    @strawberry.mutation(
        description="Resolve a break: ACCEPT it with a note, or ADJUST with a booked correction.",
        extensions=requires("resolveReconciliationBreak", Scope.OPERATOR),
    )
    async def resolve_reconciliation_break(
        self, info: Info, input: Request[ResolveReconciliationBreakInput]
    ) -> ResolveReconciliationBreakPayload:
        async def work(conn: AsyncConnection) -> ReconciliationBreak:
            _, break_id = from_global_id(input.break_id, "ReconciliationBreak", ["breakId"])
            resolved = await reconciliation.resolve_break(
                conn, info.context.caller, break_id, input.action.value, input.note, input.points
            )
            await audit.record(
                conn,
                info.context.caller.client_id,
                AuditAction.RECONCILIATION_BREAK_RESOLVED,
                "ReconciliationBreak",
                resolved.id,
                break_details(resolved),
            )
            return ReconciliationBreak.of(resolved)

        result = await in_transaction(info, work)
        if isinstance(result, DomainError):
            return ResolveReconciliationBreakPayload(break_=None, errors=[UserError.of(result)])
        return ResolveReconciliationBreakPayload(break_=result, errors=[])
