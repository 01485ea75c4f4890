"""The OAuth token endpoint under attack: secret guessing, Argon2 floods, unknown client ids.

Every test serves an app of its own (so its lockouts never reach the shared `server`) with an
injected clock for the failure throttle and a verifier it can count or hold, and talks to it
over real HTTP. Nothing here measures time: "without Argon2" is a count of verifications,
"at once" is an answer that arrives while every verification is held.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy.ext.asyncio import AsyncEngine

from api.settings import Settings, load_settings
from api.throttle import AuthThrottle, VerifierPool
from partners import clients
from partners.clients import ClientRecord, revoke_client, verify_secret
from tests.api.helpers import make_shop, unique_phone
from tests.conftest import make_client, make_partner, serving

GRANT = {"grant_type": "client_credentials"}
WINDOW = 60.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingVerify:
    """The real verification, counted, and held while `hold` is cleared."""

    def __init__(self) -> None:
        self.calls = 0
        self.running = 0
        self.hold = threading.Event()
        self.hold.set()

    def __call__(self, record: ClientRecord | None, secret: str) -> bool:
        self.calls += 1
        self.running += 1
        try:
            self.hold.wait(60)  # bounded, so a broken test fails instead of hanging
            return verify_secret(record, secret)
        finally:
            self.running -= 1


@contextmanager
def _serve(database_url: str, settings: Settings, **app_options: Any) -> Iterator[str]:
    """The app with these settings (and throttle, verifier), served over HTTP."""
    from api.app import create_app

    app = create_app(database_url, settings=settings, run_expiry=False, **app_options)
    with serving(app, settings) as url:
        yield url


@pytest.fixture
def serve(database_url: str, server: str) -> Callable[..., Any]:
    """`serve(throttle=..., verifier=..., **settings)`: a context manager serving an app of
    its own. The throttle is off unless given or set; the `server` fixture has set the data
    directory, so these apps sign with the same key."""

    def start(
        *,
        throttle: AuthThrottle | None = None,
        verifier: VerifierPool | None = None,
        **overrides: Any,
    ) -> Any:
        off = {"auth_client_failures": 0, "auth_address_failures": 0}
        settings = dataclasses.replace(load_settings(), **{**off, **overrides})
        return _serve(database_url, settings, auth_throttle=throttle, secret_verifier=verifier)

    return start


def _token(http: httpx.Client, client_id: str, secret: str) -> httpx.Response:
    return http.post("/oauth/token", data=GRANT, auth=(client_id, secret))


def _assert_throttled(response: httpx.Response, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "too_many_requests" and "access_token" not in body
    assert response.headers["retry-after"] == str(retry_after)
    assert response.headers["cache-control"] == "no-store"


# ---- per client id -------------------------------------------------------------------------


async def test_wrong_secrets_lock_the_client_id_until_the_window_passes(
    engine: AsyncEngine, serve: Callable[..., Any]
) -> None:
    partner = await make_partner(engine)
    client_id, secret = await make_client(engine, partner.id, ["members:read"])
    other_id, other_secret = await make_client(engine, partner.id, ["members:read"])
    clock, verify = Clock(), CountingVerify()
    throttle = AuthThrottle(client_failures=5, address_failures=0, window=WINDOW, clock=clock)
    with (
        serve(throttle=throttle, verifier=VerifierPool(1, 8, verify)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        for n in range(5):
            wrong = _token(http, client_id, secret + str(n))
            assert wrong.status_code == 401, wrong.text
            assert wrong.json()["error"] == "invalid_client"
        assert verify.calls == 5
        # Locked: even the right secret is refused, and no Argon2 runs for it.
        _assert_throttled(_token(http, client_id, secret), retry_after=60)
        form = {**GRANT, "client_id": client_id, "client_secret": secret}
        _assert_throttled(http.post("/oauth/token", data=form), retry_after=60)
        for path in ("/oauth/introspect", "/oauth/revoke"):
            refused = http.post(path, data={"token": "x"}, auth=(client_id, secret))
            _assert_throttled(refused, retry_after=60)
        assert verify.calls == 5
        # Another client from the same address is not affected.
        assert _token(http, other_id, other_secret).status_code == 200
        clock.now += 45
        _assert_throttled(_token(http, client_id, secret), retry_after=15)
        clock.now += 15  # the window has passed
        response = _token(http, client_id, secret)
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]


async def test_unknown_client_ids_are_throttled_like_known_ones(
    engine: AsyncEngine, serve: Callable[..., Any]
) -> None:
    partner = await make_partner(engine)
    client_id, secret = await make_client(engine, partner.id, ["members:read"])
    clock = Clock()
    throttle = AuthThrottle(client_failures=3, address_failures=0, window=WINDOW, clock=clock)
    unknown = "cl_" + secrets.token_urlsafe(12)
    answers: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    with serve(throttle=throttle) as url, httpx.Client(base_url=url, timeout=30) as http:
        for name, guess in (("known", client_id), ("unknown", unknown)):
            answers[name] = []
            for _ in range(4):
                response = _token(http, guess, secret + "x")
                answers[name].append((response.status_code, response.json()))
    # The same answers, in the same order: a lockout tells nothing about which ids exist.
    assert answers["known"] == answers["unknown"]
    assert [status for status, _ in answers["known"]] == [401, 401, 401, 429]


# ---- per address ---------------------------------------------------------------------------


async def test_failures_across_client_ids_lock_the_address_and_successes_never_count(
    engine: AsyncEngine, serve: Callable[..., Any]
) -> None:
    partner = await make_partner(engine)
    honest = [await make_client(engine, partner.id, ["members:read"]) for _ in range(12)]
    clock, verify = Clock(), CountingVerify()
    throttle = AuthThrottle(client_failures=0, address_failures=5, window=WINDOW, clock=clock)
    with (
        serve(throttle=throttle, verifier=VerifierPool(1, 8, verify)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        # Many clients succeeding from one address, again and again: never throttled.
        for _ in range(3):
            for client_id, secret in honest:
                assert _token(http, client_id, secret).status_code == 200
        # Four failures, each with another id (known or not): still under the limit.
        guesses = [
            (honest[0][0], "wrong"),
            ("cl_nobody", "x"),
            (honest[1][0], honest[0][1]),  # another client's secret
            (honest[0][1], honest[0][0]),  # swapped
        ]
        for guess in guesses:
            assert _token(http, *guess).status_code == 401
        assert _token(http, *honest[2]).status_code == 200
        assert _token(http, "cl_" + secrets.token_urlsafe(12), "x").status_code == 401
        # Five failures: the address is refused whatever it sends, without Argon2.
        calls = verify.calls
        for client_id, secret in honest[:3]:
            _assert_throttled(_token(http, client_id, secret), retry_after=60)
        _assert_throttled(http.post("/oauth/token", data=GRANT), retry_after=60)
        assert verify.calls == calls
        clock.now += WINDOW
        for client_id, secret in honest:
            assert _token(http, client_id, secret).status_code == 200


def test_the_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "COALITION_AUTH_CLIENT_FAILURES": "3",
        "COALITION_AUTH_ADDRESS_FAILURES": "0",
        "COALITION_AUTH_FAILURE_WINDOW": "120",
        "COALITION_AUTH_VERIFY_WORKERS": "2",
        "COALITION_AUTH_VERIFY_QUEUE": "4",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.auth_client_failures, settings.auth_address_failures) == (3, 0)
    assert settings.auth_failure_window == 120
    assert (settings.auth_verify_workers, settings.auth_verify_queue) == (2, 4)


async def test_the_settings_limit_the_served_app_and_zero_disables(
    engine: AsyncEngine, serve: Callable[..., Any]
) -> None:
    partner = await make_partner(engine)
    client_id, secret = await make_client(engine, partner.id, ["members:read"])
    with serve(auth_client_failures=3) as url, httpx.Client(base_url=url, timeout=30) as http:
        statuses = [_token(http, client_id, "wrong").status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        assert _token(http, client_id, secret).status_code == 429
    with serve() as url, httpx.Client(base_url=url, timeout=30) as http:  # both 0
        for _ in range(30):
            assert _token(http, client_id, "wrong").status_code == 401
        assert _token(http, client_id, secret).status_code == 200


def test_a_stranger_cannot_lock_a_partner_out_from_another_address() -> None:
    """Client ids are not secret: failures from one address lock that id there only, so the
    partner's own tills keep getting tokens (its address is held to its own limit)."""
    clock = Clock()
    throttle = AuthThrottle(client_failures=3, address_failures=0, window=WINDOW, clock=clock)
    for _ in range(3):
        throttle.failed("cl_partner", "203.0.113.9")
    assert throttle.retry_after("cl_partner", "203.0.113.9") == 60
    assert throttle.retry_after("cl_partner", "198.51.100.4") is None


