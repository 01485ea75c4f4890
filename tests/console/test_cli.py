"""`coalition staff|partners|clients|settlement instructions` as an operator runs them: real
processes on the suite's database."""

from __future__ import annotations

import json
import re
import secrets

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.test_cli import env_with, run


def _sign_in(server: str, email: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=server) as http:
        form = http.get("/console/sign-in")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        return http.post(
            "/console/sign-in",
            data={"csrf": token.group(1), "email": email, "password": password},
        )


def test_staff_create_list_disable(database_url: str, server: str) -> None:
    env = env_with(DATABASE_URL=database_url)
    email = f"Ops-{secrets.token_hex(3)}@Example.com"
    created = run(["staff", "create", "--email", email, "--role", "finance"], env)
    assert created.returncode == 0, created.stderr
    password = re.search(r"password: (\S+)", created.stdout)
    assert password is not None
    signed_in = _sign_in(server, email, password.group(1))
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/console/"

    listed = run(["staff", "list", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    mine = [s for s in json.loads(listed.stdout) if s["email"] == email.lower()]
    assert mine and mine[0]["role"] == "finance" and mine[0]["disabledAt"] is None
    table = run(["staff", "list"], env)
    assert email.lower() in table.stdout

    again = run(["staff", "create", "--email", email, "--role", "admin"], env)
    assert again.returncode == 1 and "EMAIL_TAKEN" in again.stderr
    bad_role = run(["staff", "create", "--email", "x@example.com", "--role", "boss"], env)
    assert bad_role.returncode == 2

    disabled = run(["staff", "disable", email], env)
    assert disabled.returncode == 0, disabled.stderr
    assert _sign_in(server, email, password.group(1)).status_code == 401
    listed = run(["staff", "list", "--json"], env)
    assert next(s for s in json.loads(listed.stdout) if s["email"] == email.lower())["disabledAt"]


def test_staff_password_from_stdin_is_not_printed(database_url: str, server: str) -> None:
    import subprocess
    import sys

    email = f"stdin-{secrets.token_hex(3)}@example.com"
    chosen = secrets.token_urlsafe(16)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "staff",
            "create",
            "--email",
            email,
            "--role",
            "support",
            "--password-stdin",
        ],
        input=chosen + "\n",
        env=env_with(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert chosen not in result.stdout and "password" not in result.stdout
    assert _sign_in(server, email, chosen).status_code == 303


def test_partners_and_clients_onboarding(
    database_url: str, server: str, engine: AsyncEngine
) -> None:
    env = env_with(DATABASE_URL=database_url)
    slug = f"deli-{secrets.token_hex(3)}"
    created = run(
        [
            "partners",
            "create",
            "--name",
            "Deli",
            "--slug",
            slug,
            "--earn-rate",
            "0.2",
            "--no-redemption",
            "--json",
        ],
        env,
    )
    assert created.returncode == 0, created.stderr
    partner = json.loads(created.stdout)
    assert partner["slug"] == slug and partner["acceptsRedemption"] is False
    bad = run(["partners", "create", "--name", "X", "--slug", slug, "--earn-rate", "1"], env)
    assert bad.returncode == 1 and "SLUG_TAKEN" in bad.stderr
    bad = run(["partners", "create", "--name", "X", "--slug", "x-1", "--earn-rate", "1e3"], env)
    assert bad.returncode == 1 and "INVALID_AMOUNT" in bad.stderr

    listed = json.loads(run(["partners", "list", "--json"], env).stdout)
    mine = next(p for p in listed if p["slug"] == slug)
    assert mine["id"] == partner["id"] and mine["earnRate"] == "0.2"
    table = run(["partners", "list"], env).stdout
    assert partner["id"] in table  # whole, on one line

    client = json.loads(
        run(
            ["clients", "create", "--partner", slug, "--scopes", "points:earn", "--json"], env
        ).stdout
    )
    clients = json.loads(run(["clients", "list", "--partner", slug, "--json"], env).stdout)
    assert [(c["clientId"], c["partner"], c["revokedAt"]) for c in clients] == [
        (client["client_id"], slug, None)
    ]
    assert "secret" not in json.dumps(clients).lower()
    assert client["client_id"] in run(["clients", "list"], env).stdout

    revoked = run(["clients", "revoke", client["client_id"]], env)
    assert revoked.returncode == 0, revoked.stderr
    clients = json.loads(run(["clients", "list", "--partner", slug, "--json"], env).stdout)
    assert clients[0]["revokedAt"] is not None
    token = httpx.post(
        f"{server}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert token.status_code == 401
    missing = run(["clients", "revoke", "cl_nope"], env)
    assert missing.returncode == 1 and "CLIENT_NOT_FOUND" in missing.stderr


async def test_settlement_instructions_of_a_period(database_url: str, engine: AsyncEngine) -> None:
    env = env_with(DATABASE_URL=database_url)
    async with engine.connect() as conn:
        period = await conn.scalar(
            text(
                "SELECT id FROM settlement_periods WHERE status <> 'OPEN'"
                " ORDER BY starts_at DESC LIMIT 1"
            )
        ) or await conn.scalar(text("SELECT id FROM settlement_periods WHERE status = 'OPEN'"))
        expected = (
            await conn.execute(
                text(
                    "SELECT id, amount FROM settlement_instructions WHERE period_id = :p"
                    " ORDER BY id"
                ),
                {"p": period},
            )
        ).all()
    result = run(["settlement", "instructions", str(period), "--json"], env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["period"] == str(period)
    assert sorted((i["id"], i["amountMinor"]) for i in shown["instructions"]) == sorted(
        (str(r.id), r.amount) for r in expected
    )
    missing = run(["settlement", "instructions", "00000000-0000-0000-0000-000000000001"], env)
    assert missing.returncode == 1 and "PERIOD_NOT_FOUND" in missing.stderr
