"""Tables of settlement: periods, obligations, the frozen results of a close, reconciliation.

Parties (debtor, creditor, payer, payee, party) are partner ids or `core.caller.OPERATOR_PARTY`
(the zero UUID), so they carry no foreign key. Money is bigint minor units.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlmodel import Field, SQLModel

# The referenced tables must be in the metadata (Alembic's env imports only this module).
import ledger.models  # noqa: F401
import members.models  # noqa: F401
import partners.models  # noqa: F401
from db.columns import (
    decimal_field,
    id_field,
    points_field,
    ref_field,
    text_field,
    time_field,
)


def _key(target: str | None = None) -> Any:
    """A uuid column that is part of a composite primary key."""
    args: list[Any] = [PG_UUID(as_uuid=True)]
    if target:
        args.append(ForeignKey(target))
    return Field(sa_column=Column(*args, primary_key=True))


class SettlementPeriod(SQLModel, table=True):
    __tablename__ = "settlement_periods"
    __table_args__ = (
        CheckConstraint("status IN ('OPEN', 'CLOSED', 'SETTLED')", name="status_known"),
        CheckConstraint("cutoff IS NULL OR cutoff >= starts_at", name="cutoff_after_start"),
        # Exactly one OPEN period: the index admits a single row with status 'OPEN'.
        Index(
            "ux_settlement_periods_open",
            "status",
            unique=True,
            postgresql_where=text("status = 'OPEN'"),
        ),
    )
    id: uuid.UUID = id_field()
    status: str = text_field(default="OPEN")
    starts_at: datetime = time_field()
    cutoff: datetime | None = time_field(nullable=True)
    closed_at: datetime | None = time_field(nullable=True)
    settled_at: datetime | None = time_field(nullable=True)


class SettlementTerms(SQLModel, table=True):
    """History of the coalition's settlement terms, appended by a trigger on coalition_settings,
    so verification prices a transfer with the terms in force when it was booked."""

    __tablename__ = "settlement_terms"
    id: int = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    effective_from: datetime = time_field()
    funding_model: str = text_field()
    point_value: Decimal = decimal_field()
    clearing_fee: Decimal = decimal_field()
    currency_exponent: int = Field(sa_column=Column(Integer, nullable=False))


class Obligation(SQLModel, table=True):
    """Money one party owes another because of one transfer (debtor pays creditor `amount`)."""

    __tablename__ = "obligations"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        CheckConstraint("points >= 0", name="points_non_negative"),
        CheckConstraint("debtor_id <> creditor_id", name="distinct_parties"),
        Index("ix_obligations_period_created", "period_id", "created_at"),
        Index("ix_obligations_transfer", "transfer_id"),
    )
    id: uuid.UUID = id_field()
    period_id: uuid.UUID = ref_field("settlement_periods.id")
    transfer_id: uuid.UUID | None = ref_field("transfers.id", nullable=True)
    # Whose points the obligation is about (null: all points of the transfer).
    issuer_id: uuid.UUID | None = ref_field(None, nullable=True)
    debtor_id: uuid.UUID = ref_field(None)
    creditor_id: uuid.UUID = ref_field(None)
    kind: str = text_field()
    points: int = points_field()
    unit_price: Decimal = decimal_field()
    amount: int = points_field()
    created_at: datetime = time_field()


class GrossLine(SQLModel, table=True):
    """The gross obligation matrix of a closed period, per kind."""

    __tablename__ = "settlement_gross_lines"
    period_id: uuid.UUID = _key("settlement_periods.id")
    debtor_id: uuid.UUID = _key()
    creditor_id: uuid.UUID = _key()
    kind: str = Field(sa_column=Column(Text, primary_key=True))
    points: int = points_field()
    amount: int = points_field()
    obligations: int = points_field()


class BilateralNet(SQLModel, table=True):
    """Per pair (party_a < party_b): what each owes the other; net > 0 means a pays b."""

    __tablename__ = "settlement_bilateral_nets"
    __table_args__ = (CheckConstraint("party_a < party_b", name="ordered_pair"),)
    period_id: uuid.UUID = _key("settlement_periods.id")
    party_a: uuid.UUID = _key()
    party_b: uuid.UUID = _key()
    a_owes_b: int = points_field()
    b_owes_a: int = points_field()
    net: int = points_field()


class Position(SQLModel, table=True):
    """A party's multilateral net position: net = receivable - payable (> 0: it is paid)."""

    __tablename__ = "settlement_positions"
    period_id: uuid.UUID = _key("settlement_periods.id")
    party_id: uuid.UUID = _key()
    receivable: int = points_field()
    payable: int = points_field()
    net: int = points_field()


