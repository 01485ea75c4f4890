"""Running a mutation: one transaction, expected failures as data, bounded retries on races."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import strawberry
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import DomainError, ErrorCode
from core.writes import watch_write
from schema.context import Info

T = TypeVar("T")
# Every mutation's one argument: `input: Request[EarnPointsInput]`.
Request = Annotated[
    T,
    strawberry.argument(
        description="The request: each field is described on its input type; fields left out"
        " take their defaults."
    ),
]
log = logging.getLogger("coalition.mutation")
MAX_ATTEMPTS = 4
# deadlock_detected, serialization_failure: the transaction can simply run again.
RETRYABLE_SQLSTATES = {"40P01", "40001"}
# Class 22, data exception: a value the client sent that PostgreSQL cannot hold (a NUL
# character, a number or a date out of range). The client's mistake, not a crash.
DATA_EXCEPTION_CLASS = "22"


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    return str(state) if state else None


async def in_transaction(
    info: Info, work: Callable[[AsyncConnection], Awaitable[T]], *, autocommit: bool = False
) -> T | DomainError:
    """Run `work` in a transaction (see `_run`); its outcome, once committed, is told to the
    context (`Context.booked`: the app's metrics count earns and redemptions there)."""
    result = await _run(info, work, autocommit)
    if not isinstance(result, DomainError):
        info.context.booked(result)
    return result


async def _run(
    info: Info, work: Callable[[AsyncConnection], Awaitable[T]], autocommit: bool
) -> T | DomainError:
    """Run `work` in a transaction; a DomainError rolls everything back and is returned.

    `autocommit`: `work` reads, then writes with one statement that is atomic by itself (a SQL
    function such as `ledger_book_earn`): no BEGIN and COMMIT round trips. It marks the
    moment it sends that statement (`core.writes.mark_write_sent`), which counts as COMMIT below.

    A connection that turns out dead (PostgreSQL restarted since the pool opened it) is
    replaced and the work run once more, but only when it failed before COMMIT was sent:
    then PostgreSQL rolled it back for sure. A connection lost during COMMIT leaves the
    outcome unknown, so that error goes to the client, whose retry with the same
    idempotency key is booked at most once.
    """
    reconnected = False
    attempt = 0
    while True:
        attempt += 1
        committing = False
        try:
            if autocommit:
                with watch_write() as mark:
                    try:
                        async with info.context.engine.connect() as conn:
                            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                            return await work(auto)
                    finally:
                        committing = mark.sent
            async with info.context.engine.begin() as conn:
                result = await work(conn)
                committing = True
            return result
        except DomainError as exc:
            return exc
        except DBAPIError as exc:
            state = _sqlstate(exc)
            if state is not None and state.startswith(DATA_EXCEPTION_CLASS):
                log.info("refused input the database cannot hold: %s", state)
                return DomainError(
                    ErrorCode.INVALID_INPUT,
                    "the input holds a value that cannot be stored (a NUL character,"
                    " or a number or a date out of range)",
                )
            if exc.connection_invalidated and not committing and not reconnected:
                reconnected = True
                log.warning("database connection lost before commit; running once more")
                continue
            if state not in RETRYABLE_SQLSTATES or attempt >= MAX_ATTEMPTS:
                raise
            log.info("retrying after %s (attempt %d)", state, attempt)
            await asyncio.sleep(0.01 * attempt)
