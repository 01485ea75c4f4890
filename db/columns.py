"""Column factories shared by the domain models (a Column object can belong to one table only)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Numeric, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlmodel import Field

from db.ids import new_id


def id_field() -> Any:
    return Field(default_factory=new_id, sa_column=Column(PG_UUID(as_uuid=True), primary_key=True))


def ref_field(target: str | None, *, nullable: bool = False, index: bool = False) -> Any:
    args: list[Any] = [PG_UUID(as_uuid=True)]
    if target:
        args.append(ForeignKey(target))
    return Field(default=None, sa_column=Column(*args, nullable=nullable, index=index))


def time_field(*, nullable: bool = False, default_now: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True),
            nullable=nullable,
            server_default=func.now() if default_now else None,
        ),
    )


def text_field(*, nullable: bool = False, default: str | None = None) -> Any:
    return Field(default=default, sa_column=Column(Text, nullable=nullable))


def points_field(*, nullable: bool = False, default: int | None = None) -> Any:
    return Field(default=default, sa_column=Column(BigInteger, nullable=nullable))


def decimal_field(*, nullable: bool = False, default: Decimal | None = None) -> Any:
    return Field(default=default, sa_column=Column(Numeric(20, 6), nullable=nullable))


def json_field() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}"))


__all__ = ["datetime", "uuid"]
