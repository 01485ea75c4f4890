"""Tables of the members domain: coalition members (by phone) and their per-partner memberships."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from db.columns import id_field, ref_field, text_field, time_field


class Member(SQLModel, table=True):
    """One person in the coalition, identified by an E.164 phone number.

    The member row is also the lock that serializes every balance change of that member.
    """

    __tablename__ = "members"
    id: uuid.UUID = id_field()
    phone: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    created_at: datetime = time_field(default_now=True)


class Membership(SQLModel, table=True):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("partner_id", "member_id"),
        UniqueConstraint("partner_id", "partner_ref"),
    )
    id: uuid.UUID = id_field()
    member_id: uuid.UUID = ref_field("members.id", index=True)
    partner_id: uuid.UUID = ref_field("partners.id")
    partner_ref: str | None = text_field(nullable=True)
    created_at: datetime = time_field(default_now=True)
