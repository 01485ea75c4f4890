"""The console's campaign pages: the list, the editor (create and edit every field of a
campaign), its lifecycle buttons and version history, the condition checked as it is typed,
and "try it on a purchase".

The console acts as the operator (`CONSOLE_OPERATOR`, coalition-wide campaigns and every
partner's), with the staff member as the audit actor (`staff:<email>`): the domain
(`points.campaigns.service`) checks, versions and audits every change; a refused one is shown
next to the form with its code and field, and nothing is saved.

Times in the forms and tables are in the coalition's time zone (`coalition_settings.
time_zone`, the zone a condition's `purchase.local_hour` and `purchase.weekday` are in).

The preview prices a purchase with the campaign as it stands in the form (unsaved: a new
campaign, or the edited one in place of its saved version) and every other campaign and the
tier policy in force at the purchase's time, by the earn engine itself (`price_earn`): the
answer an earn would give, less the member's own limits (the preview has no member).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.staff import Session
from core.caller import Caller, Scope
from core.errors import DomainError, ErrorCode
from ledger.amounts import InvalidDecimal, format_decimal, parse_decimal
from partners import service as partner_service
from partners.settings import load_settings as load_coalition_settings
from points.campaigns import queries as campaign_queries
from points.campaigns import service as campaign_service
from points.campaigns.catalog import current_revision, rules_at
from points.campaigns.records import CampaignRecord, CampaignVersionRecord, definition_details
from points.campaigns.validation import CampaignSpec, check_condition, check_spec
from points.purchase import Purchase, check_purchase
from points.rules.campaigns import compile_campaign, in_force
from points.rules.cel import VARIABLES
from points.rules.engine import price_earn, purchase_facts
from points.rules.model import (
    CampaignRule,
    CampaignStatus,
    Effect,
    FundingShare,
    LimitPeriod,
    MemberFacts,
    PricedLine,
    PurchaseFacts,
    PurchaseLine,
)
from points.tiers.policy import current_policy, policy_in_force

if TYPE_CHECKING:
    from console.web import Console

# The console's operator caller (as console.web's CONSOLE_OPERATOR; not imported from there,
# which imports this module).
OPERATOR = Caller("console", None, frozenset({Scope.OPERATOR}))
PAGE = 100
OPERATOR_FUNDER = "operator"  # the funding rows' value for the operator (a null funder)
PREVIEW_ID = uuid.UUID(int=0)  # the id of a campaign not saved yet, in a preview
MAX_WHOLE_DIGITS = 15
MAX_PREVIEW_LINES = 500
LIST_FIELDS = ("store_ids", "channels", "tiers", "categories", "skus")
TEXT_FIELDS = (
    "name",
    "starts_at",
    "ends_at",
    "store_ids",
    "channels",
    "tiers",
    "condition",
    "multiplier",
    "bonus_points",
    "points_per_unit",
    "categories",
    "skus",
    "priority",
    "max_points_per_purchase",
    "per_member_limit",
    "limit_period",
    "budget_points",
)
PREVIEW_FIELDS = (
    "try_partner",
    "try_amount",
    "try_lines",
    "try_time",
    "try_channel",
    "try_store",
    "try_tier",
    "try_purchases",
)
ACTION_LABELS = {"pause": "Pause", "resume": "Resume", "end": "End", "archive": "Archive"}


# ---- the form's values <-> a CampaignSpec ---------------------------------------------------


def _bad(code: ErrorCode, message: str, *field: str) -> DomainError:
    return DomainError(code, message, list(field))


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_input(value: datetime | None, zone: str) -> str:
    """A time as a datetime-local field's value, in the coalition's zone (seconds kept)."""
    if value is None:
        return ""
    return value.astimezone(_zone(zone)).strftime("%Y-%m-%dT%H:%M:%S")


def local_text(value: datetime | None, zone: str) -> str:
    """A time for reading, in the coalition's zone."""
    if value is None:
        return ""
    return value.astimezone(_zone(zone)).strftime("%Y-%m-%d %H:%M")


