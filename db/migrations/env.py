"""Alembic environment: runs migrations over the platform's async engine."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

# Every table's model, for Alembic's comparison (autogenerate) only: the one place that imports
# domain models for their side effect of registering tables (settlement's models import the
# ledger's, the members' and the partners'). The migrations themselves carry their SQL as
# literals and import no domain module (tests/db/test_function_drift.py).
import core.audit  # noqa: F401
import settlement.models  # noqa: F401
from db.embedded import database_url
from db.engine import create_engine

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        # Several processes may start at once (workers, CLI): one migrates, the others wait.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7243001)")
        context.run_migrations()


async def _run_async() -> None:
    url = context.config.attributes.get("database_url") or database_url()
    engine = create_engine(url, pool_size=1)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported")
asyncio.run(_run_async())
