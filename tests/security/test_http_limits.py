"""The HTTP server's own limits, over raw sockets against the server `coalition serve` runs
(api/http_server.py): the request head's size and header count (431), the time a head or a
body may take to arrive (408, then closed), idle connections, and the cap on connections."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from api.settings import Settings
from tests.conftest import serving

HANG = 15.0  # seconds: only so a broken server fails the test instead of hanging it


@contextlib.contextmanager
def _server(database_url: str, **limits: object) -> Iterator[tuple[str, int]]:
    from api.app import create_app
    from api.settings import load_settings

    assert os.environ.get("COALITION_DATA_DIR")  # set by the `server` fixture
    settings: Settings = dataclasses.replace(load_settings(), **limits)  # type: ignore[arg-type]
    with serving(create_app(database_url, settings=settings, run_expiry=False), settings) as url:
        yield url, int(url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def limited(database_url: str, server: str) -> Iterator[tuple[str, int]]:
    """Default head limits; a head, a body and an idle connection may each take 1 s."""
    with _server(
        database_url, header_timeout_seconds=1, body_timeout_seconds=1, keep_alive_seconds=1
    ) as served:
        yield served


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=HANG)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _exchange(port: int, raw: bytes) -> bytes:
    with _connect(port) as sock:
        # A server that refuses early may reset the connection while we still send; what it
        # answered before that is still read.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(raw)
        return _read_until_closed(sock)


def _status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


def _get(headers: bytes = b"") -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + headers + b"\r\n"


def test_a_normal_request_is_served(limited: tuple[str, int]) -> None:
    response = _exchange(limited[1], _get(b"X-Ok: " + b"a" * 8000 + b"\r\n"))
    assert _status(response) == 200
    assert b'"status":"ok"' in response


def test_a_100_kib_header_is_refused_431_and_others_are_served(
    limited: tuple[str, int],
) -> None:
    base, port = limited
    with _connect(port) as big:
        # The first 20 KiB of a huge header, left pending: other clients are not held up.
        big.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20 * 1024)
        assert httpx.get(f"{base}/healthz", timeout=HANG).status_code == 200
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            big.sendall(b"a" * 80 * 1024 + b"\r\n\r\n")
        response = _read_until_closed(big)
    assert _status(response) == 431
    assert httpx.get(f"{base}/healthz", timeout=HANG).status_code == 200


def test_a_huge_request_line_is_refused_431(limited: tuple[str, int]) -> None:
    response = _exchange(limited[1], b"GET /" + b"a" * 100 * 1024 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert _status(response) == 431


def test_an_oversized_head_pipelined_behind_a_request_leaves_its_answer_whole(
    limited: tuple[str, int],
) -> None:
    """The refusal is not written while the request before it is answered (it would pass for
    that answer): the first request is answered, then the connection closes."""
    first = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    response = _exchange(limited[1], first + _get(b"X-Big: " + b"a" * 100 * 1024 + b"\r\n"))
    assert _status(response) == 200
    assert response.count(b"HTTP/1.1 ") == 1, response[:300]


def test_ten_thousand_headers_are_refused_431(limited: tuple[str, int]) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
    assert _status(_exchange(limited[1], _get(headers))) == 431


def test_the_header_count_is_limited_even_within_the_size_limit(
    limited: tuple[str, int],
) -> None:
    # 100 fields are allowed (Host and Connection are two of them); 101 are refused.
    allowed = b"".join(b"a%d:1\r\n" % i for i in range(98))
    assert _status(_exchange(limited[1], _get(allowed))) == 200
    assert _status(_exchange(limited[1], _get(allowed + b"b:1\r\n"))) == 431


def _trickle_until_closed(sock: socket.socket, piece: bytes) -> tuple[bytes, float]:
    """Send `piece` every 0.1 s until the server answers or closes; what it sent and after
    how long."""
    started = time.monotonic()
    while time.monotonic() - started < HANG:
        try:
            sock.sendall(piece)
        except (ConnectionResetError, BrokenPipeError):
            break
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable:
            break
    return _read_until_closed(sock), time.monotonic() - started


def test_a_head_trickling_in_is_answered_408_and_closed(limited: tuple[str, int]) -> None:
    """Slowloris: sockets that keep sending header bytes are closed once the head has taken
    longer than the header timeout (1 s here), however steadily they send."""
    port = limited[1]
    results: list[tuple[bytes, float]] = []

    def slowloris() -> None:
        with _connect(port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
            results.append(_trickle_until_closed(sock, b"X-a: b\r\n"))

    threads = [threading.Thread(target=slowloris) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG + 5)
    assert len(results) == 10
    for response, seconds in results:
        assert _status(response) == 408
        assert seconds < HANG


def test_a_body_trickling_in_is_answered_408_and_closed(limited: tuple[str, int]) -> None:
    with _connect(limited[1]) as sock:
        sock.sendall(
            b"POST /oauth/token HTTP/1.1\r\nHost: t\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\n"
        )
        response, seconds = _trickle_until_closed(sock, b"a")
    assert _status(response) == 408
    assert seconds < HANG


def test_an_idle_connection_is_closed(limited: tuple[str, int]) -> None:
    """A connection that never sends a request is closed after the keep-alive timeout."""
    with _connect(limited[1]) as sock:
        assert _read_until_closed(sock) == b""


def test_a_keep_alive_connection_still_serves_several_requests(limited: tuple[str, int]) -> None:
    base = limited[0]
    with httpx.Client(base_url=base, timeout=HANG) as client:
        for _ in range(5):
            assert client.get("/healthz").status_code == 200
        assert client.post("/oauth/token", data={"grant_type": "x"}).status_code < 500
    # Pipelined: three requests in one write, each head counted on its own.
    keep = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
    response = _exchange(limited[1], keep + keep + _get())
    assert response.count(b"HTTP/1.1 200 OK") == 3, response[:300]


def test_connections_beyond_the_cap_are_refused_and_open_ones_keep_working(
    database_url: str, server: str
) -> None:
    capped = _server(database_url, max_connections=8, keep_alive_seconds=60)
    with capped as (base, port), httpx.Client(base_url=base, timeout=HANG) as client:
        assert client.get("/healthz").status_code == 200  # one connection, kept alive
        held = [_connect(port) for _ in range(7)]  # the cap: 8 connections
        try:
            for sock in held:  # served, so certainly counted by the server
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            with _connect(port) as extra:
                response = _read_until_closed(extra)
            assert _status(response) == 503  # answered and closed without being read
            assert client.get("/healthz").status_code == 200  # the open one still works
        finally:
            for sock in held:
                sock.close()
        # Closed connections free their places.
        deadline = time.monotonic() + HANG
        while (status := _status(_exchange(port, _get()))) != 200:
            assert time.monotonic() < deadline, status


def test_coalition_serve_with_workers_enforces_the_configured_limits(database_url: str) -> None:
    """`coalition serve --workers 2` builds the same configuration, and the limits set in the
    environment reach the worker processes."""
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        COALITION_DATA_DIR=str(ROOT / ".coalition-test"),
        COALITION_EXPIRY_INTERVAL="0",
        COALITION_MAX_HEADERS="5",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "coalition serve exited"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, "coalition serve did not start"
            time.sleep(0.2)
        # Host and Connection are two of the five fields allowed.
        for _ in range(4):  # whichever worker answers
            assert _status(_exchange(port, _get(b"a:1\r\nb:1\r\nc:1\r\n"))) == 200
            assert _status(_exchange(port, _get(b"a:1\r\nb:1\r\nc:1\r\nd:1\r\n"))) == 431
            big = _get(b"X-Big: " + b"a" * 100 * 1024 + b"\r\n")
            assert _status(_exchange(port, big)) == 431
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
