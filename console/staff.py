"""Console staff: accounts (Argon2 password hashes, a role), and their server-side sessions.

A session is a random token in an HttpOnly cookie; the database keeps only its SHA-256, with
the session's CSRF token, its start (absolute timeout) and its last use (idle timeout).
Signing out or disabling the staff member ends the row, so the cookie stops working at once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit
from db.ids import new_id

_hasher = PasswordHasher()
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{1,63}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024


class Role(StrEnum):
    ADMIN = "admin"
    FINANCE = "finance"
    MARKETING = "marketing"
    SUPPORT = "support"


class Permission(StrEnum):
    VIEW_DASHBOARD = "view_dashboard"
    VIEW_AUDIT = "view_audit"
    VIEW_PARTNERS = "view_partners"
    VIEW_MEMBERS = "view_members"  # member support: lookup, balance, history
    VIEW_SETTLEMENT = "view_settlement"
    MANAGE_PARTNERS = "manage_partners"  # partners, rate cards, API clients
    SETTLE = "settle"  # close periods, record payments
    ADJUST_MEMBERS = "adjust_members"
    VIEW_CAMPAIGNS = "view_campaigns"  # the campaign list, a campaign and its versions
    EDIT_CAMPAIGNS = "edit_campaigns"  # create, edit, try on a purchase, pause ... archive
    VIEW_TIERS = "view_tiers"  # the tier policy, its versions, members per tier
    EDIT_TIER_POLICY = "edit_tier_policy"


# What each role may do; handlers check these, templates only hide what a role cannot use.
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.FINANCE: frozenset(
        {
            Permission.VIEW_DASHBOARD,
            Permission.VIEW_AUDIT,
            Permission.VIEW_PARTNERS,
            Permission.VIEW_SETTLEMENT,
            Permission.SETTLE,
            # Who funds campaigns and tier bonuses is what settles: finance reads them.
            Permission.VIEW_CAMPAIGNS,
            Permission.VIEW_TIERS,
        }
    ),
    # Marketing owns campaigns and the tier policy.
    Role.MARKETING: frozenset(
        {
            Permission.VIEW_DASHBOARD,
            Permission.VIEW_PARTNERS,
            Permission.VIEW_CAMPAIGNS,
            Permission.EDIT_CAMPAIGNS,
            Permission.VIEW_TIERS,
            Permission.EDIT_TIER_POLICY,
        }
    ),
    Role.SUPPORT: frozenset(
        {
            Permission.VIEW_DASHBOARD,
            Permission.VIEW_PARTNERS,
            Permission.VIEW_MEMBERS,
            Permission.ADJUST_MEMBERS,
            # Read-only, to explain to a member what earned what.
            Permission.VIEW_CAMPAIGNS,
            Permission.VIEW_TIERS,
        }
    ),
}


class StaffError(Exception):
    """A staff command that cannot be done (shown to the operator, never a traceback)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StaffRecord:
    id: uuid.UUID
    email: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None

    @property
    def actor(self) -> str:
        """The audit log's actor for this staff member's console actions."""
        return f"staff:{self.email}"

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


@dataclass(frozen=True)
class Session:
    staff: StaffRecord
    token_hash: str
    csrf_token: str


_STAFF_COLUMNS = "id, email, role, created_at, disabled_at"


def _record(row: object) -> StaffRecord:
    m = row._mapping  # type: ignore[attr-defined]
    return StaffRecord(m["id"], m["email"], Role(m["role"]), m["created_at"], m["disabled_at"])


def normalize_email(email: str) -> str:
    return email.strip().lower()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


_DUMMY_HASH: list[str] = []


def verify_password(password_hash: str | None, password: str) -> bool:
    """One Argon2 verification whether or not the account exists (CPU-bound: off the loop)."""
    if password_hash is None:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(_hasher.hash(secrets.token_urlsafe(16)))
        password_hash = _DUMMY_HASH[0]
        real = False
    else:
        real = True
    try:
        return _hasher.verify(password_hash, password[:MAX_PASSWORD]) and real
    except (VerificationError, InvalidHashError):
        return False


def new_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


