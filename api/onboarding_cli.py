"""Onboarding on the command line: `coalition partners create|list`, `coalition clients
list|revoke` and `coalition settlement instructions PERIOD`. Tables print ids whole (never
cut to fit a terminal); `--json` prints what scripts need."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from api.commands import run_in_transaction
from core import audit
from core.caller import OPERATOR_PARTY, Caller
from core.errors import DomainError, ErrorCode
from ledger.amounts import InvalidDecimal, parse_decimal

partners_app = typer.Typer(help="Partners of the coalition.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)
T = TypeVar("T")
JSON_OPTION = typer.Option("--json", help="Print JSON.")
OPERATOR = Caller(client_id="cli", partner_id=None, scopes=frozenset({"operator"}))


def _run(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    return run_in_transaction(work)


def print_table(columns: list[str], rows: list[list[str]], out: Console | None = None) -> None:
    """A table with every value whole: as wide as its longest lines (an id cut with "…" or
    folded over two lines cannot be pasted back), wider than the terminal if it must be."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    needed = sum(widths) + 3 * len(columns) + 1
    target = out or console
    if needed > target.width:
        target = Console(width=needed, file=target.file)
    table = Table()
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*row)
    target.print(table, markup=False, highlight=False)


def _write_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data) + "\n")


# ---- partners -----------------------------------------------------------------------------