def parse_local(raw: str, zone: str, *field: str) -> datetime | None:
    """A datetime-local field (in the coalition's zone), or None when empty."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise _bad(ErrorCode.INVALID_INPUT, "not a date and time", *field) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=_zone(zone))
    return value.astimezone(UTC)


def _split(raw: str) -> list[str]:
    """A comma- or line-separated list, entries trimmed, empty ones dropped."""
    return [item.strip() for item in re.split(r"[,\n]", raw) if item.strip()]


def _decimal(raw: str, code: ErrorCode, *field: str) -> Decimal | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return parse_decimal(raw)
    except InvalidDecimal as exc:
        raise _bad(code, str(exc), *field) from exc


def _whole(raw: str, *field: str, signed: bool = False) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    digits = raw[1:] if signed and raw[:1] == "-" else raw
    if not digits.isascii() or not digits.isdigit() or len(digits) > MAX_WHOLE_DIGITS:
        raise _bad(ErrorCode.INVALID_INPUT, "must be a whole number", *field)
    return int(raw)


def form_values(form: FormData) -> dict[str, Any]:
    """The editor's fields as sent (kept to show the form again after an error)."""
    values: dict[str, Any] = {k: str(form.get(k) or "")[:5000] for k in TEXT_FIELDS}
    values["partner_ids"] = [str(p) for p in form.getlist("partner_ids")][:1000]
    funders = [str(f) for f in form.getlist("funder")][:100]
    shares = [str(s) for s in form.getlist("share")][:100]
    values["funding"] = [
        {"funder": f, "share": s} for f, s in zip(funders, shares, strict=False) if f or s
    ]
    values["exclusive"] = bool(form.get("exclusive"))
    values["draft"] = bool(form.get("draft"))
    return values


def record_values(record: CampaignRecord, zone: str) -> dict[str, Any]:
    """A saved campaign as the editor's fields."""
    rule = record.rule
    effect = rule.effect

    def number(value: Decimal | int | None) -> str:
        if value is None:
            return ""
        return format_decimal(value) if isinstance(value, Decimal) else str(value)

    return {
        "name": rule.name,
        "starts_at": local_input(rule.starts_at, zone),
        "ends_at": local_input(rule.ends_at, zone),
        "partner_ids": [str(p) for p in sorted(rule.partner_ids)],
        "store_ids": ", ".join(sorted(rule.store_ids)),
        "channels": ", ".join(sorted(rule.channels)),
        "tiers": ", ".join(sorted(rule.tiers)),
        "condition": rule.condition,
        "multiplier": number(effect.multiplier),
        "bonus_points": number(effect.bonus_points),
        "points_per_unit": number(effect.points_per_unit),
        "categories": ", ".join(effect.categories),
        "skus": ", ".join(effect.skus),
        "funding": [
            {
                "funder": OPERATOR_FUNDER if f.funder is None else str(f.funder),
                "share": format_decimal(f.share),
            }
            for f in rule.funding
        ],
        "priority": str(rule.priority),
        "exclusive": rule.exclusive,
        "max_points_per_purchase": number(rule.max_points_per_purchase),
        "per_member_limit": number(rule.per_member_limit),
        "limit_period": str(rule.limit_period),
        "budget_points": number(rule.budget_points),
        "draft": rule.status == CampaignStatus.DRAFT,
    }


def empty_values() -> dict[str, Any]:
    values: dict[str, Any] = dict.fromkeys(TEXT_FIELDS, "")
    values.update(
        condition="true",
        priority="0",
        limit_period=str(LimitPeriod.CAMPAIGN),
        partner_ids=[],
        funding=[],
        exclusive=False,
        draft=False,
    )
    return values


