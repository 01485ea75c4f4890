"""OAuth API clients: hashed secrets (Argon2), scopes, revocation."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.caller import ALL_SCOPES, OPERATOR_PARTY, Scope
from core.errors import DomainError, ErrorCode

_hasher = PasswordHasher()
# Verifying against a hash made with the hasher's own parameters keeps an unknown (or revoked)
# client_id exactly as dear as a wrong secret; one per parameter set, made on first use.
_dummy_hashes: dict[tuple[int, int, int, int, int, str], str] = {}


def _dummy_hash() -> str:
    h = _hasher
    params = (h.time_cost, h.memory_cost, h.parallelism, h.hash_len, h.salt_len, h.type.name)
    dummy = _dummy_hashes.get(params)
    if dummy is None:
        dummy = _dummy_hashes[params] = h.hash(secrets.token_urlsafe(16))
    return dummy


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    partner_id: uuid.UUID | None
    scopes: frozenset[str]
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class NewClient:
    client_id: str
    client_secret: str  # shown once, never stored
    partner_id: uuid.UUID | None
    scopes: frozenset[str]


def validate_scopes(scopes: list[str], partner_id: uuid.UUID | None) -> frozenset[str]:
    wanted = frozenset(s for s in scopes if s)
    unknown = wanted - ALL_SCOPES
    if unknown or not wanted:
        raise DomainError(
            ErrorCode.INVALID_SCOPE,
            f"unknown scopes: {', '.join(sorted(unknown))}" if unknown else "no scopes given",
            ["scopes"],
        )
    if partner_id is not None and Scope.OPERATOR in wanted:
        raise DomainError(
            ErrorCode.INVALID_SCOPE, "a partner's client cannot hold 'operator'", ["scopes"]
        )
    if partner_id is None and Scope.OPERATOR not in wanted:
        # Otherwise a partner-less client with members:read would read coalition-wide.
        raise DomainError(
            ErrorCode.INVALID_SCOPE, "a client without a partner must hold 'operator'", ["scopes"]
        )
    return wanted


async def create_client(
    conn: AsyncConnection, *, partner_id: uuid.UUID | None, scopes: list[str], name: str | None
) -> NewClient:
    granted = validate_scopes(scopes, partner_id)
    if name is not None and (len(name) > 200 or "\x00" in name):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "name must be at most 200 characters, without NUL", ["name"]
        )
    if partner_id is not None:
        # The operator's own partners row (OPERATOR_PARTY, migration 0015) is no partner: an
        # operator client is one without a partner.
        exists = await conn.scalar(
            text("SELECT 1 FROM partners WHERE id = :p AND id <> :operator"),
            {"p": partner_id, "operator": OPERATOR_PARTY},
        )
        if not exists:
            raise DomainError(ErrorCode.PARTNER_NOT_FOUND, "no such partner", ["partnerId"])
    client_id = "cl_" + secrets.token_urlsafe(12)
    secret = "cs_" + secrets.token_urlsafe(32)
    await conn.execute(
        text(
            "INSERT INTO api_clients (client_id, partner_id, secret_hash, scopes, name)"
            " VALUES (:c, :p, :h, :s, :n)"
        ),
        {
            "c": client_id,
            "p": partner_id,
            "h": _hasher.hash(secret),
            "s": sorted(granted),
            "n": name,
        },
    )
    return NewClient(client_id, secret, partner_id, granted)


async def load_client(conn: AsyncConnection, client_id: str) -> ClientRecord | None:
    row = (
        await conn.execute(
            text(
                "SELECT client_id, partner_id, scopes, secret_hash, created_at, revoked_at"
                " FROM api_clients WHERE client_id = :c"
            ),
            {"c": client_id},
        )
    ).one_or_none()
    if row is None:
        return None
    return ClientRecord(
        client_id=row.client_id,
        partner_id=row.partner_id,
        scopes=frozenset(row.scopes),
        secret_hash=row.secret_hash,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def verify_secret(client: ClientRecord | None, secret: str) -> bool:
    """Constant-effort check: one Argon2 verification whether or not the client exists.

    CPU-bound (~0.1-0.2 s at the default parameters): call it off the event loop, through the
    bounded pool of `api.throttle.VerifierPool`."""
    try:
        return _hasher.verify(client.secret_hash if client else _dummy_hash(), secret) and (
            client is not None
        )
    except (VerificationError, InvalidHashError):
        return False


async def revoke_client(conn: AsyncConnection, client_id: str) -> ClientRecord:
    row = await conn.scalar(
        text(
            "UPDATE api_clients SET revoked_at = COALESCE(revoked_at, now())"
            " WHERE client_id = :c RETURNING client_id"
        ),
        {"c": client_id},
    )
    if row is None:
        raise DomainError(ErrorCode.CLIENT_NOT_FOUND, "no such client", ["clientId"])
    client = await load_client(conn, client_id)
    assert client is not None
    return client


async def revoked_client_ids(conn: AsyncConnection) -> set[str]:
    rows = await conn.execute(
        text("SELECT client_id FROM api_clients WHERE revoked_at IS NOT NULL")
    )
    return {r.client_id for r in rows}


@dataclass(frozen=True)
class ClientSummary:
    """What an operator sees of a client (never its hash)."""

    client_id: str
    partner_id: uuid.UUID | None
    name: str | None
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None


async def list_clients(
    conn: AsyncConnection, *, partner_id: uuid.UUID | None = None
) -> list[ClientSummary]:
    """Clients oldest first: all of them, or one partner's."""
    rows = await conn.execute(
        text(
            "SELECT client_id, partner_id, name, scopes, created_at, revoked_at FROM api_clients"
            " WHERE CAST(:p AS uuid) IS NULL OR partner_id = :p ORDER BY created_at, client_id"
        ),
        {"p": partner_id},
    )
    return [
        ClientSummary(
            r.client_id, r.partner_id, r.name, frozenset(r.scopes), r.created_at, r.revoked_at
        )
        for r in rows
    ]
