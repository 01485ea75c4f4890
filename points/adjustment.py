"""A member adjustment with a reason: support staff (console) and the operator (GraphQL)
correct a member's points through this one function.

- A credit (points > 0) is funded by a partner: an ADJUSTMENT from its issuance account to the
  member's wallet with a lot whose issuer is that partner (available now, expiring per its
  validity days), so a later redemption settles exactly like the partner's earned points.
  Under the ISSUANCE funding model the funder owes the operator its issue price for a credit,
  as for an earn (settlement books it from `funded_by` in the metadata, migration 0011).
- A debit (points < 0) takes points from the spendable balance, oldest expiry first, into the
  operator's adjustment account; never below zero, and no money moves.

The reason and the actor are kept in the transfer's metadata (`Transfer.reason` shows it) and
an audit row (MEMBER_ADJUSTED) is written in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit
from core.caller import Caller
from core.errors import DomainError, ErrorCode
from ledger import idempotency, postings
from ledger.text import has_lone_surrogate
from members.service import MemberRef, resolve
from partners.service import get_partner

OPERATION = "adjustMemberPoints"
MAX_POINTS = 10**12
MAX_REASON = 500


@dataclass(frozen=True)
class AdjustmentOutcome:
    member_id: str
    transfer_id: str
    points: int
    replayed: bool = False


def _check_text(value: str, field: str) -> None:
    if "\x00" in value:
        raise DomainError(ErrorCode.INVALID_INPUT, f"{field} must not contain NUL", [field])
    if has_lone_surrogate(value):
        raise DomainError(ErrorCode.INVALID_INPUT, idempotency.unicode_message(field), [field])


def check_adjustment(points: int, funded_by: uuid.UUID | None, reason: str) -> str:
    """Refuse what can be refused without the database; returns the trimmed reason."""
    if points == 0 or abs(points) > MAX_POINTS:
        raise DomainError(
            ErrorCode.INVALID_AMOUNT,
            f"points must be non-zero, at most {MAX_POINTS} either way",
            ["points"],
        )
    trimmed = reason.strip()
    if not trimmed or len(reason) > MAX_REASON:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"reason must be 1 to {MAX_REASON} characters", ["reason"]
        )
    _check_text(reason, "reason")
    if points > 0 and funded_by is None:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "a credit needs the partner that funds it", ["fundedBy"]
        )
    return trimmed


async def adjust_member_points(
    conn: AsyncConnection,
    caller: Caller,
    *,
    actor: str,
    member: MemberRef,
    points: int,
    funded_by: uuid.UUID | None,
    reason: str,
    idempotency_key: str,
) -> AdjustmentOutcome:
    """Credit or debit a member's points with a reason, in the caller's transaction.
    `actor` is who asked: the API client id, or `staff:<email>` from the console."""
    if not caller.is_operator:
        raise DomainError(ErrorCode.INVALID_INPUT, "adjustments are the operator's", [])
    trimmed = check_adjustment(points, funded_by, reason)
    idempotency.check_key(idempotency_key)
    _check_text(idempotency_key, "idempotencyKey")
    request = {
        "member": {"id": member.id, "phone": member.phone, "partnerRef": member.partner_ref},
        "points": points,
        "fundedBy": None if points < 0 or funded_by is None else str(funded_by),
        "reason": reason,
    }
    digest = idempotency.request_hash(OPERATION, request)
    stored = await idempotency.claim(conn, caller.client_id, idempotency_key, OPERATION, digest)
    if stored is not None:
        return AdjustmentOutcome(**stored, replayed=True)
    member_id = await resolve(conn, caller, member)
    metadata: dict[str, Any] = {"reason": trimmed, "actor": actor}
    if points > 0:
        assert funded_by is not None
        funder = await get_partner(conn, funded_by)
        if funder is None:
            raise DomainError(ErrorCode.PARTNER_NOT_FOUND, "no such partner", ["fundedBy"])
        metadata["funded_by"] = str(funder.id)
        transfer_id = await postings.credit_member(
            conn,
            member_id=member_id,
            funder_id=funder.id,
            points=points,
            validity_days=funder.points_validity_days,
            client_id=caller.client_id,
            metadata=metadata,
        )
    else:
        transfer_id = await postings.debit_member(
            conn,
            member_id=member_id,
            points=-points,
            client_id=caller.client_id,
            metadata=metadata,
        )
    await audit.record(
        conn,
        actor,
        audit.AuditAction.MEMBER_ADJUSTED,
        "Member",
        member_id,
        {
            "points": points,
            "reason": trimmed,
            "transfer_id": str(transfer_id),
            "funded_by": metadata.get("funded_by"),
        },
    )
    outcome = AdjustmentOutcome(
        member_id=str(member_id), transfer_id=str(transfer_id), points=points
    )
    data = asdict(outcome)
    data.pop("replayed")
    await idempotency.complete(conn, caller.client_id, idempotency_key, data)
    return outcome