def spec_of_values(
    values: dict[str, Any], zone: str, current: CampaignRecord | None = None
) -> CampaignSpec:
    """The spec the form asks for; raises DomainError for a field the console cannot read
    (the domain's own checks come after, in `check_spec`). With `current`, a time field left
    as it was shown keeps the saved value exactly (the field shows whole seconds)."""

    def when(key: str, field: str) -> datetime | None:
        raw = str(values[key])
        if current is not None:
            saved = getattr(current.rule, key)
            if raw.strip() == local_input(saved, zone):
                return saved  # type: ignore[no-any-return]
        return parse_local(raw, zone, field)

    partner_ids = []
    for n, raw in enumerate(values["partner_ids"]):
        try:
            partner_ids.append(uuid.UUID(raw))
        except ValueError as exc:
            raise _bad(
                ErrorCode.PARTNER_NOT_FOUND, "no such partner", "partnerIds", str(n)
            ) from exc
    funding = []
    for n, row in enumerate(values["funding"]):
        at = ("funding", str(n))
        if not row["funder"]:
            raise _bad(ErrorCode.INVALID_FUNDING, "choose who pays this share", *at, "partnerId")
        share = _decimal(row["share"], ErrorCode.INVALID_FUNDING, *at, "share")
        if share is None:
            raise _bad(ErrorCode.INVALID_FUNDING, "a share is required", *at, "share")
        if row["funder"] == OPERATOR_FUNDER:
            funder = None
        else:
            try:
                funder = uuid.UUID(row["funder"])
            except ValueError as exc:
                raise _bad(ErrorCode.INVALID_FUNDING, "no such partner", *at, "partnerId") from exc
        funding.append(FundingShare(funder, share))
    try:
        period = LimitPeriod(values["limit_period"] or LimitPeriod.CAMPAIGN)
    except ValueError as exc:
        raise _bad(ErrorCode.INVALID_INPUT, "not a limit period", "limitPeriod") from exc
    effect = Effect(
        multiplier=_decimal(values["multiplier"], ErrorCode.INVALID_EFFECT, "effect", "multiplier"),
        bonus_points=_whole(values["bonus_points"], "effect", "bonusPoints"),
        points_per_unit=_decimal(
            values["points_per_unit"], ErrorCode.INVALID_EFFECT, "effect", "pointsPerUnit"
        ),
        categories=tuple(_split(values["categories"])),
        skus=tuple(_split(values["skus"])),
    )
    return CampaignSpec(
        name=values["name"],
        effect=effect,
        starts_at=when("starts_at", "startsAt"),
        ends_at=when("ends_at", "endsAt"),
        partner_ids=tuple(partner_ids),
        store_ids=tuple(_split(values["store_ids"])),
        channels=tuple(_split(values["channels"])),
        tiers=tuple(_split(values["tiers"])),
        condition=values["condition"] if values["condition"].strip() else "true",
        funding=tuple(funding),
        priority=_whole(values["priority"], "priority", signed=True) or 0,
        exclusive=bool(values["exclusive"]),
        max_points_per_purchase=_whole(values["max_points_per_purchase"], "maxPointsPerPurchase"),
        per_member_limit=_whole(values["per_member_limit"], "perMemberLimit"),
        limit_period=period,
        budget_points=_whole(values["budget_points"], "budgetPoints"),
    )


def changes_of(spec: CampaignSpec) -> dict[str, Any]:
    """Every field of the spec as `update_campaign`'s changes (None: back to the default)."""
    return {
        "name": spec.name,
        "effect": spec.effect,
        "starts_at": spec.starts_at,
        "ends_at": spec.ends_at,
        "partner_ids": spec.partner_ids,
        "store_ids": spec.store_ids,
        "channels": spec.channels,
        "tiers": spec.tiers,
        "condition": spec.condition,
        "funding": spec.funding,
        "priority": spec.priority,
        "exclusive": spec.exclusive,
        "max_points_per_purchase": spec.max_points_per_purchase,
        "per_member_limit": spec.per_member_limit,
        "limit_period": spec.limit_period,
        "budget_points": spec.budget_points,
    }


# ---- the condition, checked as it is typed ----------------------------------------------------


@dataclass(frozen=True)
class ConditionStatus:
    compiles: bool
    message: str


def condition_status(source: str) -> ConditionStatus:
    """What the compiler says of a condition (empty: `true`, every purchase)."""
    if not source.strip():
        return ConditionStatus(True, "compiles (empty: every purchase matches)")
    try:
        check_condition(source)
    except DomainError as exc:
        return ConditionStatus(False, exc.message)
    return ConditionStatus(True, "compiles")


# ---- try it on a purchase -----------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewLine:
    line: PricedLine
    ours: bool  # given by the campaign in the form
    funders: list[tuple[str, int]]  # (who, points)


