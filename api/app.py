"""The Starlette application: routes, lifespan (engine, keys, background tasks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from api.auth import Authenticator
from api.graphiql import STATIC_DIR, STATIC_PREFIX
from api.graphql_view import AuthenticatedGraphQL, CoalitionGraphQL
from api.keys import load_signing_key
from api.metrics import Metrics, metrics_endpoint
from api.middleware import BodySizeLimit, RequestObserver, json_http_error
from api.oauth import OAuthEndpoints
from api.revocation import RevocationList
from api.settings import Settings, load_settings
from api.throttle import AuthThrottle, VerifierPool
from api.tokens import TokenService
from api.worker import OutboxRuntime
from db.embedded import data_dir
from db.engine import create_engine
from db.rate_limits import PostgresBuckets
from ledger.expiry import expire_due
from schema.cost import CostLimiter, SharedCostLimiter
from schema.root import build_schema

log = logging.getLogger("coalition")


@dataclass
class Platform:
    """What the routes share for the life of the process."""

    settings: Settings
    engine: AsyncEngine
    tokens: TokenService
    revoked: RevocationList
    cost_limiter: CostLimiter
    # The app's Prometheus registry: more series register on `metrics.registry`.
    metrics: Metrics = field(default_factory=Metrics)


async def _expiry_loop(engine: AsyncEngine, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            report = await expire_due(engine)
            if report.points:
                log.info("expired %d points of %d members", report.points, report.members)
        except Exception:
            log.warning("expiry sweep failed; will retry", exc_info=True)


def create_app(
    database_url: str | None = None,
    *,
    settings: Settings | None = None,
    run_expiry: bool = True,
    run_worker: bool | None = None,
    auth_throttle: AuthThrottle | None = None,
    secret_verifier: VerifierPool | None = None,
) -> Starlette:
    settings = settings or load_settings()
    engine = create_engine(database_url)
    tokens = TokenService(
        load_signing_key(data_dir()),
        issuer=settings.issuer,
        audience=settings.audience,
        ttl_seconds=settings.token_ttl_seconds,
    )
    revoked = RevocationList()
    # Query-cost buckets per API client: leased from PostgreSQL, so they hold across every
    # process and replica (schema/cost.py), or kept in this process alone.
    cost_limiter = (
        SharedCostLimiter(
            settings.rate_limit_capacity,
            settings.rate_limit_restore,
            refusal_cost=settings.rate_limit_refusal_cost,
            store=PostgresBuckets(engine),
            lease_points=settings.rate_limit_lease,
        )
        if settings.rate_limit_shared
        else CostLimiter(
            settings.rate_limit_capacity,
            settings.rate_limit_restore,
            refusal_cost=settings.rate_limit_refusal_cost,
        )
    )
    platform = Platform(settings, engine, tokens, revoked, cost_limiter)
    # Outbox consumers in this process (None: as COALITION_RUN_WORKER says); backlog metrics
    # either way.
    outbox = OutboxRuntime(
        engine,
        platform.metrics.registry,
        run_worker=settings.run_worker if run_worker is None else run_worker,
    )
    # Failed client authentications and Argon2 work, bounded per process (api/throttle.py).
    auth_throttle = auth_throttle or AuthThrottle(
        client_failures=settings.auth_client_failures,
        address_failures=settings.auth_address_failures,
        window=settings.auth_failure_window,
    )
    secret_verifier = secret_verifier or VerifierPool(
        settings.auth_verify_workers, settings.auth_verify_queue
    )
    oauth = OAuthEndpoints(
        engine, tokens, revoked, throttle=auth_throttle, verifier=secret_verifier
    )
    graphiql = not settings.production
    schema = build_schema(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_spreads=settings.max_fragment_spreads,
        cost_limiter=cost_limiter,
    )
    graphql = AuthenticatedGraphQL(
        # Every mutation's outcome is counted by the metrics (earns, redemptions, points).
        CoalitionGraphQL(schema, engine, booked=platform.metrics.record_outcome),
        Authenticator(tokens, revoked),
        graphiql=graphiql,
    )
    # The pool's use, read when /metrics is scraped (dispose() replaces engine.pool).
    platform.metrics.watch_pool(lambda: engine.pool)
    # GET /schema.graphql: the SDL of the schema this process serves (no token needed).
    sdl = schema.as_str() + "\n"

    async def schema_sdl(request: Request) -> Response:
        return PlainTextResponse(sdl)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await revoked.refresh(engine)
        await outbox.start()
        tasks = [asyncio.create_task(revoked.run(engine, settings.revocation_refresh_seconds))]
        if run_expiry and settings.expiry_interval_seconds > 0:
            tasks.append(
                asyncio.create_task(_expiry_loop(engine, settings.expiry_interval_seconds))
            )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await outbox.stop()
            secret_verifier.close()
            await cost_limiter.close()  # gives back unspent leases
            await engine.dispose()

    async def healthz(request: Request) -> Response:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "up"})

    routes: list[BaseRoute] = [
        Route("/oauth/token", oauth.token, methods=["POST"]),
        Route("/oauth/introspect", oauth.introspect, methods=["POST"]),
        Route("/oauth/revoke", oauth.revoke, methods=["POST"]),
        Route("/.well-known/jwks.json", oauth.jwks, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        Route("/schema.graphql", schema_sdl, methods=["GET"]),
    ]
    # The operator console (console/): its own pages, assets, sessions and CSP.
    from console.web import PREFIX as CONSOLE
    from console.web import Console

    async def console_root(request: Request) -> Response:
        return RedirectResponse(f"{CONSOLE}/", status_code=307)

    routes.append(Route(CONSOLE, console_root, methods=["GET"]))
    routes.append(Mount(CONSOLE, app=Console(engine, settings).app(), name="console"))
    if graphiql:
        # GraphiQL's assets, vendored (api/graphiql.py): the IDE works offline.
        routes.append(Mount(STATIC_PREFIX, app=StaticFiles(directory=STATIC_DIR), name="static"))
    # Open in development; in production only behind COALITION_METRICS_TOKEN (else a 404).
    if settings.metrics_token or not settings.production:
        metrics = metrics_endpoint(platform.metrics, settings.metrics_token)
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    app = Starlette(
        routes=routes,
        middleware=[
            # Outermost: request ids, metrics, the access log, a JSON 500 (api/middleware.py).
            Middleware(
                RequestObserver,
                metrics=platform.metrics,
                routes=[getattr(r, "path", "") for r in routes],
            ),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
        ],
        # Starlette's own 404 and 405 (and any HTTPException) as JSON, not plain text.
        exception_handlers={HTTPException: json_http_error},
        lifespan=lifespan,
    )
    app.state.platform = platform
    return app
