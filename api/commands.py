"""What the CLI commands do, kept apart from argument parsing."""

from __future__ import annotations

from typing import Any

from core import audit
from core.errors import DomainError, ErrorCode
from db.engine import create_engine
from partners.clients import create_client
from partners.service import get_partner_by_slug


async def create_client_command(
    url: str, partner_slug: str | None, scopes: list[str], name: str | None
) -> dict[str, Any]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            partner_id = None
            if partner_slug is not None:
                partner = await get_partner_by_slug(conn, partner_slug)
                if partner is None:
                    raise DomainError(
                        ErrorCode.PARTNER_NOT_FOUND, f"no partner {partner_slug!r}", ["partner"]
                    )
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
