"""Bearer token authentication for the API (signature and claims only: no database trip)."""

from __future__ import annotations

from api.revocation import RevocationList
from api.tokens import InvalidToken, TokenService
from core.caller import Caller


class Authenticator:
    def __init__(self, tokens: TokenService, revoked: RevocationList) -> None:
        self.tokens = tokens
        self.revoked = revoked

    def caller(self, authorization: str | None) -> Caller | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        try:
            token = self.tokens.verify(authorization[7:].strip())
        except InvalidToken:
            return None
        if self.revoked.is_revoked(token):
            return None
        return token.caller()
