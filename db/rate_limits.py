"""The query-cost buckets every API process shares: one row per API client (migration 0008).

A process never charges a request to the row. It leases a slice of the client's budget
(`rate_limit_lease`: refill by elapsed time, capped at capacity, then take the slice) and
spends it in memory (schema/cost.py, SharedCostLimiter), so the row sees one statement per
slice, not one per request, and no request waits on another process's row lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_LEASE = text(
    "SELECT granted, left_over, as_of FROM rate_limit_lease("
    ":client, :capacity, :restore, :need, :want, :partial, :now)"
)
_RETURN = text(
    "SELECT rate_limit_return(CAST(:clients AS text[]), CAST(:points AS float8[]), :capacity)"
)


@dataclass(frozen=True)
class Lease:
    granted: float  # points now this process's to spend
    left_over: float  # what the shared bucket holds after the lease
    as_of: float  # the time the bucket was refilled to (seconds)


class PostgresBuckets:
    """Leases from the `rate_limit_buckets` rows, one autocommit statement each."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def lease(
        self,
        client_id: str,
        *,
        capacity: float,
        restore_rate: float,
        need: float,
        want: float,
        partial: bool,
        now: float | None,
    ) -> Lease:
        """Refill the client's bucket to `now` (the database's clock when None), then take
        `want` points, or at least `need`; nothing when even `need` is not there (or, with
        `partial`, whatever there is)."""
        async with self.engine.connect() as conn:
            # A statement of its own: no BEGIN and COMMIT round trips around it.
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            row = (
                await auto.execute(
                    _LEASE,
                    {
                        "client": client_id,
                        "capacity": float(capacity),
                        "restore": float(restore_rate),
                        "need": float(need),
                        "want": float(want),
                        "partial": partial,
                        "now": now,
                    },
                )
            ).one()
        return Lease(float(row.granted), float(row.left_over), float(row.as_of))

    async def give_back(self, unspent: dict[str, float], *, capacity: float) -> None:
        """Return points leased and never spent (a process stopping), capped at capacity."""
        if not unspent:
            return
        async with self.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(
                _RETURN,
                {
                    "clients": list(unspent),
                    "points": [float(p) for p in unspent.values()],
                    "capacity": float(capacity),
                },
            )
