"""Small ASGI middlewares: request body size limit and request metrics; and
log filters that keep credentials a caller sent in the wrong place out of the log."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import UNMATCHED, Metrics


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


class RequestMetrics:
    """Counts and times every request by route template, method and status. Outermost, so
    what other middlewares answer (a 413) is counted too."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Iterable[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status: int | None = None

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording)
        except ClientDisconnect:
            # The client left (or the server gave up on its body, api/http_server.py) before
            # an answer: nobody to answer, nothing to log as an error.
            if status is None:
                status = 499  # as nginx counts a request its client closed
        finally:
            # No answer started and no disconnect: the app raised, the server answers 500.
            answered = 500 if status is None else status
            self.metrics.observe_request(
                self._route(scope), scope["method"], answered, time.perf_counter() - started
            )

    def _route(self, scope: Scope) -> str:
        # The router leaves the route it chose in the scope; before routing (a 413) the path
        # itself may still be one of the app's routes. Anything else is one label.
        template = getattr(scope.get("route"), "path", None)
        if isinstance(template, str):
            return template
        path: str = scope["path"]
        return path if path in self.routes else UNMATCHED


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
    """The access log writes each request's path with its query string. Credentials never
    belong there (RFC 6749 2.3.1: not in the request URI) and are refused, but a caller that
    puts `?client_secret=...` or `?access_token=...` in the URL must not get them into the
    log: their values are replaced."""

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
