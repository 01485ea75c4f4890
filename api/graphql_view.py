"""The /graphql endpoint: a bearer token is required (401 without), GraphiQL in development."""

from __future__ import annotations

import uuid
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
from schema.context import Context


class CoalitionGraphQL(GraphQL[Context, None]):
    def __init__(self, schema: Any, engine: AsyncEngine, *, graphiql: bool) -> None:
        super().__init__(
            schema, graphql_ide="graphiql" if graphiql else None, allow_queries_via_get=False
        )
        self.engine = engine

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        """Strawberry expects an object (or a batch list) and crashes with a 500 on a JSON
        string, number or null; those are the client's mistake, so answer 400."""
        decoded = super().decode_json(data)
        if not isinstance(decoded, dict | list):
            raise HTTPException(400, "the request body must be a JSON object")
        return decoded

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(
            engine=self.engine,
            caller=request.state.caller,
            request_id=request.state.request_id,
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
        wants_ide = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        scope.setdefault("state", {})
        scope["state"]["request_id"] = request.headers.get("x-request-id") or uuid.uuid4().hex
        if not (wants_ide and self.graphiql):
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
            scope["state"]["caller"] = caller
        await self.app(scope, receive, send)
