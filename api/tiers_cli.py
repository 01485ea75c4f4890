"""`coalition tiers ...`: the coalition's tiers on the command line."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncEngine

from db.embedded import database_url
from db.engine import create_engine
from db.migrate import upgrade

app = typer.Typer(
    help="Coalition tiers: the policy and the daily evaluation.", no_args_is_help=True
)
console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


def _with_engine(work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `work` against the configured database (migrated first)."""
    url = database_url()
    upgrade(url)

    async def go() -> T:
        engine = create_engine(url, pool_size=2)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


@app.command("evaluate")
def evaluate(
    if_due: Annotated[
        bool,
        typer.Option(
            "--if-due",
            help="Only when due (not yet run this UTC day, or the policy changed since the"
            " last sweep): for a cron job beside workers that run it themselves.",
        ),
    ] = False,
    full: Annotated[
        bool | None,
        typer.Option(
            "--full/--with-tier-only",
            help="Every member, or only members with a tier (default: every member once"
            " after each policy change, else those with a tier).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run the daily tier evaluation now: downgrades after the grace period, upgrades and
    re-mappings a policy change left to do. Exit 1 when another evaluation is running."""
    from points.tiers.evaluation import run_daily

    report = _with_engine(lambda engine: run_daily(engine, force=not if_due, full=full))
    if report is None:
        if if_due:
            console.print("not due (or another evaluation is running, or no tier policy)")
            return
        errors.print("another tier evaluation is running, or no tier policy is set")
        raise typer.Exit(1)
    if as_json:
        data: dict[str, Any] = asdict(report)
        data["as_of"] = report.as_of.isoformat()
        sys.stdout.write(json.dumps(data) + "\n")
        return
    scope = "every member" if report.full_sweep else "members with a tier"
    console.print(
        f"evaluated {report.members} members ({scope}) as of {report.as_of:%Y-%m-%d %H:%M:%S%z}"
        f" under policy v{report.policy_version}: {report.upgraded} upgraded,"
        f" {report.downgraded} downgraded, {report.remapped} re-mapped,"
        f" {report.in_grace} in their grace period",
        highlight=False,
    )


@app.command("policy")
def policy(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the tier policy in force."""
    from points.tiers.policy import current_policy, policy_details

    async def load(engine: AsyncEngine) -> Any:
        async with engine.connect() as conn:
            return await current_policy(conn)

    found = _with_engine(load)
    if found is None:
        console.print("no tier policy is set")
        return
    details = policy_details(found)
    if as_json:
        sys.stdout.write(json.dumps(details, default=_plain) + "\n")
        return
    from api.onboarding_cli import print_table

    rule = found.rule
    console.print(
        f"policy v{found.version} since {found.effective_at:%Y-%m-%d %H:%M:%S%z}:"
        f" {rule.window_days}-day window, {rule.grace_days} days' grace",
        highlight=False,
    )
    print_table(
        ["code", "name", "threshold", "multiplier"],
        [[t.code, t.name, str(t.threshold), str(t.multiplier)] for t in rule.tiers],
    )
    for share in rule.funding:
        funder = "operator" if share.funder is None else str(share.funder)
        console.print(f"funded by {funder}: {share.share}", highlight=False)


def _plain(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
