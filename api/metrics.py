"""Prometheus metrics: a registry per app, the HTTP series, and the /metrics endpoint.

Labels only ever take values from small fixed sets (route templates, known methods, status
codes), never from what a caller wrote, so a request can neither add a series nor break the
exposition format. More metrics (domain series) register on `Metrics.registry`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

# A `_created` series beside every counter and histogram doubles the series for nothing we
# use (process-wide switch: nothing else in the process exports metrics).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

UNMATCHED = "unmatched"  # the route label of any path that is not one of the app's routes
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """The app's registry (not prometheus_client's global one: several apps in one process,
    as in the tests, each count their own)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "coalition_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "coalition_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            registry=self.registry,
        )
        # Label lookups cached: prometheus_client validates and locks on every labels().
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method if method in _METHODS else "OTHER", status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.http_requests.labels(key[0], key[1], str(status)),
                self.http_duration.labels(key[0], key[1]),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_endpoint(
    metrics: Metrics, token: str | None
) -> Callable[[Request], Awaitable[Response]]:
    """GET /metrics, behind `Authorization: Bearer <token>` when a token is configured."""
    expected = token.encode() if token else None

    async def endpoint(request: Request) -> Response:
        if expected is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), expected
            ):
                return JSONResponse(
                    {"error": "invalid_token", "error_description": "a metrics token is needed"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        return Response(metrics.render(), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return endpoint
