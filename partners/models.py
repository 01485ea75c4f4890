"""Tables of the partners domain: partners, their rate cards, API clients, coalition settings."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, Column, Integer, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from db.columns import decimal_field, id_field, ref_field, text_field, time_field


class Partner(SQLModel, table=True):
    __tablename__ = "partners"
    __table_args__ = (
        CheckConstraint("pending_days >= 0", name="pending_days_non_negative"),
        CheckConstraint("points_validity_days > 0", name="validity_positive"),
    )
    id: uuid.UUID = id_field()
    slug: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    name: str = text_field()
    accepts_redemption: bool = Field(sa_column=Column(Boolean, nullable=False))
    pending_days: int = Field(sa_column=Column(Integer, nullable=False))
    points_validity_days: int = Field(sa_column=Column(Integer, nullable=False))
    created_at: datetime = time_field(default_now=True)


class RateCard(SQLModel, table=True):
    """Effective-dated prices of one partner; the card with the latest effective_from <= t applies."""

    __tablename__ = "rate_cards"
    __table_args__ = (
        UniqueConstraint("partner_id", "effective_from"),
        CheckConstraint("earn_rate >= 0", name="earn_rate_non_negative"),
        CheckConstraint("issue_price >= 0 AND redeem_price >= 0", name="prices_non_negative"),
    )
    id: uuid.UUID = id_field()
    partner_id: uuid.UUID = ref_field("partners.id", index=True)
    effective_from: datetime = time_field()
    earn_rate: Decimal = decimal_field()
    issue_price: Decimal = decimal_field()
    redeem_price: Decimal = decimal_field()
    created_at: datetime = time_field(default_now=True)


class ApiClient(SQLModel, table=True):
    """An OAuth client. The secret is stored only as an Argon2 hash."""

    __tablename__ = "api_clients"
    client_id: str = Field(sa_column=Column(Text, primary_key=True))
    partner_id: uuid.UUID | None = ref_field("partners.id", nullable=True, index=True)
    secret_hash: str = text_field()
    scopes: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    name: str | None = text_field(nullable=True)
    created_at: datetime = time_field(default_now=True)
    revoked_at: datetime | None = time_field(nullable=True)


class CoalitionSettings(SQLModel, table=True):
    """The one row of coalition-wide economics."""

    __tablename__ = "coalition_settings"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint("funding_model IN ('REDEMPTION', 'ISSUANCE')", name="funding_model_known"),
        CheckConstraint("point_value >= 0 AND clearing_fee >= 0", name="prices_non_negative"),
    )
    id: int = Field(default=1, sa_column=Column(Integer, primary_key=True))
    currency: str = text_field(default="RUB")
    currency_exponent: int = Field(default=2, sa_column=Column(Integer, nullable=False))
    point_value: Decimal = decimal_field(default=Decimal("1.00"))
    default_region: str = text_field(default="RU")
    funding_model: str = text_field(default="REDEMPTION")
    clearing_fee: Decimal = decimal_field(default=Decimal("0"))
    updated_at: datetime = time_field(default_now=True)


class RevokedToken(SQLModel, table=True):
    """An access token revoked before its expiry (kept until it would have expired anyway)."""

    __tablename__ = "revoked_tokens"
    jti: str = Field(sa_column=Column(Text, primary_key=True))
    client_id: str = text_field()
    expires_at: datetime = time_field()
    revoked_at: datetime = time_field(default_now=True)
