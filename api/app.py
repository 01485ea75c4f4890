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
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import settlement  # noqa: F401  (subscribes settlement to ledger events)
from api.auth import Authenticator
from api.graphql_view import AuthenticatedGraphQL, CoalitionGraphQL
from api.keys import load_signing_key
from api.metrics import Metrics, metrics_endpoint
from api.middleware import BodySizeLimit, RequestMetrics
from api.oauth import OAuthEndpoints
from api.revocation import RevocationList
from api.settings import Settings, load_settings
from api.throttle import AuthThrottle, VerifierPool
from api.tokens import TokenService
from db.embedded import data_dir
from db.engine import create_engine
from ledger.expiry import expire_due
from schema.cost import CostLimiter
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
    # Query-cost buckets per API client, shared by every request of this process.
    cost_limiter = CostLimiter(
        settings.rate_limit_capacity,
        settings.rate_limit_restore,
        refusal_cost=settings.rate_limit_refusal_cost,
    )
    platform = Platform(settings, engine, tokens, revoked, cost_limiter)
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
    graphql = AuthenticatedGraphQL(
        CoalitionGraphQL(
            build_schema(
                max_depth=settings.max_query_depth,
                max_aliases=settings.max_aliases,
                max_tokens=settings.max_tokens,
                max_spreads=settings.max_fragment_spreads,
                cost_limiter=cost_limiter,
            ),
            engine,
            graphiql=graphiql,
        ),
        Authenticator(tokens, revoked),
        graphiql=graphiql,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await revoked.refresh(engine)
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
            secret_verifier.close()
            await engine.dispose()

    async def healthz(request: Request) -> Response:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "up"})

    routes = [
        Route("/oauth/token", oauth.token, methods=["POST"]),
        Route("/oauth/introspect", oauth.introspect, methods=["POST"]),
        Route("/oauth/revoke", oauth.revoke, methods=["POST"]),
        Route("/.well-known/jwks.json", oauth.jwks, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/graphql", graphql, methods=["GET", "POST"]),
    ]
    # Open in development; in production only behind COALITION_METRICS_TOKEN (else a 404).
    if settings.metrics_token or not settings.production:
        metrics = metrics_endpoint(platform.metrics, settings.metrics_token)
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestMetrics, metrics=platform.metrics, routes=[r.path for r in routes]),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.platform = platform
    return app
