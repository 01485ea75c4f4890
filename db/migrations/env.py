"""Alembic environment: runs migrations over the platform's async engine."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from db.embedded import database_url
from db.engine import create_engine
from db.metadata import load_all_models

target_metadata = load_all_models()


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
