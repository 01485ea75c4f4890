"""Per-request GraphQL context: the caller, the engine, and this request's DataLoaders."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from strawberry.dataloader import DataLoader
from strawberry.types import Info as StrawberryInfo

from core.caller import Caller
from ledger import queries
from members.service import MemberRecord, get_members
from partners.service import PartnerRecord, get_partners


@dataclass
class Context:
    engine: AsyncEngine
    caller: Caller
    request_id: str
    loaders: dict[str, DataLoader[Any, Any]] = field(default_factory=dict)
    # Told every mutation's successful outcome (schema/mutation.py): the app's metrics.
    booked: Callable[[object], None] = field(default=lambda outcome: None)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection for one read (resolvers run concurrently, so each takes its own)."""
        async with self.engine.connect() as conn:
            yield conn

    def _loader(self, name: str, batch: Any) -> DataLoader[Any, Any]:
        if name not in self.loaders:
            self.loaders[name] = DataLoader(load_fn=batch)
        return self.loaders[name]

    @property
    def partners(self) -> DataLoader[uuid.UUID, PartnerRecord | None]:
        async def batch(ids: list[uuid.UUID]) -> list[PartnerRecord | None]:
            async with self.read() as conn:
                found = await get_partners(conn, ids)
            return [found.get(i) for i in ids]

        return self._loader("partners", batch)

    @property
    def members(self) -> DataLoader[uuid.UUID, MemberRecord | None]:
        """Members the caller may see (others load as None)."""

        async def batch(ids: list[uuid.UUID]) -> list[MemberRecord | None]:
            async with self.read() as conn:
                found = await get_members(conn, self.caller, ids)
            return [found.get(i) for i in ids]

        return self._loader("members", batch)

    @property
    def transfers(self) -> DataLoader[uuid.UUID, queries.TransferRecord | None]:
        """Transfers the caller may see: a partner sees those booked at it."""

        async def batch(ids: list[uuid.UUID]) -> list[queries.TransferRecord | None]:
            async with self.read() as conn:
                found = await queries.transfers_by_id(conn, ids)
            visible = {
                k: v
                for k, v in found.items()
                if self.caller.can_see_partner(v.booked_by_partner_id)
            }
            return [visible.get(i) for i in ids]

        return self._loader("transfers", batch)

    @property
    def holds(self) -> DataLoader[uuid.UUID, queries.HoldRecord | None]:
        async def batch(ids: list[uuid.UUID]) -> list[queries.HoldRecord | None]:
            async with self.read() as conn:
                found = await queries.holds_by_id(conn, ids)
            visible = {k: v for k, v in found.items() if self.caller.can_see_partner(v.partner_id)}
            return [visible.get(i) for i in ids]

        return self._loader("holds", batch)

    @property
    def balances(self) -> DataLoader[uuid.UUID, queries.BalanceRecord]:
        async def batch(ids: list[uuid.UUID]) -> list[queries.BalanceRecord]:
            async with self.read() as conn:
                return [await queries.balance(conn, i) for i in ids]

        return self._loader("balances", batch)


Info = StrawberryInfo[Context, None]
