"""How the API is served: uvicorn with httptools, plus the limits uvicorn does not have.

uvicorn's httptools protocol bounds neither the request head (a 64 MiB header is buffered,
and httptools copies a header value on every read, so it costs quadratic CPU on the one
event loop every client shares) nor the number of headers, and it never times out a
request whose head or body trickles in. `LimitedHttpToolsProtocol` adds those limits and
a cap on open connections, and `uvicorn_config` is the one place the server is configured:
`coalition serve` and the tests' servers both use it.

httptools rather than h11 (whose `h11_max_incomplete_event_size` bounds the head): h11
parses in Python and costs the hot path far more than the few checks added here, and it
bounds neither the header count nor the time a request takes to arrive.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from api.logs import configure_logging
from api.settings import Settings

log = logging.getLogger("coalition.http")

# Where a connection is in its current request.
_IDLE = 0  # no request begun: the bytes that arrive are a head's
_HEAD = 1  # a request begun, its head not complete
_BODY = 2  # head complete, body not yet


@dataclass(frozen=True)
class HttpLimits:
    """Per worker process; the defaults and variables are in api/settings.py."""

    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            max_connections=settings.max_connections,
        )


class CoalitionConfig(uvicorn.Config):
    """uvicorn's configuration with the limits each connection's protocol reads (pickled
    along to the worker processes of `--workers N`), and the platform's log format."""

    def __init__(
        self, app: Any, *, limits: HttpLimits, production: bool = False, **kwargs: Any
    ) -> None:
        self.production = production
        # Set by `run`: every process of `coalition serve` logs in the platform's format
        # (JSON lines in production). Servers started otherwise (the tests' in-process ones)
        # leave the process's logging as it is.
        self.platform_logging = False
        super().__init__(app, **kwargs)
        self.limits = limits

    def configure_logging(self) -> None:
        """uvicorn's, then the platform's format over it (uvicorn calls this in the server
        process and again in each worker process)."""
        super().configure_logging()
        if self.platform_logging:
            level = self.log_level if self.log_level is not None else "info"
            configure_logging(
                production=self.production,
                level=level.upper() if isinstance(level, str) else level,
            )


def uvicorn_config(
    app: Any,
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
) -> CoalitionConfig:
    """The server's configuration: every way of serving the API goes through here."""
    return CoalitionConfig(
        app,
        limits=HttpLimits.from_settings(settings),
        production=settings.production,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        http=LimitedHttpToolsProtocol,
        # The API has no WebSocket route; an upgraded socket would leave these limits behind.
        ws="none",
        # api/middleware.py writes the access log: with the route template, the duration and
        # the request id, and never the query string.
        access_log=False,
        lifespan="on",
        proxy_headers=True,
        timeout_keep_alive=settings.keep_alive_seconds,
    )


def run(config: CoalitionConfig) -> None:
    """Serve until stopped, in worker processes when `config.workers` > 1 (as uvicorn.run)."""
    config.platform_logging = True
    config.configure_logging()
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
            return
        server.run()
    except KeyboardInterrupt:
        return
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that breaks a limit."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on the request head's size and header count,
    deadlines for the head and the body to arrive, and a cap on open connections."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(config, "limits", None)
        if not isinstance(limits, HttpLimits):
            raise TypeError("serve with the configuration of api.http_server.uvicorn_config")
        self.limits = limits
        self._state = _IDLE
        self._head_bytes = 0  # bytes fed to the parser since the last head completed
        self._deadline: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None
        self._ignore_input = False  # once refused: bytes that still arrive are dropped

    # ---- connections ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            # Refused before anything is read, so connections already open keep their share.
            self.transport = transport
            self._ignore_input = True
            log.warning("refused a connection: %d open", len(self.connections))
            self._answer(503, "Too many connections", retry_after=True)
            return
        super().connection_made(transport)
        # uvicorn arms its idle timer only after a response: one that never sends would stay.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._ignore_input:
            return
        self._unset_keepalive_if_required()
        limit = self.limits.max_header_bytes
        # Feed a head at most what it may still hold. The count restarts when a head
        # completes; a pipelined request that begins inside the same read as the one before
        # can exceed the limit by at most that one read.
        while self._state != _BODY and len(data) > limit - self._head_bytes:
            budget = limit - self._head_bytes
            head, data = data[:budget], data[budget:]
            self._head_bytes = limit
            self._feed(head)
            if self.transport.is_closing():
                return
            if self._head_bytes >= limit:  # no head completed within the limit
                self._refuse(431, "Request header fields too large")
                return
        if self._state != _BODY:
            self._head_bytes += len(data)
        self._feed(data)
        if not self.transport.is_closing():
            self._arm_deadline()

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(*self._refusal)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade:
            # No protocol to upgrade to: the request is answered as plain HTTP, and since the
            # parser reads nothing after an upgrade request, the connection then closes.
            if self.cycle is not None:
                self.cycle.keep_alive = False

    # ---- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._state = _HEAD
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.limits.max_headers:
            self._refusal = (431, "Too many request header fields")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._state = _BODY
        self._head_bytes = 0
        self._cancel_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._state = _IDLE
        self._cancel_deadline()
        super().on_message_complete()

    # ---- deadlines ------------------------------------------------------------------------

    def _arm_deadline(self) -> None:
        """After a read: time the part of a request still to come. A request that arrives in
        one read (the usual case) arms no timer at all."""
        if self._deadline is not None:
            return
        if self._state == _HEAD:
            self._deadline = self.loop.call_later(self.limits.header_timeout, self._head_late)
        elif self._state == _BODY:
            self._deadline = self.loop.call_later(self.limits.body_timeout, self._body_late)
        elif self.timeout_keep_alive_task is None and (
            self.cycle is None or self.cycle.response_complete
        ):
            # Bytes that began no request (blank lines) must not keep an idle connection open.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing() and self._state == _HEAD:
            self._refuse(408, "Request header timeout")

    def _body_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._state != _BODY:
            return
        if self.flow.read_paused:
            # The application is not reading the body yet: the wait is ours, not the client's.
            self._deadline = self.loop.call_later(self.limits.body_timeout, self._body_late)
            return
        cycle = self.cycle
        if not cycle.response_started:
            # The application sees a disconnect and nothing it sends is written.
            cycle.disconnected = True
            cycle.message_event.set()
            self._refuse(408, "Request body timeout")
        elif cycle.response_complete:
            self.transport.close()
        else:
            cycle.keep_alive = False

    # ---- answers of our own ---------------------------------------------------------------

    def _refuse(self, status: int, reason: str) -> None:
        client = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
        log.info("%s%d %s", client, status, reason)
        self._ignore_input = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.disconnected:
            # An earlier pipelined request is still being answered: an answer written now
            # would pass for (or cut into) its response. Finish that one, then close.
            cycle.keep_alive = False
            return
        self._answer(status, reason)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP, in the API's shape."""
        self._answer(400, msg)

    def _answer(self, status: int, reason: str, *, retry_after: bool = False) -> None:
        """A JSON error with a fresh request id (the head that might carry the caller's was
        not read), as every other answer of the API; then the connection is closed."""
        body = orjson.dumps({"error": HTTPStatus(status).name.lower(), "error_description": reason})
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        if retry_after:
            content.append(b"retry-after: 1\r\n")
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"x-request-id: " + uuid.uuid4().hex.encode("ascii") + b"\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
