"""`coalition staff ...`: the operator console's staff accounts."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncConnection

from api.commands import run_in_transaction
from api.onboarding_cli import print_table
from console.staff import (
    Role,
    StaffError,
    create_staff,
    disable_staff,
    list_staff,
    new_password,
    reset_password,
)
from core.audit import CLI_ACTOR

app = typer.Typer(help="Staff accounts of the operator console (/console).", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


def _run(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    return run_in_transaction(work, refused=(StaffError,))


@app.command("create")
def create(
    email: Annotated[str, typer.Option(help="The staff member's email (their sign-in name).")],
    role: Annotated[
        str, typer.Option(help="admin | finance | marketing | support.", case_sensitive=False)
    ],
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from standard input (first line)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a console user; prints a one-time password unless --password-stdin."""
    if role.lower() not in {r.value for r in Role}:
        errors.print(f"--role must be one of {', '.join(r.value for r in Role)}")
        raise typer.Exit(2)
    generated = not password_stdin
    password = new_password() if generated else sys.stdin.readline().rstrip("\r\n")
    staff = _run(
        lambda conn: create_staff(
            conn, email=email, role=role.lower(), password=password, actor=CLI_ACTOR
        )
    )
    if as_json:
        out = {"email": staff.email, "role": str(staff.role)}
        if generated:
            out["password"] = password
        sys.stdout.write(json.dumps(out) + "\n")
        return
    console.print(f"email:    {staff.email}", markup=False, highlight=False)
    console.print(f"role:     {staff.role}", markup=False, highlight=False)
    if generated:
        console.print(f"password: {password}   (shown only now)", markup=False, highlight=False)


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List staff accounts."""
    rows = _run(list_staff)
    if as_json:
        data = [
            {
                "id": str(r.id),
                "email": r.email,
                "role": str(r.role),
                "createdAt": r.created_at.isoformat(),
                "disabledAt": r.disabled_at.isoformat() if r.disabled_at else None,
            }
            for r in rows
        ]
        sys.stdout.write(json.dumps(data) + "\n")
        return
    print_table(
        ["email", "role", "created_at", "disabled_at"],
        [[r.email, str(r.role), str(r.created_at), str(r.disabled_at or "")] for r in rows],
    )


@app.command("disable")
def disable(email: Annotated[str, typer.Argument(help="The staff member's email.")]) -> None:
    """Disable a staff account and end its console sessions at once."""
    staff = _run(lambda conn: disable_staff(conn, email, actor=CLI_ACTOR))
    console.print(f"disabled {staff.email}; its sessions have ended", markup=False)


@app.command("reset-password")
def reset(
    email: Annotated[str, typer.Argument(help="The staff member's email.")],
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from standard input (first line)."
        ),
    ] = False,
) -> None:
    """Give a staff account a new password (prints a one-time one unless --password-stdin),
    enable it again and end its sessions."""
    generated = not password_stdin
    password = new_password() if generated else sys.stdin.readline().rstrip("\r\n")
    staff = _run(lambda conn: reset_password(conn, email, password, actor=CLI_ACTOR))
    console.print(f"email:    {staff.email}", markup=False, highlight=False)
    if generated:
        console.print(f"password: {password}   (shown only now)", markup=False, highlight=False)
