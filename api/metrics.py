"""Prometheus metrics: a registry per app, the HTTP series, the domain series (earns,
redemptions, points), the database pool, and the /metrics endpoint.

Labels only ever take values from small fixed sets (route templates, known methods, status
codes), never from what a caller wrote, so a request can neither add a series nor break the
exposition format.

Adding a series: create it on `Metrics.registry` (a Counter or Gauge updated where things
happen), or `add_gauge(name, help, read)` for a value read when /metrics is scraped, or
`on_scrape(hook)` for an async refresh (a database query) run before each scrape.
"""

from __future__ import annotations

import hmac
import logging
import math
from collections.abc import Awaitable, Callable, Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from sqlalchemy.pool import Pool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from points.batch import BatchOutcome
from points.service import EarnOutcome, RedeemOutcome

log = logging.getLogger("coalition.metrics")

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
        # Booked through the API (replays of an idempotency key are not counted again).
        self.earns = Counter(
            "coalition_earns", "Earn transfers booked through the API.", registry=self.registry
        )
        self.redemptions = Counter(
            "coalition_redemptions",
            "Redemptions booked through the API (redeemPoints).",
            registry=self.registry,
        )
        self.points_issued = Counter(
            "coalition_points_issued",
            "Points given by the earns booked through the API.",
            registry=self.registry,
        )
        self.points_redeemed = Counter(
            "coalition_points_redeemed",
            "Points burnt by the redemptions booked through the API.",
            registry=self.registry,
        )
        self._gauges = _ScrapeGauges()
        self.registry.register(self._gauges)
        self._scrape_hooks: list[Callable[[], Awaitable[None]]] = []

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

    def record_outcome(self, outcome: object) -> None:
        """A mutation's successful outcome (schema/mutation.py hands every one over): the
        earns and redemptions it booked now are counted; a replay booked nothing."""
        if getattr(outcome, "replayed", False):
            return
        if isinstance(outcome, EarnOutcome):
            if outcome.transfer_id is not None:
                self.earns.inc()
                self.points_issued.inc(outcome.points)
        elif isinstance(outcome, RedeemOutcome):
            self.redemptions.inc()
            self.points_redeemed.inc(outcome.points)
        elif isinstance(outcome, BatchOutcome) and outcome.transfers:
            self.earns.inc(outcome.transfers)
            self.points_issued.inc(outcome.points)

    def add_gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge whose value `read()` gives when /metrics is scraped."""
        self._gauges.add(name, documentation, read)

    def on_scrape(self, hook: Callable[[], Awaitable[None]]) -> None:
        """An async refresh run before each scrape (say, a query that sets a Gauge)."""
        self._scrape_hooks.append(hook)

    def watch_pool(self, pool: Callable[[], Pool]) -> None:
        """The database pool's use, read at scrape time (`pool()`: the engine's current
        pool, which `dispose()` replaces)."""

        def reading(method: str) -> Callable[[], float]:
            def read() -> float:
                value = getattr(pool(), method, None)
                return float(value()) if callable(value) else float("nan")

            return read

        self.add_gauge(
            "coalition_db_pool_size",
            "Connections the database pool keeps open.",
            reading("size"),
        )
        self.add_gauge(
            "coalition_db_pool_checked_out",
            "Database connections in use by requests and tasks now.",
            reading("checkedout"),
        )

        def overflow() -> float:
            # QueuePool counts overflow from -size (no connection yet): only extra ones count.
            value = reading("overflow")()
            return value if math.isnan(value) else max(0.0, value)

        self.add_gauge(
            "coalition_db_pool_overflow",
            "Database connections open beyond the pool size now.",
            overflow,
        )

    async def render(self) -> bytes:
        for hook in self._scrape_hooks:
            try:
                await hook()
            except Exception:
                # A failed refresh leaves its series as they were; the rest still answers.
                log.warning("a metrics refresh failed", exc_info=True)
        return generate_latest(self.registry)


class _ScrapeGauges(Collector):
    """Gauges read when scraped (no value kept between scrapes)."""

    def __init__(self) -> None:
        self._gauges: list[tuple[str, str, Callable[[], float]]] = []

    def add(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._gauges.append((name, documentation, read))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, documentation, read in self._gauges:
            try:
                value = read()
            except Exception:
                log.warning("reading the gauge %s failed", name, exc_info=True)
                continue
            yield GaugeMetricFamily(name, documentation, value=value)


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
        return Response(await metrics.render(), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return endpoint
