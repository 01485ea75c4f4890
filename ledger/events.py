"""In-transaction domain events: other modules (settlement, later webhooks) subscribe here.

`begin` hooks run before a posting writes anything (settlement takes its period lock there);
`booked` hooks run after, in the same transaction, with the ids of the transfers booked.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

BeginHook = Callable[[AsyncConnection], Awaitable[None]]
BookedHook = Callable[[AsyncConnection, Sequence[uuid.UUID]], Awaitable[None]]

_begin_hooks: list[BeginHook] = []
_booked_hooks: list[BookedHook] = []


def on_begin(hook: BeginHook) -> BeginHook:
    if hook not in _begin_hooks:
        _begin_hooks.append(hook)
    return hook


def on_booked(hook: BookedHook) -> BookedHook:
    if hook not in _booked_hooks:
        _booked_hooks.append(hook)
    return hook


async def begin(conn: AsyncConnection) -> None:
    for hook in _begin_hooks:
        await hook(conn)


async def booked(conn: AsyncConnection, transfer_ids: Sequence[uuid.UUID]) -> None:
    if not transfer_ids:
        return
    for hook in _booked_hooks:
        await hook(conn, transfer_ids)