@dataclass(frozen=True)
class Preview:
    points: int
    lines: list[PreviewLine]
    verdict: str  # what became of the campaign in the form
    occurred_at: str
    partner: str
    earn_rate: Decimal


def _lines(raw: str) -> tuple[PurchaseLine, ...]:
    """ "sku,category,amount[,quantity]" per line (category may be empty)."""
    found = []
    for n, text in enumerate(t for t in raw.splitlines() if t.strip()):
        if n >= MAX_PREVIEW_LINES:
            raise _bad(ErrorCode.INVALID_LINES, f"at most {MAX_PREVIEW_LINES} lines", "lines")
        parts = [p.strip() for p in text.split(",")]
        if len(parts) not in (3, 4):
            raise _bad(
                ErrorCode.INVALID_LINES,
                f"line {n + 1}: write sku,category,amount (optionally ,quantity)",
                "lines",
                str(n),
            )
        quantity = parts[3] if len(parts) == 4 else "1"
        amount = _decimal(parts[2], ErrorCode.INVALID_LINES, "lines", str(n), "amount")
        count = _decimal(quantity, ErrorCode.INVALID_LINES, "lines", str(n), "quantity")
        if amount is None or count is None:
            raise _bad(ErrorCode.INVALID_LINES, f"line {n + 1}: an amount is required", "lines")
        found.append(
            PurchaseLine(sku=parts[0], category=parts[1] or None, quantity=count, amount=amount)
        )
    return tuple(found)


def _funder_name(funder: uuid.UUID | None, names: dict[uuid.UUID, Any]) -> str:
    if funder is None:
        return "Operator"
    found = names.get(funder)
    return found.name if found is not None else str(funder)


def _verdict(
    rule: CampaignRule, gave: bool, facts: PurchaseFacts, member: MemberFacts, matched: bool
) -> str:
    """What became of the form's campaign, in words (why it gave nothing, when it did not)."""
    if gave:
        return "The campaign in the form gives the points marked below."
    if not in_force(rule, facts, member):
        reasons = []
        if rule.starts_at > facts.occurred_at or (
            rule.ends_at is not None and facts.occurred_at >= rule.ends_at
        ):
            reasons.append("its schedule does not hold the purchase's time")
        if rule.partner_ids and facts.partner_id not in rule.partner_ids:
            reasons.append("it does not apply at this partner")
        if rule.owner_partner_id is not None and rule.owner_partner_id != facts.partner_id:
            reasons.append("it is another partner's own campaign")
        if rule.store_ids and facts.store not in rule.store_ids:
            reasons.append("it does not apply at this store")
        if rule.channels and facts.channel not in rule.channels:
            reasons.append("it does not apply on this channel")
        if rule.tiers and member.tier not in rule.tiers:
            reasons.append("it does not target this member's tier")
        return (
            "The campaign in the form does not apply: "
            + "; ".join(reasons or ["not in force"])
            + "."
        )
    if not matched:
        return (
            "The campaign in the form applies here, but its condition is false for this purchase."
        )
    return (
        "The campaign's condition matched, but it gave nothing: no line in its categories or"
        " skus, its limits are used up, or an exclusive campaign before it took the purchase."
    )


