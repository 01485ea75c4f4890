"""Where the database is: `DATABASE_URL`, or an embedded PostgreSQL under the data directory.

The embedded server comes from the `pgserver` wheel (PostgreSQL 16 binaries), listens only on a
Unix socket inside the data directory, and is left running when the process exits so that a
second `coalition` command (or a restarted server) reuses the same cluster and data.
`coalition db status | start | stop` show and manage it (`embedded_status`, `stop_embedded`).
"""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import subprocess
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

logging.getLogger("pgserver").setLevel(logging.WARNING)

DEFAULT_DATA_DIR = ".coalition"
DATABASE_NAME = "coalition"


def data_dir() -> Path:
    path = Path(os.environ.get("COALITION_DATA_DIR", DEFAULT_DATA_DIR)).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _asyncpg_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got {url.split(':', 1)[0]!r}")


def embedded_pgdata() -> Path:
    """The embedded cluster's directory for the configured data directory (nothing created)."""
    return (
        Path(os.environ.get("COALITION_DATA_DIR", DEFAULT_DATA_DIR)).expanduser().resolve() / "pg"
    )


# Clusters this process started (not those it found running): the test suite stops them.
_started_here: list[Path] = []


def started_by_this_process() -> list[Path]:
    return list(_started_here)


def _pgserver() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
        import pgserver.postgres_server

        return pgserver.postgres_server


