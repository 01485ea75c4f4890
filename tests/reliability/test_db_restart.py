"""PostgreSQL stops under write load and comes back: the server answers cleanly meanwhile and
recovers by itself, without a restart.

The test runs its own embedded PostgreSQL cluster (also when the suite runs on DATABASE_URL),
serves `coalition serve` against it as a subprocess, and drives earns over HTTP while it
stops PostgreSQL (`pg_ctl -m fast stop`, which also cuts the connections in use) and starts
it again. It proves:

- during the outage every request is answered promptly and cleanly: a GraphQL error with
  `extensions.code = SERVICE_UNAVAILABLE` (no stack trace, no INTERNAL_ERROR), and
  `/healthz` answers 503;
- after PostgreSQL is back, the same server process succeeds again at the first attempt:
  the first `/healthz` and every client's first request sent once PostgreSQL accepts
  connections succeed (its pool drops the dead connections by itself), and so does everything
  after; counted in attempts rather than seconds, so a slow machine cannot make it flaky (the
  time it took is printed);
- no write was lost or doubled: every acknowledged earn is booked once, and every earn that
  failed during the outage, retried with its key, is booked at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from db.embedded import embedded_socket_dir, ensure_database
from db.engine import create_engine
from members.service import enroll
from tests.conftest import PARTNER_SCOPES, make_client, make_partner, partner_caller, unique_phone
from tests.reliability.helpers import ServedProcess, graphql_errors, serve, token

WORKERS = 4
EARN = """mutation($input: EarnPointsInput!) { earnPoints(input: $input) {
  points transfer { id } errors { code message } } }"""
ENROLL = """mutation($input: EnrollMemberInput!) { enrollMember(input: $input) {
  member { id } errors { code message } } }"""
BALANCE = """query($ref: MemberRef!) { member(ref: $ref) { balance { available } } }"""
UNAVAILABLE = "SERVICE_UNAVAILABLE"


def pg_ctl(pgdata: Path, *args: str) -> None:
    """Run the embedded cluster's pg_ctl (as the `pgserver` user when we are root)."""
    from pgserver._commands import pg_ctl as run

    run(list(args), pgdata=pgdata, user="pgserver" if os.geteuid() == 0 else None, timeout=60)


def start_postgres(pgdata: Path, socket_dir: str) -> None:
    pg_ctl(
        pgdata, "-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(pgdata / "log"), "start"
    )


def stop_postgres(pgdata: Path) -> None:
    pg_ctl(pgdata, "-w", "-m", "fast", "stop")


