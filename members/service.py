"""Members, memberships and who may see whom."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, TextClause, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import Caller
from core.errors import DomainError, ErrorCode
from db.ids import new_id
from ledger import outbox, queries
from ledger.accounts import MEMBER_CODES, open_accounts
from members.phones import normalize_phone
from partners.settings import load_settings


@dataclass(frozen=True)
class MemberRef:
    id: uuid.UUID | None = None
    phone: str | None = None
    partner_ref: str | None = None


@dataclass(frozen=True)
class MemberRecord:
    id: uuid.UUID
    phone: str
    created_at: datetime
    partner_ref: str | None  # the calling partner's own reference, if any


def _has_nul(value: str | None) -> bool:
    return value is not None and "\x00" in value


async def enroll(
    conn: AsyncConnection, caller: Caller, *, phone: str, partner_ref: str | None
) -> MemberRecord:
    """One phone is one member coalition-wide; enrolling again at a partner is idempotent."""
    settings = await load_settings(conn)
    e164 = normalize_phone(phone, settings.default_region)
    if partner_ref is not None and (not 0 < len(partner_ref) <= 200 or _has_nul(partner_ref)):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "partnerRef must be 1 to 200 characters, without NUL",
            ["partnerRef"],
        )
    member_id = await conn.scalar(
        text(
            "INSERT INTO members (id, phone) VALUES (:id, :phone)"
            " ON CONFLICT (phone) DO NOTHING RETURNING id"
        ),
        {"id": new_id(), "phone": e164},
    )
    new_member = member_id is not None
    if member_id is not None:
        await open_accounts(conn, member_id, MEMBER_CODES)
    else:
        member_id = await conn.scalar(text("SELECT id FROM members WHERE phone = :p"), {"p": e164})
    assert isinstance(member_id, uuid.UUID)
    joined = False
    if caller.partner_id is not None:
        joined = await _join(conn, member_id, caller.partner_id, partner_ref)
    elif partner_ref is not None:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "partnerRef belongs to a partner's enrollment", ["partnerRef"]
        )
    if new_member or joined:  # enrolling again where already enrolled is no event
        await outbox.record(
            conn,
            outbox.MEMBER_ENROLLED,
            partner_id=caller.partner_id,
            member_id=member_id,
            payload={
                "member_id": str(member_id),
                "partner_id": str(caller.partner_id) if caller.partner_id else None,
                "partner_ref": partner_ref,
                "new_member": new_member,
            },
        )
    member = await get_member(conn, caller, member_id)
    assert member is not None
    return member


async def _join(
    conn: AsyncConnection, member_id: uuid.UUID, partner_id: uuid.UUID, partner_ref: str | None
) -> bool:
    """Enroll the member at the partner; True when this made a new membership."""
    existing = (
        await conn.execute(
            text(
                "SELECT id, partner_ref FROM memberships"
                " WHERE partner_id = :p AND member_id = :m FOR UPDATE"
            ),
            {"p": partner_id, "m": member_id},
        )
    ).one_or_none()
    if existing is not None and (partner_ref is None or existing.partner_ref == partner_ref):
        return False
    if existing is not None and existing.partner_ref is not None:
        raise DomainError(
            ErrorCode.PARTNER_REF_TAKEN,
            "this member is already enrolled here under another partnerRef",
            ["partnerRef"],
        )
    try:
        async with conn.begin_nested():
            if existing is None:
                created = await conn.scalar(
                    text(
                        "INSERT INTO memberships (id, member_id, partner_id, partner_ref)"
                        " VALUES (:id, :m, :p, :r) ON CONFLICT (partner_id, member_id) DO NOTHING"
                        " RETURNING id"
                    ),
                    {"id": new_id(), "m": member_id, "p": partner_id, "r": partner_ref},
                )
                return created is not None
            # Already enrolled without a partnerRef: naming it now is no new enrolment.
            await conn.execute(
                text("UPDATE memberships SET partner_ref = :r WHERE id = :id"),
                {"r": partner_ref, "id": existing.id},
            )
    except IntegrityError as exc:
        raise DomainError(
            ErrorCode.PARTNER_REF_TAKEN,
            "another member already has this partnerRef here",
            ["partnerRef"],
        ) from exc
    return False


@dataclass(frozen=True)
class CheckedRef:
    """A member reference ready for a lookup: exactly one field set, the phone in E.164."""

    id: uuid.UUID | None
    phone: str | None
    partner_ref: str | None


def check_ref(caller: Caller, ref: MemberRef, region: str) -> CheckedRef:
    """Refuse a malformed reference before any lookup (`region`: for national phone numbers)."""
    given = [v for v in (ref.id, ref.phone, ref.partner_ref) if v is not None]
    if len(given) != 1:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "give exactly one of id, phone and partnerRef", ["member"]
        )
    # Fields are the input paths of the reference (`member { partnerRef }`).
    if _has_nul(ref.partner_ref):  # PostgreSQL text cannot hold NUL: no member has it
        raise DomainError(
            ErrorCode.INVALID_INPUT, "partnerRef must not contain NUL", ["member", "partnerRef"]
        )
    if ref.partner_ref is not None and caller.partner_id is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "partnerRef needs a partner's client",
            ["member", "partnerRef"],
        )
    try:
        phone = normalize_phone(ref.phone, region) if ref.phone is not None else None
    except DomainError as exc:
        raise DomainError(exc.code, exc.message, ["member", "phone"]) from exc
    return CheckedRef(ref.id, phone, ref.partner_ref)


# The coalition's phone region as last read. National numbers are normalised with it before
# the lookup, which reads the region in force in the same statement and so catches a change.
_region_seen: str | None = None


async def check_ref_in_region(
    conn: AsyncConnection, caller: Caller, ref: MemberRef
) -> tuple[CheckedRef, str | None]:
    """The reference checked, with the region its phone was read in (None without a phone)."""
    global _region_seen
    if ref.phone is None:
        return check_ref(caller, ref, "ZZ"), None
    if _region_seen is None:
        _region_seen = (await load_settings(conn)).default_region
    try:
        return check_ref(caller, ref, _region_seen), _region_seen
    except DomainError:
        actual = (await load_settings(conn)).default_region
        if actual == _region_seen:
            raise
        _region_seen = actual  # the region changed: the number may be valid there
        return check_ref(caller, ref, actual), actual


def region_in_force(read_in: str | None, in_force: str) -> bool:
    """After a lookup: True when the phone (if any) was read in the region in force; else the
    region is remembered and the caller must look again."""
    global _region_seen
    if read_in is None or read_in == in_force:
        return True
    _region_seen = in_force
    return False


# A partner's lookup as one SQL expression (binds :ref, :phone, :mid; NULL for unused ones),
# to embed in a larger read: the member id, or NULL when the partner cannot see the member.
def partner_lookup_sql(partner: str) -> str:
    return (
        "COALESCE("
        f"(SELECT member_id FROM memberships WHERE partner_id = {partner}"
        " AND partner_ref = CAST(:ref AS text)),"
        " (SELECT m.id FROM members m JOIN memberships ms ON ms.member_id = m.id"
        f" AND ms.partner_id = {partner} WHERE m.phone = CAST(:phone AS text)),"
        " (SELECT member_id FROM memberships WHERE member_id = CAST(:mid AS uuid)"
        f" AND partner_id = {partner}))"
    )


# The operator sees every member (and has no partnerRefs).
_OPERATOR_LOOKUP = (
    "COALESCE((SELECT id FROM members WHERE phone = CAST(:phone AS text)),"
    " (SELECT id FROM members WHERE id = CAST(:mid AS uuid)))"
)


def lookup_params(checked: CheckedRef) -> dict[str, object]:
    return {"ref": checked.partner_ref, "phone": checked.phone, "mid": checked.id}


def _find_sql(lookup: str, extra_columns: str = "") -> TextClause:
    return text(
        "SELECT m.id, m.phone, m.created_at, ms.partner_ref, s.default_region"
        f"{extra_columns} FROM coalition_settings s"
        f" LEFT JOIN members m ON m.id = {lookup}"
        " LEFT JOIN memberships ms ON ms.member_id = m.id AND ms.partner_id = CAST(:p AS uuid)"
        " WHERE s.id = 1"
    )


# caller.is_operator -> how it looks members up; the statements read them without and with
# their balance.
_LOOKUPS = {False: partner_lookup_sql("CAST(:p AS uuid)"), True: _OPERATOR_LOOKUP}
_FIND = {op: _find_sql(lookup) for op, lookup in _LOOKUPS.items()}
_WITH_BALANCE = ", " + queries.balance_columns("m.id")
_FIND_WITH_BALANCE = {op: _find_sql(lookup, _WITH_BALANCE) for op, lookup in _LOOKUPS.items()}


async def _find(
    conn: AsyncConnection, caller: Caller, ref: MemberRef, statements: dict[bool, TextClause]
) -> Row[Any]:
    checked, read_in = await check_ref_in_region(conn, caller, ref)
    row = (
        await conn.execute(
            statements[caller.is_operator], {"p": caller.partner_id, **lookup_params(checked)}
        )
    ).one()
    if not region_in_force(read_in, row.default_region):
        return await _find(conn, caller, ref, statements)
    if row.id is None:
        raise DomainError(ErrorCode.MEMBER_NOT_FOUND, "no such member", ["member"])
    return row


def _record(row: Row[Any]) -> MemberRecord:
    return MemberRecord(row.id, row.phone, row.created_at, row.partner_ref)


async def find_member(conn: AsyncConnection, caller: Caller, ref: MemberRef) -> MemberRecord:
    """The member a reference names, if the caller may see it; else MEMBER_NOT_FOUND.

    One round trip: a partner's lookup joins its memberships, so visibility is the lookup,
    and the coalition's phone region comes with it.
    """
    return _record(await _find(conn, caller, ref, _FIND))


async def find_member_with_balance(
    conn: AsyncConnection, caller: Caller, ref: MemberRef
) -> tuple[MemberRecord, queries.BalanceRecord]:
    """`find_member` and the member's balance, still in one round trip (a till's lookup)."""
    row = await _find(conn, caller, ref, _FIND_WITH_BALANCE)
    return _record(row), queries.balance_of(row)


async def resolve(conn: AsyncConnection, caller: Caller, ref: MemberRef) -> uuid.UUID:
    """The id of the member a reference names, if the caller may see it (`find_member`)."""
    return (await find_member(conn, caller, ref)).id


async def get_members(
    conn: AsyncConnection, caller: Caller, ids: list[uuid.UUID]
) -> dict[uuid.UUID, MemberRecord]:
    """Members by id that the caller may see, with the caller's own partnerRef."""
    rows = await conn.execute(
        text(
            "SELECT m.id, m.phone, m.created_at, ms.partner_ref,"
            " ms.id IS NOT NULL AS enrolled"
            " FROM members m LEFT JOIN memberships ms"
            "  ON ms.member_id = m.id AND ms.partner_id = CAST(:p AS uuid)"
            " WHERE m.id = ANY(:ids)"
        ),
        {"ids": ids, "p": caller.partner_id},
    )
    return {
        r.id: MemberRecord(r.id, r.phone, r.created_at, r.partner_ref)
        for r in rows
        if caller.is_operator or r.enrolled
    }


async def get_member(
    conn: AsyncConnection, caller: Caller, member_id: uuid.UUID
) -> MemberRecord | None:
    return (await get_members(conn, caller, [member_id])).get(member_id)