async def create_staff(
    conn: AsyncConnection, *, email: str, role: str, password: str, actor: str
) -> StaffRecord:
    email = normalize_email(email)
    if not EMAIL.match(email):
        raise StaffError("INVALID_INPUT", f"not an email address: {email!r}")
    try:
        chosen = Role(role)
    except ValueError:
        raise StaffError(
            "INVALID_INPUT", f"role must be one of {', '.join(r.value for r in Role)}"
        ) from None
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise StaffError(
            "INVALID_INPUT", f"the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )
    try:
        async with conn.begin_nested():
            row = (
                await conn.execute(
                    text(
                        "INSERT INTO staff_accounts (id, email, role, password_hash)"
                        f" VALUES (:id, :e, :r, :h) RETURNING {_STAFF_COLUMNS}"
                    ),
                    {"id": new_id(), "e": email, "r": str(chosen), "h": hash_password(password)},
                )
            ).one()
    except IntegrityError as exc:
        raise StaffError("EMAIL_TAKEN", f"a staff account {email!r} exists") from exc
    staff = _record(row)
    await audit.record(
        conn,
        actor,
        audit.AuditAction.STAFF_CREATED,
        "StaffAccount",
        staff.email,
        {"role": str(staff.role)},
    )
    return staff


async def list_staff(conn: AsyncConnection) -> list[StaffRecord]:
    rows = await conn.execute(text(f"SELECT {_STAFF_COLUMNS} FROM staff_accounts ORDER BY email"))
    return [_record(r) for r in rows]


async def get_staff(conn: AsyncConnection, email: str) -> StaffRecord | None:
    row = (
        await conn.execute(
            text(f"SELECT {_STAFF_COLUMNS} FROM staff_accounts WHERE email = :e"),
            {"e": normalize_email(email)},
        )
    ).one_or_none()
    return None if row is None else _record(row)


async def disable_staff(conn: AsyncConnection, email: str, *, actor: str) -> StaffRecord:
    """Disable the account and end every session it has (idempotent)."""
    row = (
        await conn.execute(
            text(
                "UPDATE staff_accounts SET disabled_at = COALESCE(disabled_at, now())"
                f" WHERE email = :e RETURNING {_STAFF_COLUMNS}"
            ),
            {"e": normalize_email(email)},
        )
    ).one_or_none()
    if row is None:
        raise StaffError("STAFF_NOT_FOUND", f"no staff account {normalize_email(email)!r}")
    staff = _record(row)
    ended = await conn.execute(
        text(
            "UPDATE console_sessions SET ended_at = now() WHERE staff_id = :s AND ended_at IS NULL"
        ),
        {"s": staff.id},
    )
    await audit.record(
        conn,
        actor,
        audit.AuditAction.STAFF_DISABLED,
        "StaffAccount",
        staff.email,
        {"sessionsEnded": ended.rowcount},
    )
    return staff


async def reset_password(
    conn: AsyncConnection, email: str, password: str, *, actor: str
) -> StaffRecord:
    """A new password (the account enabled again); every session it had ends."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise StaffError(
            "INVALID_INPUT", f"the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )
    row = (
        await conn.execute(
            text(
                "UPDATE staff_accounts SET password_hash = :h, disabled_at = NULL"
                f" WHERE email = :e RETURNING {_STAFF_COLUMNS}"
            ),
            {"e": normalize_email(email), "h": hash_password(password)},
        )
    ).one_or_none()
    if row is None:
        raise StaffError("STAFF_NOT_FOUND", f"no staff account {normalize_email(email)!r}")
    staff = _record(row)
    await conn.execute(
        text(
            "UPDATE console_sessions SET ended_at = now() WHERE staff_id = :s AND ended_at IS NULL"
        ),
        {"s": staff.id},
    )
    await audit.record(
        conn, actor, audit.AuditAction.STAFF_PASSWORD_RESET, "StaffAccount", staff.email
    )
    return staff


async def password_hash_of(conn: AsyncConnection, email: str) -> tuple[StaffRecord, str] | None:
    """An active account and its hash, for signing in (None: unknown or disabled)."""
    row = (
        await conn.execute(
            text(
                f"SELECT {_STAFF_COLUMNS}, password_hash FROM staff_accounts"
                " WHERE email = :e AND disabled_at IS NULL"
            ),
            {"e": normalize_email(email)},
        )
    ).one_or_none()
    return None if row is None else (_record(row), row.password_hash)


# ---- sessions ------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start_session(conn: AsyncConnection, staff: StaffRecord) -> tuple[str, Session]:
    """A new session; returns the cookie's token (stored only as its hash) and the session."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    hashed = token_hash(token)
    await conn.execute(
        text("INSERT INTO console_sessions (token_hash, staff_id, csrf_token) VALUES (:t, :s, :c)"),
        {"t": hashed, "s": staff.id, "c": csrf},
    )
    await audit.record(
        conn, staff.actor, audit.AuditAction.STAFF_SIGNED_IN, "StaffAccount", staff.email
    )
    return token, Session(staff, hashed, csrf)


async def load_session(
    conn: AsyncConnection, token: str, *, idle_seconds: float, absolute_seconds: float
) -> Session | None:
    """The live session of this cookie token, its last use moved to now; None when it is
    unknown, ended, idle too long, too old, or its staff member is disabled."""
    row = (
        await conn.execute(
            text(
                "UPDATE console_sessions cs SET last_seen_at = now()"
                " FROM staff_accounts s"
                " WHERE cs.token_hash = :t AND s.id = cs.staff_id AND cs.ended_at IS NULL"
                " AND s.disabled_at IS NULL"
                " AND cs.last_seen_at > now() - make_interval(secs => :idle)"
                " AND cs.created_at > now() - make_interval(secs => :absolute)"
                " RETURNING s.id, s.email, s.role, s.created_at, s.disabled_at, cs.csrf_token"
            ),
            {"t": token_hash(token), "idle": idle_seconds, "absolute": absolute_seconds},
        )
    ).one_or_none()
    if row is None:
        return None
    return Session(_record(row), token_hash(token), row.csrf_token)


async def end_session(conn: AsyncConnection, session: Session) -> None:
    await conn.execute(
        text(
            "UPDATE console_sessions SET ended_at = now()"
            " WHERE token_hash = :t AND ended_at IS NULL"
        ),
        {"t": session.token_hash},
    )
    await audit.record(
        conn,
        session.staff.actor,
        audit.AuditAction.STAFF_SIGNED_OUT,
        "StaffAccount",
        session.staff.email,
    )
