"""Idempotency by key, per API client, stored in the same transaction as the effect.

`claim` inserts the key first: a concurrent request with the same key waits on the unique
index until the first commits (then replays its result) or rolls back (then proceeds).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.errors import DomainError, ErrorCode


def request_hash(operation: str, request: dict[str, Any]) -> str:
    body = orjson.dumps({"op": operation, "req": request}, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(body).hexdigest()


async def claim(
    conn: AsyncConnection, client_id: str, key: str, operation: str, digest: str
) -> dict[str, Any] | None:
    """Return None when the key is new (now claimed), else the stored result of the first call."""
    if not key or len(key) > 200:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "idempotencyKey must be 1 to 200 characters",
            ["idempotencyKey"],
        )
    claimed = await conn.scalar(
        text(
            "INSERT INTO idempotency_keys (client_id, key, operation, request_hash, result)"
            " VALUES (:c, :k, :op, :h, '{}') ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"c": client_id, "k": key, "op": operation, "h": digest},
    )
    if claimed:
        return None
    row = (
        await conn.execute(
            text(
                "SELECT operation, request_hash, result FROM idempotency_keys"
                " WHERE client_id = :c AND key = :k"
            ),
            {"c": client_id, "k": key},
        )
    ).one()
    if row.operation != operation or row.request_hash != digest:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this idempotencyKey was already used with a different request",
            ["idempotencyKey"],
        )
    result: dict[str, Any] = row.result
    return result


_LOOKUP = text(
    "SELECT operation, request_hash, result FROM idempotency_keys WHERE client_id = :c AND key = :k"
)


async def lookup(
    conn: AsyncConnection, client_id: str, key: str, operation: str, digest: str
) -> dict[str, Any] | None:
    """A read-only replay check: the stored result when the key was used for this very request.

    None when the key is new, or claimed by a request still in flight (the caller then takes
    the transactional path, which waits for it); IDEMPOTENCY_KEY_REUSED when it was used for a
    different request.
    """
    row = (await conn.execute(_LOOKUP, {"c": client_id, "k": key})).one_or_none()
    if row is None or not row.result:
        return None
    if row.operation != operation or row.request_hash != digest:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this idempotencyKey was already used with a different request",
            ["idempotencyKey"],
        )
    result: dict[str, Any] = row.result
    return result


async def complete(conn: AsyncConnection, client_id: str, key: str, result: dict[str, Any]) -> None:
    await conn.execute(
        text(
            "UPDATE idempotency_keys SET result = CAST(:r AS jsonb) WHERE client_id = :c AND key = :k"
        ),
        {"c": client_id, "k": key, "r": orjson.dumps(result, default=str).decode()},
    )
