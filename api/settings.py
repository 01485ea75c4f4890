"""Runtime settings, read from the environment once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    environment: str  # "development" (GraphiQL on, errors detailed) or "production"
    issuer: str
    audience: str
    token_ttl_seconds: int
    revocation_refresh_seconds: float
    expiry_interval_seconds: float
    max_body_bytes: int
    max_query_depth: int
    max_aliases: int
    max_tokens: int
    # Query-cost leaky bucket per API client and process (0 in either disables the limit).
    rate_limit_capacity: float = 2000
    rate_limit_restore: float = 100
    # Fragment spreads a document may expand to (each fragment's spreads counted as often as
    # it is spread), and the points a refusal for a query limit takes from the bucket.
    max_fragment_spreads: int = 200
    rate_limit_refusal_cost: int = 100
    # Whether the buckets hold across processes and replicas (leased from PostgreSQL, see
    # schema/cost.py), and the points of a lease (0: 10 % of the capacity).
    rate_limit_shared: bool = True
    rate_limit_lease: float = 0
    # Failed client authentications at the OAuth endpoints, per process: after this many in
    # `auth_failure_window` seconds a client id, or an address, gets 429 (0 disables either).
    auth_client_failures: int = 10
    auth_address_failures: int = 100
    auth_failure_window: float = 60
    # Argon2 secret verifications: threads, and how many more may wait before a 503.
    auth_verify_workers: int = 1
    auth_verify_queue: int = 32
    # The HTTP server's own limits, per worker process (api/http_server.py).
    max_header_bytes: int = 32 * 1024  # request line and headers, else 431
    max_headers: int = 100  # header fields, else 431
    header_timeout_seconds: float = 10  # from a request's first byte to its last header, else 408
    body_timeout_seconds: float = 30  # from the last header to the body's last byte, else 408
    keep_alive_seconds: int = 5  # an idle connection (no request begun) is closed after this
    max_connections: int = 1000  # open connections; more are answered 503 and closed
    # Bearer token for GET /metrics; without it /metrics is open in development, absent (404)
    # in production.
    metrics_token: str | None = None
    # Run the outbox worker inside each API process (`coalition serve --no-worker` turns it off
    # when `coalition worker` runs apart).
    run_worker: bool = True
    # The operator console (console/): a session ends after this long unused, or this long
    # after sign-in, whichever comes first; cookies are Secure on HTTPS requests, or always
    # when `console_secure_cookies` is set (behind a TLS-terminating proxy).
    console_idle_seconds: float = 30 * 60
    console_absolute_seconds: float = 12 * 3600
    console_secure_cookies: bool = False
    # Failed sign-ins per (email, address) and per address in `console_signin_window` seconds.
    console_signin_failures: int = 5
    console_signin_address_failures: int = 50
    console_signin_window: float = 300

    @property
    def production(self) -> bool:
        return self.environment == "production"


def load_settings() -> Settings:
    env = os.environ.get
    return Settings(
        environment=env("COALITION_ENV", "development"),
        issuer=env("COALITION_ISSUER", "coalition"),
        audience=env("COALITION_AUDIENCE", "coalition-api"),
        token_ttl_seconds=int(env("COALITION_TOKEN_TTL", "900")),
        revocation_refresh_seconds=float(env("COALITION_REVOCATION_REFRESH", "2")),
        expiry_interval_seconds=float(env("COALITION_EXPIRY_INTERVAL", "300")),
        max_body_bytes=int(env("COALITION_MAX_BODY_BYTES", str(1024 * 1024))),
        max_query_depth=int(env("COALITION_MAX_QUERY_DEPTH", "10")),
        max_aliases=int(env("COALITION_MAX_ALIASES", "30")),
        max_tokens=int(env("COALITION_MAX_TOKENS", "2000")),
        rate_limit_capacity=float(env("COALITION_RATE_LIMIT_CAPACITY", "2000")),
        rate_limit_restore=float(env("COALITION_RATE_LIMIT_RESTORE", "100")),
        max_fragment_spreads=int(env("COALITION_MAX_FRAGMENT_SPREADS", "200")),
        rate_limit_refusal_cost=int(env("COALITION_RATE_LIMIT_REFUSAL_COST", "100")),
        rate_limit_shared=env("COALITION_RATE_LIMIT_SHARED", "1") != "0",
        rate_limit_lease=float(env("COALITION_RATE_LIMIT_LEASE", "0")),
        auth_client_failures=int(env("COALITION_AUTH_CLIENT_FAILURES", "10")),
        auth_address_failures=int(env("COALITION_AUTH_ADDRESS_FAILURES", "100")),
        auth_failure_window=float(env("COALITION_AUTH_FAILURE_WINDOW", "60")),
        # Half the cores by default: a flood of verifications leaves the rest to the API.
        auth_verify_workers=int(
            env("COALITION_AUTH_VERIFY_WORKERS", str(max(1, (os.cpu_count() or 2) // 2)))
        ),
        auth_verify_queue=int(env("COALITION_AUTH_VERIFY_QUEUE", "32")),
        max_header_bytes=int(env("COALITION_MAX_HEADER_BYTES", str(32 * 1024))),
        max_headers=int(env("COALITION_MAX_HEADERS", "100")),
        header_timeout_seconds=float(env("COALITION_HEADER_TIMEOUT", "10")),
        body_timeout_seconds=float(env("COALITION_BODY_TIMEOUT", "30")),
        keep_alive_seconds=int(env("COALITION_KEEP_ALIVE_TIMEOUT", "5")),
        max_connections=int(env("COALITION_MAX_CONNECTIONS", "1000")),
        metrics_token=env("COALITION_METRICS_TOKEN") or None,
        run_worker=env("COALITION_RUN_WORKER", "1") != "0",
        console_idle_seconds=float(env("COALITION_CONSOLE_IDLE_SECONDS", "1800")),
        console_absolute_seconds=float(env("COALITION_CONSOLE_ABSOLUTE_SECONDS", "43200")),
        console_secure_cookies=env("COALITION_CONSOLE_SECURE_COOKIES", "0") != "0",
        console_signin_failures=int(env("COALITION_CONSOLE_SIGNIN_FAILURES", "5")),
        console_signin_address_failures=int(env("COALITION_CONSOLE_SIGNIN_ADDRESS_FAILURES", "50")),
        console_signin_window=float(env("COALITION_CONSOLE_SIGNIN_WINDOW", "300")),
    )
