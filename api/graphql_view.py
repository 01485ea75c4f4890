"""The /graphql endpoint: a bearer token is required (401 without), GraphiQL in development
(api/graphiql.py: the page needs no token, so it is answered before authentication)."""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson
from cross_web import HTTPException
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from api.auth import Authenticator
from api.graphiql import ide_page
from api.logs import request_id_from
from schema.context import Context

# A request's JSON nests a few levels (an input object, its rows, their member reference);
# nothing legitimate comes near this, and every later step may recurse over what got in.
MAX_JSON_DEPTH = 32
TOO_DEEP = f"the request body nests JSON more than {MAX_JSON_DEPTH} levels deep"


def _nested_deeper(value: object, limit: int) -> bool:
    """Whether JSON arrays and objects nest more than `limit` deep (a loop, not recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict | list):
            if depth > limit:
                return True
            children = current.values() if isinstance(current, dict) else current
            stack.extend((child, depth + 1) for child in children)
    return False


def _code(exc: HTTPException) -> str:
    """BAD_REQUEST, NOT_FOUND, METHOD_NOT_ALLOWED, ..."""
    try:
        return HTTPStatus(exc.status_code).name
    except ValueError:
        return "HTTP_ERROR"


def _ignore(outcome: object) -> None:
    return None


class CoalitionGraphQL(GraphQL[Context, None]):
    def __init__(
        self,
        schema: Any,
        engine: AsyncEngine,
        *,
        booked: Callable[[object], None] = _ignore,
    ) -> None:
        # Strawberry's IDE page loads its assets from a CDN: AuthenticatedGraphQL serves
        # the platform's own instead, so Strawberry renders none.
        super().__init__(schema, graphql_ide=None, allow_queries_via_get=False)
        self.engine = engine
        self.booked = booked  # told each mutation's outcome (the app's metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry answers a request it cannot read (HTTPException) in plain text; a
        client parses JSON, so the same status comes with a GraphQL-shaped JSON body."""
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        response: Response
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:
            error = {"message": exc.reason, "extensions": {"code": _code(exc)}}
            response = Response(
                self.encode_json({"errors": [error]}),  # the reason may quote the client
                status_code=exc.status_code,
                media_type="application/json",
            )
        await response(scope, receive, send)

    def encode_json(self, data: object) -> bytes:
        try:
            return orjson.dumps(data)
        except orjson.JSONEncodeError:
            # A lone surrogate the client sent, echoed in an error message: orjson refuses
            # to encode it; the standard library writes it as the `\ud800` escape it came in.
            return json.dumps(data, default=str).encode()

    def decode_json(self, data: str | bytes) -> object:
        """The body as JSON, or 400: it must be UTF-8 (RFC 8259), an object (strawberry
        crashes on a JSON string, number or null), and nested at most MAX_JSON_DEPTH deep.
        Lone surrogates (`"\\ud800"`) are valid JSON: the inputs that hold them are refused
        with INVALID_INPUT further on."""
        if isinstance(data, bytes | bytearray | memoryview):
            try:
                data = bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                raise HTTPException(400, "the request body is not UTF-8 text") from None
        try:
            decoded = json.loads(data)
        except RecursionError:
            raise HTTPException(400, TOO_DEEP) from None
        if not isinstance(decoded, dict | list):
            raise HTTPException(400, "the request body must be a JSON object")
        if _nested_deeper(decoded, MAX_JSON_DEPTH):
            raise HTTPException(400, TOO_DEEP)
        return decoded

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(
            engine=self.engine,
            caller=request.state.caller,
            request_id=request.state.request_id,
            booked=self.booked,
        )


class AuthenticatedGraphQL:
    """Checks the token before GraphQL runs, so a missing or bad token is a plain 401."""

    def __init__(self, app: CoalitionGraphQL, auth: Authenticator, *, graphiql: bool) -> None:
        self.app = app
        self.auth = auth
        self.graphiql = graphiql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            response = JSONResponse({"error": "not_found"}, status_code=404)
            return await response(scope, receive, send)
        request = Request(scope, receive)
        if (
            self.graphiql
            and request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
        ):
            return await ide_page(request.url.path)(scope, receive, send)
        state = scope.setdefault("state", {})
        if "request_id" not in state:  # set by api.middleware.RequestObserver
            state["request_id"] = request_id_from(request.headers.get("x-request-id"))
        caller = self.auth.caller(request.headers.get("authorization"))
        if caller is None:
            response = JSONResponse(
                {
                    "error": "invalid_token",
                    "error_description": "a valid bearer token is required",
                },
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
            return await response(scope, receive, send)
        state["caller"] = caller
        await self.app(scope, receive, send)