def start_embedded(pgdata: Path) -> tuple[str, bool]:
    """Start (or reuse) the embedded cluster: the directory of its socket, and whether this
    call started it (False when it was running already)."""
    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    was_running = embedded_status(pgdata).running
    module = _pgserver()
    if not was_running:
        # pgserver caches a handle per directory for the life of the process; after a stop
        # that handle describes a server that is gone, so it is dropped to start anew.
        _forget_handle(module, pgdata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = module.get_server(str(pgdata), cleanup_mode=None)
    uri: str = server.get_uri()
    if not was_running and pgdata not in _started_here:
        _started_here.append(pgdata)
    return uri.split("host=", 1)[1], not was_running


def embedded_socket_dir(pgdata: Path) -> str:
    """Start (or reuse) the embedded cluster and return the directory of its socket."""
    return start_embedded(pgdata)[0]


@dataclass(frozen=True)
class EmbeddedStatus:
    """What `coalition db status` reports about a data directory's embedded PostgreSQL."""

    pgdata: Path
    initialized: bool  # a cluster exists in `pgdata` (created on first use)
    version: str  # of the PostgreSQL binaries that run it, e.g. "16.2"
    pid: int | None = None  # the postmaster's; None when not running
    socket_dir: str | None = None
    port: int | None = None
    started_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def socket(self) -> str | None:
        if self.socket_dir is None or self.port is None:
            return None
        return f"{self.socket_dir}/.s.PGSQL.{self.port}"

    def as_json(self) -> dict[str, Any]:
        return {
            "embedded": True,
            "running": self.running,
            "dataDir": str(self.pgdata),
            "initialized": self.initialized,
            "version": self.version,
            "pid": self.pid,
            "socketDir": self.socket_dir,
            "port": self.port,
            "socket": self.socket,
            "startedAt": self.started_at.isoformat() if self.started_at else None,
        }


def _bin(name: str) -> Path:
    return Path(_pgserver().__file__).parent / "pginstall" / "bin" / name


def postgres_version() -> str:
    """The version of the embedded PostgreSQL binaries ("16.2")."""
    out = subprocess.run(
        [str(_bin("postgres")), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return out.strip().rsplit(" ", 1)[-1]


def _is_postmaster(pid: int, pgdata: Path) -> bool:
    """Whether `pid` is a live PostgreSQL process (a stale postmaster.pid may name a pid
    that has since been reused by something else)."""
    try:
        process = psutil.Process(pid)
        if process.name() != "postgres" or process.status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.Error:
        return False
    try:
        return str(pgdata) in process.cmdline()  # not another cluster's postmaster
    except psutil.AccessDenied:
        return True
    except psutil.Error:
        return False


def embedded_status(pgdata: Path) -> EmbeddedStatus:
    """The cluster's state from its postmaster.pid, without starting or creating anything."""
    pgdata = pgdata.expanduser().resolve()
    status = EmbeddedStatus(pgdata, (pgdata / "PG_VERSION").exists(), postgres_version())
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, IndexError, ValueError):
        return status  # no server, or one writing its pid file this very moment
    if not _is_postmaster(pid, pgdata):
        return status  # left behind by a server that did not shut down cleanly

    def line(n: int) -> str:
        return lines[n].strip() if len(lines) > n else ""

    started = line(2)
    return EmbeddedStatus(
        pgdata,
        status.initialized,
        status.version,
        pid=pid,
        socket_dir=line(4) or None,
        port=int(line(3)) if line(3).isdigit() else None,
        started_at=datetime.fromtimestamp(int(started), UTC) if started.isdigit() else None,
    )


def _system_user() -> str | None:
    """PostgreSQL refuses to run as root: pgserver runs it as `pgserver` then, and so must
    every pg_ctl that manages it."""
    return "pgserver" if os.geteuid() == 0 else None


def connected_clients(status: EmbeddedStatus) -> int:
    """Client sessions open on a running cluster (0 when it cannot be asked)."""
    if status.socket_dir is None:
        return 0
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    result = subprocess.run(
        [
            str(_bin("psql")),
            "-h",
            status.socket_dir,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
            query,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return int(result.stdout.strip()) if result.stdout.strip().isdigit() else 0


def stop_embedded(pgdata: Path, *, timeout: int = 60) -> EmbeddedStatus:
    """Stop the cluster cleanly and wait for it: a fast shutdown, which rolls back open
    transactions, closes every session and writes a checkpoint (a server still using it sees
    its connections end). Returns the status it had before, not running when it was not."""
    before = embedded_status(pgdata)
    if not before.running:
        return before
    module = _pgserver()
    # pgserver makes its command wrappers at import time (invisible to a type checker).
    pg_ctl = importlib.import_module("pgserver._commands").pg_ctl
    # pgserver's own lock: no other `coalition` command starts the cluster meanwhile.
    with module.PostgresServer._lock:
        pg_ctl(
            ["-w", "-t", str(timeout), "-m", "fast", "stop"],
            pgdata=before.pgdata,
            user=_system_user(),
            timeout=timeout + 10,
        )
    _forget_handle(module, before.pgdata)
    return before


def _forget_handle(module: Any, pgdata: Path) -> None:
    """Drop pgserver's cached handle of a stopped cluster, and the exit hook it registered:
    run at exit for a handle already dropped, that hook fails with a KeyError."""
    handle = module.PostgresServer._instances.pop(pgdata, None)
    if handle is not None:
        atexit.unregister(handle._cleanup)


def other_handles(pgdata: Path) -> list[int]:
    """Live processes other than this one that opened the cluster through pgserver (its
    `.handle_pids.json`; a process removes itself when it exits normally)."""
    try:
        pids = json.loads((pgdata / ".handle_pids.json").read_text())
    except (OSError, ValueError):
        return []
    return [p for p in pids if isinstance(p, int) and p != os.getpid() and psutil.pid_exists(p)]


def ensure_database(socket_dir: str, name: str) -> None:
    """Create the application database in the embedded cluster if it is missing."""
    import subprocess

    import pgserver

    psql = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    exists = subprocess.run(
        [
            str(psql),
            "-h",
            socket_dir,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{name}'",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run(
            [
                str(psql),
                "-h",
                socket_dir,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                f'CREATE DATABASE "{name}"',
            ],
            check=True,
            capture_output=True,
            text=True,
        )


def database_url() -> str:
    """The SQLAlchemy URL of the coalition database, starting the embedded server if needed."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return _asyncpg_url(url)
    socket_dir = embedded_socket_dir(data_dir() / "pg")
    ensure_database(socket_dir, DATABASE_NAME)
    return f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?host={quote(socket_dir)}"
