"""A client secret is shown once, when the client is created, and never again: not in the
server's log (at DEBUG, every logger), not in any later API response, not in errors.

Clients are created both ways an operator creates them (GraphQL `createApiClient` and
`coalition clients create`), used, and then misused in every way that makes the server talk
about them: wrong and truncated secrets, swapped id and secret, the secret sent as a bearer
token, as the token to introspect or revoke, in a malformed Authorization header, malformed
GraphQL and JSON. (The subprocess server's output is checked by test_crash.py.)
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from schema.relay import to_global_id
from tests.api.helpers import EARN, VIEWER, key
from tests.conftest import ROOT, Api, make_partner, unique_phone

CREATE_CLIENT = """mutation($input: CreateApiClientInput!) { createApiClient(input: $input) {
  clientId clientSecret scopes errors { code message field } } }"""
REVOKE_CLIENT = """mutation($input: RevokeApiClientInput!) { revokeApiClient(input: $input) {
  clientId revokedAt errors { code message } } }"""
INTROSPECTION = """{ __schema { types { name fields { name } inputFields { name } } } }"""
AUDIT = """{ auditLog(first: 100) { nodes { actor action subjectType subjectId details } } }"""
# This process's own HTTP client logs too; those records are not the server's.
CLIENT_SIDE = ("httpx", "httpcore", "hpack")
ENROLL = """mutation($input: EnrollMemberInput!) { enrollMember(input: $input) {
  member { id } errors { code message } } }"""


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at DEBUG, also for loggers that do not propagate (uvicorn's)."""
    caplog.set_level(logging.DEBUG)
    names = ["uvicorn", "uvicorn.error", "uvicorn.access", "authlib", "coalition"]
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    for logger, _ in saved:
        logger.setLevel(logging.DEBUG)
        if caplog.handler not in logger.handlers:
            logger.addHandler(caplog.handler)
    yield caplog
    for logger, level in saved:
        logger.setLevel(level)
        if caplog.handler in logger.handlers:
            logger.removeHandler(caplog.handler)


def _cli_client(database_url: str, slug: str) -> tuple[str, str, subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATABASE_URL"] = database_url
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "clients",
            "create",
            "--partner",
            slug,
            "--scopes",
            "members:read members:write points:earn",
            "--json",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    return created["client_id"], created["client_secret"], done


def _misuse(server: str, client_id: str, secret: str, operator: Api) -> list[httpx.Response]:
    """Use the client properly, then in every wrong way; return every response."""
    responses: list[httpx.Response] = []
    api = Api(server, client_id, secret)
    good = api.token()
    bearer = {"Authorization": f"Bearer {good}"}
    http = api.http

    def post(path: str, **kwargs: Any) -> None:
        responses.append(http.post(path, **kwargs))

    grant = {"grant_type": "client_credentials"}
    # Proper use.
    post("/oauth/token", data=grant, auth=(client_id, secret))
    post("/graphql", json={"query": VIEWER}, headers=bearer)
    phone = unique_phone()
    post(
        "/graphql", json={"query": ENROLL, "variables": {"input": {"phone": phone}}}, headers=bearer
    )
    earn = {"member": {"phone": phone}, "amount": "10", "reference": "s", "idempotencyKey": key()}
    post("/graphql", json={"query": EARN, "variables": {"input": earn}}, headers=bearer)
    post("/graphql", json={"query": INTROSPECTION}, headers=bearer)
    # Bad credentials, every way round.
    for auth in (
        (client_id, secret + "x"),
        (client_id, secret[:-1]),
        (secret, client_id),
        (secret, secret),
        (client_id + "x", secret),
    ):
        post("/oauth/token", data=grant, auth=auth)
    post("/oauth/token", data={**grant, "client_id": secret, "client_secret": secret})
    post("/oauth/token", data={**grant, "client_id": client_id, "client_secret": secret + "x"})
    post("/oauth/token", data={**grant, "scope": secret}, auth=(client_id, secret))
    post("/oauth/token", data={"grant_type": secret}, auth=(client_id, secret))
    raw = base64.b64encode(secret.encode()).decode()
    post("/oauth/token", data=grant, headers={"Authorization": f"Basic {raw}"})
    post("/oauth/token", content=secret.encode(), headers={"Content-Type": "application/json"})
    # The secret where a token belongs.
    post("/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {secret}"})
    post("/graphql", json={"query": VIEWER}, headers={"Authorization": secret})
    post("/oauth/introspect", data={"token": secret}, auth=(client_id, secret))
    post("/oauth/introspect", data={"token": good}, auth=(client_id, secret + "x"))
    post("/oauth/revoke", data={"token": secret}, auth=(client_id, secret))
    # Malformed requests with a good token.
    post("/graphql", content=b"{not json", headers={**bearer, "Content-Type": "application/json"})
    post("/graphql", json={"query": "{ viewer { clientSecret } }"}, headers=bearer)
    post(
        "/graphql", json={"query": "mutation { earnPoints(input: {}) { points } }"}, headers=bearer
    )
    post("/graphql", json={"query": "{ viewer {"}, headers=bearer)
    # What the operator can see about the client afterwards.
    for query in (AUDIT, INTROSPECTION, "{ partners(first: 100) { nodes { id slug } } }"):
        responses.append(
            operator.http.post(
                "/graphql",
                json={"query": query},
                headers={"Authorization": f"Bearer {operator.token()}"},
            )
        )
    revoked = operator.gql(REVOKE_CLIENT, {"input": {"clientId": client_id}})
    assert revoked["data"]["revokeApiClient"]["errors"] == [], revoked
    responses.append(http.post("/oauth/token", data=grant, auth=(client_id, secret)))  # revoked now
    assert responses[-1].status_code == 401
    return responses