class PaymentInstruction(SQLModel, table=True):
    __tablename__ = "settlement_instructions"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("payer_id <> payee_id", name="distinct_parties"),
    )
    id: uuid.UUID = id_field()
    period_id: uuid.UUID = ref_field("settlement_periods.id", index=True)
    payer_id: uuid.UUID = ref_field(None)
    payee_id: uuid.UUID = ref_field(None)
    amount: int = points_field()
    paid_at: datetime | None = time_field(nullable=True)
    bank_reference: str | None = text_field(nullable=True)


class Statement(SQLModel, table=True):
    """One party's figures for a closed period (points, breakage, fees and money)."""

    __tablename__ = "settlement_statements"
    period_id: uuid.UUID = _key("settlement_periods.id")
    party_id: uuid.UUID = _key()
    points_issued: int = points_field()
    earn_reversal_points: int = points_field()
    redemption_reversal_points: int = points_field()
    own_points_redeemed_here: int = points_field()
    points_redeemed_elsewhere: int = points_field()
    others_points_redeemed_here: int = points_field()
    breakage_points: int = points_field()
    fees: int = points_field()
    gross_payable: int = points_field()
    gross_receivable: int = points_field()
    net: int = points_field()


class PartnerReport(SQLModel, table=True):
    __tablename__ = "partner_reports"
    __table_args__ = (Index("ix_partner_reports_partner_period", "partner_id", "period_id"),)
    id: uuid.UUID = id_field()
    period_id: uuid.UUID = ref_field("settlement_periods.id")
    partner_id: uuid.UUID = ref_field("partners.id")
    client_id: str = text_field()
    source: str = text_field()
    record_count: int = Field(sa_column=Column(Integer, nullable=False))
    submitted_at: datetime = time_field(default_now=True)


class ReportRecord(SQLModel, table=True):
    __tablename__ = "partner_report_records"
    __table_args__ = (
        CheckConstraint("kind IN ('EARN', 'REDEEM', 'REVERSAL')", name="kind_known"),
        CheckConstraint("points > 0", name="points_positive"),
    )
    id: uuid.UUID = id_field()
    report_id: uuid.UUID = ref_field("partner_reports.id", index=True)
    line_no: int = Field(sa_column=Column(Integer, nullable=False))
    reference: str = text_field()
    kind: str = text_field()
    points: int = points_field()
    amount: Decimal | None = decimal_field(nullable=True)


class ReconciliationBreak(SQLModel, table=True):
    __tablename__ = "reconciliation_breaks"
    __table_args__ = (
        CheckConstraint("status IN ('OPEN', 'ACCEPTED', 'ADJUSTED')", name="status_known"),
        Index("ix_reconciliation_breaks_partner_period", "partner_id", "period_id"),
    )
    id: uuid.UUID = id_field()
    report_id: uuid.UUID = ref_field("partner_reports.id", index=True)
    period_id: uuid.UUID = ref_field("settlement_periods.id")
    partner_id: uuid.UUID = ref_field("partners.id")
    kind: str = text_field()
    record_kind: str = text_field()
    reference: str = text_field()
    reported_points: int | None = points_field(nullable=True)
    ledger_points: int | None = points_field(nullable=True)
    reported_amount: Decimal | None = decimal_field(nullable=True)
    ledger_amount: Decimal | None = decimal_field(nullable=True)
    status: str = text_field(default="OPEN")
    note: str | None = text_field(nullable=True)
    adjustment_points: int | None = points_field(nullable=True)
    adjustment_transfer_id: uuid.UUID | None = ref_field("transfers.id", nullable=True)
    created_at: datetime = time_field(default_now=True)
    resolved_at: datetime | None = time_field(nullable=True)
    resolved_by: str | None = text_field(nullable=True)
