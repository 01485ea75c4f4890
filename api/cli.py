"""The `coalition` command: serve, migrate, clients, expire, settlement."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from api.db_cli import app as db_app
from api.ingest_cli import ingest
from api.onboarding_cli import (
    clients_list,
    clients_revoke,
    partners_app,
    settlement_instructions,
)
from api.settlement_cli import app as settlement_app
from api.staff_cli import app as staff_app
from api.tiers_cli import app as tiers_app
from db.embedded import database_url
from db.migrate import upgrade

app = typer.Typer(
    help="Coalition: one points currency across partner brands.", no_args_is_help=True
)
clients_app = typer.Typer(help="OAuth API clients.", no_args_is_help=True)
app.add_typer(clients_app, name="clients")
app.add_typer(settlement_app, name="settlement")
app.add_typer(db_app, name="db")
app.add_typer(staff_app, name="staff")
app.add_typer(partners_app, name="partners")
app.add_typer(tiers_app, name="tiers")
clients_app.command("list")(clients_list)
clients_app.command("revoke")(clients_revoke)
settlement_app.command("instructions")(settlement_instructions)
app.command("ingest")(ingest)
console = Console()
errors = Console(stderr=True)


def _migrated_url() -> str:
    url = database_url()
    upgrade(url)
    return url


@app.command()
def migrate() -> None:
    """Apply database migrations and exit."""
    _migrated_url()
    console.print("[green]database is up to date[/green]")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    demo: Annotated[bool, typer.Option(help="Seed a demo coalition first.")] = False,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Run the outbox consumers in each server process (off when `coalition worker`"
            " runs them).",
        ),
    ] = True,
) -> None:
    """Apply migrations and serve the API (embedded PostgreSQL without DATABASE_URL)."""
    from api.db_cli import external_database, serving_notices
    from api.http_server import run, uvicorn_config
    from api.settings import load_settings

    url = _migrated_url()
    embedded = external_database() is None
    # Workers and the CLI must reach the same database: pin the resolved URL for them.
    os.environ["DATABASE_URL"] = url
    os.environ["COALITION_RUN_WORKER"] = "1" if worker else "0"  # read by each server process
    if demo:
        from api.demo import seed_demo

        asyncio.run(seed_demo(url, host=host, port=port, console=console))
    # The embedded PostgreSQL outlives serve (the next command reuses it): said when serve
    # starts and when it ends.
    with serving_notices(console, embedded=embedded):
        # An import string: each worker process builds its own app.
        run(uvicorn_config("api.main:app", load_settings(), host=host, port=port, workers=workers))


@clients_app.command("create")
def clients_create(
    scopes: Annotated[str, typer.Option(help='Space-separated scopes, e.g. "points:earn".')],
    operator: Annotated[bool, typer.Option("--operator", help="An operator client.")] = False,
    partner: Annotated[str | None, typer.Option(help="The partner's slug.")] = None,
    name: Annotated[str | None, typer.Option(help="A label for the client.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an API client and print its id and secret (the secret is shown only once)."""
    if operator == (partner is not None):
        errors.print("give exactly one of --operator and --partner SLUG")
        raise typer.Exit(2)
    from api.commands import create_client_command
    from core.errors import DomainError

    try:
        created = asyncio.run(create_client_command(_migrated_url(), partner, scopes.split(), name))
    except DomainError as exc:
        errors.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(1) from exc
    if as_json:
        sys.stdout.write(json.dumps(created) + "\n")
    else:
        console.print(f"client_id:     {created['client_id']}")
        console.print(f"client_secret: {created['client_secret']}")
        console.print(f"scopes:        {created['scopes']}")


@app.command()
def expire() -> None:
    """Close lots past their expiry date and book breakage per issuer."""
    from api.commands import expire_command

    members, points = asyncio.run(expire_command(_migrated_url()))
    console.print(f"expired {points} points of {members} members")


@app.command("worker")
def worker_command(
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs run at once (default COALITION_WORKER_CONCURRENCY).")
    ] = None,
) -> None:
    """Deliver outbox events to their consumers until SIGTERM (graceful) or a second signal."""
    import logging

    from api.worker import run_worker_command

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker_command(_migrated_url(), concurrency=concurrency))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