def test_ipv6_addresses_are_limited_per_64_and_ipv4_mapped_as_ipv4() -> None:
    from api.throttle import address_key

    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.7") == address_key("192.0.2.7") == "192.0.2.7"
    assert address_key(None) is None


# ---- the cost of an unknown client id ------------------------------------------------------


class RecordingHasher(PasswordHasher):
    """Cheap Argon2 (as this package's conftest) that records every hash it verifies against."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)


async def test_unknown_and_revoked_ids_cost_one_verification_like_a_wrong_secret(
    engine: AsyncEngine, serve: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = RecordingHasher()
    monkeypatch.setattr(clients, "_hasher", hasher)
    partner = await make_partner(engine)
    client_id, secret = await make_client(engine, partner.id, ["members:read"])
    revoked_id, revoked_secret = await make_client(engine, partner.id, ["members:read"])
    async with engine.begin() as conn:
        stored = await clients.load_client(conn, client_id)
        await revoke_client(conn, revoked_id)
    assert stored is not None
    attempts = {
        "wrong secret": (client_id, secret + "x"),
        "unknown id": ("cl_" + secrets.token_urlsafe(12), secret),
        "revoked id": (revoked_id, revoked_secret),
        "overlong id": ("cl_" + "x" * 5000, secret),
        "id with a NUL": (client_id + "\x00", secret),  # was a 500 from PostgreSQL
    }
    with serve() as url, httpx.Client(base_url=url, timeout=30) as http:
        bodies = set()
        for name, (guess_id, guess_secret) in attempts.items():
            hasher.verified.clear()
            response = _token(http, guess_id, guess_secret)
            assert response.status_code == 401, (name, response.text)
            bodies.add(response.text)
            # One verification, against a hash of the same parameters as a real client's.
            assert len(hasher.verified) == 1, name
            assert extract_parameters(hasher.verified[0]) == extract_parameters(
                stored.secret_hash
            ), name
        assert len(bodies) == 1, bodies
        hasher.verified.clear()
        assert _token(http, client_id, secret).status_code == 200
        assert hasher.verified == [stored.secret_hash]


# ---- the bounded Argon2 queue --------------------------------------------------------------


async def test_a_full_verification_queue_answers_503_at_once_and_earns_go_on(
    engine: AsyncEngine, serve: Callable[..., Any]
) -> None:
    verify = CountingVerify()
    pool = VerifierPool(workers=1, queue=1, verify=verify)
    # A single failure would lock the client and the address: a 503 must not count as one.
    throttle = AuthThrottle(client_failures=1, address_failures=1, window=WINDOW, clock=Clock())
    with serve(throttle=throttle, verifier=pool) as url:
        shop = await make_shop(engine, url)
        phone = unique_phone()
        shop.enroll(phone)  # the shop's token is taken here, unheld
        creds = (shop.api.client_id, shop.api.client_secret)

        def token_request() -> httpx.Response:
            with httpx.Client(base_url=url, timeout=60) as http:
                return _token(http, *creds)

        verify.hold.clear()
        verify.calls = 0
        with concurrent.futures.ThreadPoolExecutor(2) as background:
            held = [background.submit(token_request) for _ in range(2)]
            try:
                deadline = time.monotonic() + 20
                while pool.admitted < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert pool.admitted == 2 and verify.running == 1  # one running, one waiting
                with httpx.Client(base_url=url, timeout=30) as http:
                    busy = _token(http, *creds)
                    # Answered while every verification is still held: it waited for none.
                    assert not any(f.done() for f in held)
                    assert busy.status_code == 503, busy.text
                    assert busy.json()["error"] == "temporarily_unavailable"
                    assert busy.headers["retry-after"] == "1"
                    # Earning needs no Argon2: it goes through while the pool is full.
                    earned = shop.earn_ok({"phone": phone}, "150")
                    assert earned["points"] == 150
                    assert http.get("/healthz").status_code == 200
                assert verify.calls == 1
            finally:
                verify.hold.set()  # never leave a server thread held
            assert [f.result().status_code for f in held] == [200, 200]
        assert verify.calls == 2 and pool.admitted == 0
        # The 503 was no failure: neither the client nor the address is locked.
        assert shop.api.token()


# ---- bounded memory ------------------------------------------------------------------------


def test_the_throttle_memory_stays_bounded() -> None:
    clock = Clock()
    throttle = AuthThrottle(
        client_failures=5, address_failures=5, window=WINDOW, clock=clock, max_keys=1000
    )
    for n in range(100_000):
        throttle.failed(f"cl_{n}", f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert len(throttle.clients) == 1000 and len(throttle.addresses) == 1000
    # A huge id is kept as a short digest, not as itself.
    throttle.failed("x" * 1_000_000, None)
    assert max(len(k) for k in throttle.clients._failures) <= 100
    # Keys whose window has passed are forgotten as new failures come in.
    clock.now += WINDOW
    throttle.failed("cl_new", "10.255.255.255")
    assert len(throttle.clients) == 1 and len(throttle.addresses) == 1


async def test_one_request_is_one_verification_whatever_credentials_it_carries(
    engine: AsyncEngine, serve: Callable[..., Any]
) -> None:
    partner = await make_partner(engine)
    client_id, secret = await make_client(engine, partner.id, ["members:read"])
    verify = CountingVerify()
    with (
        serve(verifier=VerifierPool(1, 8, verify)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        # RFC 6749 §2.3: one authentication method per request. A wrong Basic secret is not
        # rescued by a right one in the form (that would be two Argon2 runs for one request).
        both = {**GRANT, "client_id": client_id, "client_secret": secret}
        response = http.post("/oauth/token", data=both, auth=(client_id, secret + "x"))
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
        assert verify.calls == 1
        # No secret at all: refused without any verification.
        response = http.post("/oauth/token", data={**GRANT, "client_id": client_id})
        assert response.status_code == 401 and verify.calls == 1
        assert _token(http, client_id, secret).status_code == 200 and verify.calls == 2
