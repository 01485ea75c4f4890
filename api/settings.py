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
    )
