"""Where the database is: `DATABASE_URL`, or an embedded PostgreSQL under the data directory.

The embedded server comes from the `pgserver` wheel (PostgreSQL 16 binaries), listens only on a
Unix socket inside the data directory, and is left running when the process exits so that a
second `coalition` command (or a restarted server) reuses the same cluster and data.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import quote

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


def embedded_socket_dir(pgdata: Path) -> str:
    """Start (or reuse) the embedded cluster and return the directory of its socket."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(str(pgdata), cleanup_mode=None)  # type: ignore[attr-defined]
    uri: str = server.get_uri()
    return uri.split("host=", 1)[1]


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
