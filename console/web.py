"""The operator console's HTTP side: sign-in and sessions, CSRF, roles, and the pages.

Every page is server-rendered by Jinja2 (autoescape on). Handlers only read the request, call
domain or query functions and render: what a staff member may do is decided here, by the
session's role (console.staff.GRANTS), before anything is read or changed, not by what the
templates show. Every POST carries the session's CSRF token (the sign-in form a pre-session
one, double-submitted in a cookie) or is refused with 403 before its body is acted on.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from api.settings import Settings
from api.throttle import AuthThrottle, address_key
from console import staff as staff_
from console.campaigns import CampaignPages
from console.dashboard import load_dashboard
from console.staff import Permission, Session
from console.tiers import TierPages, member_standing
from core import audit
from core.caller import ALL_SCOPES, OPERATOR_PARTY, Caller, Scope
from core.errors import DomainError, ErrorCode
from ledger import queries as ledger_queries
from ledger.amounts import InvalidDecimal, parse_decimal
from members import service as member_service
from members.service import MemberRef
from partners import clients
from partners import service as partner_service
from partners.clients import NewClient
from partners.settings import load_settings as load_coalition_settings
from points import adjustment
from schema.audit import break_details, payment_details
from settlement import close as settlement_close
from settlement import payments as settlement_payments
from settlement import periods as settlement_periods
from settlement import reconciliation
from settlement import statement_pdf as settlement_pdf
from settlement import statements as settlement_statements
from settlement import views as settlement_views
from settlement.records import GrossLineRecord

log = logging.getLogger("coalition.console")

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
PREFIX = "/console"
SESSION_COOKIE = "coalition_console"
SIGNIN_COOKIE = "coalition_console_signin"
# Only this server's own scripts, styles and images; no frames, no foreign form targets.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
AUDIT_PAGE = 50
MEMBER_HISTORY = 100
# Member support reads as the operator does over the API (every member, full phone numbers).
CONSOLE_OPERATOR = Caller("console", None, frozenset({Scope.OPERATOR}))

Handler = Callable[[Request, Session, FormData | None], Awaitable[Response]]


class SecurityHeaders:
    """The console's Content-Security-Policy and friends on every answer, assets included;
    pages (HTML) are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                content_type = dict(headers).get(b"content-type", b"")
                if content_type.startswith(b"text/html"):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["points"] = lambda n: f"{int(n):,}".replace(",", "\u202f")
    env.filters["when"] = lambda t: t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    env.filters["tojson_plain"] = lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False)
    env.filters["script_json"] = _script_json
    return env


