"""The `coalition` command as an operator runs it: real processes, real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import make_partner

COALITION = [sys.executable, "-m", "api.cli"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        COALITION + args, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def env_with(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(values)
    return env


async def test_clients_create_json_for_a_partner_works_at_the_token_endpoint(
    engine: AsyncEngine, database_url: str, server: str
) -> None:
    partner = await make_partner(engine)
    result = run(
        [
            "clients",
            "create",
            "--partner",
            partner.slug,
            "--scopes",
            "points:earn members:read",
            "--json",
        ],
        env_with(DATABASE_URL=database_url),
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["scopes"] == "members:read points:earn"
    token = httpx.post(
        f"{server}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(created["client_id"], created["client_secret"]),
    )
    assert token.status_code == 200
    assert token.json()["scope"] == "members:read points:earn"
    async with engine.connect() as conn:
        stored = await conn.scalar(
            text("SELECT secret_hash FROM api_clients WHERE client_id = :c"),
            {"c": created["client_id"]},
        )
    assert stored is not None and created["client_secret"] not in stored


def test_clients_create_refuses_bad_arguments(database_url: str) -> None:
    env = env_with(DATABASE_URL=database_url)
    both = run(["clients", "create", "--operator", "--partner", "x", "--scopes", "operator"], env)
    assert both.returncode == 2
    unknown = run(
        ["clients", "create", "--partner", "no-such-partner", "--scopes", "points:earn"], env
    )
    assert unknown.returncode == 1 and "PARTNER_NOT_FOUND" in unknown.stderr
    scope = run(["clients", "create", "--operator", "--scopes", "points:fly"], env)
    assert scope.returncode == 1 and "INVALID_SCOPE" in scope.stderr


def stop_cluster(pgdata: Path) -> subprocess.CompletedProcess[str]:
    import pgserver

    pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    command = f"{pg_ctl} -D {pgdata} -w stop"
    args = (
        ["su", "pgserver", "-s", "/bin/sh", "-c", command] if os.geteuid() == 0 else command.split()
    )
    return subprocess.run(args, capture_output=True, text=True, check=False)


def test_embedded_database_is_shared_by_commands_and_survives_a_restart(
    embedded_data_dir: Path,
) -> None:
    """Two commands with one data directory reach one database, also after PostgreSQL stops."""
    env = env_with(COALITION_DATA_DIR=str(embedded_data_dir))
    assert run(["migrate"], env).returncode == 0
    first = run(["clients", "create", "--operator", "--scopes", "operator", "--json"], env)
    assert first.returncode == 0, first.stderr
    client_id = json.loads(first.stdout)["client_id"]
    pgdata = embedded_data_dir / "pg"
    stop = stop_cluster(pgdata)
    assert stop.returncode == 0, stop.stderr
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio\n"
            "from sqlalchemy import text\n"
            "from db.engine import create_engine\n"
            "async def main():\n"
            "    e = create_engine(pool_size=1)\n"
            "    async with e.connect() as c:\n"
            f"        print(await c.scalar(text(\"SELECT count(*) FROM api_clients WHERE client_id = '{client_id}'\")))\n"
            "    await e.dispose()\n"
            "asyncio.run(main())\n",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    stop_cluster(pgdata)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "1"
