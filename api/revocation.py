"""Which clients and tokens are revoked, kept in memory and refreshed every few seconds.

This keeps token checks free of database round trips while a revocation still takes
effect on every worker within `revocation_refresh_seconds`.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.tokens import AccessToken

log = logging.getLogger("coalition.revocation")


class RevocationList:
    def __init__(self) -> None:
        self.clients: frozenset[str] = frozenset()
        self.tokens: frozenset[str] = frozenset()

    def is_revoked(self, token: AccessToken) -> bool:
        return token.client_id in self.clients or token.jti in self.tokens

    async def refresh(self, engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            clients = await conn.execute(
                text("SELECT client_id FROM api_clients WHERE revoked_at IS NOT NULL")
            )
            tokens = await conn.execute(
                text(
                    "SELECT jti FROM revoked_tokens WHERE expires_at > now() - interval '1 minute'"
                )
            )
            self.clients = frozenset(r.client_id for r in clients)
            self.tokens = frozenset(r.jti for r in tokens)

    async def run(self, engine: AsyncEngine, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh(engine)
            except Exception:  # keep the last list; the database may be restarting
                log.warning("could not refresh the revocation list", exc_info=True)
