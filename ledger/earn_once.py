"""Booking a single earn with its idempotency key in one statement (`ledger.earn_sql`).

A purchase's points are booked as the EARN of the partner where it happened (its own points:
the base rate and its shares of tier and campaign lines) plus one BONUS per other funder
(`BonusToBook`: a partner, or the operator), each with its own lot whose issuer is that
funder. The campaign draws (`CampaignDraw`) are checked and taken inside the same statement:
past a member limit or beyond a budget, nothing is booked, the key is not claimed, and
`CampaignLimitReached` tells the caller which campaign to leave out before pricing again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import OPERATOR_PARTY
from core.writes import mark_write_sent
from db.ids import new_id
from ledger.accounts import AccountCode, account_id

MEMBER_LIMIT_SQLSTATE = "CL001"
BUDGET_SQLSTATE = "CB001"
CAMPAIGN_PERIOD = date(1, 1, 1)
"""The `period_start` of a limit over the whole campaign (migration 0013's convention)."""


@dataclass(frozen=True)
class KeyTaken:
    """The key was already stored (by an earlier call, or a concurrent one that committed)."""

    operation: str
    request_hash: str
    result: dict[str, Any]


@dataclass(frozen=True)
class BonusToBook:
    """The points of one purchase paid by a funder other than the partner where it happened:
    a BONUS transfer from the funder's issuance account and a lot whose issuer is the funder.
    `funder_id` None (or `OPERATOR_PARTY`) is the coalition operator."""

    funder_id: uuid.UUID | None
    points: int
    transfer_id: uuid.UUID = field(default_factory=new_id)
    lot_id: uuid.UUID = field(default_factory=new_id)

    @property
    def party_id(self) -> uuid.UUID:
        """The funder as the ledger and settlement name it (the operator: OPERATOR_PARTY)."""
        return OPERATOR_PARTY if self.funder_id is None else self.funder_id


@dataclass(frozen=True)
class CampaignDraw:
    """The points one campaign version gives this purchase, as its limits count them.

    `budgeted`: taken from the campaign's budget slots (`campaign_budget_slots`).
    `member_limit`: the most points the member may get from the campaign in the period that
    starts at `period_start` (None: no limit). The usage (`campaign_member_usage`) is counted
    whenever `period_start` or `member_limit` is given (`period_start` defaults to
    `CAMPAIGN_PERIOD`, the whole campaign)."""

    campaign_id: uuid.UUID
    version: int
    points: int
    budgeted: bool = False
    member_limit: int | None = None
    period_start: date | None = None

    @property
    def counted_period(self) -> date | None:
        """The usage row's period, or None when the usage is not counted."""
        if self.period_start is None and self.member_limit is None:
            return None
        return self.period_start or CAMPAIGN_PERIOD


class CampaignLimitReached(Exception):
    """A campaign draw of the earn could not be taken: its budget cannot cover it (`BUDGET`) or
    the member would pass the campaign's limit (`MEMBER_LIMIT`). Nothing was booked and the
    key was not claimed: price the purchase again without that campaign and book again."""

    def __init__(self, campaign_id: uuid.UUID, kind: Literal["BUDGET", "MEMBER_LIMIT"]) -> None:
        super().__init__(f"campaign {campaign_id}: {kind.lower().replace('_', ' ')} reached")
        self.campaign_id = campaign_id
        self.kind: Literal["BUDGET", "MEMBER_LIMIT"] = kind


@dataclass(frozen=True)
class EarnToBook:
    """One purchase's points. `points`, `transfer_id` and `lot_id` are the EARN of `issuer_id`
    (the partner where the purchase happened; 0 points books no EARN); `bonuses` the other
    funders' shares; `draws` the campaign draws to check and take; `purchase` counts the
    purchase in `members.purchases` (even when it earns nothing)."""

    member_id: uuid.UUID
    issuer_id: uuid.UUID
    client_id: str | None
    transfer_id: uuid.UUID
    lot_id: uuid.UUID
    points: int
    reference: str | None
    amount: Decimal | None
    metadata: dict[str, Any]
    occurred_at: datetime
    available_at: datetime
    expires_at: datetime
    bonuses: tuple[BonusToBook, ...] = ()
    draws: tuple[CampaignDraw, ...] = ()
    purchase: bool = False

    @property
    def total_points(self) -> int:
        return max(self.points, 0) + sum(b.points for b in self.bonuses if b.points > 0)

    @property
    def head_id(self) -> uuid.UUID | None:
        """The transfer that stands for the purchase (what `reverseTransfer` takes): the EARN
        when it has points, else the first BONUS with points; None when nothing is booked."""
        if self.points > 0:
            return self.transfer_id
        return next((b.transfer_id for b in self.bonuses if b.points > 0), None)

    @property
    def head_metadata(self) -> dict[str, Any]:
        """The metadata stored on the head: `metadata`, plus the campaign draws (`campaigns`:
        id, version, points, budgeted, period_start) that a reversal gives back to their
        budgets and member usage, unless `metadata` lists them already."""
        if not self.draws or "campaigns" in self.metadata:
            return self.metadata
        return {
            **self.metadata,
            "campaigns": [
                {
                    "id": str(d.campaign_id),
                    "version": d.version,
                    "points": d.points,
                    "budgeted": d.budgeted,
                    "period_start": None
                    if d.counted_period is None
                    else d.counted_period.isoformat(),
                }
                for d in self.draws
                if d.points > 0
            ],
        }


def bonuses_for(
    by_funder: dict[uuid.UUID | None, int], issuer_id: uuid.UUID
) -> tuple[int, tuple[BonusToBook, ...]]:
    """Split a priced earn's points per funder (`PricedEarn.by_funder()`; None: the operator)
    into the EARN's points (the issuer's own) and one BONUS per other funder: partners in id
    order, the operator last, so that a purchase whose EARN has no points is headed by a
    partner's BONUS when there is one."""
    own = by_funder.get(issuer_id, 0)
    others = [
        (funder, points)
        for funder, points in by_funder.items()
        if funder != issuer_id and points > 0
    ]
    others.sort(key=lambda item: (item[0] is None or item[0] == OPERATOR_PARTY, str(item[0])))
    return own, tuple(BonusToBook(funder_id=funder, points=points) for funder, points in others)


_BOOK_EARN = text(
    "SELECT * FROM ledger_book_earn(:client, :key, :hash, :result, :transfer, :lot, :member,"
    " :issuer, :issuance, :wallet, :debt, :points, :reference, :amount, :metadata,"
    " :occurred_at, :available_at, :expires_at)"
).bindparams(bindparam("result", type_=JSONB), bindparam("metadata", type_=JSONB))

# With the bonus transfers, the campaign draws and the purchase count (named, so the 18
# arguments above keep their places).
_BOOK_FUNDED_EARN = text(
    "SELECT * FROM ledger_book_earn(:client, :key, :hash, :result, :transfer, :lot, :member,"
    " :issuer, :issuance, :wallet, :debt, :points, :reference, :amount, :metadata,"
    " :occurred_at, :available_at, :expires_at,"
    " p_bonus_transfers => CAST(:bonus_transfers AS uuid[]),"
    " p_bonus_lots => CAST(:bonus_lots AS uuid[]),"
    " p_bonus_funders => CAST(:bonus_funders AS uuid[]),"
    " p_bonus_accounts => CAST(:bonus_accounts AS uuid[]),"
    " p_bonus_points => CAST(:bonus_points AS bigint[]),"
    " p_draw_campaigns => CAST(:draw_campaigns AS uuid[]),"
    " p_draw_points => CAST(:draw_points AS bigint[]),"
    " p_draw_budgeted => CAST(:draw_budgeted AS boolean[]),"
    " p_draw_limits => CAST(:draw_limits AS bigint[]),"
    " p_draw_periods => CAST(:draw_periods AS date[]),"
    " p_purchase => :purchase)"
).bindparams(bindparam("result", type_=JSONB), bindparam("metadata", type_=JSONB))


def _params(earn: EarnToBook) -> dict[str, Any]:
    params: dict[str, Any] = {
        "client": earn.client_id,
        "transfer": earn.transfer_id,
        "lot": earn.lot_id,
        "member": earn.member_id,
        "issuer": earn.issuer_id,
        "issuance": account_id(AccountCode.PARTNER_ISSUANCE, earn.issuer_id),
        "wallet": account_id(AccountCode.MEMBER_WALLET, earn.member_id),
        "debt": account_id(AccountCode.MEMBER_DEBT, earn.member_id),
        "points": earn.points,
        "reference": earn.reference,
        "amount": earn.amount,
        "metadata": earn.head_metadata,
        "occurred_at": earn.occurred_at,
        "available_at": earn.available_at,
        "expires_at": earn.expires_at,
    }
    if earn.bonuses or earn.draws or earn.purchase:
        bonuses = [b for b in earn.bonuses if b.points > 0]
        draws = [d for d in earn.draws if d.points > 0]
        params.update(
            bonus_transfers=[b.transfer_id for b in bonuses],
            bonus_lots=[b.lot_id for b in bonuses],
            bonus_funders=[b.party_id for b in bonuses],
            bonus_accounts=[account_id(AccountCode.PARTNER_ISSUANCE, b.party_id) for b in bonuses],
            bonus_points=[b.points for b in bonuses],
            draw_campaigns=[d.campaign_id for d in draws],
            draw_points=[d.points for d in draws],
            draw_budgeted=[d.budgeted for d in draws],
            draw_limits=[d.member_limit for d in draws],
            draw_periods=[d.counted_period for d in draws],
            purchase=earn.purchase,
        )
    return params


def _limit_reached(exc: DBAPIError) -> CampaignLimitReached | None:
    """The typed refusal for a CL001/CB001 raised by `ledger_book_earn`, else None."""
    candidates = [exc.orig, getattr(exc.orig, "__cause__", None)]
    for candidate in candidates:
        state = getattr(candidate, "sqlstate", None)
        if state not in (MEMBER_LIMIT_SQLSTATE, BUDGET_SQLSTATE):
            continue
        detail = next(
            (getattr(c, "detail", None) for c in candidates if getattr(c, "detail", None)), None
        )
        if detail is None:
            return None
        kind: Literal["BUDGET", "MEMBER_LIMIT"] = (
            "BUDGET" if state == BUDGET_SQLSTATE else "MEMBER_LIMIT"
        )
        return CampaignLimitReached(uuid.UUID(str(detail).strip()), kind)
    return None


def _autocommit(conn: AsyncConnection) -> bool:
    sync = conn.sync_connection
    return sync is not None and sync.get_execution_options().get("isolation_level") == (
        "AUTOCOMMIT"
    )


async def book_earn_once(
    conn: AsyncConnection,
    earn: EarnToBook,
    *,
    key: str | None,
    request_hash: str | None = None,
    result: dict[str, Any] | None = None,
) -> datetime | KeyTaken | None:
    """Claim `key` with `result` and book `earn` (when it has points), atomically.

    Returns the transfers' created_at (None for a zero-point earn, which books only the key
    and, with `purchase`, counts the purchase), or KeyTaken. On an autocommit connection the
    statement is its own transaction; inside a caller's transaction it is part of that one
    (in a savepoint when a draw may be refused, so that a refusal leaves the transaction
    usable). With
    `key=None` no key is claimed: the caller has stored it already (a batch claims its rows'
    keys at once), or there is none.

    Raises CampaignLimitReached when a draw is refused (nothing booked, key not claimed).
    """
    funded = bool(earn.bonuses or earn.draws or earn.purchase)
    may_refuse = any(
        d.points > 0 and (d.budgeted or d.member_limit is not None) for d in earn.draws
    )
    params = _params(earn) | {"key": key, "hash": request_hash, "result": result}
    mark_write_sent()
    try:
        if may_refuse and not _autocommit(conn):
            async with conn.begin_nested():
                row = (await conn.execute(_BOOK_FUNDED_EARN, params)).one()
        else:
            row = (await conn.execute(_BOOK_FUNDED_EARN if funded else _BOOK_EARN, params)).one()
    except DBAPIError as exc:
        refused = _limit_reached(exc)
        if refused is None:
            raise
        raise refused from exc
    if row.status == "KEY_TAKEN":
        return KeyTaken(row.key_operation, row.key_hash, row.key_result)
    created_at: datetime | None = row.created_at
    return created_at
