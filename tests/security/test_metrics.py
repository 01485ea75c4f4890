"""GET /metrics over HTTP: series labelled by route template (never by what a caller wrote),
a bounded number of series whatever paths are requested, and a bearer token in production."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.settings import Settings
from tests.conftest import serving

HANG = 30.0  # seconds: only so a broken server fails the test instead of hanging it
ROUTES = {
    "/oauth/token",
    "/oauth/introspect",
    "/oauth/revoke",
    "/.well-known/jwks.json",
    "/healthz",
    "/graphql",
    "/metrics",
    "/schema.graphql",
    "/static",
    "unmatched",
}
# A sample line of the text exposition format: name, optional {labels}, value.
SAMPLE_LINE = re.compile(
    r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? \S+'
)


@contextlib.contextmanager
def _server(database_url: str, **overrides: object) -> Iterator[str]:
    from api.app import create_app
    from api.settings import load_settings

    assert os.environ.get("COALITION_DATA_DIR")  # set by the `server` fixture
    settings: Settings = dataclasses.replace(load_settings(), **overrides)  # type: ignore[arg-type]
    with serving(create_app(database_url, settings=settings, run_expiry=False), settings) as url:
        yield url


@pytest.fixture(scope="module")
def dev(database_url: str, server: str) -> Iterator[str]:
    with _server(database_url, environment="development", metrics_token=None) as url:
        yield url


def _raw_get(base: str, target: bytes) -> bytes:
    """GET exactly `target` (no client-side normalisation of the path)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=HANG) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _scrape(base: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{base}/metrics", headers=headers, timeout=HANG)
    assert response.status_code == 200, response.text
    return response.text


def _series(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a valid exposition: (name, labels) -> value. Raises on invalid text."""
    for line in exposition.splitlines():
        assert line.startswith("#") or SAMPLE_LINE.fullmatch(line), line
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def _http_requests(
    series: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> list[dict[str, str]]:
    return [dict(labels) for name, labels in series if name == "coalition_http_requests_total"]


def test_an_injected_path_adds_no_series_and_keeps_the_exposition_valid(dev: str) -> None:
    injected = b"/x%22,status=%22999%22%7D%201e9%0Afake_metric%7Ba=%22b%22%7D%201"
    assert _raw_get(dev, injected).startswith(b"HTTP/1.1 404")
    assert _raw_get(dev, b"/graphql%0Afake_metric%201").startswith(b"HTTP/1.1 404")
    exposition = _scrape(dev)
    assert "fake_metric" not in exposition
    series = _series(exposition)
    assert {name.split("_")[0] for name, _ in series} == {"coalition"}
    for labels in _http_requests(series):
        assert labels["route"] in ROUTES and labels["status"] != "999", labels
    assert {"route": "unmatched", "method": "GET", "status": "404"} in _http_requests(series)


def test_five_thousand_unknown_paths_add_no_series(dev: str) -> None:
    with httpx.Client(base_url=dev, timeout=HANG) as client:
        assert client.get("/unknown/first").status_code == 404
        before = _series(_scrape(dev))
        for n in range(5000):
            assert client.get(f"/unknown/{n}").status_code == 404
    after = _series(_scrape(dev))
    assert after.keys() == before.keys()
    key = (
        "coalition_http_requests_total",
        (("method", "GET"), ("route", "unmatched"), ("status", "404")),
    )
    assert after[key] - before[key] == 5000


def test_series_by_route_template_method_and_status_with_latency(dev: str) -> None:
    from api.settings import load_settings

    with httpx.Client(base_url=dev, timeout=HANG) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/oauth/token").status_code == 405
        too_large = b"x" * (load_settings().max_body_bytes + 1)
        assert client.post("/graphql", content=too_large).status_code == 413
    series = _series(_scrape(dev))
    requests = _http_requests(series)
    assert {"route": "/healthz", "method": "GET", "status": "200"} in requests
    assert {"route": "/oauth/token", "method": "GET", "status": "405"} in requests
    # Refused before routing, still counted under its route.
    assert {"route": "/graphql", "method": "POST", "status": "413"} in requests
    count = (
        "coalition_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "/healthz")),
    )
    assert series[count] >= 1


def test_each_app_counts_its_own_requests(database_url: str, dev: str) -> None:
    with _server(database_url, environment="development", metrics_token=None) as other:
        assert httpx.get(f"{dev}/healthz", timeout=HANG).status_code == 200
        mine = _http_requests(_series(_scrape(other)))
        assert {"route": "/healthz", "method": "GET", "status": "200"} not in mine


def test_production_without_a_token_has_no_metrics(database_url: str, server: str) -> None:
    with _server(database_url, environment="production", metrics_token=None) as prod:
        assert httpx.get(f"{prod}/metrics", timeout=HANG).status_code == 404
        anything = {"Authorization": "Bearer anything"}
        assert httpx.get(f"{prod}/metrics", headers=anything, timeout=HANG).status_code == 404


def test_production_metrics_need_the_token(database_url: str, server: str) -> None:
    token = "m3trics-t0ken"
    with _server(database_url, environment="production", metrics_token=token) as prod:
        url = f"{prod}/metrics"
        refused = httpx.get(url, timeout=HANG)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "coalition_http" not in refused.text
        for wrong in ("Bearer wrong", f"Basic {token}", f"Bearer {token}x", "Bearer é"):
            headers = {b"Authorization": wrong.encode()}
            assert httpx.get(url, headers=headers, timeout=HANG).status_code == 401
        answered = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=HANG)
        assert answered.status_code == 200
        assert answered.headers["content-type"].startswith("text/plain; version=0.0.4")
        _series(answered.text)
