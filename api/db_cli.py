"""`coalition db status | start | stop`: the embedded PostgreSQL of the data directory.

Without `DATABASE_URL` every command starts (or reuses) an embedded PostgreSQL under
`COALITION_DATA_DIR/pg` and leaves it running, so the next command finds the same database
at once. These commands show it and stop it. With `DATABASE_URL` set there is no embedded
server: they say so and touch nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from db.embedded import (
    DATABASE_NAME,
    EmbeddedStatus,
    connected_clients,
    database_url,
    embedded_pgdata,
    embedded_status,
    stop_embedded,
)

app = typer.Typer(
    help="The embedded PostgreSQL (used when DATABASE_URL is unset).", no_args_is_help=True
)
console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)

# `coalition db status` exits with pg_ctl's (and LSB's) code for a server that is not running.
NOT_RUNNING = 3


def external_database() -> str | None:
    """DATABASE_URL without its password, when it is set."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return None
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show only its scheme
        return url.split(":", 1)[0] + "://…"


def no_embedded_server(url: str) -> str:
    return (
        f"DATABASE_URL is set ({url}): Coalition uses that PostgreSQL server, so there is no"
        " embedded server to manage. Start and stop that server with its own tools."
    )


def _uri(status: EmbeddedStatus) -> str:
    return f"postgresql://postgres@/{DATABASE_NAME}?host={status.socket_dir}"


def describe(status: EmbeddedStatus) -> list[str]:
    """The lines `coalition db status` prints."""
    state = f"running (pid {status.pid})" if status.running else "not running"
    lines = [f"embedded PostgreSQL {status.version}: {state}"]
    cluster = "" if status.initialized else " (no cluster yet: created on first use)"
    lines.append(f"  data directory: {status.pgdata}{cluster}")
    if status.running:
        lines.append(f"  socket:         {status.socket} (port {status.port}, no TCP listener)")
        if status.started_at is not None:
            lines.append(f"  started:        {status.started_at:%Y-%m-%d %H:%M:%S} UTC")
        lines.append(f"  connect:        psql '{_uri(status)}'")
        lines.append(
            "It keeps running after `coalition serve` exits, for the next command to reuse;"
            " `coalition db stop` stops it."
        )
    else:
        lines.append(
            "Any command that needs the database starts it again (`coalition db start`,"
            " `coalition migrate`, `coalition serve`)."
        )
    return lines


def serving_notice() -> str | None:
    """What `coalition serve` on the embedded PostgreSQL prints when it starts (it has set
    DATABASE_URL for its workers by then, so the caller knows whether it is embedded)."""
    now = embedded_status(embedded_pgdata())
    if not now.running:
        return None
    return (
        f"Database: the embedded PostgreSQL {now.version} (pid {now.pid}, socket {now.socket},"
        f" data in {now.pgdata}). It keeps running after serve exits, for the next command to"
        " reuse; `coalition db stop` stops it."
    )


def exit_notice() -> str | None:
    """What `coalition serve` on the embedded PostgreSQL prints when it stops (it has set
    DATABASE_URL for its workers meanwhile, so the caller knows whether it was embedded)."""
    now = embedded_status(embedded_pgdata())
    if not now.running:
        return None
    return (
        f"The embedded PostgreSQL (pid {now.pid}) is still running, for the next command to"
        " reuse; `coalition db stop` stops it."
    )


class _Terminated(Exception):
    """SIGTERM, once uvicorn has shut the server down and raises it again."""


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


@contextlib.contextmanager
def serving_notices(out: Console, *, embedded: bool) -> Iterator[None]:
    """Around `coalition serve`'s server: on the embedded PostgreSQL, say when it starts and
    when it ends that the database keeps running, and how to stop it. uvicorn ends a server
    stopped by SIGTERM by raising SIGTERM again, which would end the process before the last
    word: that SIGTERM is caught here, and raised again once it is said."""

    def say(notice: str | None) -> None:
        if notice:
            out.print(notice, markup=False, highlight=False, soft_wrap=True)
        sys.stdout.flush()  # before the server's log (and the demo's credentials too)

    say(serving_notice() if embedded else None)
    previous = signal.signal(signal.SIGTERM, _terminated)
    terminated = False
    try:
        yield
    except _Terminated:
        terminated = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        say(exit_notice() if embedded else None)
    if terminated:
        signal.raise_signal(signal.SIGTERM)


def _print(lines: list[str]) -> None:
    for line in lines:
        console.print(line, markup=False)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Whether the embedded PostgreSQL is running: data directory, socket, port, PID, version.

    Exits 0 when it is running, 3 when it is not (as `pg_ctl status`)."""
    external = external_database()
    if external is not None:
        if as_json:
            sys.stdout.write(json.dumps({"embedded": False, "databaseUrl": external}) + "\n")
        else:
            console.print(no_embedded_server(external), markup=False)
        return
    current = embedded_status(embedded_pgdata())
    if as_json:
        sys.stdout.write(json.dumps(current.as_json()) + "\n")
    else:
        _print(describe(current))
    if not current.running:
        raise typer.Exit(NOT_RUNNING)


@app.command()
def start() -> None:
    """Start the embedded PostgreSQL (every command does this by itself when needed)."""
    external = external_database()
    if external is not None:
        errors.print(no_embedded_server(external), markup=False)
        raise typer.Exit(1)
    was_running = embedded_status(embedded_pgdata()).running
    database_url()  # starts it, and creates the application database in a new cluster
    now = embedded_status(embedded_pgdata())
    _print(["already running" if was_running else "started", *describe(now)])


@app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL cleanly.

    A fast shutdown: open transactions are rolled back, sessions closed, a checkpoint written.
    A server still using it answers SERVICE_UNAVAILABLE until the database is back."""
    external = external_database()
    if external is not None:
        errors.print(no_embedded_server(external), markup=False)
        raise typer.Exit(1)
    pgdata = embedded_pgdata()
    running = embedded_status(pgdata)
    if not running.running:
        console.print(f"the embedded PostgreSQL in {pgdata} is not running", markup=False)
        return
    sessions = connected_clients(running)
    stop_embedded(pgdata)
    closed = f"; {sessions} open connection(s) were closed" if sessions else ""
    console.print(
        f"stopped the embedded PostgreSQL (pid {running.pid}) in {pgdata}{closed}", markup=False
    )
