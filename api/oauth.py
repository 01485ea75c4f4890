"""OAuth2 endpoints on Authlib: client credentials token, introspection (RFC 7662) and
revocation (RFC 7009), served by Starlette.

Authlib's server is synchronous, so the handler authenticates the client first, async:
the failure throttle (429 without touching the database or Argon2), the client's row, then
one Argon2 verification in the bounded pool (503 when it is full). Authlib then runs on the
event loop with that verdict (without Argon2 its work is a signature, well under a
millisecond); it accepts exactly the secret that was verified and nothing else.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.revocation import RevocationList
from api.throttle import AuthThrottle, PoolBusy, VerifierPool, address_key
from api.tokens import AccessToken, InvalidToken, TokenService
from core.caller import Scope
from partners.clients import ClientRecord, load_client

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


@dataclass
class OAuthClient(ClientMixin):  # type: ignore[misc]
    record: ClientRecord
    # The secret Argon2 accepted for this client before Authlib ran; None: none was. Out of
    # the repr: Authlib logs the client at DEBUG.
    verified_secret: str | None = field(default=None, repr=False)

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
        # No Argon2 here: only the secret already verified (off the loop, bounded) passes.
        if self.verified_secret is None:
            return False
        return hmac.compare_digest(client_secret.encode(), self.verified_secret.encode())

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
    """Authlib's server bound to one request's preloaded, already verified client."""

    def __init__(self, tokens: TokenService, client: OAuthClient | None) -> None:
        super().__init__(scopes_supported=[str(s) for s in Scope])
        self._tokens = tokens
        self._client = client
        self.issued: AccessToken | None = None
        self.register_grant(_Grant)
        self.register_token_generator("default", self._generate)

    def query_client(self, client_id: str) -> OAuthClient | None:
        # Unknown and revoked ids already paid their Argon2 verification (against a dummy).
        client = self._client
        if client is None or client.record.client_id != client_id or not client.record.active:
            return None
        return client

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


def _throttled(retry_after: int) -> Response:
    # Not invalid_client: a client holding the right secret must not conclude it is wrong
    # (and rotate it); 429 + Retry-After is what HTTP retry logic understands. The body keeps
    # OAuth's error shape (RFC 6749 §5.2 allows extension codes). Unknown ids are throttled
    # exactly like known ones, so a 429 tells nothing about which ids exist.
    return JSONResponse(
        {
            "error": "too_many_requests",
            "error_description": "too many failed client authentications; retry later",
        },
        status_code=429,
        headers={"Retry-After": str(retry_after), "Cache-Control": "no-store"},
    )


def _busy() -> Response:
    # RFC 6749's code for a temporarily overloaded server.
    return JSONResponse(
        {"error": "temporarily_unavailable", "error_description": "server busy; retry later"},
        status_code=503,
        headers={"Retry-After": "1", "Cache-Control": "no-store"},
    )


@dataclass(frozen=True)
class _Credentials:
    client_id: str | None
    secret: str | None


def _credentials(request: Request, form: dict[str, str]) -> _Credentials | None:
    """The client id and secret as Authlib reads them: HTTP Basic first, then form fields.

    None when the Basic credentials are not base64 of UTF-8 (Authlib would crash on them).
    """
    try:
        basic_id, basic_secret = extract_basic_authorization(request.headers)
    except UnicodeDecodeError:
        return None
    if basic_id and basic_secret:
        return _Credentials(basic_id, basic_secret)
    form_id, form_secret = form.get("client_id"), form.get("client_secret")
    if form_id and form_secret:
        return _Credentials(form_id, form_secret)
    # A client named without a secret: a failure that needs no verification.
    return _Credentials(basic_id or form_id or None, None)


class OAuthEndpoints:
    def __init__(
        self,
        engine: AsyncEngine,
        tokens: TokenService,
        revoked: RevocationList,
        *,
        throttle: AuthThrottle,
        verifier: VerifierPool,
    ) -> None:
        self.engine = engine
        self.tokens = tokens
        self.revoked = revoked
        self.throttle = throttle
        self.verifier = verifier

    async def _prepare(self, request: Request) -> tuple[_Request, OAuthClient | None] | Response:
        """The OAuth request and its client, authenticated; or the refusal to send at once."""
        address = address_key(request.client.host if request.client else None)
        wait = self.throttle.retry_after(None, address)
        if wait is not None:
            return _throttled(wait)  # before even reading the body
        form = {k: str(v) for k, v in (await request.form()).items()}
        credentials = _credentials(request, form)
        if credentials is None:
            return _invalid_client()
        oauth_request = _Request(request.method, str(request.url), request.headers, form)
        client_id = credentials.client_id
        # The address again: another request may have locked it while this body was read.
        wait = self.throttle.retry_after(client_id, address)
        if wait is not None:
            return _throttled(wait)
        if client_id is None:
            return oauth_request, None  # Authlib answers invalid_client; nothing was guessed
        record = None
        if len(client_id) <= 100 and "\x00" not in client_id:  # PostgreSQL text has no NUL
            async with self.engine.connect() as conn:
                record = await load_client(conn, client_id)
        active = record if record is not None and record.active else None
        verified = False
        if credentials.secret is not None:
            try:
                # Exactly one verification, against a dummy hash for unknown or revoked ids.
                verified = await self.verifier.verify(active, credentials.secret)
            except PoolBusy:
                return _busy()
        if not verified or active is None:
            self.throttle.failed(client_id, address)
            return oauth_request, None  # Authlib answers invalid_client
        return oauth_request, OAuthClient(active, credentials.secret)

    async def token(self, request: Request) -> Response:
        prepared = await self._prepare(request)
        if isinstance(prepared, Response):
            return prepared
        oauth_request, client = prepared
        server = _Server(self.tokens, client)
        response: Response = server.create_token_response(oauth_request)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def introspect(self, request: Request) -> Response:
        prepared = await self._prepare(request)
        if isinstance(prepared, Response):
            return prepared
        oauth_request, client = prepared
        server = _Server(self.tokens, client)
        endpoint = _Introspection(server, self.tokens, self.revoked)
        server.register_endpoint(endpoint)
        response: Response = server.create_endpoint_response("introspection", oauth_request)
        return response

    async def revoke(self, request: Request) -> Response:
        prepared = await self._prepare(request)
        if isinstance(prepared, Response):
            return prepared
        oauth_request, client = prepared
        server = _Server(self.tokens, client)
        endpoint = _Revocation(server, self.tokens)
        server.register_endpoint(endpoint)
        response: Response = server.create_endpoint_response("revocation", oauth_request)
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