class Console:
    """The console's routes, bound to the platform's engine and settings."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.env = _templates()
        # Failed sign-ins per (email, address) and per address (api/throttle.py).
        self.throttle = AuthThrottle(
            client_failures=settings.console_signin_failures,
            address_failures=settings.console_signin_address_failures,
            window=settings.console_signin_window,
        )

    # ---- plumbing ------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        status_code: int = 200,
        session: Session | None = None,
        **context: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(
            prefix=PREFIX,
            session=session,
            staff=session.staff if session else None,
            csrf=session.csrf_token if session else None,
            Permission=Permission,
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def _secure(self, request: Request) -> bool:
        return self.settings.console_secure_cookies or request.url.scheme == "https"

    def _set_cookie(self, request: Request, response: Response, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            httponly=True,
            samesite="strict",
            secure=self._secure(request),
            path=PREFIX,
        )

    def forbidden(self, request: Request, session: Session | None, message: str) -> Response:
        return self.render(request, "error.html", 403, session, title="Forbidden", message=message)

    async def session_of(self, request: Request) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token or len(token) > 200:
            return None
        async with self.engine.begin() as conn:
            return await staff_.load_session(
                conn,
                token,
                idle_seconds=self.settings.console_idle_seconds,
                absolute_seconds=self.settings.console_absolute_seconds,
            )

    def page(
        self, permission: Permission, handler: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        """A signed-in page: no session → the sign-in page (403 for a POST); a role without
        `permission` → 403; a POST without the session's CSRF token → 403, its form unread
        by the handler."""

        async def endpoint(request: Request) -> Response:
            session = await self.session_of(request)
            if session is None:
                if request.method != "GET":
                    return self.forbidden(request, None, "Your session has ended: sign in again.")
                return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
            if not session.staff.may(permission):
                return self.forbidden(
                    request, session, f"Your role ({session.staff.role}) cannot do this."
                )
            form = None
            if request.method == "POST":
                form = await request.form(max_files=0, max_fields=200)
                sent = form.get("csrf")
                if not isinstance(sent, str) or not hmac.compare_digest(
                    sent.encode(), session.csrf_token.encode()
                ):
                    return self.forbidden(request, session, "The form's CSRF token is wrong.")
            return await handler(request, session, form)

        return endpoint

    # ---- sign-in and sign-out ------------------------------------------------------------

    async def sign_in_page(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.sign_in(request)
        if await self.session_of(request) is not None:
            return RedirectResponse(f"{PREFIX}/", status_code=303)
        return self._sign_in_form(request, 200, email="", error=None)

    def _sign_in_form(
        self, request: Request, status_code: int, *, email: str, error: str | None
    ) -> Response:
        token = secrets.token_urlsafe(32)
        response = self.render(
            request, "sign_in.html", status_code, signin_token=token, email=email, error=error
        )
        self._set_cookie(request, response, SIGNIN_COOKIE, token)
        return response

    async def sign_in(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=10)
        sent, expected = form.get("csrf"), request.cookies.get(SIGNIN_COOKIE)
        if (
            not isinstance(sent, str)
            or not expected
            or not hmac.compare_digest(sent.encode(), expected.encode())
        ):
            return self.forbidden(request, None, "The sign-in form expired: reload the page.")
        email = staff_.normalize_email(str(form.get("email") or ""))[:320]
        password = str(form.get("password") or "")
        address = address_key(request.client.host if request.client else None)
        wait = self.throttle.retry_after(email, address)
        if wait is not None:
            response = self._sign_in_form(
                request,
                429,
                email=email,
                error=f"Too many failed sign-ins: try again in {wait} seconds.",
            )
            response.headers["Retry-After"] = str(wait)
            return response
        async with self.engine.begin() as conn:
            found = await staff_.password_hash_of(conn, email)
        ok = await asyncio.to_thread(staff_.verify_password, found[1] if found else None, password)
        if not ok or found is None:
            self.throttle.failed(email, address)
            log.info("console sign-in failed for %r from %s", email, address)
            return self._sign_in_form(request, 401, email=email, error="Wrong email or password.")
        async with self.engine.begin() as conn:
            token, _ = await staff_.start_session(conn, found[0])
        response = RedirectResponse(f"{PREFIX}/", status_code=303)
        self._set_cookie(request, response, SESSION_COOKIE, token)
        response.delete_cookie(SIGNIN_COOKIE, path=PREFIX)
        return response

    async def sign_out(self, request: Request, session: Session, form: FormData | None) -> Response:
        async with self.engine.begin() as conn:
            await staff_.end_session(conn, session)
        response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # ---- pages ---------------------------------------------------------------------------

    async def dashboard(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        today = datetime.now(UTC).date()
        end = _date(request.query_params.get("to")) or today
        start = _date(request.query_params.get("from")) or end - timedelta(days=29)
        async with self.engine.connect() as conn:
            board = await load_dashboard(conn, start, end)
        return self.render(
            request,
            "dashboard.html",
            session=session,
            board=board,
        )

    async def audit_log(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        q = request.query_params
        filters = {
            "action": q.get("action") or "",
            "actor": (q.get("actor") or "").strip(),
            "subject_type": q.get("subject_type") or "",
            "from": q.get("from") or "",
            "to": q.get("to") or "",
        }
        action = filters["action"] if filters["action"] in set(audit.AuditAction) else None
        since, until = _date(filters["from"]), _date(filters["to"])
        before = _uuid(q.get("before"))
        async with self.engine.connect() as conn:
            entries = await audit.list_entries(
                conn,
                action=action,
                actor=filters["actor"][:320] or None,
                subject_type=filters["subject_type"][:100] or None,
                since=datetime.combine(since, time(), UTC) if since else None,
                until=datetime.combine(until + timedelta(days=1), time(), UTC) if until else None,
                before=before,
                limit=AUDIT_PAGE + 1,
            )
        more = len(entries) > AUDIT_PAGE
        entries = entries[:AUDIT_PAGE]
        template = "audit_rows.html" if request.headers.get("hx-request") else "audit.html"
        return self.render(
            request,
            template,
            session=session,
            entries=entries,
            more=more,
            next_before=str(entries[-1].id) if more and entries else None,
            filters=filters,
            actions=[str(a) for a in audit.AuditAction],
        )

    # ---- partners, rate cards, API clients --------------------------------------------------

    async def partners_page(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        return await self._partners(request, session)

    async def _partners(
        self,
        request: Request,
        session: Session,
        status_code: int = 200,
        error: DomainError | None = None,
        values: dict[str, str] | None = None,
    ) -> Response:
        async with self.engine.connect() as conn:
            rows = await partner_service.list_partners(conn, after=None, limit=1000, only=None)
            cards = {p.id: await partner_service.rate_card_at(conn, p.id, None) for p in rows}
        rows.sort(key=lambda p: p.name.lower())
        return self.render(
            request,
            "partners.html",
            status_code,
            session,
            partners=rows,
            cards=cards,
            error=error,
            values=values or {},
        )

    async def create_partner(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        assert form is not None
        values = {k: str(form.get(k) or "").strip() for k in _PARTNER_FIELDS}
        values["accepts_redemption"] = "on" if form.get("accepts_redemption") else ""
        try:
            async with self.engine.begin() as conn:
                record = await partner_service.create_partner(
                    conn,
                    name=values["name"],
                    slug=values["slug"],
                    earn_rate=_decimal(values["earn_rate"], "earnRate"),
                    accepts_redemption=bool(values["accepts_redemption"]),
                    pending_days=_int(values["pending_days"] or "0", "pendingDays"),
                    points_validity_days=_int(
                        values["points_validity_days"] or "365", "pointsValidityDays"
                    ),
                    issue_price=_optional_decimal(values["issue_price"], "issuePrice"),
                    redeem_price=_optional_decimal(values["redeem_price"], "redeemPrice"),
                )
                await audit.record(
                    conn,
                    session.staff.actor,
                    audit.AuditAction.PARTNER_CREATED,
                    "Partner",
                    record.id,
                    {
                        "name": record.name,
                        "slug": record.slug,
                        "earnRate": values["earn_rate"],
                        "acceptsRedemption": record.accepts_redemption,
                        "pendingDays": record.pending_days,
                        "pointsValidityDays": record.points_validity_days,
                        "issuePrice": values["issue_price"] or None,
                        "redeemPrice": values["redeem_price"] or None,
                    },
                )
        except DomainError as exc:
            return await self._partners(request, session, 422, exc, values)
        return RedirectResponse(f"{PREFIX}/partners/{record.slug}", status_code=303)

    async def partner_page(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        return await self._partner(request, session, request.path_params["slug"])

    async def _partner(
        self,
        request: Request,
        session: Session,
        slug: str,
        status_code: int = 200,
        *,
        error: DomainError | None = None,
        error_form: str | None = None,
        created: NewClient | None = None,
    ) -> Response:
        async with self.engine.connect() as conn:
            partner = await partner_service.get_partner_by_slug(conn, slug)
            if partner is None:
                return self.render(
                    request,
                    "error.html",
                    404,
                    session,
                    title="Not found",
                    message=f"No partner {slug!r}.",
                )
            cards = await partner_service.rate_cards(conn, partner.id)
            current = await partner_service.rate_card_at(conn, partner.id, None)
            client_rows = await clients.list_clients(conn, partner_id=partner.id)
        return self.render(
            request,
            "partner.html",
            status_code,
            session,
            partner=partner,
            cards=cards,
            current=current,
            clients=client_rows,
            scopes=sorted(s for s in ALL_SCOPES if s != Scope.OPERATOR),
            error=error,
            error_form=error_form,
            created=created,
        )

    async def set_rate_card(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        assert form is not None
        slug = request.path_params["slug"]
        try:
            async with self.engine.begin() as conn:
                partner = await partner_service.require_partner_by_slug(conn, slug)
                card = await partner_service.set_rate_card(
                    conn,
                    partner.id,
                    earn_rate=_decimal(str(form.get("earn_rate") or ""), "earnRate"),
                    issue_price=_optional_decimal(str(form.get("issue_price") or ""), "issuePrice"),
                    redeem_price=_optional_decimal(
                        str(form.get("redeem_price") or ""), "redeemPrice"
                    ),
                    effective_from=_datetime(str(form.get("effective_from") or "")),
                )
                await audit.record(
                    conn,
                    session.staff.actor,
                    audit.AuditAction.RATE_CARD_SET,
                    "Partner",
                    partner.id,
                    {
                        "earnRate": card.earn_rate,
                        "issuePrice": card.issue_price,
                        "redeemPrice": card.redeem_price,
                        "effectiveFrom": card.effective_from,
                    },
                )
        except DomainError as exc:
            return await self._partner(
                request, session, slug, 422, error=exc, error_form="rate-card"
            )
        return RedirectResponse(f"{PREFIX}/partners/{slug}", status_code=303)

    async def set_redemption(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        assert form is not None
        slug = request.path_params["slug"]
        accepts = form.get("accepts_redemption") == "yes"
        try:
            async with self.engine.begin() as conn:
                partner = await partner_service.require_partner_by_slug(conn, slug)
                updated = await partner_service.set_accepts_redemption(conn, partner.id, accepts)
                await audit.record(
                    conn,
                    session.staff.actor,
                    audit.AuditAction.PARTNER_REDEMPTION_SET,
                    "Partner",
                    partner.id,
                    {"acceptsRedemption": updated.accepts_redemption},
                )
        except DomainError as exc:
            return await self._partner(
                request, session, slug, 422, error=exc, error_form="redemption"
            )
        return RedirectResponse(f"{PREFIX}/partners/{slug}", status_code=303)

    async def create_client(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        assert form is not None
        slug = request.path_params["slug"]
        scopes = [str(s) for s in form.getlist("scopes")]
        name = str(form.get("name") or "").strip() or None
        try:
            async with self.engine.begin() as conn:
                partner = await partner_service.require_partner_by_slug(conn, slug)
                created = await clients.create_client(
                    conn, partner_id=partner.id, scopes=scopes, name=name
                )
                # Never the secret: only who the client is and what it may do.
                await audit.record(
                    conn,
                    session.staff.actor,
                    audit.AuditAction.API_CLIENT_CREATED,
                    "ApiClient",
                    created.client_id,
                    {"partnerId": partner.id, "scopes": created.scopes, "name": name},
                )
        except DomainError as exc:
            return await self._partner(request, session, slug, 422, error=exc, error_form="client")
        # The secret is in this answer only (no redirect, never stored, not cached).
        return await self._partner(request, session, slug, created=created)

    async def revoke_client(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        assert form is not None
        slug = request.path_params["slug"]
        client_id = str(form.get("client_id") or "")
        try:
            async with self.engine.begin() as conn:
                partner = await partner_service.get_partner_by_slug(conn, slug)
                found = await clients.load_client(conn, client_id[:200])
                if partner is None or found is None or found.partner_id != partner.id:
                    raise DomainError(ErrorCode.CLIENT_NOT_FOUND, "no such client of this partner")
                await clients.revoke_client(conn, client_id)
                await audit.record(
                    conn,
                    session.staff.actor,
                    audit.AuditAction.API_CLIENT_REVOKED,
                    "ApiClient",
                    client_id,
                    {"partnerId": partner.id},
                )
        except DomainError as exc:
            return await self._partner(request, session, slug, 422, error=exc, error_form="client")
        return RedirectResponse(f"{PREFIX}/partners/{slug}", status_code=303)

    # ---- member support -----------------------------------------------------------------

    async def members_page(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        q = request.query_params
        lookup = {
            "phone": (q.get("phone") or "").strip()[:64],
            "partner": (q.get("partner") or "").strip()[:64],
            "ref": (q.get("ref") or "").strip()[:200],
        }
        return await self._members(request, session, lookup, adjusted=q.get("adjusted") == "1")

    async def _members(
        self,
        request: Request,
        session: Session,
        lookup: dict[str, str],
        status_code: int | None = None,
        *,
        error: DomainError | None = None,
        adjustment: dict[str, str] | None = None,
        adjusted: bool = False,
    ) -> Response:
        context: dict[str, Any] = {
            "adjusted": adjusted,
            "lookup": lookup,
            "member": None,
            "error": None,
            "adjust_error": error,
            "adjustment": adjustment or {},
            "adjust_key": secrets.token_urlsafe(16),
        }
        async with self.engine.connect() as conn:
            context["partners"] = sorted(
                await partner_service.list_partners(conn, after=None, limit=1000, only=None),
                key=lambda p: p.slug,
            )
            if lookup["phone"] or lookup["ref"]:
                try:
                    context.update(await self._member(conn, lookup))
                except DomainError as exc:
                    context["error"] = exc
        if status_code is None:
            status_code = 404 if context["error"] is not None else 200
            if context["error"] is not None and context["error"].code != ErrorCode.MEMBER_NOT_FOUND:
                status_code = 422
        return self.render(request, "members.html", status_code, session, **context)

    async def adjust_member(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        """Credit or debit the member's points with a reason (`points.adjustment`, as the
        API's adjustMemberPoints), then show the member page with the new balance."""
        assert form is not None
        fields = {
            name: str(form.get(name) or "")[:600]
            for name in ("phone", "member_id", "points", "funded_by", "reason", "key")
        }
        lookup = {"phone": fields["phone"].strip()[:64], "partner": "", "ref": ""}
        try:
            raw = fields["points"].strip()
            digits = raw[1:] if raw[:1] in "+-" else raw
            if not digits.isascii() or not digits.isdigit() or len(digits) > 13:
                raise DomainError(
                    ErrorCode.INVALID_AMOUNT, "points must be a whole number", ["points"]
                )
            member_id = _uuid(fields["member_id"])
            if member_id is None:
                raise DomainError(ErrorCode.MEMBER_NOT_FOUND, "no such member", ["member"])
            funded_by = None
            async with self.engine.begin() as conn:
                if fields["funded_by"]:
                    partner = await partner_service.get_partner_by_slug(conn, fields["funded_by"])
                    if partner is None:
                        raise DomainError(
                            ErrorCode.PARTNER_NOT_FOUND, "no such partner", ["fundedBy"]
                        )
                    funded_by = partner.id
                await adjustment.adjust_member_points(
                    conn,
                    CONSOLE_OPERATOR,
                    actor=session.staff.actor,
                    member=MemberRef(id=member_id),
                    points=int(raw),
                    funded_by=funded_by,
                    reason=fields["reason"],
                    idempotency_key=fields["key"] or secrets.token_urlsafe(16),
                )
        except DomainError as exc:
            return await self._members(request, session, lookup, 422, error=exc, adjustment=fields)
        query = urlencode({"phone": lookup["phone"], "adjusted": "1"})
        return RedirectResponse(f"{PREFIX}/members?{query}", status_code=303)

    async def _member(self, conn: AsyncConnection, lookup: dict[str, str]) -> dict[str, Any]:
        """The member by phone (the operator's lookup) or by a partner's own reference (that
        partner's lookup), with balance and history, through the API's domain reads."""
        if lookup["ref"]:
            partner = await partner_service.get_partner_by_slug(conn, lookup["partner"])
            if partner is None:
                raise DomainError(
                    ErrorCode.PARTNER_NOT_FOUND, "choose the partner whose reference it is"
                )
            caller = Caller("console", partner.id, frozenset({Scope.MEMBERS_READ}))
            found = await member_service.find_member(
                conn, caller, MemberRef(partner_ref=lookup["ref"])
            )
        else:
            found = await member_service.find_member(
                conn, CONSOLE_OPERATOR, MemberRef(phone=lookup["phone"])
            )
        record = await member_service.get_member(conn, CONSOLE_OPERATOR, found.id)
        history = await ledger_queries.member_transfers(
            conn, found.id, partner_id=None, before=None, limit=MEMBER_HISTORY
        )
        names = await partner_service.get_partners(
            conn, sorted({t.partner_id for t in history if t.partner_id})
        )
        return {
            "member": record or found,
            "balance": await ledger_queries.balance(conn, found.id),
            "expiring": await ledger_queries.expiring(conn, found.id, 30),
            "history": history,
            "partner_names": {k: v.name for k, v in names.items()},
            "standing": await member_standing(conn, found.id),
        }

    # ---- settlement ---------------------------------------------------------------------

    async def periods_page(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        async with self.engine.connect() as conn:
            rows = await settlement_periods.list_periods(conn, None, 1000)
        rows.reverse()  # newest first
        return self.render(request, "periods.html", session=session, periods=rows)

    async def period_page(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        period_id = _uuid(request.path_params["period_id"])
        return await self._period(request, session, period_id)

    async def _period(
        self,
        request: Request,
        session: Session,
        period_id: uuid.UUID | None,
        status_code: int = 200,
        *,
        error: DomainError | None = None,
        error_form: str | None = None,
    ) -> Response:
        async with self.engine.connect() as conn:
            period = await settlement_periods.get_period(conn, period_id) if period_id else None
            if period is None:
                return self.render(
                    request,
                    "error.html",
                    404,
                    session,
                    title="Not found",
                    message="No such settlement period.",
                )
            money = await load_coalition_settings(conn)
            positions = await settlement_views.positions(conn, CONSOLE_OPERATOR, period.id)
            lines = await settlement_views.gross_lines(conn, CONSOLE_OPERATOR, period.id)
            instructions = await settlement_views.instructions(conn, CONSOLE_OPERATOR, period.id)
            breaks = await reconciliation.list_breaks(
                conn, CONSOLE_OPERATOR, period_id=period.id, limit=1000
            )
            ids = (
                {p.party_id for p in positions}
                | {i for line in lines for i in (line.debtor_id, line.creditor_id)}
                | {b.partner_id for b in breaks}
            )
            names = await partner_service.get_partners(conn, sorted(ids - {OPERATOR_PARTY}))
        party = {k: v.name for k, v in names.items()}
        party[OPERATOR_PARTY] = "Operator"
        scale = Decimal(10) ** money.currency_exponent
        return self.render(
            request,
            "period.html",
            status_code,
            session,
            period=period,
            positions=positions,
            matrix=obligation_matrix(lines),
            instructions=instructions,
            breaks=breaks,
            party=party,
            money=lambda minor: f"{format(Decimal(minor) / scale, 'f')} {money.currency}",
            error=error,
            error_form=error_form,
        )

    async def close_period(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        assert form is not None
        period_id = _uuid(request.path_params["period_id"])
        try:
            if form.get("confirm") != "yes":
                raise DomainError(
                    ErrorCode.INVALID_INPUT,
                    "tick the confirmation to close the period",
                    ["confirm"],
                )
            async with self.engine.begin() as conn:
                closed = await settlement_close.close_period(
                    conn, _datetime(str(form.get("cutoff") or "")), period_id
                )
                await audit.record(
                    conn,
                    session.staff.actor,
                    audit.AuditAction.SETTLEMENT_PERIOD_CLOSED,
                    "SettlementPeriod",
                    closed.id,
                    {"cutoff": closed.cutoff, "status": closed.status},
                )
        except DomainError as exc:
            return await self._period(
                request, session, period_id, 422, error=exc, error_form="close"
            )
        return RedirectResponse(f"{PREFIX}/settlement/{closed.id}", status_code=303)

    async def record_payment(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        assert form is not None
        period_id = _uuid(request.path_params["period_id"])
        instruction_id = _uuid(str(form.get("instruction_id") or ""))
        try:
            if instruction_id is None:
                raise DomainError(ErrorCode.INVALID_INPUT, "no instruction given")
            async with self.engine.begin() as conn:
                paid = await settlement_payments.record_payment(
                    conn, instruction_id, str(form.get("bank_reference") or "")
                )
                if paid.period_id != period_id:
                    raise DomainError(
                        ErrorCode.INVALID_INPUT, "the instruction is not of this period"
                    )
                period = await settlement_periods.require_period(conn, paid.period_id)
                await audit.record(
                    conn,
                    session.staff.actor,
                    audit.AuditAction.SETTLEMENT_PAYMENT_RECORDED,
                    "PaymentInstruction",
                    paid.id,
                    payment_details(paid, period.status),
                )
        except DomainError as exc:
            return await self._period(
                request, session, period_id, 422, error=exc, error_form="payment"
            )
        return RedirectResponse(f"{PREFIX}/settlement/{period_id}", status_code=303)

    async def statement_csv(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        period_id = _uuid(request.path_params["period_id"])
        party_id = _uuid(request.path_params["party_id"])
        try:
            if period_id is None or party_id is None:
                raise DomainError(ErrorCode.PERIOD_NOT_FOUND, "no such period or party")
            async with self.engine.connect() as conn:
                record = await settlement_statements.statement(
                    conn, CONSOLE_OPERATOR, period_id, party_id
                )
        except DomainError as exc:
            return self.render(
                request, "error.html", 404, session, title="Not found", message=exc.message
            )
        return Response(
            settlement_statements.render_csv(record),
            media_type="text/csv; charset=utf-8",
            headers={
                "content-disposition": (
                    f'attachment; filename="statement-{period_id}-{party_id}.csv"'
                ),
                "cache-control": "no-store",
            },
        )

    async def statement_pdf(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        """The same statement as the CSV's, as a PDF (routed with the CSV's permission)."""
        period_id = _uuid(request.path_params["period_id"])
        party_id = _uuid(request.path_params["party_id"])
        try:
            if period_id is None or party_id is None:
                raise DomainError(ErrorCode.PERIOD_NOT_FOUND, "no such period or party")
            async with self.engine.connect() as conn:
                record, heading = await settlement_pdf.statement_pdf(
                    conn, CONSOLE_OPERATOR, period_id, party_id
                )
        except DomainError as exc:
            return self.render(
                request, "error.html", 404, session, title="Not found", message=exc.message
            )
        document = await asyncio.to_thread(settlement_pdf.render_pdf, record, heading)
        return Response(
            document,
            media_type=settlement_pdf.MEDIA_TYPE,
            headers={
                "content-disposition": (
                    f'attachment; filename="statement-{period_id}-{party_id}.pdf"'
                ),
                "cache-control": "no-store",
            },
        )

    async def resolve_break(
        self, request: Request, session: Session, form: FormData | None
    ) -> Response:
        assert form is not None
        period_id = _uuid(request.path_params["period_id"])
        break_id = _uuid(str(form.get("break_id") or ""))
        raw_points = str(form.get("points") or "").strip()
        try:
            if break_id is None:
                raise DomainError(ErrorCode.BREAK_NOT_FOUND, "no break given", ["breakId"])
            points = None
            if raw_points:
                sign = -1 if raw_points.startswith("-") else 1
                points = sign * _int(raw_points.lstrip("-"), "points")
            async with self.engine.begin() as conn:
                resolved = await reconciliation.resolve_break(
                    conn,
                    CONSOLE_OPERATOR,
                    break_id,
                    str(form.get("action") or ""),
                    str(form.get("note") or "").strip() or None,
                    points,
                )
                await audit.record(
                    conn,
                    session.staff.actor,
                    audit.AuditAction.RECONCILIATION_BREAK_RESOLVED,
                    "ReconciliationBreak",
                    resolved.id,
                    break_details(resolved),
                )
        except DomainError as exc:
            return await self._period(
                request, session, period_id, 422, error=exc, error_form="break"
            )
        return RedirectResponse(f"{PREFIX}/settlement/{period_id}", status_code=303)

    # ---- the ASGI app --------------------------------------------------------------------

    def app(self) -> ASGIApp:
        campaigns = CampaignPages(self, PREFIX)
        tiers = TierPages(self, PREFIX)
        routes = [
            Route("/", self.page(Permission.VIEW_DASHBOARD, self.dashboard), methods=["GET"]),
            Route("/sign-in", self.sign_in_page, methods=["GET", "POST"]),
            Route(
                "/sign-out", self.page(Permission.VIEW_DASHBOARD, self.sign_out), methods=["POST"]
            ),
            Route("/audit", self.page(Permission.VIEW_AUDIT, self.audit_log), methods=["GET"]),
            Route(
                "/members", self.page(Permission.VIEW_MEMBERS, self.members_page), methods=["GET"]
            ),
            Route(
                "/members/adjust",
                self.page(Permission.ADJUST_MEMBERS, self.adjust_member),
                methods=["POST"],
            ),
            Route(
                "/settlement",
                self.page(Permission.VIEW_SETTLEMENT, self.periods_page),
                methods=["GET"],
            ),
            Route(
                "/settlement/{period_id}",
                self.page(Permission.VIEW_SETTLEMENT, self.period_page),
                methods=["GET"],
            ),
            Route(
                "/settlement/{period_id}/close",
                self.page(Permission.SETTLE, self.close_period),
                methods=["POST"],
            ),
            Route(
                "/settlement/{period_id}/statements/{party_id}.csv",
                self.page(Permission.VIEW_SETTLEMENT, self.statement_csv),
                methods=["GET"],
            ),
            Route(
                "/settlement/{period_id}/statements/{party_id}.pdf",
                self.page(Permission.VIEW_SETTLEMENT, self.statement_pdf),
                methods=["GET"],
            ),
            Route(
                "/settlement/{period_id}/breaks",
                self.page(Permission.SETTLE, self.resolve_break),
                methods=["POST"],
            ),
            Route(
                "/settlement/{period_id}/payments",
                self.page(Permission.SETTLE, self.record_payment),
                methods=["POST"],
            ),
            Route(
                "/partners",
                self.page(Permission.VIEW_PARTNERS, self.partners_page),
                methods=["GET"],
            ),
            Route(
                "/partners",
                self.page(Permission.MANAGE_PARTNERS, self.create_partner),
                methods=["POST"],
            ),
            Route(
                "/partners/{slug}",
                self.page(Permission.VIEW_PARTNERS, self.partner_page),
                methods=["GET"],
            ),
            Route(
                "/partners/{slug}/rate-card",
                self.page(Permission.MANAGE_PARTNERS, self.set_rate_card),
                methods=["POST"],
            ),
            Route(
                "/partners/{slug}/redemption",
                self.page(Permission.MANAGE_PARTNERS, self.set_redemption),
                methods=["POST"],
            ),
            Route(
                "/partners/{slug}/clients",
                self.page(Permission.MANAGE_PARTNERS, self.create_client),
                methods=["POST"],
            ),
            Route(
                "/partners/{slug}/clients/revoke",
                self.page(Permission.MANAGE_PARTNERS, self.revoke_client),
                methods=["POST"],
            ),
            Route(
                "/campaigns",
                self.page(Permission.VIEW_CAMPAIGNS, campaigns.list_page),
                methods=["GET"],
            ),
            Route(
                "/campaigns",
                self.page(Permission.EDIT_CAMPAIGNS, campaigns.create),
                methods=["POST"],
            ),
            Route(
                "/campaigns/new",
                self.page(Permission.EDIT_CAMPAIGNS, campaigns.new_page),
                methods=["GET"],
            ),
            Route(
                "/campaigns/condition",
                self.page(Permission.EDIT_CAMPAIGNS, campaigns.check_condition),
                methods=["POST"],
            ),
            Route(
                "/campaigns/preview",
                self.page(Permission.EDIT_CAMPAIGNS, campaigns.preview),
                methods=["POST"],
            ),
            Route(
                "/campaigns/{campaign_id:uuid}",
                self.page(Permission.VIEW_CAMPAIGNS, campaigns.detail_page),
                methods=["GET"],
            ),
            Route(
                "/campaigns/{campaign_id:uuid}",
                self.page(Permission.EDIT_CAMPAIGNS, campaigns.update),
                methods=["POST"],
            ),
            Route(
                "/campaigns/{campaign_id:uuid}/{action}",
                self.page(Permission.EDIT_CAMPAIGNS, campaigns.lifecycle),
                methods=["POST"],
            ),
            Route("/tiers", self.page(Permission.VIEW_TIERS, tiers.page), methods=["GET"]),
            Route(
                "/tiers", self.page(Permission.EDIT_TIER_POLICY, tiers.set_policy), methods=["POST"]
            ),
            Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="console-static"),
        ]
        return SecurityHeaders(Starlette(routes=routes))


def _script_json(value: Any) -> Markup:
    """JSON for a <script type="application/json"> block: raw text there (entities are not
    decoded), so it is not HTML-escaped; `<`, `>` and `&` are written as \\u escapes instead,
    so no value can close the block."""
    raw = json.dumps(value, sort_keys=True)
    for char in "<>&":
        raw = raw.replace(char, f"\\u{ord(char):04x}")
    return Markup(raw)


_PARTNER_FIELDS = (
    "name",
    "slug",
    "earn_rate",
    "pending_days",
    "points_validity_days",
    "issue_price",
    "redeem_price",
)


def _decimal(raw: str, field: str) -> Decimal:
    """A form's decimal, in the API's strict syntax (ledger.amounts), else INVALID_AMOUNT."""
    try:
        return parse_decimal(raw)
    except InvalidDecimal as exc:
        raise DomainError(ErrorCode.INVALID_AMOUNT, f"{field}: {exc}", [field]) from exc


def _optional_decimal(raw: str, field: str) -> Decimal | None:
    return _decimal(raw, field) if raw else None


def _int(raw: str, field: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6:
        raise DomainError(ErrorCode.INVALID_INPUT, f"{field} must be a whole number", [field])
    return int(raw)


def _datetime(raw: str) -> datetime | None:
    """A datetime-local field (UTC, as the form says), or None for now."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "effectiveFrom is not a date and time", ["effectiveFrom"]
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def obligation_matrix(
    lines: list[GrossLineRecord],
) -> tuple[list[uuid.UUID], list[uuid.UUID], dict[tuple[uuid.UUID, uuid.UUID], int]]:
    """The gross lines as debtor × creditor totals (minor units), for the matrix table."""
    cells: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    for line in lines:
        key = (line.debtor_id, line.creditor_id)
        cells[key] = cells.get(key, 0) + line.amount
    debtors = sorted({d for d, _ in cells}, key=str)
    creditors = sorted({c for _, c in cells}, key=str)
    return debtors, creditors, cells


def _date(raw: str | None) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def _uuid(raw: str | None) -> uuid.UUID | None:
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None
