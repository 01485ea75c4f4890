"""Tables of the ledger: accounts, immutable transfers, lots, consumptions, debts, holds, keys.

Transfers and consumptions are append-only. `lots.remaining`, `debts.remaining` and
`holds.status` are the only mutable columns, always changed under the member's row lock.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from db.columns import (
    decimal_field,
    id_field,
    json_field,
    points_field,
    ref_field,
    text_field,
    time_field,
)


class Account(SQLModel, table=True):
    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("code", "owner_id"),)
    id: uuid.UUID = id_field()
    code: str = text_field()
    owner_id: uuid.UUID = ref_field(None)
    created_at: datetime = time_field(default_now=True)


class Transfer(SQLModel, table=True):
    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        Index("ix_transfers_member", "member_id", "id"),
        Index("ix_transfers_partner_created", "partner_id", "created_at"),
        Index("ix_transfers_reversal_of", "reversal_of_id"),
    )
    id: uuid.UUID = id_field()
    code: str = text_field()
    debit_account_id: uuid.UUID = ref_field("accounts.id")
    credit_account_id: uuid.UUID = ref_field("accounts.id")
    points: int = points_field()
    # Null only for operator adjustments between partner and operator accounts.
    member_id: uuid.UUID | None = ref_field("members.id", nullable=True)
    partner_id: uuid.UUID | None = ref_field("partners.id", nullable=True)
    client_id: str | None = text_field(nullable=True)
    reference: str | None = text_field(nullable=True)
    reversal_of_id: uuid.UUID | None = ref_field("transfers.id", nullable=True)
    amount: Decimal | None = decimal_field(nullable=True)
    metadata_: dict[str, Any] = json_field()
    occurred_at: datetime = time_field()
    created_at: datetime = time_field()


class Lot(SQLModel, table=True):
    __tablename__ = "lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_in_range"),
        Index("ix_lots_open", "member_id", "expires_at", postgresql_where="remaining > 0"),
        Index("ix_lots_expiring", "expires_at", postgresql_where="remaining > 0"),
    )
    id: uuid.UUID = id_field()
    member_id: uuid.UUID = ref_field("members.id")
    issuer_partner_id: uuid.UUID = ref_field("partners.id")
    transfer_id: uuid.UUID = ref_field("transfers.id", index=True)
    points: int = points_field()
    remaining: int = points_field()
    available_at: datetime = time_field()
    expires_at: datetime = time_field()


class Consumption(SQLModel, table=True):
    """Points taken from (positive) or restored to (negative) a lot by one transfer.

    kind: REDEEM, CLAWBACK (an earn reversal taking other points), DEBT_REPAYMENT,
    EXPIRY, RESTORE (a redemption reversal), REVERSAL (an earn reversal taking its own lot).
    """

    __tablename__ = "consumptions"
    __table_args__ = (CheckConstraint("points <> 0", name="points_non_zero"),)
    id: uuid.UUID = id_field()
    transfer_id: uuid.UUID = ref_field("transfers.id", index=True)
    lot_id: uuid.UUID = ref_field("lots.id", index=True)
    kind: str = text_field()
    issuer_partner_id: uuid.UUID = ref_field("partners.id")
    redeemer_partner_id: uuid.UUID | None = ref_field("partners.id", nullable=True)
    points: int = points_field()


class Debt(SQLModel, table=True):
    """Points a member owes after an earn reversal found too few points to take back."""

    __tablename__ = "debts"
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_in_range"),
    )
    id: uuid.UUID = id_field()
    member_id: uuid.UUID = ref_field("members.id", index=True)
    creditor_partner_id: uuid.UUID = ref_field("partners.id")
    transfer_id: uuid.UUID = ref_field("transfers.id")
    points: int = points_field()
    remaining: int = points_field()
    created_at: datetime = time_field(default_now=True)


class Hold(SQLModel, table=True):
    """Points reserved at checkout (two-phase redemption)."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        Index("ix_holds_active", "member_id", postgresql_where="status = 'ACTIVE'"),
    )
    id: uuid.UUID = id_field()
    member_id: uuid.UUID = ref_field("members.id")
    partner_id: uuid.UUID = ref_field("partners.id")
    client_id: str = text_field()
    points: int = points_field()
    reference: str = text_field()
    status: str = text_field(default="ACTIVE")
    expires_at: datetime = time_field()
    created_at: datetime = time_field(default_now=True)
    resolved_at: datetime | None = time_field(nullable=True)
    transfer_id: uuid.UUID | None = ref_field("transfers.id", nullable=True)


class IdempotencyKey(SQLModel, table=True):
    """A mutation's key, stored in the same transaction as its effect."""

    __tablename__ = "idempotency_keys"
    client_id: str = Field(sa_column=Column(Text, primary_key=True))
    key: str = Field(sa_column=Column(Text, primary_key=True))
    operation: str = text_field()
    request_hash: str = text_field()
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = time_field(default_now=True)