async def preview(
    conn: AsyncConnection,
    values: dict[str, Any],
    purchase_values: dict[str, str],
    *,
    current: CampaignRecord | None,
) -> Preview:
    """The purchase priced with the form's campaign (unsaved) and everything else in force."""
    settings = await load_coalition_settings(conn)
    zone = settings.time_zone
    partner = await partner_service.get_partner_by_slug(conn, purchase_values["try_partner"])
    if partner is None:
        raise _bad(ErrorCode.PARTNER_NOT_FOUND, "choose the partner of the purchase", "partner")
    amount = _decimal(purchase_values["try_amount"], ErrorCode.INVALID_AMOUNT, "amount")
    if amount is None or amount <= 0 or -amount.as_tuple().exponent > settings.currency_exponent:  # type: ignore[operator]
        raise _bad(
            ErrorCode.INVALID_AMOUNT,
            f"the amount must be positive, with at most {settings.currency_exponent} decimals",
            "amount",
        )
    purchase = Purchase(
        amount=amount,
        lines=_lines(purchase_values["try_lines"]),
        store_id=purchase_values["try_store"].strip() or None,
        channel=purchase_values["try_channel"].strip() or None,
    )
    check_purchase(purchase, settings.currency_exponent)
    now = datetime.now(UTC)
    occurred_at = parse_local(purchase_values["try_time"], zone, "occurredAt") or now
    purchases = _whole(purchase_values["try_purchases"], "memberPurchases") or 0
    try:
        card = await partner_service.rate_card_at(conn, partner.id, occurred_at)
    except NoResultFound:
        raise _bad(
            ErrorCode.INVALID_INPUT, "the partner had no rate card at that time", "occurredAt"
        ) from None

    # The form's campaign, checked as saving would check it (nothing is written).
    spec = spec_of_values(values, zone, current)
    if not spec.name.strip():
        spec = replace(spec, name="This campaign")
    if spec.starts_at is None:  # "from now": let it price the purchase tried, whenever it is
        spec = replace(spec, starts_at=min(occurred_at, now))
    owner = current.owner_partner_id if current else None
    checked = await check_spec(conn, spec, owner=owner, now=now, creating=current is None)
    assert checked.starts_at is not None
    rule = CampaignRule(
        campaign_id=current.id if current else PREVIEW_ID,
        version=current.version + 1 if current else 1,
        name=checked.name,
        owner_partner_id=owner,
        status=CampaignStatus.ACTIVE,  # a draft is tried as if it were active
        starts_at=checked.starts_at,
        ends_at=checked.ends_at,
        partner_ids=frozenset(checked.partner_ids),
        store_ids=frozenset(checked.store_ids),
        channels=frozenset(checked.channels),
        tiers=frozenset(checked.tiers),
        condition=checked.condition,
        effect=checked.effect,
        funding=tuple(checked.funding),
        priority=checked.priority,
        exclusive=checked.exclusive,
        max_points_per_purchase=checked.max_points_per_purchase,
        per_member_limit=checked.per_member_limit,
        limit_period=checked.limit_period,
        budget_points=checked.budget_points,
    )
    ours = compile_campaign(rule)
    others = [
        c
        for c in await rules_at(conn, await current_revision(conn), occurred_at)
        if c.rule.campaign_id != rule.campaign_id
    ]
    facts = purchase_facts(
        partner_id=partner.id,
        partner_slug=partner.slug,
        amount=purchase.amount,
        occurred_at=occurred_at,
        time_zone=zone,
        lines=purchase.lines,
        store=purchase.store_id,
        channel=purchase.channel,
    )
    member = MemberFacts(
        member_id=PREVIEW_ID, tier=purchase_values["try_tier"].strip(), purchases=purchases
    )
    earn = price_earn(
        facts,
        member,
        earn_rate=card.earn_rate,
        campaigns=[*others, ours],
        tier_policy=await policy_in_force(conn, None, occurred_at),
        headroom={},
    )
    funders = {f.funder for line in earn.lines for f in line.funded_by} - {None}
    names = await partner_service.get_partners(conn, sorted(f for f in funders if f))
    lines = [
        PreviewLine(
            line=line,
            ours=line.campaign_id == rule.campaign_id,
            funders=[(_funder_name(f.funder, names), f.points) for f in line.funded_by],
        )
        for line in earn.lines
    ]
    gave = any(line.ours for line in lines)
    return Preview(
        points=earn.points,
        lines=lines,
        verdict=_verdict(rule, gave, facts, member, ours.condition.matches(facts, member)),
        occurred_at=f"{local_text(occurred_at, zone)} ({zone})",
        partner=partner.name,
        earn_rate=card.earn_rate,
    )


# ---- the pages ----------------------------------------------------------------------------


def version_changes(versions: list[CampaignVersionRecord]) -> list[list[str]]:
    """For each version (oldest first), what it changed from the one before."""
    changes: list[list[str]] = []
    previous: dict[str, Any] | None = None
    for version in versions:
        details = definition_details(version.rule)
        if previous is None:
            changes.append(["created"])
        else:
            changed = []
            for key, value in details.items():
                if previous[key] != value:
                    if key == "status":
                        changed.append(f"status {previous[key]} → {value}")
                    else:
                        changed.append(key)
            changes.append(changed or ["nothing"])
        previous = details
    return changes


