"""Running a mutation: one transaction, expected failures as data, bounded retries on races."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.errors import DomainError
from schema.context import Info

T = TypeVar("T")
log = logging.getLogger("coalition.mutation")
MAX_ATTEMPTS = 4
# deadlock_detected, serialization_failure: the transaction can simply run again.
RETRYABLE_SQLSTATES = {"40P01", "40001"}


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    return str(state) if state else None


async def in_transaction(
    info: Info, work: Callable[[AsyncConnection], Awaitable[T]]
) -> T | DomainError:
    """Run `work` in a transaction; a DomainError rolls everything back and is returned."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with info.context.engine.begin() as conn:
                return await work(conn)
        except DomainError as exc:
            return exc
        except DBAPIError as exc:
            if _sqlstate(exc) not in RETRYABLE_SQLSTATES or attempt == MAX_ATTEMPTS:
                raise
            log.info("retrying after %s (attempt %d)", _sqlstate(exc), attempt)
            await asyncio.sleep(0.01 * attempt)
    raise AssertionError("unreachable")
