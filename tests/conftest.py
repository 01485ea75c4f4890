"""Test fixtures: a real PostgreSQL (embedded by default, DATABASE_URL when set), migrated once.

Tests share one database and stay independent by creating their own partners and members
(random slugs and phones), so the suite needs no truncation between tests.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.settings import Settings
from core.caller import Caller
from db.engine import create_engine
from db.migrate import upgrade
from partners.service import PartnerRecord, create_partner

ROOT = Path(__file__).resolve().parent.parent


def _embedded_test_url() -> tuple[str, str]:
    """A fresh database in the embedded cluster kept under .coalition-test/."""
    import subprocess

    from db.embedded import embedded_socket_dir

    socket_dir = embedded_socket_dir(suite_cluster_dir())
    name = f"coalition_test_{os.getpid()}_{secrets.token_hex(3)}"
    psql = _psql()
    subprocess.run(
        [
            psql,
            "-h",
            socket_dir,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qc",
            f'CREATE DATABASE "{name}"',
        ],
        check=True,
        capture_output=True,
    )
    return f"postgresql+asyncpg://postgres@/{name}?host={socket_dir}", name


def suite_cluster_dir() -> Path:
    """The suite's embedded cluster (COALITION_TEST_PGDATA moves it, for the test of this)."""
    return Path(os.environ.get("COALITION_TEST_PGDATA") or ROOT / ".coalition-test" / "pg")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the embedded PostgreSQL servers this session started (the suite's cluster, the
    benchmarks' one), after every fixture has dropped its database. One that was running
    before the session, or that another live process also opened, is left running."""
    from db.embedded import other_handles, started_by_this_process, stop_embedded

    for pgdata in started_by_this_process():
        if not other_handles(pgdata):
            stop_embedded(pgdata)


def _psql() -> str:
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        from db.embedded import _asyncpg_url

        resolved = _asyncpg_url(url)
        upgrade(resolved)
        yield resolved
        return
    resolved, name = _embedded_test_url()
    upgrade(resolved)
    yield resolved
    import subprocess

    socket_dir = resolved.split("host=", 1)[1]
    subprocess.run(
        [
            _psql(),
            "-h",
            socket_dir,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qc",
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        ],
        check=False,
        capture_output=True,
    )


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture
async def conn(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that is committed at the end of the test's block."""
    async with engine.begin() as connection:
        yield connection


def unique_slug(prefix: str = "p") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def unique_phone() -> str:
    """A valid Russian mobile number no other test uses (random 7 digits after +7912)."""
    return f"+7912{secrets.randbelow(10**7):07d}"


async def make_partner(
    engine: AsyncEngine,
    *,
    earn_rate: str = "1",
    accepts_redemption: bool = True,
    pending_days: int = 0,
    points_validity_days: int = 365,
    issue_price: str | None = None,
    redeem_price: str | None = None,
    name: str | None = None,
) -> PartnerRecord:
    async with engine.begin() as c:
        return await create_partner(
            c,
            name=name or "Test partner",
            slug=unique_slug(),
            earn_rate=Decimal(earn_rate),
            accepts_redemption=accepts_redemption,
            pending_days=pending_days,
            points_validity_days=points_validity_days,
            issue_price=Decimal(issue_price) if issue_price else None,
            redeem_price=Decimal(redeem_price) if redeem_price else None,
        )


def partner_caller(partner_id: uuid.UUID, *scopes: str) -> Caller:
    granted = scopes or (
        "members:read",
        "members:write",
        "points:earn",
        "points:redeem",
        "points:reverse",
        "settlement:read",
        "reconciliation:write",
    )
    return Caller(client_id=f"test-{partner_id}", partner_id=partner_id, scopes=frozenset(granted))


OPERATOR = Caller(client_id="test-operator", partner_id=None, scopes=frozenset({"operator"}))


# ---- a served API over real HTTP ---------------------------------------------------------


@contextlib.contextmanager
def serving(app: Any, settings: Settings) -> Iterator[str]:
    """Serve `app` as `coalition serve` does (api.http_server's configuration and limits), by
    uvicorn on a free port in a background thread; yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    from api.http_server import uvicorn_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn_config(app, settings, port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not instance.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[str]:
    """The app served over real HTTP for the session; yields its base URL."""
    os.environ.setdefault("COALITION_DATA_DIR", str(ROOT / ".coalition-test"))
    os.environ["COALITION_REVOCATION_REFRESH"] = "0.5"
    from api.app import create_app
    from api.settings import load_settings

    settings = load_settings()
    # The outbox worker runs in the server, as in `coalition serve`: end-to-end tests see
    # consumers' effects.
    app = create_app(database_url, settings=settings, run_expiry=False, run_worker=True)
    with serving(app, settings) as url:
        yield url


class Api:
    """A partner's or the operator's integration: OAuth token, then GraphQL over HTTP."""

    def __init__(self, base_url: str, client_id: str, client_secret: str) -> None:
        import httpx

        self.base_url = base_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self._token: str | None = None

    def token(self, scope: str | None = None) -> str:
        data = {"grant_type": "client_credentials"}
        if scope is not None:
            data["scope"] = scope
        response = self.http.post(
            "/oauth/token", data=data, auth=(self.client_id, self.client_secret)
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def gql(
        self, query: str, variables: dict[str, object] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        if token is None:
            self._token = self._token or self.token()
            token = self._token
        response = self.http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def data(self, query: str, variables: dict[str, object] | None = None) -> dict[str, Any]:
        """Run a query that must succeed without GraphQL errors."""
        body = self.gql(query, variables)
        assert "errors" not in body, body["errors"]
        result: dict[str, Any] = body["data"]
        return result


async def make_client(
    engine: AsyncEngine, partner_id: uuid.UUID | None, scopes: list[str]
) -> tuple[str, str]:
    from partners.clients import create_client

    async with engine.begin() as c:
        created = await create_client(c, partner_id=partner_id, scopes=scopes, name="test")
    return created.client_id, created.client_secret


PARTNER_SCOPES = [
    "members:read",
    "members:write",
    "points:earn",
    "points:redeem",
    "points:reverse",
    "settlement:read",
    "reconciliation:write",
]


@pytest.fixture
async def operator_api(engine: AsyncEngine, server: str) -> Api:
    client_id, secret = await make_client(engine, None, ["operator"])
    return Api(server, client_id, secret)


async def partner_api(
    engine: AsyncEngine, server: str, partner_id: uuid.UUID, scopes: list[str] | None = None
) -> Api:
    client_id, secret = await make_client(engine, partner_id, scopes or PARTNER_SCOPES)
    return Api(server, client_id, secret)
