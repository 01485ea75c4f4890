"""In production `coalition serve` logs JSON lines, in every process (the supervisor and each
worker): time, level, logger, message and the request id, and for each request an access
line with its method, route template, path, status and duration. Client mistakes are INFO
lines without a traceback; credentials a caller put in a URL are not logged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import make_client, make_partner
from tests.reliability.helpers import serve

HANG = 30.0


async def test_production_logs_are_json_lines_with_request_ids(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    partner = await make_partner(engine)
    client_id, secret = await make_client(engine, partner.id, ["members:read"])
    log = tmp_path / "server.log"
    served = serve(
        data_dir=tmp_path / "data", log=log, database_url=database_url, args=("--workers", "2")
    )
    try:
        base = served.base_url
        with httpx.Client(base_url=base, timeout=HANG) as http:
            assert http.get("/healthz", headers={"X-Request-ID": "logs-1"}).status_code == 200
            assert http.get("/nope?client_secret=cs_in_the_url").status_code == 404
            refused = http.post(
                "/graphql",
                json={"query": "{ viewer { clientId } }"},
                headers={"X-Request-ID": "logs-2"},
            )
            assert refused.status_code == 401
            token = http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(client_id, secret),
            ).json()["access_token"]
            invalid = http.post(
                "/graphql",
                json={"query": "{ viewer { noSuchField } }"},
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": "logs-3"},
            )
            assert invalid.status_code == 200 and invalid.json()["errors"]
    finally:
        served.stop()

    output = log.read_text()
    lines: list[dict[str, Any]] = []
    for text in output.splitlines():
        if text.strip():
            entry = json.loads(text)  # every line, from every process
            assert {"time", "level", "logger", "message", "request_id"} <= entry.keys(), entry
            lines.append(entry)
    # Both workers logged, as JSON.
    assert sum(e["message"].startswith("Started server process") for e in lines) == 2, lines

    def access(request_id: str) -> dict[str, Any]:
        [line] = [
            e for e in lines if e["logger"] == "coalition.access" and e["request_id"] == request_id
        ]
        return line

    healthz = access("logs-1")
    assert healthz["level"] == "INFO" and healthz["message"].startswith("GET /healthz 200 ")
    assert (healthz["method"], healthz["route"], healthz["path"], healthz["status"]) == (
        "GET",
        "/healthz",
        "/healthz",
        200,
    )
    assert isinstance(healthz["duration_ms"], float) and healthz["duration_ms"] > 0
    assert access("logs-2")["status"] == 401
    # A validation error: one INFO line with the request's id, no traceback.
    assert access("logs-3")["status"] == 200
    [graphql] = [
        e for e in lines if e["request_id"] == "logs-3" and e["logger"] != "coalition.access"
    ]
    assert graphql["logger"] == "coalition.graphql" and graphql["level"] == "INFO"
    assert "exception" not in graphql and "noSuchField" in graphql["message"]
    unmatched = [e for e in lines if e.get("route") == "unmatched"]
    assert [(e["path"], e["status"]) for e in unmatched] == [("/nope", 404)]
    assert "cs_in_the_url" not in output and secret not in output
    assert "Traceback" not in output