@partners_app.command("create")
def partners_create(
    name: Annotated[str, typer.Option(help="The partner's display name.")],
    slug: Annotated[str, typer.Option(help="Lowercase letters, digits and dashes.")],
    earn_rate: Annotated[str, typer.Option(help='Points per currency unit, e.g. "0.1".')],
    accepts_redemption: Annotated[
        bool, typer.Option("--accepts-redemption/--no-redemption", help="Points burn here.")
    ] = True,
    pending_days: Annotated[int, typer.Option(help="Days before earned points are usable.")] = 0,
    points_validity_days: Annotated[int, typer.Option(help="Days earned points live.")] = 365,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Add a partner with its first rate card."""
    from partners.service import create_partner

    try:
        rate = parse_decimal(earn_rate)
    except InvalidDecimal as exc:
        errors.print(f"{ErrorCode.INVALID_AMOUNT}: --earn-rate: {exc}", markup=False)
        raise typer.Exit(1) from exc

    async def work(conn: AsyncConnection) -> Any:
        record = await create_partner(
            conn,
            name=name,
            slug=slug,
            earn_rate=rate,
            accepts_redemption=accepts_redemption,
            pending_days=pending_days,
            points_validity_days=points_validity_days,
        )
        await audit.record(
            conn,
            audit.CLI_ACTOR,
            audit.AuditAction.PARTNER_CREATED,
            "Partner",
            record.id,
            {
                "name": record.name,
                "slug": record.slug,
                "earnRate": rate,
                "acceptsRedemption": record.accepts_redemption,
                "pendingDays": record.pending_days,
                "pointsValidityDays": record.points_validity_days,
            },
        )
        return record

    record = _run(work)
    if as_json:
        _write_json(
            {
                "id": str(record.id),
                "slug": record.slug,
                "name": record.name,
                "earnRate": str(rate),
                "acceptsRedemption": record.accepts_redemption,
            }
        )
    else:
        console.print(f"partner {record.slug} created: id {record.id}", markup=False)


@partners_app.command("list")
def partners_list(as_json: Annotated[bool, JSON_OPTION] = False) -> None:
    """List partners with the rate card in force now."""
    from partners.service import list_partners, rate_card_at

    async def work(conn: AsyncConnection) -> list[dict[str, Any]]:
        out = []
        for p in await list_partners(conn, after=None, limit=100_000, only=None):
            card = await rate_card_at(conn, p.id, None)
            out.append(
                {
                    "id": str(p.id),
                    "slug": p.slug,
                    "name": p.name,
                    "earnRate": _plain(card.earn_rate),
                    "issuePrice": _plain(card.issue_price),
                    "redeemPrice": _plain(card.redeem_price),
                    "acceptsRedemption": p.accepts_redemption,
                    "pendingDays": p.pending_days,
                    "pointsValidityDays": p.points_validity_days,
                    "createdAt": p.created_at.isoformat(),
                }
            )
        return sorted(out, key=lambda r: r["slug"])

    rows = _run(work)
    if as_json:
        _write_json(rows)
        return
    print_table(
        ["id", "slug", "name", "earn_rate", "accepts_redemption"],
        [
            [
                r["id"],
                r["slug"],
                r["name"],
                r["earnRate"],
                "yes" if r["acceptsRedemption"] else "no",
            ]
            for r in rows
        ],
    )


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


# ---- clients ------------------------------------------------------------------------------


def clients_list(
    partner: Annotated[str | None, typer.Option(help="Only this partner's clients (slug).")] = None,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """List API clients (never their secrets)."""
    from partners.clients import list_clients
    from partners.service import get_partners, require_partner_by_slug

    async def work(conn: AsyncConnection) -> list[dict[str, Any]]:
        only = None
        if partner is not None:
            only = (await require_partner_by_slug(conn, partner)).id
        rows = await list_clients(conn, partner_id=only)
        slugs = await get_partners(conn, [r.partner_id for r in rows if r.partner_id])
        return [
            {
                "clientId": r.client_id,
                "partner": slugs[r.partner_id].slug if r.partner_id else None,
                "name": r.name,
                "scopes": sorted(r.scopes),
                "createdAt": r.created_at.isoformat(),
                "revokedAt": r.revoked_at.isoformat() if r.revoked_at else None,
            }
            for r in rows
        ]

    rows = _run(work)
    if as_json:
        _write_json(rows)
        return
    print_table(
        ["client_id", "partner", "name", "scopes", "status"],
        [
            [
                r["clientId"],
                r["partner"] or "(operator)",
                r["name"] or "",
                " ".join(r["scopes"]),
                f"revoked {r['revokedAt']}" if r["revokedAt"] else "active",
            ]
            for r in rows
        ],
    )


def clients_revoke(client_id: Annotated[str, typer.Argument(help="The client's id.")]) -> None:
    """Revoke an API client: its tokens stop working within seconds."""
    from partners.clients import revoke_client

    async def work(conn: AsyncConnection) -> Any:
        revoked = await revoke_client(conn, client_id)
        await audit.record(
            conn,
            audit.CLI_ACTOR,
            audit.AuditAction.API_CLIENT_REVOKED,
            "ApiClient",
            client_id,
            {"partnerId": revoked.partner_id},
        )
        return revoked

    revoked = _run(work)
    console.print(f"client {revoked.client_id} revoked at {revoked.revoked_at}", markup=False)


# ---- settlement instructions --------------------------------------------------------------


def settlement_instructions(
    period: Annotated[
        str, typer.Argument(help="The period's id (as `settlement periods` prints).")
    ],
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """A closed period's payment instructions: who pays whom how much, and what is paid."""
    from partners.service import get_partners
    from partners.settings import load_settings
    from settlement.periods import require_period
    from settlement.views import instructions

    try:
        period_id = uuid.UUID(period)
    except ValueError:
        from schema.relay import from_global_id

        try:
            period_id = from_global_id(period, "SettlementPeriod")[1]
        except DomainError:
            errors.print(f"{ErrorCode.INVALID_INPUT}: not a period id: {period!r}", markup=False)
            raise typer.Exit(1) from None

    async def work(conn: AsyncConnection) -> tuple[str, list[dict[str, Any]]]:
        found = await require_period(conn, period_id)
        settings = await load_settings(conn)
        rows = await instructions(conn, OPERATOR, period_id)
        names = await get_partners(
            conn, sorted({i for r in rows for i in (r.payer_id, r.payee_id)} - {OPERATOR_PARTY})
        )

        def who(party: uuid.UUID) -> str:
            return "operator" if party == OPERATOR_PARTY else names[party].slug

        scale = Decimal(10) ** settings.currency_exponent
        return found.status, [
            {
                "id": str(r.id),
                "payer": who(r.payer_id),
                "payee": who(r.payee_id),
                "amountMinor": r.amount,
                "amount": format(Decimal(r.amount) / scale, "f"),
                "currency": settings.currency,
                "paidAt": r.paid_at.isoformat() if r.paid_at else None,
                "bankReference": r.bank_reference,
            }
            for r in rows
        ]

    status, rows = _run(work)
    if as_json:
        _write_json({"period": str(period_id), "status": status, "instructions": rows})
        return
    if not rows:
        console.print(f"period {period_id} ({status}): no payment instructions", markup=False)
        return
    print_table(
        ["id", "payer", "payee", "amount", "paid"],
        [
            [
                r["id"],
                r["payer"],
                r["payee"],
                f"{r['amount']} {r['currency']}",
                f"{r['paidAt']} ({r['bankReference']})" if r["paidAt"] else "no",
            ]
            for r in rows
        ],
    )
