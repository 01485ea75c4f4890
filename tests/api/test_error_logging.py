"""What the server logs about requests: a client's mistake (a GraphQL error with a code the
platform set, a syntax or validation error, a refused query cost) is one INFO line without a
traceback; an unexpected exception is an ERROR with its traceback; every line names its
request, and every request has one access line (method, route, status, duration)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.helpers import EARN, key
from tests.conftest import make_client, make_partner, serving, unique_phone

HANG = 30.0
CAPACITY = 300  # query-cost points of this module's server: small, to reach the limits
PAGE = "partners(first: 100) { nodes { id } }"  # costs 101


@pytest.fixture(scope="module")
def dev(database_url: str, server: str) -> Iterator[str]:
    from api.app import create_app
    from api.settings import load_settings

    assert os.environ.get("COALITION_DATA_DIR")  # set by the `server` fixture
    settings = dataclasses.replace(
        load_settings(),
        environment="development",
        rate_limit_capacity=CAPACITY,
        rate_limit_restore=1,
    )
    with serving(create_app(database_url, settings=settings, run_expiry=False), settings) as url:
        yield url


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


class Client:
    def __init__(self, base: str, client_id: str, secret: str) -> None:
        token = httpx.post(
            f"{base}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            timeout=HANG,
        ).json()["access_token"]
        self.http = httpx.Client(
            base_url=base, timeout=HANG, headers={"Authorization": f"Bearer {token}"}
        )
        self.sent = 0

    def post(self, query: str, variables: dict[str, Any] | None = None) -> tuple[str, Any]:
        """The request id it was sent with, and the GraphQL errors' codes."""
        self.sent += 1
        request_id = f"test-{self.sent}-{key()}"
        response = self.http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"X-Request-ID": request_id},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
        if not codes:  # errors as data: a mutation's payload
            for result in (body.get("data") or {}).values():
                codes += [e["code"] for e in (result or {}).get("errors", [])]
        return request_id, codes


@pytest.fixture
async def reader(engine: AsyncEngine, dev: str) -> Client:
    partner = await make_partner(engine)
    return Client(dev, *await make_client(engine, partner.id, ["members:read"]))


@pytest.fixture
async def operator(engine: AsyncEngine, dev: str) -> Client:
    return Client(dev, *await make_client(engine, None, ["operator"]))


def _records(logs: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    return [r for r in logs.records if getattr(r, "request_id", None) == request_id]


def test_expected_errors_are_one_info_line_without_a_traceback(
    reader: Client, operator: Client, logs: pytest.LogCaptureFixture
) -> None:
    earn = {
        "member": {"phone": unique_phone()},
        "amount": "10",
        "reference": "r",
        "idempotencyKey": key(),
    }
    sent = {
        "FORBIDDEN": reader.post(EARN, {"input": earn}),  # no points:earn scope
        "INVALID_PHONE": reader.post('{ member(ref: {phone: "12"}) { id } }'),
        "validation": reader.post("{ viewer { noSuchField } }"),
        "syntax": reader.post("{ viewer { "),
        "MAX_COST_EXCEEDED": operator.post(
            "{ " + " ".join(f"p{n}: {PAGE}" for n in range(4)) + " }"
        ),
    }
    # Spend the bucket until the next query waits for it.
    for _ in range(5):
        request_id, codes = operator.post(f"{{ a: {PAGE} b: {PAGE} }}")
        if codes == ["RATE_LIMITED"]:
            sent["RATE_LIMITED"] = (request_id, codes)
            break
    assert "RATE_LIMITED" in sent, "the bucket never ran out"

    for case, (request_id, codes) in sent.items():
        if case.isupper():
            assert codes == [case], (case, codes)
        else:  # GraphQL's own errors, coded by schema/error_codes.py after they are logged
            uncoded = {"validation": "GRAPHQL_VALIDATION_FAILED", "syntax": "GRAPHQL_PARSE_FAILED"}
            assert codes == [uncoded[case]], (case, codes)
        records = _records(logs, request_id)
        assert records, f"nothing logged for {case}"
        graphql = [r for r in records if r.name == "coalition.graphql"]
        assert len(graphql) == 1, (case, [r.getMessage() for r in records])
        [line] = graphql
        assert line.levelno == logging.INFO and line.exc_info is None, (case, line)
        if case.isupper():
            assert line.error_code == case  # type: ignore[attr-defined]
        # Nothing else of the request is above INFO, and nothing has a traceback.
        assert all(r.levelno <= logging.INFO and not r.exc_info for r in records), case
    # Strawberry's own logger (ERROR with a traceback for each of these) says nothing.
    assert not [r for r in logs.records if r.name.startswith("strawberry")]


def test_an_unexpected_error_is_an_error_with_its_traceback(
    reader: Client, logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import schema.viewer

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in get_partner")

    monkeypatch.setattr(schema.viewer, "get_partner", broken)
    request_id, codes = reader.post("{ viewer { partner { id } } }")
    assert codes == ["INTERNAL_ERROR"]
    [error] = [r for r in _records(logs, request_id) if r.levelno >= logging.WARNING]
    assert error.levelno == logging.ERROR and error.name == "coalition.graphql"
    assert error.exc_info is not None and "a bug in get_partner" in str(error.exc_info[1])
    assert "viewer.partner" in error.getMessage()


def test_an_unhandled_exception_is_logged_once_with_its_request(
    dev: str, logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.tokens import TokenService

    def broken(self: TokenService) -> dict[str, Any]:
        raise RuntimeError("a bug in jwks")

    monkeypatch.setattr(TokenService, "jwks", broken)
    response = httpx.get(
        f"{dev}/.well-known/jwks.json", headers={"X-Request-ID": "jwks-boom"}, timeout=HANG
    )
    assert response.status_code == 500
    errors = [r for r in logs.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    [error] = errors
    assert error.request_id == "jwks-boom"  # type: ignore[attr-defined]
    assert error.exc_info is not None and "a bug in jwks" in str(error.exc_info[1])


def test_each_request_has_one_access_line(
    dev: str, reader: Client, logs: pytest.LogCaptureFixture
) -> None:
    request_id, _ = reader.post("{ viewer { clientId } }")
    missing = httpx.get(
        f"{dev}/nope?client_secret=cs_hidden", headers={"X-Request-ID": "nope-1"}, timeout=HANG
    )
    assert missing.status_code == 404
    for rid, route, path, status, method in [
        (request_id, "/graphql", "/graphql", 200, "POST"),
        ("nope-1", "unmatched", "/nope", 404, "GET"),
    ]:
        [line] = [r for r in _records(logs, rid) if r.name == "coalition.access"]
        assert line.levelno == logging.INFO
        fields = {k: getattr(line, k) for k in ("method", "route", "path", "status")}
        assert fields == {"method": method, "route": route, "path": path, "status": status}
        assert 0 < line.duration_ms < HANG * 1000  # type: ignore[attr-defined]
        assert line.getMessage().startswith(f"{method} {path} {status} ")
    # A path under a mounted app (the console) is logged as sent, not with its mount twice.
    httpx.get(f"{dev}/console/", headers={"X-Request-ID": "console-1"}, timeout=HANG)
    [line] = [r for r in _records(logs, "console-1") if r.name == "coalition.access"]
    assert line.path == "/console/"  # type: ignore[attr-defined]
    # The query string is never logged (a credential may have been put there). This test's
    # own HTTP client logs the URL it requested: that is not the server's log.
    server_side = [r for r in logs.records if not r.name.startswith(("httpx", "httpcore"))]
    assert not [r for r in server_side if "cs_hidden" in r.getMessage() + str(r.__dict__)]