def classify(response: httpx.Response, operation: str) -> str:
    """ok | refused (payload errors) | unavailable (the clean outage answer) | anything else."""
    if response.status_code == 503:
        return "unavailable"
    if response.status_code != 200:
        return f"http {response.status_code}: {response.text[:300]}"
    body = response.json()
    errors = graphql_errors(body)
    if errors:
        codes = {(e.get("extensions") or {}).get("code") for e in errors}
        if codes == {UNAVAILABLE} and "Traceback" not in response.text:
            return "unavailable"
        return f"errors: {errors}"
    return "refused" if (body["data"][operation] or {}).get("errors") else "ok"


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    """A directory for the test's own cluster, outside pytest's base temporary directory: when
    running as root, PostgreSQL runs as the `pgserver` user, which must be able to traverse
    the path, and every pytest session that starts meanwhile (another suite on the same
    machine) makes `/tmp/pytest-of-root` private again, locking the cluster out mid-test."""
    path = Path(tempfile.mkdtemp(prefix="coalition-db-restart-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Load:
    """Earns with unique keys from WORKERS concurrent clients, recording every outcome."""

    def __init__(self, served: ServedProcess, bearer: str, phones: list[str]) -> None:
        self.served = served
        self.bearer = bearer
        self.phones = phones
        # (time sent, key, outcome, latency, worker)
        self.outcomes: list[tuple[float, str, str, float, int]] = []
        self.acknowledged: dict[str, str] = {}
        self.failed: dict[str, dict[str, Any]] = {}
        self.stop = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(
            base_url=self.served.base_url,
            headers={"Authorization": f"Bearer {self.bearer}"},
            timeout=30,
        ) as http:
            await asyncio.gather(*(self._worker(http, n) for n in range(WORKERS)))

    async def _worker(self, http: httpx.AsyncClient, n: int) -> None:
        sent = 0
        while not self.stop.is_set():
            sent += 1
            key = f"dbr-{n}-{sent}-{uuid.uuid4().hex[:8]}"
            request = {
                "member": {"phone": self.phones[(n + sent) % len(self.phones)]},
                "amount": "10.00",
                "reference": key,
                "idempotencyKey": key,
            }
            started = time.monotonic()
            response = await http.post(
                "/graphql", json={"query": EARN, "variables": {"input": request}}
            )
            latency = time.monotonic() - started
            outcome = classify(response, "earnPoints")
            self.outcomes.append((started, key, outcome, latency, n))
            if outcome == "ok":
                self.acknowledged[key] = response.json()["data"]["earnPoints"]["transfer"]["id"]
            else:
                self.failed[key] = request
                await asyncio.sleep(0.02)

    async def first_after(self, moment: float) -> dict[int, tuple[str, float]]:
        """Each worker's first request sent after `moment`: its outcome and how long after
        `moment` it was answered (waits for them)."""
        guard = time.monotonic() + 60  # against a hang only; no timing is asserted here
        while True:
            firsts: dict[int, tuple[str, float]] = {}
            for sent, _, outcome, latency, worker in self.outcomes:
                if sent >= moment and worker not in firsts:
                    firsts[worker] = (outcome, sent + latency - moment)
            if len(firsts) == WORKERS:
                return firsts
            assert time.monotonic() < guard, f"no answers after PostgreSQL came back: {firsts}"
            await asyncio.sleep(0.05)


async def test_server_answers_cleanly_while_postgresql_is_down_and_recovers_by_itself(
    cluster_dir: Path,
) -> None:
    tmp_path = cluster_dir
    pgdata = tmp_path / "pg"
    socket_dir = await asyncio.to_thread(embedded_socket_dir, pgdata)
    await asyncio.to_thread(ensure_database, socket_dir, "coalition")
    url = f"postgresql+asyncpg://postgres@/coalition?host={socket_dir}"
    log = tmp_path / "server.log"
    served: ServedProcess | None = None
    secret = ""
    try:
        served = await asyncio.to_thread(
            serve,
            data_dir=tmp_path / "data",
            log=log,
            database_url=url,
            extra_env={"COALITION_DB_POOL_SIZE": "4"},
        )
        engine = create_engine(url, pool_size=1)
        try:
            partner = await make_partner(engine)
            client_id, secret = await make_client(engine, partner.id, PARTNER_SCOPES)
            phones = [unique_phone() for _ in range(4)]
            async with engine.begin() as conn:
                for phone in phones:
                    await enroll(conn, partner_caller(partner.id), phone=phone, partner_ref=None)
        finally:
            await engine.dispose()
        bearer = token(served.base_url, client_id, secret)
        load = Load(served, bearer, phones)
        running = asyncio.create_task(load.run())

        await asyncio.sleep(1.0)
        assert load.acknowledged, load.outcomes[-5:]
        await asyncio.to_thread(stop_postgres, pgdata)
        down_at = time.monotonic()

        # Meanwhile: clean, prompt answers, on every route a partner uses.
        async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
            health = await http.get("/healthz")
            assert health.status_code == 503, health.text
            read = await http.post(
                "/graphql",
                json={"query": BALANCE, "variables": {"ref": {"phone": phones[0]}}},
                headers={"Authorization": f"Bearer {bearer}"},
            )
            assert classify(read, "member") == "unavailable", read.text
            # A token is checked without the database: it is still accepted (then 503/coded).
            await asyncio.sleep(1.5)
        outage = [o for o in load.outcomes if o[0] >= down_at]
        assert outage, "no request was made during the outage"
        assert {o[2] for o in outage} <= {"unavailable"}, [
            o for o in outage if o[2] != "unavailable"
        ]

        await asyncio.to_thread(start_postgres, pgdata, socket_dir)
        up_at = time.monotonic()

        # Recovery without a restart of the server, at the first attempt (README: "within a
        # fraction of a second"): the first health check, and each worker's first earn sent
        # once PostgreSQL accepts connections again.
        async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
            health = await http.get("/healthz")
        assert health.status_code == 200, health.text
        firsts = await load.first_after(up_at)
        outcomes = {worker: outcome for worker, (outcome, _) in firsts.items()}
        assert outcomes == dict.fromkeys(range(WORKERS), "ok"), firsts
        # And promptly: answered ~0.06 s after PostgreSQL was back here. 1 s is the loosest
        # reading of "a fraction of a second", room enough for a loaded shared machine, and
        # still fails a server that waits out a reconnect backoff, a pool timeout (30 s) or a
        # request that hangs through the restart.
        slowest = max(answered for _, answered in firsts.values())
        assert slowest < 1.0, f"answered {slowest:.2f} s after PostgreSQL was back"
        recovered_after = (
            min(o[0] + o[3] for o in load.outcomes if o[0] >= up_at and o[2] == "ok") - up_at
        )
        settle = time.monotonic()
        await asyncio.sleep(1.0)
        load.stop.set()
        await running
        after = [o for o in load.outcomes if o[0] >= settle]
        assert after and all(o[2] == "ok" for o in after), [o for o in after if o[2] != "ok"]
        assert served.process.poll() is None, "the server must have survived the outage"
        assert max(o[3] for o in outage) < 10, "a request hung during the outage"

        # Reads work again, and every write that failed is retried with its key.
        with httpx.Client(
            base_url=served.base_url, headers={"Authorization": f"Bearer {bearer}"}, timeout=30
        ) as http:
            read = http.post(
                "/graphql", json={"query": BALANCE, "variables": {"ref": {"phone": phones[0]}}}
            )
            assert classify(read, "member") == "ok", read.text
            for key, request in load.failed.items():
                retried = http.post(
                    "/graphql", json={"query": EARN, "variables": {"input": request}}
                )
                assert classify(retried, "earnPoints") == "ok", retried.text
                load.acknowledged[key] = retried.json()["data"]["earnPoints"]["transfer"]["id"]

        # A restart nobody noticed: the server's pool still holds connections to the old
        # PostgreSQL. The next write must not fail for it: the dead connection is replaced and
        # the transaction (which never reached COMMIT) runs again.
        await asyncio.to_thread(stop_postgres, pgdata)
        await asyncio.to_thread(start_postgres, pgdata, socket_dir)
        with httpx.Client(
            base_url=served.base_url, headers={"Authorization": f"Bearer {bearer}"}, timeout=30
        ) as http:
            enrolled = http.post(
                "/graphql",
                json={"query": ENROLL, "variables": {"input": {"phone": unique_phone()}}},
            )
            assert classify(enrolled, "enrollMember") == "ok", enrolled.text
            read = http.post(
                "/graphql", json={"query": BALANCE, "variables": {"ref": {"phone": phones[0]}}}
            )
            assert classify(read, "member") == "ok", read.text

        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:
                booked = {
                    r.reference: int(r.n)
                    for r in await conn.execute(
                        text(
                            "SELECT reference, count(*) AS n FROM transfers WHERE client_id = :c"
                            " GROUP BY reference"
                        ),
                        {"c": client_id},
                    )
                }
                half = await conn.scalar(
                    text(
                        "SELECT count(*) FROM transfers t WHERE t.client_id = :c AND NOT EXISTS"
                        " (SELECT 1 FROM lots l WHERE l.transfer_id = t.id AND l.points = t.points)"
                    ),
                    {"c": client_id},
                )
        finally:
            await engine.dispose()
        assert set(booked) == set(load.acknowledged), "an acknowledged earn is missing"
        assert set(booked.values()) == {1}, "an earn was booked twice"
        assert half == 0
        print(
            f"\ndb restart: {len(load.outcomes)} earns under load, {len(outage)} answered"
            f" {UNAVAILABLE} while PostgreSQL was down, first success {recovered_after:.2f}s"
            f" after it was back; {len(load.failed)} failed writes retried, each booked once;"
            " a write right after an unnoticed restart succeeded"
        )
    finally:
        if served is not None:
            served.stop()
        with contextlib.suppress(Exception):  # stopped already
            await asyncio.to_thread(stop_postgres, pgdata)
    output = log.read_text(errors="replace")
    assert secret and secret not in output
    assert "Internal server error" not in output
