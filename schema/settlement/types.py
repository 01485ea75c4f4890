"""GraphQL types of settlement: periods, obligations, positions, instructions, statements,
verification, partner reports and reconciliation breaks. Money is a Decimal in currency
units (a string such as "149.90"), converted exactly from integer minor units."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import Enum

import strawberry

from db.ids import OPERATOR_PARTY
from ledger.errors import DomainError
from partners.settings import load_settings
from schema.context import Info
from schema.errors import query_error
from schema.partners.types import Partner
from schema.relay import Node, from_global_id, to_global_id
from settlement import reconciliation, statements, verify, views
from settlement.records import (
    BreakRecord,
    GrossLineRecord,
    InstructionRecord,
    PeriodRecord,
    PositionRecord,
    ReportRecord,
    StatementRecord,
)


async def _exponent(info: Info) -> int:
    async with info.context.read() as conn:
        return (await load_settings(conn)).currency_exponent


def money(minor: int, exponent: int) -> Decimal:
    return Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


@strawberry.type(description="A settlement party: a partner, or the coalition operator.")
class SettlementParty:
    is_operator: bool
    party_id: strawberry.Private[uuid.UUID]

    @classmethod
    def of(cls, party_id: uuid.UUID) -> SettlementParty:
        return cls(is_operator=party_id == OPERATOR_PARTY, party_id=party_id)

    @strawberry.field(description="Null for the operator.")
    async def partner(self, info: Info) -> Partner | None:
        if self.is_operator:
            return None
        found = await info.context.partners.load(self.party_id)
        return Partner.of(found) if found else None


@strawberry.enum
class SettlementStatus(Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    SETTLED = "SETTLED"


@strawberry.type(description="Gross obligations of one kind from one debtor to one creditor.")
class Obligation:
    debtor: SettlementParty
    creditor: SettlementParty
    kind: str
    points: int
    amount: Decimal
    count: int

    @classmethod
    def of(cls, r: GrossLineRecord, exponent: int) -> Obligation:
        return cls(
            debtor=SettlementParty.of(r.debtor_id),
            creditor=SettlementParty.of(r.creditor_id),
            kind=r.kind,
            points=r.points,
            amount=money(r.amount, exponent),
            count=r.obligations,
        )


@strawberry.type(description="A party's multilateral position: receivable − payable (sums to 0).")
class NetPosition:
    party: SettlementParty
    receivable: Decimal
    payable: Decimal
    net: Decimal

    @classmethod
    def of(cls, r: PositionRecord, exponent: int) -> NetPosition:
        return cls(
            party=SettlementParty.of(r.party_id),
            receivable=money(r.receivable, exponent),
            payable=money(r.payable, exponent),
            net=money(r.net, exponent),
        )


@strawberry.type
class PaymentInstruction(Node):
    payer: SettlementParty
    payee: SettlementParty
    amount: Decimal
    paid_at: datetime | None
    bank_reference: str | None

    @classmethod
    def of(cls, r: InstructionRecord, exponent: int) -> PaymentInstruction:
        return cls(
            id=to_global_id("PaymentInstruction", r.id),
            payer=SettlementParty.of(r.payer_id),
            payee=SettlementParty.of(r.payee_id),
            amount=money(r.amount, exponent),
            paid_at=r.paid_at,
            bank_reference=r.bank_reference,
        )


@strawberry.type(description="One party's account of a period.")
class SettlementStatement:
    party: SettlementParty
    period_status: SettlementStatus
    currency: str
    points_issued: int
    earn_reversal_points: int
    redemption_reversal_points: int
    own_points_redeemed_here: int
    points_redeemed_elsewhere: int
    others_points_redeemed_here: int
    breakage_points: int
    fees: Decimal
    gross_payable: Decimal
    gross_receivable: Decimal
    net: Decimal
    lines: list[Obligation]
    instructions: list[PaymentInstruction]

    @classmethod
    def of(cls, r: StatementRecord) -> SettlementStatement:
        e = r.currency_exponent
        return cls(
            party=SettlementParty.of(r.party_id),
            period_status=SettlementStatus(r.period_status),
            currency=r.currency,
            points_issued=r.points_issued,
            earn_reversal_points=r.earn_reversal_points,
            redemption_reversal_points=r.redemption_reversal_points,
            own_points_redeemed_here=r.own_points_redeemed_here,
            points_redeemed_elsewhere=r.points_redeemed_elsewhere,
            others_points_redeemed_here=r.others_points_redeemed_here,
            breakage_points=r.breakage_points,
            fees=money(r.fees, e),
            gross_payable=money(r.gross_payable, e),
            gross_receivable=money(r.gross_receivable, e),
            net=money(r.net, e),
            lines=[Obligation.of(line, e) for line in r.lines],
            instructions=[PaymentInstruction.of(i, e) for i in r.instructions],
        )


@strawberry.type
class VerificationDifference:
    check: str
    message: str
    expected: str | None
    actual: str | None


@strawberry.type(description="Proof that obligations equal what the ledger implies.")
class PeriodVerification:
    ok: bool
    obligations_checked: int
    differences: list[VerificationDifference]


@strawberry.type
class ReconciliationBreak(Node):
    kind: str = strawberry.field(
        description="MISSING_IN_LEDGER, MISSING_IN_REPORT, POINTS_MISMATCH, AMOUNT_MISMATCH"
        " or DUPLICATE."
    )
    record_kind: str
    reference: str
    reported_points: int | None
    ledger_points: int | None
    reported_amount: Decimal | None
    ledger_amount: Decimal | None
    status: str = strawberry.field(description="OPEN, ACCEPTED or ADJUSTED.")
    note: str | None
    adjustment_points: int | None
    created_at: datetime
    resolved_at: datetime | None

    @classmethod
    def of(cls, r: BreakRecord) -> ReconciliationBreak:
        return cls(
            id=to_global_id("ReconciliationBreak", r.id),
            kind=r.kind,
            record_kind=r.record_kind,
            reference=r.reference,
            reported_points=r.reported_points,
            ledger_points=r.ledger_points,
            reported_amount=r.reported_amount,
            ledger_amount=r.ledger_amount,
            status=r.status,
            note=r.note,
            adjustment_points=r.adjustment_points,
            created_at=r.created_at,
            resolved_at=r.resolved_at,
        )


@strawberry.type
class PartnerReport(Node):
    source: str
    record_count: int
    submitted_at: datetime
    breaks: list[ReconciliationBreak]
    record: strawberry.Private[ReportRecord]

    @classmethod
    def of(cls, r: ReportRecord) -> PartnerReport:
        return cls(
            id=to_global_id("PartnerReport", r.id),
            source=r.source,
            record_count=r.record_count,
            submitted_at=r.submitted_at,
            breaks=[ReconciliationBreak.of(b) for b in r.breaks],
            record=r,
        )

    @strawberry.field
    async def partner(self, info: Info) -> Partner | None:
        found = await info.context.partners.load(self.record.partner_id)
        return Partner.of(found) if found else None


@strawberry.type
class SettlementPeriod(Node):
    status: SettlementStatus
    starts_at: datetime
    cutoff: datetime | None
    closed_at: datetime | None
    settled_at: datetime | None
    period_id: strawberry.Private[uuid.UUID]

    @classmethod
    def of(cls, r: PeriodRecord) -> SettlementPeriod:
        return cls(
            id=to_global_id("SettlementPeriod", r.id),
            status=SettlementStatus(r.status),
            starts_at=r.starts_at,
            cutoff=r.cutoff,
            closed_at=r.closed_at,
            settled_at=r.settled_at,
            period_id=r.id,
        )

    @strawberry.field(
        description="The gross obligation matrix (a partner sees the lines it is party to;"
        " provisional while the period is OPEN)."
    )
    async def obligations(self, info: Info) -> list[Obligation]:
        e = await _exponent(info)
        async with info.context.read() as conn:
            rows = await views.gross_lines(conn, info.context.caller, self.period_id)
        return [Obligation.of(r, e) for r in rows]

    @strawberry.field(description="Net positions (a partner sees only its own).")
    async def positions(self, info: Info) -> list[NetPosition]:
        e = await _exponent(info)
        async with info.context.read() as conn:
            rows = await views.positions(conn, info.context.caller, self.period_id)
        return [NetPosition.of(r, e) for r in rows]

    @strawberry.field(description="Payments that settle the period (a partner: its own).")
    async def instructions(self, info: Info) -> list[PaymentInstruction]:
        e = await _exponent(info)
        async with info.context.read() as conn:
            rows = await views.instructions(conn, info.context.caller, self.period_id)
        return [PaymentInstruction.of(r, e) for r in rows]

    @strawberry.field(
        description="A party's statement: the caller's own by default; the operator may name"
        " any partner."
    )
    async def statement(
        self, info: Info, partner_id: strawberry.ID | None = None
    ) -> SettlementStatement | None:
        caller = info.context.caller
        try:
            if partner_id is not None:
                party = from_global_id(partner_id, "Partner")[1]
            else:
                party = caller.partner_id or OPERATOR_PARTY
            async with info.context.read() as conn:
                record = await statements.statement(conn, caller, self.period_id, party)
        except DomainError as exc:
            if exc.code == "PARTNER_NOT_FOUND":
                return None
            raise query_error(exc) from exc
        return SettlementStatement.of(record)

    @strawberry.field(description="Operator only: the internal proof of this period.")
    async def verification(self, info: Info) -> PeriodVerification | None:
        if not info.context.caller.is_operator:
            return None
        async with info.context.read() as conn:
            result = await verify.verify_period(conn, self.period_id)
        return PeriodVerification(
            ok=result.ok,
            obligations_checked=result.obligations_checked,
            differences=[
                VerificationDifference(
                    check=d.check,
                    message=d.message,
                    expected=None if d.expected is None else str(d.expected),
                    actual=None if d.actual is None else str(d.actual),
                )
                for d in result.differences
            ],
        )

    @strawberry.field(description="Reconciliation reports of this period (a partner: its own).")
    async def reports(self, info: Info) -> list[PartnerReport]:
        caller = info.context.caller
        async with info.context.read() as conn:
            reports = await reconciliation.list_reports(
                conn, caller, period_id=self.period_id, limit=100
            )
            breaks = await reconciliation.list_breaks(
                conn, caller, period_id=self.period_id, limit=10_000
            )
        by_report: dict[uuid.UUID, list[BreakRecord]] = {}
        for b in breaks:
            by_report.setdefault(b.report_id, []).append(b)
        return [
            PartnerReport.of(
                ReportRecord(**{**r.__dict__, "breaks": tuple(by_report.get(r.id, []))})
            )
            for r in reports
        ]
