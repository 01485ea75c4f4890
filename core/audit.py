"""The audit log: an append-only record of every operator action.

`record` is called inside the transaction of the action it describes, so an action that fails
(and rolls back) leaves no row, and a committed action always has one. The table refuses
UPDATE, DELETE and TRUNCATE in the database itself (migration 0003's trigger). Details are
plain JSON; a key that looks like a secret is refused outright, so a client secret can never
be written here by mistake.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any

from sqlalchemy import Column, DateTime, Index, Text, bindparam, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import Field, SQLModel

from db.columns import id_field, json_field
from db.ids import new_id


class AuditAction(StrEnum):
    PARTNER_CREATED = "PARTNER_CREATED"
    RATE_CARD_SET = "RATE_CARD_SET"
    API_CLIENT_CREATED = "API_CLIENT_CREATED"
    API_CLIENT_REVOKED = "API_CLIENT_REVOKED"
    COALITION_SETTINGS_UPDATED = "COALITION_SETTINGS_UPDATED"
    SETTLEMENT_PERIOD_CLOSED = "SETTLEMENT_PERIOD_CLOSED"
    SETTLEMENT_PAYMENT_RECORDED = "SETTLEMENT_PAYMENT_RECORDED"
    PARTNER_REPORT_SUBMITTED = "PARTNER_REPORT_SUBMITTED"
    RECONCILIATION_BREAK_RESOLVED = "RECONCILIATION_BREAK_RESOLVED"
    # The operator console's staff (console/): accounts and sign-ins.
    STAFF_CREATED = "STAFF_CREATED"
    STAFF_DISABLED = "STAFF_DISABLED"
    STAFF_SIGNED_IN = "STAFF_SIGNED_IN"
    STAFF_SIGNED_OUT = "STAFF_SIGNED_OUT"
    STAFF_PASSWORD_RESET = "STAFF_PASSWORD_RESET"
    PARTNER_REDEMPTION_SET = "PARTNER_REDEMPTION_SET"
    MEMBER_ADJUSTED = "MEMBER_ADJUSTED"
    # Campaigns (points/campaigns): each change is a new version of the campaign.
    CAMPAIGN_CREATED = "CAMPAIGN_CREATED"
    CAMPAIGN_UPDATED = "CAMPAIGN_UPDATED"
    CAMPAIGN_PAUSED = "CAMPAIGN_PAUSED"
    CAMPAIGN_RESUMED = "CAMPAIGN_RESUMED"
    CAMPAIGN_ENDED = "CAMPAIGN_ENDED"
    CAMPAIGN_ARCHIVED = "CAMPAIGN_ARCHIVED"


CLI_ACTOR = "cli"
_SECRET_WORDS = ("secret", "password", "token", "private_key", "privatekey")


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_action_id", "action", "id"),)

    id: uuid.UUID = id_field()
    occurred_at: datetime = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    actor: str = Field(sa_column=Column(Text, nullable=False))
    action: str = Field(sa_column=Column(Text, nullable=False))
    subject_type: str = Field(sa_column=Column(Text, nullable=False))
    subject_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    details: dict[str, Any] = json_field()


@dataclass(frozen=True)
class AuditEntryRecord:
    id: uuid.UUID
    occurred_at: datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str | None
    details: dict[str, Any]


def _plain(value: Any, path: str = "details") -> Any:
    """JSON-ready details: Decimals as strings, times in ISO 8601, ids as strings."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if any(word in name.lower() for word in _SECRET_WORDS):
                raise ValueError(f"audit details must not carry secrets ({path}.{name})")
            out[name] = _plain(item, f"{path}.{name}")
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_plain(item, path) for item in items]
    if isinstance(value, Enum):
        return _plain(value.value, path)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"audit details: {path} is a {type(value).__name__}, not plain data")


_INSERT = text(
    "INSERT INTO audit_log (id, actor, action, subject_type, subject_id, details)"
    " VALUES (:id, :actor, :action, :subject_type, :subject_id, :details)"
    " RETURNING occurred_at"
).bindparams(bindparam("details", type_=JSONB))


async def record(
    conn: AsyncConnection,
    actor: str,
    action: AuditAction,
    subject_type: str,
    subject_id: uuid.UUID | str | None,
    details: Mapping[str, Any] | None = None,
) -> uuid.UUID:
    """Append one entry in the caller's transaction; returns its id."""
    entry_id = new_id()
    await conn.execute(
        _INSERT,
        {
            "id": entry_id,
            "actor": actor,
            "action": str(action),
            "subject_type": subject_type,
            "subject_id": None if subject_id is None else str(subject_id),
            "details": _plain(details or {}),
        },
    )
    return entry_id


async def list_entries(
    conn: AsyncConnection,
    *,
    action: str | None = None,
    before: uuid.UUID | None = None,
    limit: int = 20,
    actor: str | None = None,
    subject_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AuditEntryRecord]:
    """Entries newest first (ids are UUIDv7, so id order is time order), after the cursor;
    optionally of one actor or subject type, and at or after `since` / before `until`."""
    rows = await conn.execute(
        text(
            "SELECT id, occurred_at, actor, action, subject_type, subject_id, details"
            " FROM audit_log"
            " WHERE (CAST(:action AS text) IS NULL OR action = :action)"
            " AND (CAST(:before AS uuid) IS NULL OR id < :before)"
            " AND (CAST(:actor AS text) IS NULL OR actor = :actor)"
            " AND (CAST(:subject_type AS text) IS NULL OR subject_type = :subject_type)"
            " AND (CAST(:since AS timestamptz) IS NULL OR occurred_at >= :since)"
            " AND (CAST(:until AS timestamptz) IS NULL OR occurred_at < :until)"
            " ORDER BY id DESC LIMIT :limit"
        ),
        {
            "action": action,
            "before": before,
            "limit": limit,
            "actor": actor,
            "subject_type": subject_type,
            "since": since,
            "until": until,
        },
    )
    return [AuditEntryRecord(**r._mapping) for r in rows]


async def get_entry(conn: AsyncConnection, entry_id: uuid.UUID) -> AuditEntryRecord | None:
    """One entry by its id (the operator's `node(id:)`), or None."""
    row = (
        await conn.execute(
            text(
                "SELECT id, occurred_at, actor, action, subject_type, subject_id, details"
                " FROM audit_log WHERE id = :id"
            ),
            {"id": entry_id},
        )
    ).one_or_none()
    return None if row is None else AuditEntryRecord(**row._mapping)
