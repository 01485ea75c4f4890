"""OAuth2 endpoints on Authlib: client credentials token, introspection (RFC 7662) and
revocation (RFC 7009), served by Starlette.

Authlib's server is synchronous, so the handler first loads the named client from the
database (async), then runs Authlib in a worker thread (Argon2 verification is CPU work
that must not block the event loop).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.revocation import RevocationList
from api.tokens import AccessToken, InvalidToken, TokenService
from partners.caller import Scope
from partners.clients import ClientRecord, load_client, verify_secret

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


@dataclass
class OAuthClient(ClientMixin):  # type: ignore[misc]
    record: ClientRecord

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return " ".join(sorted(self.record.scopes))
        return " ".join(s for s in scope.split() if s in self.record.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return verify_secret(self.record, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


@dataclass
class IssuedToken(TokenMixin):  # type: ignore[misc]
    token: AccessToken
    revoked: bool

    def check_client(self, client: OAuthClient) -> bool:
        return client.record.client_id == self.token.client_id

    def get_scope(self) -> str:
        return " ".join(sorted(self.token.scopes))

    def get_expires_in(self) -> int:
        return self.token.expires_at - self.token.issued_at

    def is_expired(self) -> bool:
        return self.token.expires_at <= time.time()

    def is_revoked(self) -> bool:
        return self.revoked


class _Grant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_requested_scope(self) -> None:
        # A scope the client was not granted is refused (400 invalid_scope), not dropped.
        requested = set((self.request.payload.scope or "").split())
        if not requested <= self.request.client.record.scopes:
            raise InvalidScopeError()


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, method: str, uri: str, headers: Headers, form: dict[str, str]):
        super().__init__(method=method, uri=uri, headers=headers)
        self.payload = BasicOAuth2Payload(form)
        self._form = form

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class _Server(AuthorizationServer):  # type: ignore[misc]
    """Authlib's server bound to one request's preloaded client."""

    def __init__(self, tokens: TokenService, client: ClientRecord | None) -> None:
        super().__init__(scopes_supported=[str(s) for s in Scope])
        self._tokens = tokens
        self._client = client
        self.issued: AccessToken | None = None
        self.register_grant(_Grant)
        self.register_token_generator("default", self._generate)

    def query_client(self, client_id: str) -> OAuthClient | None:
        record = self._client
        if record is None or record.client_id != client_id or not record.active:
            # Still spend an Argon2 verification so unknown ids cost as much as wrong secrets.
            verify_secret(None, "x")
            return None
        return OAuthClient(record)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """JWTs are self-contained: nothing to store."""

    def _generate(
        self,
        grant_type: str,
        client: OAuthClient,
        user: object = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        scopes = frozenset(client.get_allowed_scope(scope).split())
        raw, parsed = self._tokens.issue(client.record.client_id, client.record.partner_id, scopes)
        self.issued = parsed
        return {
            "access_token": raw,
            "token_type": "Bearer",
            "expires_in": self._tokens.ttl_seconds,
            "scope": " ".join(sorted(scopes)),
        }

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        if isinstance(body, dict) and body.get("error") == "invalid_client":
            # Authlib answers 400 for a bad client named in form fields, and its description
            # tells an unknown client from a wrong secret. The contract says 401 for any bad
            # client, and the answer must not reveal which client ids exist.
            status = 401
            body = {"error": "invalid_client", "error_description": "client authentication failed"}
            headers = [(k, v) for k, v in headers if k.lower() != "www-authenticate"]
            headers.append(("WWW-Authenticate", 'Basic realm="coalition"'))
        return JSONResponse(body, status_code=status, headers=dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class _Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def __init__(self, server: _Server, tokens: TokenService, revoked: RevocationList) -> None:
        super().__init__(server)
        self._tokens = tokens
        self._revoked = revoked

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        try:
            token = self._tokens.verify(token_string)
        except InvalidToken:
            return None
        return IssuedToken(token, self._revoked.is_revoked(token))

    def check_permission(self, token: IssuedToken, client: OAuthClient, request: Any) -> bool:
        # A client may introspect its own tokens; the operator may introspect any.
        return token.check_client(client) or Scope.OPERATOR in client.record.scopes

    def introspect_token(self, token: IssuedToken) -> dict[str, Any]:
        t = token.token
        return {
            "active": True,
            "client_id": t.client_id,
            "token_type": "Bearer",
            "scope": token.get_scope(),
            "sub": t.client_id,
            "aud": self._tokens.audience,
            "iss": self._tokens.issuer,
            "exp": t.expires_at,
            "iat": t.issued_at,
            "jti": t.jti,
            "partner_id": str(t.partner_id) if t.partner_id else None,
        }


class _Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def __init__(self, server: _Server, tokens: TokenService) -> None:
        super().__init__(server)
        self._tokens = tokens
        self.revoked: AccessToken | None = None

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        try:
            return IssuedToken(self._tokens.verify(token_string), False)
        except InvalidToken:
            return None  # RFC 7009: an invalid token is not an error

    def revoke_token(self, token: IssuedToken, request: Any) -> None:
        self.revoked = token.token


def _invalid_client() -> Response:
    return JSONResponse(
        {"error": "invalid_client", "error_description": "client authentication failed"},
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="coalition"', "Cache-Control": "no-store"},
    )


def _unreadable_basic(request: Request) -> bool:
    """Basic credentials that are not base64 of UTF-8 (Authlib would crash decoding them)."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return False
    try:
        base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return True
    return False