async def test_client_secrets_never_reach_logs_or_later_responses(
    engine: AsyncEngine,
    server: str,
    database_url: str,
    operator_api: Api,
    every_log: pytest.LogCaptureFixture,
) -> None:
    partner = await make_partner(engine)
    created = operator_api.data(
        CREATE_CLIENT,
        {
            "input": {
                "partnerId": to_global_id("Partner", partner.id),
                "scopes": ["members:read", "members:write", "points:earn"],
                "name": "leak test",
            }
        },
    )["createApiClient"]
    assert created["errors"] == [] and created["clientSecret"].startswith("cs_")
    cli_id, cli_secret, cli_run = _cli_client(database_url, partner.slug)
    assert cli_secret not in cli_run.stderr

    secrets = {created["clientId"]: created["clientSecret"], cli_id: cli_secret}
    responses: list[httpx.Response] = []
    for client_id, secret in secrets.items():
        responses += _misuse(server, client_id, secret, operator_api)

    assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
    for secret in secrets.values():
        needles = (secret, secret.removeprefix("cs_"))
        for response in responses:
            assert not any(n in response.text for n in needles), (response.url, response.text)
            assert not any(n in str(response.headers) for n in needles), response.headers
        server_side = [r for r in every_log.records if not r.name.startswith(CLIENT_SIDE)]
        assert server_side, "nothing was logged: the capture is not working"
        for record in server_side:
            logged = every_log.handler.format(record) + str(record.args)
            assert not any(n in logged for n in needles), f"a secret reached the log: {logged}"
    print(
        f"\nsecrets: 2 clients (GraphQL and CLI), {len(responses)} responses and"
        f" {len(server_side)} server log records checked"
    )


def test_basic_credentials_that_are_not_utf8_are_refused_not_a_crash(server: str) -> None:
    for raw in (b"\xff\xfe:x", "é:é".encode("latin-1"), b"cl_x:\xc3"):
        header = "Basic " + base64.b64encode(raw).decode()
        for path in ("/oauth/token", "/oauth/introspect", "/oauth/revoke"):
            response = httpx.post(
                f"{server}{path}",
                data={"grant_type": "client_credentials", "token": "x"},
                headers={"Authorization": header},
                timeout=30,
            )
            assert response.status_code == 401, (path, raw, response.status_code)
