"""A `coalition serve` subprocess for the reliability tests: start, wait, kill, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServedProcess:
    """One `coalition serve` in its own process group, its output appended to `log`."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown handler, no flush, no goodbye."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


def serve(
    *,
    data_dir: Path,
    log: Path,
    database_url: str | None,
    port: int | None = None,
    timeout: float = 90,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> ServedProcess:
    """Start `python -m api.cli serve` as production runs it and wait for /healthz."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COALITION_")}
    env.pop("DATABASE_URL", None)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(
        COALITION_DATA_DIR=str(data_dir),
        COALITION_ENV="production",
        COALITION_EXPIRY_INTERVAL="0",
        COALITION_TOKEN_TTL="3600",
        # These tests are about durability, not about the per-client cost budget.
        COALITION_RATE_LIMIT_CAPACITY="1000000000",
        COALITION_RATE_LIMIT_RESTORE="1000000000",
        **(extra_env or {}),
    )
    port = port or free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port), *args],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = ServedProcess(process, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{served.base_url}/healthz", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    served.kill()
    raise RuntimeError(f"the server did not start:\n{log.read_text()}")


def token(base_url: str, client_id: str, secret: str) -> str:
    response = httpx.post(
        f"{base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    value: str = response.json()["access_token"]
    return value


def graphql_errors(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return []
    errors: list[dict[str, Any]] = body.get("errors") or []
    return errors
