"""What settlement functions return: frozen dataclasses, never ORM objects."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class PeriodRecord:
    id: uuid.UUID
    status: str  # OPEN, CLOSED or SETTLED
    starts_at: datetime
    cutoff: datetime | None
    closed_at: datetime | None
    settled_at: datetime | None


@dataclass(frozen=True)
class GrossLineRecord:
    period_id: uuid.UUID
    debtor_id: uuid.UUID
    creditor_id: uuid.UUID
    kind: str
    points: int
    amount: int  # minor units
    obligations: int


@dataclass(frozen=True)
class BilateralNetRecord:
    period_id: uuid.UUID
    party_a: uuid.UUID  # party_a < party_b
    party_b: uuid.UUID
    a_owes_b: int
    b_owes_a: int
    net: int  # > 0: a pays b


@dataclass(frozen=True)
class PositionRecord:
    period_id: uuid.UUID
    party_id: uuid.UUID
    receivable: int
    payable: int
    net: int  # receivable - payable; > 0: the party is paid


@dataclass(frozen=True)
class InstructionRecord:
    id: uuid.UUID
    period_id: uuid.UUID
    payer_id: uuid.UUID
    payee_id: uuid.UUID
    amount: int
    paid_at: datetime | None
    bank_reference: str | None


@dataclass(frozen=True)
class StatementRecord:
    period_id: uuid.UUID
    party_id: uuid.UUID
    period_status: str
    currency: str
    currency_exponent: int
    points_issued: int
    earn_reversal_points: int
    redemption_reversal_points: int
    own_points_redeemed_here: int
    points_redeemed_elsewhere: int
    others_points_redeemed_here: int
    breakage_points: int
    fees: int
    gross_payable: int
    gross_receivable: int
    net: int
    lines: tuple[GrossLineRecord, ...] = field(default=())
    instructions: tuple[InstructionRecord, ...] = field(default=())


@dataclass(frozen=True)
class ReportLine:
    """One record of a partner's own account of a period."""

    reference: str
    kind: str  # EARN, REDEEM or REVERSAL
    points: int
    amount: Decimal | None = None


@dataclass(frozen=True)
class BreakRecord:
    id: uuid.UUID
    report_id: uuid.UUID
    period_id: uuid.UUID
    partner_id: uuid.UUID
    kind: str  # MISSING_IN_LEDGER, MISSING_IN_REPORT, POINTS_MISMATCH, AMOUNT_MISMATCH, DUPLICATE
    record_kind: str
    reference: str
    reported_points: int | None
    ledger_points: int | None
    reported_amount: Decimal | None
    ledger_amount: Decimal | None
    status: str  # OPEN, ACCEPTED, ADJUSTED
    note: str | None
    adjustment_points: int | None
    adjustment_transfer_id: uuid.UUID | None
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


@dataclass(frozen=True)
class ReportRecord:
    id: uuid.UUID
    period_id: uuid.UUID
    partner_id: uuid.UUID
    client_id: str
    source: str  # API or CSV
    record_count: int
    submitted_at: datetime
    breaks: tuple[BreakRecord, ...] = field(default=())
