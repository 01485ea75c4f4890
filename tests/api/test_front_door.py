"""The front door over real HTTP: GraphiQL's page and its assets (served by the platform, no
token needed), GET /schema.graphql, JSON for every malformed request, and an X-Request-ID on
every response."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import tomllib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from graphql import build_schema as parse_sdl
from sqlalchemy.ext.asyncio import AsyncEngine

from api.graphiql import GRAPHIQL_DIR, PACKAGES
from tests.conftest import ROOT, Api, make_client, make_partner, serving

HANG = 30.0  # seconds: only so a broken server fails the test instead of hanging it
HTML = {"Accept": "text/html,application/xhtml+xml"}


@contextlib.contextmanager
def _server(database_url: str, **overrides: Any) -> Iterator[str]:
    from api.app import create_app
    from api.settings import load_settings

    assert os.environ.get("COALITION_DATA_DIR")  # set by the `server` fixture
    settings = dataclasses.replace(load_settings(), **overrides)
    with serving(create_app(database_url, settings=settings, run_expiry=False), settings) as url:
        yield url


@pytest.fixture(scope="module")
def dev(database_url: str, server: str) -> Iterator[str]:
    with _server(database_url, environment="development") as url:
        yield url


@pytest.fixture
async def api(engine: AsyncEngine, dev: str) -> Api:
    partner = await make_partner(engine)
    client_id, secret = await make_client(engine, partner.id, ["members:read"])
    return Api(dev, client_id, secret)


# ---- GraphiQL --------------------------------------------------------------------------


def test_the_graphiql_page_needs_no_token_and_links_only_this_server(dev: str) -> None:
    page = httpx.get(f"{dev}/graphql", headers=HTML, timeout=HANG)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # The browser itself refuses anything from elsewhere.
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "http://" not in page.text and "https://" not in page.text and "//" not in page.text
    links = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assets = [link for link in links if not link.startswith("data:")]
    assert len(assets) == 7, links  # 2 stylesheets, 5 scripts
    for link in assets:
        assert link.startswith("/static/graphiql/"), link
        asset = httpx.get(f"{dev}{link}", timeout=HANG)
        assert asset.status_code == 200, link
        kind = "text/css" if link.endswith(".css") else "text/javascript"
        assert asset.headers["content-type"].startswith(kind), (link, asset.headers)
        assert len(asset.content) > 100, link


def test_every_vendored_package_carries_its_licence() -> None:
    for package in PACKAGES:
        directory = GRAPHIQL_DIR / package.directory
        licence = (directory / "LICENSE").read_text()
        assert "Permission is hereby granted" in licence, package.name  # MIT, all of them
        for name in package.files.values():
            assert (directory / name).stat().st_size > 100, (package.name, name)
    # Only the pinned versions are kept.
    kept = {p.name for p in GRAPHIQL_DIR.iterdir() if p.is_dir()}
    assert kept == {package.directory for package in PACKAGES}


def test_an_install_carries_the_page_and_its_assets() -> None:
    """Every file of the page (template, script, vendored assets, licences) is package data
    in pyproject.toml, of a package setuptools is told to ship, so `pip install` puts it
    beside the code."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packaged = set()
    for package, patterns in setuptools["package-data"].items():
        if package.startswith("api."):
            assert package in setuptools["packages"], package
            folder = ROOT.joinpath(*package.split("."))
            packaged |= {p for pattern in patterns for p in folder.glob(pattern) if p.is_file()}
    api_dir = ROOT / "api"
    needed = {
        path
        for folder in ("static", "templates")
        for path in (api_dir / folder).rglob("*")
        if path.is_file()
    }
    assert needed, "no files found"
    assert needed <= packaged, sorted(str(p.relative_to(api_dir)) for p in needed - packaged)


def test_production_serves_no_ide(database_url: str, server: str) -> None:
    with _server(database_url, environment="production") as prod:
        page = httpx.get(f"{prod}/graphql", headers=HTML, timeout=HANG)
        assert page.status_code == 401
        assert page.json()["error"] == "invalid_token"
        script = httpx.get(f"{prod}/static/graphiql/ide.js", timeout=HANG)
        assert script.status_code == 404 and script.json()["error"] == "not_found"


def test_introspection_as_graphiql_sends_it_works_with_a_token(api: Api) -> None:
    """GraphiQL's own introspection query (with deprecated input values) passes the query
    limits (depth, tokens, cost) once the caller has a token."""
    from graphql import get_introspection_query

    query = get_introspection_query(descriptions=True, input_value_deprecation=True)
    anonymous = api.http.post("/graphql", json={"query": query})
    assert anonymous.status_code == 401
    body = api.gql(query)
    assert "errors" not in body, body["errors"]
    names = {t["name"] for t in body["data"]["__schema"]["types"]}
    assert {"Query", "Mutation", "Member", "ErrorCode"} <= names


# ---- /schema.graphql ---------------------------------------------------------------------


def test_the_sdl_is_served_without_a_token(dev: str) -> None:
    from schema.root import export_sdl

    response = httpx.get(f"{dev}/schema.graphql", timeout=HANG)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == export_sdl()
    schema = parse_sdl(response.text)
    assert schema.query_type is not None and schema.mutation_type is not None


# ---- JSON everywhere ---------------------------------------------------------------------


def _is_json_error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), (
        response.status_code,
        response.headers.get("content-type"),
        response.text[:200],
    )
    body: dict[str, Any] = response.json()
    assert body.get("error") or body.get("errors"), body
    return body


