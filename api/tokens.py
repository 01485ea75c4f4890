"""Signed JWT access tokens (ES256). Verifying one needs no database round trip."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jwt import JWTClaimsRegistry

from core.caller import Caller

ALGORITHM = "ES256"
LEEWAY_SECONDS = 5
# Tokens already verified, kept until they expire: an ES256 check costs about 0.5 ms of CPU,
# which every request of a client reusing its token would otherwise pay again.
VERIFIED_CACHE_SIZE = 10_000


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class AccessToken:
    jti: str
    client_id: str
    partner_id: uuid.UUID | None
    scopes: frozenset[str]
    issued_at: int
    expires_at: int

    def caller(self) -> Caller:
        return Caller(client_id=self.client_id, partner_id=self.partner_id, scopes=self.scopes)


class TokenService:
    def __init__(self, key: ECKey, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self._verified: dict[str, AccessToken] = {}
        self._registry = JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
            leeway=LEEWAY_SECONDS,
        )

    def jwks(self) -> dict[str, Any]:
        return dict(KeySet([self.key]).as_dict(private=False))

    def issue(
        self, client_id: str, partner_id: uuid.UUID | None, scopes: frozenset[str]
    ) -> tuple[str, AccessToken]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client_id,
            "client_id": client_id,
            "partner_id": str(partner_id) if partner_id else None,
            "scope": " ".join(sorted(scopes)),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": secrets.token_urlsafe(16),
        }
        header = {"alg": ALGORITHM, "kid": self.key.kid, "typ": "at+jwt"}
        token = jwt.encode(header, claims, self.key, algorithms=[ALGORITHM])
        return token, self._parsed(claims)

    def verify(self, token: str) -> AccessToken:
        """Signature (ES256 only: no `none`, no HMAC confusion), issuer, audience, lifetime.

        A token that passed is remembered (by its exact text) until it expires, so only its
        lifetime is checked again; revocation is checked by the caller on every request.
        """
        known = self._verified.get(token)
        if known is not None:
            if time.time() <= known.expires_at + LEEWAY_SECONDS:
                return known
            del self._verified[token]
            raise InvalidToken("the token has expired")
        try:
            decoded = jwt.decode(token, self.key, algorithms=[ALGORITHM])
            self._registry.validate(decoded.claims)
            parsed = self._parsed(decoded.claims)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise InvalidToken(str(exc)) from exc
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))  # the oldest entry
        self._verified[token] = parsed
        return parsed

    @staticmethod
    def _parsed(claims: dict[str, Any]) -> AccessToken:
        partner = claims.get("partner_id")
        return AccessToken(
            jti=str(claims["jti"]),
            client_id=str(claims["client_id"]),
            partner_id=uuid.UUID(partner) if partner else None,
            scopes=frozenset(str(claims.get("scope", "")).split()),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
        )
