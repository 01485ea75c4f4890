"""`coalition tiers evaluate` and `coalition tiers policy`, as an operator's cron job runs them."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.cli.test_cli import env_with, run
from tests.conftest import make_partner
from tests.ledger import helpers as h
from tests.tiers.helpers import set_policy, tier_of


async def test_tiers_evaluate_runs_the_daily_evaluation_and_tiers_policy_shows_it(
    tiers_engine: AsyncEngine,
) -> None:
    env = env_with(DATABASE_URL=tiers_engine.url.render_as_string(hide_password=False))
    policy = await set_policy(tiers_engine)
    grocer = await make_partner(tiers_engine)
    member = await h.new_member(tiers_engine, [grocer.id])
    await h.earn(tiers_engine, grocer.id, member, 1500)  # no worker runs: not upgraded yet
    assert await tier_of(tiers_engine, member) == ""

    done = run(["tiers", "evaluate", "--json"], env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["policy_version"] == policy.version
    assert report["full_sweep"] is True  # the first run under this policy sweeps every member
    assert report["members"] >= 1 and report["upgraded"] >= 1
    assert await tier_of(tiers_engine, member) == "SILVER"
    async with tiers_engine.connect() as c:
        runs = await c.scalar(
            text("SELECT count(*) FROM tier_evaluations WHERE policy_version = :v"),
            {"v": policy.version},
        )
    assert runs == 1

    # Already run today under this policy: a cron job asking only when due does nothing.
    again = run(["tiers", "evaluate", "--if-due"], env)
    assert again.returncode == 0 and "not due" in again.stdout, again.stdout + again.stderr
    # Asked outright, it runs again, over the members with a tier only.
    forced = run(["tiers", "evaluate"], env)
    assert forced.returncode == 0 and "members with a tier" in forced.stdout, forced.stdout

    shown = run(["tiers", "policy", "--json"], env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["tiers"][0] == {
        "code": "SILVER",
        "name": "Silver",
        "threshold": 1000,
        "multiplier": "1",
    }