class CampaignPages:
    """The handlers (console.web routes them, with the permission each needs)."""

    def __init__(self, console: Console, prefix: str) -> None:
        self.console = console
        self.prefix = prefix

    @property
    def engine(self) -> AsyncEngine:
        return self.console.engine

    async def list_page(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        q = request.query_params
        status_raw = q.get("status") or ""
        status = status_raw if status_raw in set(CampaignStatus) else ""
        after = _uuid(q.get("after"))
        async with self.engine.connect() as conn:
            zone = (await load_coalition_settings(conn)).time_zone
            rows = await campaign_queries.list_campaigns(
                conn,
                OPERATOR,
                after=after,
                limit=PAGE + 1,
                status=CampaignStatus(status) if status else None,
            )
            owners = await partner_service.get_partners(
                conn, sorted({r.owner_partner_id for r in rows if r.owner_partner_id})
            )
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        next_query = (
            urlencode({"status": status, "after": str(rows[-1].id)}) if more and rows else None
        )
        return self.console.render(
            request,
            "campaigns.html",
            session=session,
            campaigns=rows,
            owners={k: v.name for k, v in owners.items()},
            statuses=[str(s) for s in CampaignStatus],
            status=status,
            next_query=next_query,
            zone=zone,
            local=lambda t: local_text(t, zone),
        )

    async def new_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        return await self._editor(request, session, None, values=empty_values())

    async def detail_page(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        campaign_id: uuid.UUID = request.path_params["campaign_id"]
        return await self._editor(
            request, session, campaign_id, done=request.query_params.get("done") or ""
        )

    async def _editor(
        self,
        request: Request,
        session: Session,
        campaign_id: uuid.UUID | None,
        status_code: int = 200,
        *,
        values: dict[str, Any] | None = None,
        error: DomainError | None = None,
        error_form: str | None = None,
        done: str = "",
    ) -> Response:
        async with self.engine.connect() as conn:
            settings = await load_coalition_settings(conn)
            zone = settings.time_zone
            record = None
            versions: list[CampaignVersionRecord] = []
            if campaign_id is not None:
                record = await campaign_queries.get_campaign(conn, OPERATOR, campaign_id)
                if record is None:
                    return self.console.render(
                        request,
                        "error.html",
                        404,
                        session,
                        title="Not found",
                        message="No such campaign.",
                    )
                versions = await campaign_queries.list_versions(conn, campaign_id)
            partners = sorted(
                await partner_service.list_partners(conn, after=None, limit=1000, only=None),
                key=lambda p: p.name.lower(),
            )
            policy = await current_policy(conn)
        if values is None:
            values = record_values(record, zone) if record else empty_values()
        names = {p.id: p.name for p in partners}
        rows = list(values["funding"])
        rows += [{"funder": "", "share": ""}] * max(2, 3 - len(rows))
        history = list(zip(versions, version_changes(versions), strict=True))
        history.reverse()  # newest first
        first_partner = next(iter(values["partner_ids"]), "")
        default_slug = next(
            (p.slug for p in partners if str(p.id) == first_partner),
            partners[0].slug if partners else "",
        )
        return self.console.render(
            request,
            "campaign.html",
            status_code,
            session,
            record=record,
            values=values,
            funding_rows=rows,
            error=error,
            error_form=error_form,
            done=done,
            partners=partners,
            partner_names=names,
            operator_funder=OPERATOR_FUNDER,
            periods=[str(p) for p in LimitPeriod],
            tiers=policy.rule.tiers if policy else (),
            condition=condition_status(values["condition"]),
            variables=VARIABLES,
            history=history,
            editable=record is None or record.status in campaign_service.EDITABLE,
            actions=[
                (
                    action,
                    "Activate"
                    if action == "resume" and record.status == CampaignStatus.DRAFT
                    else label,
                )
                for action, label in ACTION_LABELS.items()
                if record is not None and record.status in campaign_service.TRANSITIONS[action][0]
            ],
            zone=zone,
            local=lambda t: local_text(t, zone),
            now_local=datetime.now(_zone(zone)).strftime("%Y-%m-%dT%H:%M"),
            default_slug=default_slug,
            describe=lambda f: (
                "Operator" if f.funder is None else names.get(f.funder, str(f.funder))
            ),
        )

    async def create(self, request: Request, session: Session, form: FormData | None) -> Response:
        assert form is not None
        values = form_values(form)
        try:
            async with self.engine.begin() as conn:
                zone = (await load_coalition_settings(conn)).time_zone
                record = await campaign_service.create_campaign(
                    conn,
                    OPERATOR,
                    spec_of_values(values, zone),
                    draft=values["draft"],
                    actor=session.staff.actor,
                )
        except DomainError as exc:
            return await self._editor(
                request, session, None, 422, values=values, error=exc, error_form="campaign"
            )
        return RedirectResponse(
            f"{self.prefix}/campaigns/{record.id}?done=created", status_code=303
        )

    async def update(self, request: Request, session: Session, form: FormData | None) -> Response:
        assert form is not None
        campaign_id: uuid.UUID = request.path_params["campaign_id"]
        values = form_values(form)
        try:
            async with self.engine.begin() as conn:
                zone = (await load_coalition_settings(conn)).time_zone
                current = await campaign_queries.get_campaign(conn, OPERATOR, campaign_id)
                if current is None:
                    raise _bad(ErrorCode.CAMPAIGN_NOT_FOUND, "no such campaign", "id")
                values["draft"] = current.status == CampaignStatus.DRAFT
                updated = await campaign_service.update_campaign(
                    conn,
                    OPERATOR,
                    campaign_id,
                    changes_of(spec_of_values(values, zone, current)),
                    actor=session.staff.actor,
                )
        except DomainError as exc:
            return await self._editor(
                request, session, campaign_id, 422, values=values, error=exc, error_form="campaign"
            )
        done = "updated" if updated.version != current.version else "unchanged"
        return RedirectResponse(
            f"{self.prefix}/campaigns/{campaign_id}?done={done}", status_code=303
        )

    async def lifecycle(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        campaign_id: uuid.UUID = request.path_params["campaign_id"]
        action = request.path_params["action"]
        if action not in campaign_service.TRANSITIONS:
            return self.console.render(
                request, "error.html", 404, session, title="Not found", message="No such action."
            )
        try:
            async with self.engine.begin() as conn:
                await campaign_service.change_status(
                    conn, OPERATOR, campaign_id, action, actor=session.staff.actor
                )
        except DomainError as exc:
            return await self._editor(
                request, session, campaign_id, 422, error=exc, error_form="lifecycle"
            )
        return RedirectResponse(
            f"{self.prefix}/campaigns/{campaign_id}?done={action}", status_code=303
        )

    async def check_condition(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        """The htmx fragment under the condition field: "compiles" or the compiler's message."""
        assert form is not None
        source = str(form.get("condition") or "")[:10_000]
        return self.console.render(
            request, "campaign_condition.html", session=session, condition=condition_status(source)
        )

    async def preview(self, request: Request, session: Session, form: FormData | None) -> Response:
        """The htmx fragment of "try it on a purchase" (always 200, so htmx shows an error)."""
        assert form is not None
        values = form_values(form)
        purchase = {k: str(form.get(k) or "")[:20_000] for k in PREVIEW_FIELDS}
        campaign_id = _uuid(str(form.get("campaign_id") or ""))
        result: Preview | None = None
        error: DomainError | None = None
        try:
            async with self.engine.connect() as conn:
                current = None
                if campaign_id is not None:
                    current = await campaign_queries.get_campaign(conn, OPERATOR, campaign_id)
                    if current is None:
                        raise _bad(ErrorCode.CAMPAIGN_NOT_FOUND, "no such campaign", "id")
                result = await preview(conn, values, purchase, current=current)
        except DomainError as exc:
            error = exc
        return self.console.render(
            request, "campaign_preview.html", session=session, result=result, error=error
        )


def _uuid(raw: str | None) -> uuid.UUID | None:
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None
