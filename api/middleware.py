"""Small ASGI middlewares: request body size limit; request ids, metrics and the access log;
JSON for Starlette's own errors; and log filters that keep credentials a caller sent in the
wrong place out of the log."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from http import HTTPStatus
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.logs import REQUEST_ID, request_id_from
from api.metrics import UNMATCHED, Metrics

log = logging.getLogger("coalition.http")
# One line a request: method, path, status, duration (and, as fields, route and client).
access_log = logging.getLogger("coalition.access")


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"error": "request_too_large", "error_description": f"at most {self.max_bytes} bytes"},
            status_code=413,
        )
        await response(scope, receive, send)


class RequestObserver:
    """The outermost middleware: gives every request an id (the caller's X-Request-ID when
    sane, else a new one) that its response, its log lines and its GraphQL context carry;
    counts and times it by route template, method and status; writes its access log line;
    and answers an exception nothing else caught with a JSON 500. Outermost, so what other
    middlewares answer (a 413) is counted, logged and marked too."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Iterable[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        # Read before routing: a Mount rewrites the shared scope's root_path on the way in.
        sent_path = _path(scope)
        request_id = request_id_from(_header(scope, b"x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        marker = (b"x-request-id", request_id.encode("ascii"))
        reset = REQUEST_ID.set(request_id)
        status: int | None = None

        async def marking(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", ()), marker]
            await send(message)

        try:
            await self.app(scope, receive, marking)
        except ClientDisconnect:
            # The client left (or the server gave up on its body, api/http_server.py) before
            # an answer: nobody to answer, nothing to log as an error.
            if status is None:
                status = 499  # as nginx counts a request its client closed
        except Exception:
            # Logged here, where the request id is known; not raised on, so the server does
            # not log it again. An answer already under way cannot be finished: the server
            # closes the connection.
            log.exception("unhandled error answering %s %s", scope["method"], sent_path)
            if status is None:
                status = 500
                await _server_error(request_id)(scope, receive, send)
        finally:
            # No answer started and no exception: the server answers 500.
            answered = 500 if status is None else status
            seconds = time.perf_counter() - started
            route = self._route(scope)
            self.metrics.observe_request(route, scope["method"], answered, seconds)
            if access_log.isEnabledFor(logging.INFO):
                path = sent_path
                access_log.info(
                    "%s %s %d %.1fms",
                    scope["method"],
                    path,
                    answered,
                    seconds * 1000,
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "path": path,
                        "status": answered,
                        "duration_ms": round(seconds * 1000, 3),
                        "client": (scope.get("client") or ("-",))[0],
                    },
                )
            REQUEST_ID.reset(reset)

    def _route(self, scope: Scope) -> str:
        # The router leaves the route it chose in the scope; before routing (a 413) the path
        # itself may still be one of the app's routes. Anything else is one label.
        template = getattr(scope.get("route"), "path", None)
        if isinstance(template, str):
            return template
        path: str = scope["path"]
        return path if path in self.routes else UNMATCHED


def _server_error(request_id: str) -> Response:
    return JSONResponse(
        {
            "error": "internal_error",
            "error_description": "the server failed to answer this request",
            "request_id": request_id,
        },
        status_code=500,
        headers={"X-Request-ID": request_id},
    )


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _path(scope: Scope) -> str:
    """The path as sent (percent-encoded again): a decoded newline would forge a log line.
    Never the query string: a caller may have put a credential there."""
    return quote(scope.get("root_path", "") + scope["path"])


async def json_http_error(request: Request, exc: Exception) -> Response:
    """Starlette answers 404 and 405 (and any HTTPException) in plain text; clients parse
    JSON, as every other answer of the API is."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=headers)
    try:
        error = HTTPStatus(exc.status_code).name.lower()
    except ValueError:
        error = "http_error"
    return JSONResponse(
        {"error": error, "error_description": exc.detail},
        status_code=exc.status_code,
        headers=headers,
    )


class RedactForeignClientIds(logging.Filter):
    """Authlib logs, at DEBUG, the client_id a caller sent: 'Authenticate <id> via "..."
    failed'. A caller that swaps its id and secret (a common slip) would put its secret in
    the log; only values shaped like our client ids are kept."""

    _MESSAGE = re.compile(r'^(Authenticate )(.*)( via ")', re.DOTALL)
    _CLIENT_ID = re.compile(r"cl_[A-Za-z0-9_-]{1,40}|None")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        found = self._MESSAGE.match(message)
        if found and not self._CLIENT_ID.fullmatch(found.group(2)):
            record.msg = self._MESSAGE.sub(r"\1<not a client id>\3", message, count=1)
            record.args = None
        return True


class RedactQueryCredentials(logging.Filter):
    """uvicorn's access log writes each request's path with its query string (the platform's
    own, RequestObserver's, leaves the query string out; uvicorn's is off in `coalition
    serve` but on when the app is served by plain `uvicorn`). Credentials never belong there
    (RFC 6749 2.3.1: not in the request URI) and are refused, but a caller that puts
    `?client_secret=...` or `?access_token=...` in the URL must not get them into the log:
    their values are replaced."""

    _PARAM = re.compile(
        r"(?i)([?&][^=&#\s]*(?:secret|token|password|key)[^=&#\s]*=)[^&#\s]*"
        r"|(?<==)(?:cs_|eyJ)[^&#\s]*"
    )

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, str) and "?" in a for a in args):
            record.args = tuple(
                self._PARAM.sub(lambda m: (m.group(1) or "") + "***", a)
                if isinstance(a, str) and "?" in a
                else a
                for a in args
            )
        return True


# Filters apply to the logger a record is logged on (not its parents): name them exactly.
logging.getLogger("authlib.oauth2.rfc6749.authenticate_client").addFilter(RedactForeignClientIds())
logging.getLogger("uvicorn.access").addFilter(RedactQueryCredentials())
