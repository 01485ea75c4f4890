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

from core.errors import DomainError, ErrorCode
from ledger.text import has_lone_surrogate, lone_surrogate_path


def request_hash(operation: str, request: dict[str, Any]) -> str:
    """The digest a key's later uses are compared with. A string holding a lone surrogate
    (valid JSON, not UTF-8) cannot be hashed or stored: INVALID_INPUT naming its field."""
    path = lone_surrogate_path(request)
    if path is not None:
        raise DomainError(ErrorCode.INVALID_INPUT, unicode_message(".".join(path)), path)
    body = orjson.dumps({"op": operation, "req": request}, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(body).hexdigest()


def unicode_message(field: str) -> str:
    return f"{field} must be Unicode text (it holds a lone UTF-16 surrogate)"


def check_key(key: str) -> None:
    """An idempotency key is 1 to 200 characters of storable text."""
    if not key or len(key) > 200:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "idempotencyKey must be 1 to 200 characters",
            ["idempotencyKey"],
        )
    if has_lone_surrogate(key):
        raise DomainError(
            ErrorCode.INVALID_INPUT, unicode_message("idempotencyKey"), ["idempotencyKey"]
        )


async def claim(
    conn: AsyncConnection, client_id: str, key: str, operation: str, digest: str
) -> dict[str, Any] | None:
    """Return None when the key is new (now claimed), else the stored result of the first call."""
    check_key(key)
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
    stored = stored_result(row.operation, row.request_hash, row.result, operation, digest)
    assert stored is not None  # a committed key always holds its result
    return stored


async def complete(conn: AsyncConnection, client_id: str, key: str, result: dict[str, Any]) -> None:
    await conn.execute(
        text(
            "UPDATE idempotency_keys SET result = CAST(:r AS jsonb) WHERE client_id = :c AND key = :k"
        ),
        {"c": client_id, "k": key, "r": orjson.dumps(result, default=str).decode()},
    )


# The stored key as three columns of a larger read (binds :client and :key).
KEY_COLUMNS = "k.operation AS key_operation, k.request_hash AS key_hash, k.result AS key_result"
KEY_JOIN = "LEFT JOIN idempotency_keys k ON k.client_id = :client AND k.key = :key"


def stored_result(
    stored_operation: str | None,
    stored_hash: str | None,
    result: dict[str, Any] | None,
    operation: str,
    digest: str,
) -> dict[str, Any] | None:
    """A stored key's result when it was used for this very request; None when unused (or
    still in flight); IDEMPOTENCY_KEY_REUSED when it was used for a different request."""
    if stored_operation is None or not result:
        return None
    if stored_operation != operation or stored_hash != digest:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this idempotencyKey was already used with a different request",
            ["idempotencyKey"],
        )
    return result
