"""GraphQL types of settlement: periods, obligations, positions, instructions, statements,
verification, partner reports and reconciliation breaks. Money is a Decimal in currency
units (a string such as "149.90"), converted exactly from integer minor units."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated

import strawberry

from core.caller import OPERATOR_PARTY
from core.errors import DomainError
from partners.settings import load_settings
from schema.context import Info
from schema.enums import described_enum
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
    is_operator: bool = strawberry.field(description="Whether the party is the operator.")
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


class SettlementStatus(Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    SETTLED = "SETTLED"


described_enum(
    SettlementStatus,
    name="SettlementStatus",
    description="Where a settlement period stands.",
    values={
        "OPEN": "The one period new bookings land in; its figures are provisional.",
        "CLOSED": "Frozen at its cutoff: obligations, positions and payment instructions are"
        " final; payments are being made.",
        "SETTLED": "Every payment instruction has been paid.",
    },
)


class ObligationKind(Enum):
    REDEMPTION = "REDEMPTION"
    CLAWBACK = "CLAWBACK"
    DEBT_REPAYMENT = "DEBT_REPAYMENT"
    CLEARING_FEE = "CLEARING_FEE"
    ISSUANCE = "ISSUANCE"
    ADJUSTMENT = "ADJUSTMENT"
    REDEMPTION_REVERSAL = "REDEMPTION_REVERSAL"
    CLEARING_FEE_REVERSAL = "CLEARING_FEE_REVERSAL"
    ISSUANCE_REVERSAL = "ISSUANCE_REVERSAL"


described_enum(
    ObligationKind,
    name="ObligationKind",
    description="Why money is owed between two settlement parties (see the funding models"
    " in the README). New kinds may be added.",
    values={
        "REDEMPTION": "Redemption-funded: the issuer owes the redeeming partner for its points"
        " redeemed there (points × pointValue); issuance-funded: the operator owes the"
        " redeeming partner its redeemPrice per point.",
        "CLAWBACK": "An earn reversal took back another issuer's points: that issuer owes the"
        " partner that reversed (its points paid for the refund).",
        "DEBT_REPAYMENT": "Another issuer's points repaid a member's debt to a partner: that"
        " issuer owes the partner.",
        "CLEARING_FEE": "The redeeming partner owes the operator the clearing fee for another"
        " partner's points it accepted.",
        "ISSUANCE": "Issuance-funded: the issuing partner owes the operator its issuePrice per"
        " point issued.",
        "ADJUSTMENT": "A correction booked when the operator resolved a reconciliation break"
        " with ADJUST.",
        "REDEMPTION_REVERSAL": "A refunded redemption: the opposite of its REDEMPTION"
        " obligation, at the original unit price.",
        "CLEARING_FEE_REVERSAL": "A refunded redemption: the opposite of its CLEARING_FEE.",
        "ISSUANCE_REVERSAL": "A reversed earn (issuance-funded): the opposite of its ISSUANCE.",
    },
)


@strawberry.type(description="Gross obligations of one kind from one debtor to one creditor.")
class Obligation:
    debtor: SettlementParty = strawberry.field(description="Who owes.")
    creditor: SettlementParty = strawberry.field(description="Who is owed.")
    kind: ObligationKind = strawberry.field(description="Why it is owed.")
    points: int = strawberry.field(description="The points behind it.")
    amount: Decimal = strawberry.field(
        description="The money owed, in currency units at the currency's scale (each"
        " obligation rounded once, half to even)."
    )
    count: int = strawberry.field(description="How many obligations this line adds up.")

    @classmethod
    def of(cls, r: GrossLineRecord, exponent: int) -> Obligation:
        return cls(
            debtor=SettlementParty.of(r.debtor_id),
            creditor=SettlementParty.of(r.creditor_id),
            kind=ObligationKind(r.kind),
            points=r.points,
            amount=money(r.amount, exponent),
            count=r.obligations,
        )


@strawberry.type(description="A party's multilateral position: receivable − payable (sums to 0).")
class NetPosition:
    party: SettlementParty = strawberry.field(description="Whose position.")
    receivable: Decimal = strawberry.field(description="What the party is owed in total.")
    payable: Decimal = strawberry.field(description="What the party owes in total.")
    net: Decimal = strawberry.field(
        description="receivable − payable: positive, the party is paid; negative, it pays."
    )

    @classmethod
    def of(cls, r: PositionRecord, exponent: int) -> NetPosition:
        return cls(
            party=SettlementParty.of(r.party_id),
            receivable=money(r.receivable, exponent),
            payable=money(r.payable, exponent),
            net=money(r.net, exponent),
        )


@strawberry.type(
    description="A payment that settles a closed period: at most N−1 of them for N parties"
    " with a non-zero position."
)
class PaymentInstruction(Node):
    payer: SettlementParty = strawberry.field(description="Who pays.")
    payee: SettlementParty = strawberry.field(description="Who is paid.")
    amount: Decimal = strawberry.field(description="How much, in currency units.")
    paid_at: datetime | None = strawberry.field(
        description="When the operator recorded it paid; null while unpaid."
    )
    bank_reference: str | None = strawberry.field(
        description="The bank's reference of the payment, as recorded."
    )

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
    party: SettlementParty = strawberry.field(description="Whose statement.")
    period_status: SettlementStatus = strawberry.field(
        description="The period's status (figures are provisional while OPEN)."
    )
    currency: str = strawberry.field(description="The currency of every amount (ISO 4217).")
    points_issued: int = strawberry.field(description="Points the party's members earned there.")
    earn_reversal_points: int = strawberry.field(description="Points of earns reversed there.")
    redemption_reversal_points: int = strawberry.field(
        description="Points of redemptions refunded there."
    )
    own_points_redeemed_here: int = strawberry.field(
        description="Points the party issued and that were redeemed at the party itself."
    )
    points_redeemed_elsewhere: int = strawberry.field(
        description="Points the party issued that were redeemed at other partners."
    )
    others_points_redeemed_here: int = strawberry.field(
        description="Points other partners issued that were redeemed at the party."
    )
    breakage_points: int = strawberry.field(
        description="Points the party issued that expired unused."
    )
    fees: Decimal = strawberry.field(description="Clearing fees the party owes the operator.")
    gross_payable: Decimal = strawberry.field(description="What the party owes, gross.")
    gross_receivable: Decimal = strawberry.field(description="What the party is owed, gross.")
    net: Decimal = strawberry.field(description="gross receivable − gross payable.")
    lines: list[Obligation] = strawberry.field(
        description="The gross obligation lines the party is party to."
    )
    instructions: list[PaymentInstruction] = strawberry.field(
        description="The payments the party makes or receives."
    )

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


class VerificationCheck(Enum):
    OBLIGATION = "OBLIGATION"
    GROSS_LINE = "GROSS_LINE"
    POSITION = "POSITION"
    POSITIONS_SUM = "POSITIONS_SUM"
    INSTRUCTIONS = "INSTRUCTIONS"
    INSTRUCTION_COUNT = "INSTRUCTION_COUNT"


described_enum(
    VerificationCheck,
    name="VerificationCheck",
    description="Which check of a period's verification found a difference.",
    values={
        "OBLIGATION": "An obligation differs from what the ledger's consumptions, reversals"
        " and fees imply (recomputed independently of the booking code).",
        "GROSS_LINE": "A frozen gross line differs from the period's obligations.",
        "POSITION": "A stored position differs from what the gross lines imply.",
        "POSITIONS_SUM": "The positions do not sum to zero.",
        "INSTRUCTIONS": "A party's payment instructions do not add up to its net position.",
        "INSTRUCTION_COUNT": "More payment instructions than parties with a position minus one.",
    },
)


class ReportRecordKind(Enum):
    EARN = "EARN"
    REDEEM = "REDEEM"
    REVERSAL = "REVERSAL"


described_enum(
    ReportRecordKind,
    name="ReportRecordKind",
    description="What a record of a partner's report is; matched with the partner's own"
    " transfers of the period by (reference, kind).",
    values={
        "EARN": "An earn: `amount` is the purchase amount.",
        "REDEEM": "A redemption: `amount` is the points' value.",
        "REVERSAL": "A reversal, matched by its original transfer's reference.",
    },
)


class BreakKind(Enum):
    MISSING_IN_LEDGER = "MISSING_IN_LEDGER"
    MISSING_IN_REPORT = "MISSING_IN_REPORT"
    POINTS_MISMATCH = "POINTS_MISMATCH"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    DUPLICATE = "DUPLICATE"


described_enum(
    BreakKind,
    name="BreakKind",
    description="How a partner's report and the ledger disagree.",
    values={
        "MISSING_IN_LEDGER": "The report has a record the ledger does not.",
        "MISSING_IN_REPORT": "The ledger has a transfer of the partner the report lacks.",
        "POINTS_MISMATCH": "Both have it, with different points.",
        "AMOUNT_MISMATCH": "Both have it, with different amounts (an earn's purchase amount,"
        " a redemption's value).",
        "DUPLICATE": "The report has the same (reference, kind) more than once.",
    },
)


class BreakStatus(Enum):
    OPEN = "OPEN"
    ACCEPTED = "ACCEPTED"
    ADJUSTED = "ADJUSTED"


described_enum(
    BreakStatus,
    name="BreakStatus",
    description="Where a reconciliation break stands.",
    values={
        "OPEN": "Not resolved yet.",
        "ACCEPTED": "Resolved by the operator with ACCEPT: nothing booked, a note kept.",
        "ADJUSTED": "Resolved by the operator with ADJUST: an ADJUSTMENT transfer and its"
        " obligation were booked.",
    },
)


class ReportSource(Enum):
    API = "API"
    CSV = "CSV"


described_enum(
    ReportSource,
    name="ReportSource",
    description="How a partner's report reached the platform.",
    values={
        "API": "Through submitPartnerReport.",
        "CSV": "As a CSV file the operator loaded (`coalition settlement report`).",
    },
)


@strawberry.type(description="One difference a period's verification found.")
class VerificationDifference:
    check: VerificationCheck = strawberry.field(description="Which check found it.")
    message: str = strawberry.field(description="What differs, for people.")
    expected: str | None = strawberry.field(
        description="What the check expected (minor units or points), if a figure."
    )
    actual: str | None = strawberry.field(description="What was found, if a figure.")


@strawberry.type(description="Proof that obligations equal what the ledger implies.")
class PeriodVerification:
    ok: bool = strawberry.field(description="True when no difference was found.")
    obligations_checked: int = strawberry.field(description="How many obligations were checked.")
    differences: list[VerificationDifference] = strawberry.field(
        description="Every difference found (at most 1,000 are listed)."
    )


@strawberry.type(
    description="A disagreement between a partner's report and the ledger, for the operator"
    " to resolve."
)
class ReconciliationBreak(Node):
    kind: BreakKind = strawberry.field(description="How they disagree.")
    record_kind: ReportRecordKind = strawberry.field(description="What kind of record.")
    reference: str = strawberry.field(
        description="The partner's reference the record and the transfer share."
    )
    reported_points: int | None = strawberry.field(
        description="Points in the report; null when missing there."
    )
    ledger_points: int | None = strawberry.field(
        description="Points in the ledger; null when missing there."
    )
    reported_amount: Decimal | None = strawberry.field(description="Amount in the report.")
    ledger_amount: Decimal | None = strawberry.field(description="Amount in the ledger.")
    status: BreakStatus = strawberry.field(description="Where the break stands.")
    note: str | None = strawberry.field(description="The operator's note when resolving.")
    adjustment_points: int | None = strawberry.field(
        description="ADJUSTED: the signed points booked (positive: the operator owed the partner)."
    )
    created_at: datetime = strawberry.field(description="When the report revealed it.")
    resolved_at: datetime | None = strawberry.field(description="When it was resolved.")

    @classmethod
    def of(cls, r: BreakRecord) -> ReconciliationBreak:
        return cls(
            id=to_global_id("ReconciliationBreak", r.id),
            kind=BreakKind(r.kind),
            record_kind=ReportRecordKind(r.record_kind),
            reference=r.reference,
            reported_points=r.reported_points,
            ledger_points=r.ledger_points,
            reported_amount=r.reported_amount,
            ledger_amount=r.ledger_amount,
            status=BreakStatus(r.status),
            note=r.note,
            adjustment_points=r.adjustment_points,
            created_at=r.created_at,
            resolved_at=r.resolved_at,
        )


@strawberry.type(description="A partner's own record of a period, and the breaks it revealed.")
class PartnerReport(Node):
    source: ReportSource = strawberry.field(description="How it was submitted.")
    record_count: int = strawberry.field(description="How many records it held.")
    submitted_at: datetime = strawberry.field(description="When it was submitted.")
    breaks: list[ReconciliationBreak] = strawberry.field(
        description="Every disagreement with the ledger it revealed."
    )
    record: strawberry.Private[ReportRecord]

    @classmethod
    def of(cls, r: ReportRecord) -> PartnerReport:
        return cls(
            id=to_global_id("PartnerReport", r.id),
            source=ReportSource(r.source),
            record_count=r.record_count,
            submitted_at=r.submitted_at,
            breaks=[ReconciliationBreak.of(b) for b in r.breaks],
            record=r,
        )

    @strawberry.field(description="The partner the report is for.")
    async def partner(self, info: Info) -> Partner | None:
        found = await info.context.partners.load(self.record.partner_id)
        return Partner.of(found) if found else None


@strawberry.type(
    description="A span of bookings settled together: exactly one is OPEN; closing it at a"
    " cutoff freezes its obligations and opens the next."
)
class SettlementPeriod(Node):
    status: SettlementStatus = strawberry.field(description="Where the period stands.")
    starts_at: datetime = strawberry.field(
        description="Bookings from this instant (the previous period's cutoff) belong here."
    )
    cutoff: datetime | None = strawberry.field(
        description="Bookings before this instant belong here; null while OPEN."
    )
    closed_at: datetime | None = strawberry.field(description="When it was closed.")
    settled_at: datetime | None = strawberry.field(
        description="When its last payment was recorded."
    )
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
        self,
        info: Info,
        partner_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description="Operator only: the partner whose statement (default: the"
                " caller's own; the operator's own when the operator calls)."
            ),
        ] = None,
    ) -> SettlementStatement | None:
        caller = info.context.caller
        try:
            if partner_id is not None:
                party = from_global_id(partner_id, "Partner", ["partnerId"])[1]
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
                    check=VerificationCheck(d.check),
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
