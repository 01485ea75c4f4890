"""SIGKILL of `coalition serve` in the middle of a write load loses no acknowledged write and
leaves nothing half-booked; retrying every unanswered request books it at most once.

The server runs as production runs it (a subprocess in its own process group, on the test
database); the load comes from this process over HTTP. After each kill the server is started
again on the same data directory (same signing key, so the same token still works), every
request that got no answer is retried with its idempotency key, and at the end the database
itself is checked:

- every acknowledged write is there: its key's stored result names a transfer that exists,
  is the one the response named, with the points the response gave;
- nothing is half-booked: every earn has its lot, every redemption consumptions adding up to
  its points, every lot's remaining equals its points minus what was taken from it, every
  idempotency key has a result naming an existing transfer and every transfer of the client
  is named by a key;
- every member's wallet (credits minus debits over its transfers) equals its lots' remaining;
- a request is booked at most once (one transfer per reference), a refused one not at all.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.accounts import AccountCode, account_id
from members.service import MemberRef, enroll
from points.service import earn_points
from schema.relay import from_global_id
from tests.conftest import PARTNER_SCOPES, make_client, make_partner, partner_caller, unique_phone
from tests.reliability.helpers import ServedProcess, graphql_errors, serve, token

CYCLES = 3
WORKERS = 8
MEMBERS = 6
LOAD_SECONDS = 1.0

EARN = """mutation($input: EarnPointsInput!) { earnPoints(input: $input) {
  points transfer { id points } errors { code message } } }"""
REDEEM = """mutation($input: RedeemPointsInput!) { redeemPoints(input: $input) {
  points transfer { id points } errors { code message } } }"""


@dataclass
class Request:
    operation: str  # earnPoints | redeemPoints
    key: str
    input: dict[str, Any]

    @property
    def body(self) -> dict[str, Any]:
        query = EARN if self.operation == "earnPoints" else REDEEM
        return {"query": query, "variables": {"input": self.input}}


@dataclass
class Ledgerbook:
    """What the load saw: acknowledged, refused (answered with errors), unanswered."""

    acknowledged: dict[str, tuple[Request, uuid.UUID, int]] = field(default_factory=dict)
    refused: dict[str, Request] = field(default_factory=dict)
    unanswered: list[Request] = field(default_factory=list)
    sent: int = 0
    retried_booked: int = 0
    committed_before_retry: int = 0

    def record(self, request: Request, response: httpx.Response) -> bool:
        """File an answered request; False when it must count as unanswered."""
        if response.status_code != 200:
            return False
        body = response.json()
        if graphql_errors(body):
            return False
        result = body["data"][request.operation]
        if result["errors"]:
            self.refused[request.key] = request
            return True
        transfer = result["transfer"]
        _, transfer_id = from_global_id(transfer["id"], "Transfer")
        assert transfer["points"] == result["points"] > 0
        self.acknowledged[request.key] = (request, transfer_id, int(result["points"]))
        self.refused.pop(request.key, None)
        return True


def _new_request(rng: random.Random, tag: str, phones: list[str]) -> Request:
    phone = rng.choice(phones)
    key = f"crash-{tag}-{uuid.uuid4().hex[:12]}"
    if rng.random() < 0.3:
        return Request(
            "redeemPoints",
            key,
            {
                "member": {"phone": phone},
                "points": rng.randint(1, 30),
                "reference": key,
                "idempotencyKey": key,
            },
        )
    amount = Decimal(rng.randint(100, 20000)) / 100
    return Request(
        "earnPoints",
        key,
        {
            "member": {"phone": phone},
            "amount": str(amount),
            "reference": key,
            "idempotencyKey": key,
        },
    )


async def _load_until_killed(
    served: ServedProcess, bearer: str, phones: list[str], book: Ledgerbook, cycle: int
) -> None:
    """WORKERS concurrent writers; the server is SIGKILLed under them after LOAD_SECONDS."""
    async with httpx.AsyncClient(
        base_url=served.base_url,
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=20,
        limits=httpx.Limits(max_connections=WORKERS),
    ) as http:

        async def worker(n: int) -> None:
            rng = random.Random(f"{cycle}-{n}")
            while True:
                request = _new_request(rng, f"{cycle}-{n}", phones)
                book.sent += 1
                try:
                    response = await http.post("/graphql", json=request.body)
                except httpx.TransportError:
                    book.unanswered.append(request)
                    return
                if not book.record(request, response):
                    raise AssertionError(f"an unexpected answer before the kill: {response.text}")

        workers = [asyncio.create_task(worker(n)) for n in range(WORKERS)]
        await asyncio.sleep(LOAD_SECONDS)
        assert not any(w.done() for w in workers), [w.exception() for w in workers if w.done()]
        await asyncio.to_thread(served.kill)
        await asyncio.gather(*workers)


def _retry(served: ServedProcess, bearer: str, requests: list[Request], book: Ledgerbook) -> None:
    """Send every unanswered request again with its key: each must now get an answer."""
    with httpx.Client(
        base_url=served.base_url, headers={"Authorization": f"Bearer {bearer}"}, timeout=30
    ) as http:
        for request in requests:
            response = http.post("/graphql", json=request.body)
            assert book.record(request, response), response.text
            book.retried_booked += request.key in book.acknowledged
            # A second retry replays the first answer exactly.
            again = http.post("/graphql", json=request.body).json()["data"][request.operation]
            if request.key in book.acknowledged:
                _, transfer_id, points = book.acknowledged[request.key]
                assert again["errors"] == [] and again["points"] == points
                assert from_global_id(again["transfer"]["id"], "Transfer")[1] == transfer_id


async def _setup(engine: AsyncEngine) -> tuple[str, str, list[uuid.UUID], list[str]]:
    partner = await make_partner(engine, earn_rate="1")
    client_id, secret = await make_client(engine, partner.id, PARTNER_SCOPES)
    seeding = partner_caller(partner.id)
    phones = [unique_phone() for _ in range(MEMBERS)]
    member_ids = []
    async with engine.begin() as conn:
        for phone in phones:
            member = await enroll(conn, seeding, phone=phone, partner_ref=None)
            member_ids.append(member.id)
            await earn_points(
                conn,
                seeding,
                member=MemberRef(phone=phone),
                amount=Decimal("200"),
                reference=f"seed-{phone}",
                occurred_at=None,
                idempotency_key=f"seed-{phone}",
            )
    return client_id, secret, member_ids, phones


async def _check_database(
    engine: AsyncEngine, client_id: str, member_ids: list[uuid.UUID], book: Ledgerbook
) -> None:
    async with engine.connect() as conn:
        keys = {
            r.key: r
            for r in await conn.execute(
                text("SELECT key, operation, result FROM idempotency_keys WHERE client_id = :c"),
                {"c": client_id},
            )
        }
        transfers = {
            r.id: r
            for r in await conn.execute(
                text(
                    "SELECT id, code, points, member_id, client_id, reference,"
                    " debit_account_id, credit_account_id FROM transfers"
                    " WHERE member_id = ANY(:m)"
                ),
                {"m": member_ids},
            )
        }
        lots = (
            await conn.execute(
                text(
                    "SELECT l.id, l.transfer_id, l.member_id, l.points, l.remaining,"
                    " COALESCE((SELECT sum(c.points) FROM consumptions c WHERE c.lot_id = l.id), 0)"
                    " AS taken FROM lots l WHERE l.member_id = ANY(:m)"
                ),
                {"m": member_ids},
            )
        ).all()
        consumed = {
            r.transfer_id: int(r.points)
            for r in await conn.execute(
                text(
                    "SELECT transfer_id, sum(points) AS points FROM consumptions"
                    " WHERE transfer_id = ANY(:t) GROUP BY transfer_id"
                ),
                {"t": list(transfers)},
            )
        }

    # Every acknowledged write is there, as acknowledged.
    for key, (request, transfer_id, points) in book.acknowledged.items():
        row = keys.get(key)
        assert row is not None, f"acknowledged {key} has no idempotency key"
        assert row.operation == request.operation
        assert row.result and row.result.get("transfer_id") == str(transfer_id), row.result
        booked = transfers.get(transfer_id)
        assert booked is not None, f"acknowledged {key}: transfer {transfer_id} is missing"
        assert int(booked.points) == points and booked.reference == request.input["reference"]
        assert booked.code == ("EARN" if request.operation == "earnPoints" else "REDEEM")

    # No key claimed without its effect, no effect without its key.
    for key, row in keys.items():
        assert row.result, f"idempotency key {key} was committed without a result"
        named = uuid.UUID(row.result["transfer_id"])
        assert named in transfers, f"key {key} names a transfer that does not exist"
    named_by_keys = {uuid.UUID(r.result["transfer_id"]) for r in keys.values()}
    by_client = {t.id for t in transfers.values() if t.client_id == client_id}
    assert by_client == named_by_keys

    # At most once per request; refused requests booked nothing and kept no key.
    per_reference: dict[str, int] = {}
    for t in transfers.values():
        if t.client_id == client_id:
            per_reference[t.reference] = per_reference.get(t.reference, 0) + 1
    assert all(n == 1 for n in per_reference.values()), per_reference
    for key in book.refused:
        assert key not in keys and key not in per_reference

    # Nothing half-booked.
    lot_of = {lot.transfer_id: lot for lot in lots}
    for t in transfers.values():
        if t.code == "EARN":
            lot = lot_of.get(t.id)
            assert lot is not None and int(lot.points) == int(t.points), t
        elif t.code == "REDEEM":
            assert consumed.get(t.id) == int(t.points), t
    for lot in lots:
        assert int(lot.remaining) == int(lot.points) - int(lot.taken) >= 0, lot

    # Every wallet equals its lots.
    for member_id in member_ids:
        wallet = account_id(AccountCode.MEMBER_WALLET, member_id)
        balance = sum(
            (int(t.points) if t.credit_account_id == wallet else 0)
            - (int(t.points) if t.debit_account_id == wallet else 0)
            for t in transfers.values()
            if t.member_id == member_id
        )
        remaining = sum(int(lot.remaining) for lot in lots if lot.member_id == member_id)
        assert balance == remaining >= 0, (member_id, balance, remaining)


async def test_sigkill_under_write_load_loses_no_acknowledged_write(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    client_id, secret, member_ids, phones = await _setup(engine)
    log = tmp_path / "server.log"
    data_dir = tmp_path / "data"
    book = Ledgerbook()
    served = serve(data_dir=data_dir, log=log, database_url=database_url)
    try:
        bearer = token(served.base_url, client_id, secret)
        for cycle in range(CYCLES):
            before = len(book.unanswered)
            await _load_until_killed(served, bearer, phones, book, cycle)
            assert served.process.poll() is not None
            lost_in_flight = book.unanswered[before:]
            assert lost_in_flight, "the kill should have cut requests in flight"
            # Which of the requests cut by the kill had been committed all the same?
            async with engine.connect() as conn:
                committed = (
                    await conn.execute(
                        text(
                            "SELECT key, result FROM idempotency_keys"
                            " WHERE client_id = :c AND key = ANY(:k)"
                        ),
                        {"c": client_id, "k": [r.key for r in lost_in_flight]},
                    )
                ).all()
            assert all(row.result for row in committed), committed
            book.committed_before_retry += len(committed)
            served = serve(data_dir=data_dir, log=log, database_url=database_url)
            await asyncio.to_thread(_retry, served, bearer, lost_in_flight, book)
        # Bad credentials against the restarted server: refused, and not logged (below).
        bad = httpx.post(
            f"{served.base_url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret + "x"),
            timeout=30,
        )
        assert bad.status_code == 401
        misplaced = httpx.post(
            f"{served.base_url}/graphql",
            json={"query": "{ viewer { clientId } }"},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
        assert misplaced.status_code == 401 and secret not in misplaced.text
        in_url = httpx.post(  # credentials in the URL: refused, and kept out of the access log
            f"{served.base_url}/oauth/token?client_id={client_id}&client_secret={secret}",
            data={"grant_type": "client_credentials"},
            timeout=30,
        )
        assert in_url.status_code == 401 and secret not in in_url.text
        swapped = httpx.post(
            f"{served.base_url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(secret, client_id),
            timeout=30,
        )
        assert swapped.status_code == 401
    finally:
        served.stop()

    await _check_database(engine, client_id, member_ids, book)
    output = log.read_text(errors="replace")
    assert secret not in output and secret[3:] not in output
    assert "Traceback" not in output, output[-5000:]
    acknowledged = len(book.acknowledged)
    print(
        f"\ncrash: {CYCLES} SIGKILL cycles, {book.sent} requests sent,"
        f" {acknowledged - book.retried_booked} acknowledged under load,"
        f" {len(book.unanswered)} cut by the kill and retried ({book.committed_before_retry} had"
        f" committed unanswered and were replayed, {book.retried_booked} booked in all),"
        f" {len(book.refused)} refused; {acknowledged} acknowledged writes checked in SQL"
    )
    assert acknowledged >= 10 * CYCLES
