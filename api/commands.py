"""What the CLI commands do, kept apart from argument parsing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit
from core.errors import DomainError
from db.embedded import database_url
from db.engine import create_engine
from db.migrate import upgrade
from partners.clients import create_client
from partners.service import require_partner_by_slug

T = TypeVar("T")
_errors = Console(stderr=True)


def run_in_transaction(
    work: Callable[[AsyncConnection], Awaitable[T]],
    refused: tuple[type[Exception], ...] = (DomainError,),
) -> T:
    """One transaction against the configured database (migrated first) for a CLI command. An
    expected refusal (an exception with `code` and `message`) prints them on stderr and exits
    with code 1, never a traceback."""
    url = database_url()
    upgrade(url)

    async def go() -> T:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except refused as exc:
        code, message = getattr(exc, "code", type(exc).__name__), getattr(exc, "message", exc)
        _errors.print(f"{code}: {message}", markup=False, highlight=False)
        raise typer.Exit(1) from exc


async def create_client_command(
    url: str, partner_slug: str | None, scopes: list[str], name: str | None
) -> dict[str, Any]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            partner_id = None
            if partner_slug is not None:
                partner = await require_partner_by_slug(conn, partner_slug, ["partner"])
                partner_id = partner.id
            created = await create_client(conn, partner_id=partner_id, scopes=scopes, name=name)
            await audit.record(
                conn,
                audit.CLI_ACTOR,
                audit.AuditAction.API_CLIENT_CREATED,
                "ApiClient",
                created.client_id,
                {"partnerId": partner_id, "scopes": created.scopes, "name": name},
            )
        return {
            "client_id": created.client_id,
            "client_secret": created.client_secret,
            "partner": partner_slug,
            "scopes": " ".join(sorted(created.scopes)),
        }
    finally:
        await engine.dispose()


async def expire_command(url: str) -> tuple[int, int]:
    from ledger.expiry import expire_due

    engine = create_engine(url, pool_size=1)
    try:
        report = await expire_due(engine)
        return report.members, report.points
    finally:
        await engine.dispose()