def _client_id_of(request: Request, form: dict[str, str]) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return unquote(decoded.split(":", 1)[0])
    return form.get("client_id")


class OAuthEndpoints:
    def __init__(self, engine: AsyncEngine, tokens: TokenService, revoked: RevocationList):
        self.engine = engine
        self.tokens = tokens
        self.revoked = revoked

    async def _prepare(self, request: Request) -> tuple[_Request, ClientRecord | None] | None:
        """The OAuth request and its preloaded client; None when the credentials are unreadable."""
        if _unreadable_basic(request):
            return None
        form = {k: str(v) for k, v in (await request.form()).items()}
        client_id = _client_id_of(request, form)
        record = None
        if client_id and len(client_id) <= 100:
            async with self.engine.connect() as conn:
                record = await load_client(conn, client_id)
        oauth_request = _Request(request.method, str(request.url), request.headers, form)
        return oauth_request, record

    async def token(self, request: Request) -> Response:
        prepared = await self._prepare(request)
        if prepared is None:
            return _invalid_client()
        oauth_request, record = prepared
        server = _Server(self.tokens, record)
        response: Response = await asyncio.to_thread(server.create_token_response, oauth_request)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def introspect(self, request: Request) -> Response:
        prepared = await self._prepare(request)
        if prepared is None:
            return _invalid_client()
        oauth_request, record = prepared
        server = _Server(self.tokens, record)
        endpoint = _Introspection(server, self.tokens, self.revoked)
        server.register_endpoint(endpoint)
        response: Response = await asyncio.to_thread(
            server.create_endpoint_response, "introspection", oauth_request
        )
        return response

    async def revoke(self, request: Request) -> Response:
        prepared = await self._prepare(request)
        if prepared is None:
            return _invalid_client()
        oauth_request, record = prepared
        server = _Server(self.tokens, record)
        endpoint = _Revocation(server, self.tokens)
        server.register_endpoint(endpoint)
        response: Response = await asyncio.to_thread(
            server.create_endpoint_response, "revocation", oauth_request
        )
        if endpoint.revoked is not None:
            token = endpoint.revoked
            async with self.engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO revoked_tokens (jti, client_id, expires_at)"
                        " VALUES (:j, :c, to_timestamp(:e)) ON CONFLICT DO NOTHING"
                    ),
                    {"j": token.jti, "c": token.client_id, "e": token.expires_at},
                )
            # This worker stops accepting it at once; the others at their next refresh.
            self.revoked.tokens = self.revoked.tokens | {token.jti}
        return response

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(self.tokens.jwks(), headers={"Cache-Control": "max-age=300"})