def test_malformed_requests_are_answered_in_json(api: Api) -> None:
    bearer = {"Authorization": f"Bearer {api.token()}"}
    http = api.http
    post = http.post
    cases = {
        "invalid JSON": post(
            "/graphql", content=b"{not json", headers={**bearer, "Content-Type": "application/json"}
        ),
        "text/plain": post(
            "/graphql",
            content=b'{"query": "{ viewer { clientId } }"}',
            headers={**bearer, "Content-Type": "text/plain"},
        ),
        "a batch": post("/graphql", json=[{"query": "{ viewer { clientId } }"}], headers=bearer),
        "no query": post("/graphql", json={"variables": {}}, headers=bearer),
        "an unknown route": http.get("/no/such/route"),
        "an unknown route, POST": post("/nope", json={}),
        "a wrong method": http.delete("/graphql", headers=bearer),
        "GET on a POST route": http.get("/oauth/token"),
        "PUT on a GET route": http.put("/healthz"),
        "a static file that is not there": http.get("/static/graphiql/nope.js"),
    }
    for case, response in cases.items():
        assert 400 <= response.status_code < 500, (case, response.status_code)
        _is_json_error(response)
    assert cases["an unknown route"].status_code == 404
    assert cases["an unknown route"].json()["error"] == "not_found"
    assert cases["a wrong method"].status_code == 405
    assert cases["a wrong method"].json()["error"] == "method_not_allowed"
    assert set(cases["a wrong method"].headers["allow"].split(", ")) >= {"GET", "POST"}
    assert cases["GET on a POST route"].status_code == 405


def test_refusals_of_the_http_server_itself_are_json(dev: str) -> None:
    """Before the application: bytes that are not HTTP, a head that is too large."""
    host, port = dev.removeprefix("http://").split(":")
    for raw in (
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    ):
        with socket.create_connection((host, int(port)), timeout=HANG) as sock:
            sock.sendall(raw)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        assert head.split(b" ")[1] in {b"400", b"431"}, head
        headers = dict(
            line.decode().lower().split(": ", 1) for line in head.split(b"\r\n")[1:] if line
        )
        assert headers["content-type"] == "application/json"
        assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"]), headers
        assert httpx.Response(200, content=body).json()["error"] in {
            "bad_request",
            "request_header_fields_too_large",
        }


# ---- X-Request-ID --------------------------------------------------------------------------


def test_every_response_carries_a_request_id(api: Api, dev: str) -> None:
    from api.settings import load_settings

    bearer = {"Authorization": f"Bearer {api.token()}"}
    too_large = b"x" * (load_settings().max_body_bytes + 1)
    http = api.http
    requests: dict[str, tuple[str, str, dict[str, Any]]] = {
        "200 graphql": ("POST", "/graphql", {"json": {"query": "{ viewer { clientId } }"}}),
        "200 healthz": ("GET", "/healthz", {}),
        "200 ide": ("GET", "/graphql", {"headers": HTML}),
        "200 sdl": ("GET", "/schema.graphql", {}),
        "200 metrics": ("GET", "/metrics", {}),
        "401": ("POST", "/graphql", {"json": {"query": "{ viewer { clientId } }"}}),
        "401 oauth": ("POST", "/oauth/token", {"data": {"grant_type": "client_credentials"}}),
        "404": ("GET", "/nope", {}),
        "405": ("PUT", "/graphql", {}),
        "413": ("POST", "/graphql", {"content": too_large}),
        "400": ("POST", "/graphql", {"content": b"{", "headers": {"content-type": "x/y"}}),
    }
    seen: set[str] = set()
    for case, (method, path, kwargs) in requests.items():
        headers = dict(kwargs.pop("headers", {}))
        if case.startswith("200 graphql") or case == "400":
            headers.update(bearer)
        # No id sent: a fresh one each time.
        fresh = http.request(method, path, headers=headers, **kwargs)
        assert fresh.status_code == int(case.split()[0]), (case, fresh.status_code, fresh.text)
        assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"]), case
        assert fresh.headers["x-request-id"] not in seen
        seen.add(fresh.headers["x-request-id"])
        # A sane id sent: the same back.
        mine = f"req-{len(seen)}:{case.replace(' ', '.')}"
        echoed = http.request(method, path, headers={**headers, "X-Request-ID": mine}, **kwargs)
        assert echoed.headers.get_list("x-request-id") == [mine], case
    # Ids that are not sane are replaced, never echoed.
    for insane in ("a" * 129, "has space", 'quote"', "semi;colon", "é"):
        response = http.get("/healthz", headers={b"X-Request-ID": insane.encode()})
        assert response.status_code == 200
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), insane


def test_the_graphql_context_has_the_request_id(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A masked internal error names the request it happened in: the one the header says."""
    import schema.viewer

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(schema.viewer, "get_partner", broken)
    response = api.http.post(
        "/graphql",
        json={"query": "{ viewer { partner { id } } }"},
        headers={"Authorization": f"Bearer {api.token()}", "X-Request-ID": "trace-me-42"},
    )
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "INTERNAL_ERROR", "requestId": "trace-me-42"}
    assert "a bug" not in response.text


def test_an_unhandled_error_is_a_json_500_with_the_request_id(
    dev: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.tokens import TokenService

    def broken(self: TokenService) -> dict[str, Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(TokenService, "jwks", broken)
    response = httpx.get(
        f"{dev}/.well-known/jwks.json", headers={"X-Request-ID": "boom-1"}, timeout=HANG
    )
    assert response.status_code == 500
    assert response.headers.get_list("x-request-id") == ["boom-1"]
    assert response.json() == {
        "error": "internal_error",
        "error_description": "the server failed to answer this request",
        "request_id": "boom-1",
    }
    monkeypatch.undo()
    # The server is fine afterwards (and the connection was not left half-answered).
    assert httpx.get(f"{dev}/.well-known/jwks.json", timeout=HANG).status_code == 200
