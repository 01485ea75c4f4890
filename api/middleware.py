"""Small ASGI middlewares: request body size limit and request counting for /metrics."""

from __future__ import annotations

from collections import Counter

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
    def __init__(self, app: ASGIApp, counts: Counter[tuple[str, int]]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.counts[(path, int(message["status"]))] += 1
            await send(message)

        await self.app(scope, receive, counting)


def render_metrics(counts: Counter[tuple[str, int]]) -> str:
    """Prometheus text format."""
    lines = ["# TYPE coalition_http_requests_total counter"]
    for (path, status), count in sorted(counts.items()):
        lines.append(f'coalition_http_requests_total{{path="{path}",status="{status}"}} {count}')
    return "\n".join(lines) + "\n"
