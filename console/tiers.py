"""The console's tier pages: the coalition's tier policy (in force, its history, members per
tier, and a form that sets a new version through `points.tiers.policy.set_tier_policy`), and a
member's standing (tier, qualifying points, the next tier) for the member page.

A new policy is validated, versioned and audited by the domain, with the staff member as the
actor; a refused one (INVALID_TIER_POLICY, INVALID_FUNDING) is shown on the form, nothing
saved. An empty list of tiers switches tiers off, so the form asks for a tick first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.staff import Session
from core.errors import DomainError, ErrorCode
from ledger.amounts import InvalidDecimal, format_decimal, parse_decimal
from partners import service as partner_service
from points.rules.model import FundingShare, TierPolicyRule, TierRule
from points.tiers.members import TierChangeRecord, member_tiers_of, tier_history
from points.tiers.policy import (
    StoredTierPolicy,
    current_policy,
    policy_versions,
    set_tier_policy,
)
from points.tiers.qualifying import qualifying_points

if TYPE_CHECKING:
    from console.web import Console

OPERATOR_FUNDER = "operator"
HISTORY = 50
MEMBER_CHANGES = 10
MAX_ROWS = 40
DEFAULT_WINDOW_DAYS = 365
_TIER_COLUMNS = ("code", "name", "threshold", "multiplier")  # the form's tier row

_MEMBERS_PER_TIER = text(
    "SELECT tier_code, count(*) AS members FROM member_tiers GROUP BY tier_code ORDER BY tier_code"
)


async def members_per_tier(conn: AsyncConnection) -> dict[str, int]:
    return {r.tier_code: int(r.members) for r in await conn.execute(_MEMBERS_PER_TIER)}


# ---- a member's standing (the member page) ---------------------------------------------------


@dataclass(frozen=True)
class TierStanding:
    policy_version: int
    window_days: int
    qualifying_points: int
    tier: TierRule | None
    next_tier: TierRule | None
    points_to_next: int | None  # None: at the top
    grace_ends_at: datetime | None
    changes: list[TierChangeRecord]
    names: dict[str, str]  # tier code -> name, for the history

    def name(self, code: str | None) -> str:
        if not code:
            return "none"
        found = self.names.get(code)
        return f"{found} ({code})" if found else code


async def member_standing(conn: AsyncConnection, member_id: uuid.UUID) -> TierStanding | None:
    """The member's tier in the policy in force, qualifying points now, the next tier and the
    points to it, and its latest tier changes; None when no tier policy is set (as
    `Member.tierProgress`)."""
    policy = await current_policy(conn)
    if policy is None:
        return None
    rule = policy.rule
    row = (await member_tiers_of(conn, [member_id])).get(member_id)
    points = await qualifying_points(
        conn, member_id, window_days=rule.window_days, now=datetime.now(UTC)
    )
    held = policy.index(row.tier_code) if row is not None else None
    above = 0 if held is None else held + 1
    upper = rule.tiers[above] if above < len(rule.tiers) else None
    grace_ends = None
    if row is not None and held is not None and row.below_since is not None:
        grace_ends = row.below_since + timedelta(days=rule.grace_days)
    return TierStanding(
        policy_version=policy.version,
        window_days=rule.window_days,
        qualifying_points=points,
        tier=None if held is None else rule.tiers[held],
        next_tier=upper,
        points_to_next=None if upper is None else max(0, upper.threshold - points),
        grace_ends_at=grace_ends,
        changes=await tier_history(conn, member_id, limit=MEMBER_CHANGES),
        names={t.code: t.name for t in rule.tiers},
    )


# ---- the policy form ---------------------------------------------------------------------------


def _refuse(message: str, *field: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_TIER_POLICY, message, list(field))


def _whole(raw: str, *field: str) -> int:
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise _refuse("must be a whole number", *field)
    return int(raw)


def _decimal(raw: str, code: ErrorCode, *field: str) -> Decimal:
    try:
        return parse_decimal(raw.strip())
    except InvalidDecimal as exc:
        raise DomainError(code, str(exc), list(field)) from exc


def form_values(form: FormData) -> dict[str, Any]:
    columns = {k: [str(v)[:200] for v in form.getlist(k)][:MAX_ROWS] for k in _TIER_COLUMNS}
    tiers = [
        dict(zip(_TIER_COLUMNS, row, strict=True))
        for row in zip(*(columns[k] for k in _TIER_COLUMNS), strict=False)
    ]
    funders = [str(f) for f in form.getlist("funder")][:MAX_ROWS]
    shares = [str(s) for s in form.getlist("share")][:MAX_ROWS]
    return {
        "window_days": str(form.get("window_days") or "")[:20],
        "grace_days": str(form.get("grace_days") or "")[:20],
        "tiers": [t for t in tiers if any(v.strip() for v in t.values())],
        "funding": [
            {"funder": f, "share": s} for f, s in zip(funders, shares, strict=False) if f or s
        ],
        "switch_off": bool(form.get("switch_off")),
    }


def policy_values(policy: StoredTierPolicy | None) -> dict[str, Any]:
    if policy is None:
        return {
            "window_days": str(DEFAULT_WINDOW_DAYS),
            "grace_days": "0",
            "tiers": [],
            "funding": [],
            "switch_off": False,
        }
    rule = policy.rule
    return {
        "window_days": str(rule.window_days),
        "grace_days": str(rule.grace_days),
        "tiers": [
            {
                "code": t.code,
                "name": t.name,
                "threshold": str(t.threshold),
                "multiplier": format_decimal(t.multiplier),
            }
            for t in rule.tiers
        ],
        "funding": [
            {
                "funder": OPERATOR_FUNDER if f.funder is None else str(f.funder),
                "share": format_decimal(f.share),
            }
            for f in rule.funding
        ],
        "switch_off": False,
    }


def policy_of_values(values: dict[str, Any]) -> TierPolicyRule:
    """The policy the form asks for (the domain checks the rest); raises DomainError."""
    tiers = []
    for n, row in enumerate(values["tiers"]):
        at = ("tiers", str(n))
        tiers.append(
            TierRule(
                code=row["code"].strip(),
                name=row["name"].strip(),
                threshold=_whole(row["threshold"], *at, "threshold"),
                multiplier=_decimal(
                    row["multiplier"] or "1", ErrorCode.INVALID_TIER_POLICY, *at, "multiplier"
                ),
            )
        )
    if not tiers and not values["switch_off"]:
        raise _refuse("no tiers given: tick 'Switch tiers off' to remove every tier", "tiers")
    funding = []
    for n, row in enumerate(values["funding"]):
        at = ("funding", str(n))
        if not row["funder"]:
            raise DomainError(
                ErrorCode.INVALID_FUNDING, "choose who pays this share", [*at, "partnerId"]
            )
        funder = None
        if row["funder"] != OPERATOR_FUNDER:
            try:
                funder = uuid.UUID(row["funder"])
            except ValueError as exc:
                raise DomainError(
                    ErrorCode.INVALID_FUNDING, "no such partner", [*at, "partnerId"]
                ) from exc
        funding.append(
            FundingShare(funder, _decimal(row["share"], ErrorCode.INVALID_FUNDING, *at, "share"))
        )
    return TierPolicyRule(
        window_days=_whole(values["window_days"], "windowDays"),
        grace_days=_whole(values["grace_days"] or "0", "graceDays"),
        tiers=tuple(tiers),
        funding=tuple(funding),
    )


class TierPages:
    """The handlers (console.web routes them, with the permission each needs)."""

    def __init__(self, console: Console, prefix: str) -> None:
        self.console = console
        self.prefix = prefix

    @property
    def engine(self) -> AsyncEngine:
        return self.console.engine

    async def page(self, request: Request, session: Session, form: FormData | None) -> Response:
        return await self._page(request, session, saved=request.query_params.get("saved") == "1")

    async def _page(
        self,
        request: Request,
        session: Session,
        status_code: int = 200,
        *,
        values: dict[str, Any] | None = None,
        error: DomainError | None = None,
        saved: bool = False,
    ) -> Response:
        async with self.engine.connect() as conn:
            versions = await policy_versions(conn, HISTORY)
            counts = await members_per_tier(conn)
            total = int(await conn.scalar(text("SELECT count(*) FROM members")) or 0)
            partners = sorted(
                await partner_service.list_partners(conn, after=None, limit=1000, only=None),
                key=lambda p: p.name.lower(),
            )
        current = versions[0] if versions else None
        if values is None:
            values = policy_values(current)
        names = {p.id: p.name for p in partners}
        tier_rows = list(values["tiers"])
        tier_rows += [dict.fromkeys(_TIER_COLUMNS, "")] * 2
        funding_rows = list(values["funding"])
        funding_rows += [{"funder": "", "share": ""}] * max(1, 2 - len(funding_rows))
        return self.console.render(
            request,
            "tiers.html",
            status_code,
            session,
            current=current,
            versions=versions,
            counts=counts,
            untiered=max(0, total - sum(counts.values())),
            values=values,
            tier_rows=tier_rows,
            funding_rows=funding_rows,
            partners=partners,
            operator_funder=OPERATOR_FUNDER,
            describe=lambda f: (
                "Operator" if f.funder is None else names.get(f.funder, str(f.funder))
            ),
            error=error,
            saved=saved,
        )

    async def set_policy(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        assert form is not None
        values = form_values(form)
        try:
            rule = policy_of_values(values)
            async with self.engine.begin() as conn:
                await set_tier_policy(
                    conn,
                    actor=session.staff.actor,
                    window_days=rule.window_days,
                    grace_days=rule.grace_days,
                    tiers=rule.tiers,
                    funding=rule.funding,
                )
        except DomainError as exc:
            return await self._page(request, session, 422, values=values, error=exc)
        return RedirectResponse(f"{self.prefix}/tiers?saved=1", status_code=303)
