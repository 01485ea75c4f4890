"""The campaign versions in force at any time: what the earn engine prices a purchase with.

The earn path already reads the coalition's settings row in its preflight; it adds
`CATALOG_REVISION_COLUMN` (`s.campaigns_revision`) to it and calls

    campaigns = await rules_at(conn, revision, occurred_at)  # or campaigns_in_force

which answers from a per-process cache while the revision is unchanged (no database round
trip), and otherwise loads the catalog once (one statement) and caches it. Every campaign
change bumps the revision in its own transaction, so a change is seen by the next earn that
reads the settings row after it committed, in every process.

What `rules_at(when)` returns: per campaign, the version with the greatest `effective_at <=
when`, if that version is ACTIVE and its schedule holds `when` (`starts_at <= when <
ends_at`), with its condition compiled; in stacking order (`points.rules.campaigns.
stacking_order`: higher priority first). A campaign archived since still prices a purchase
that happened while it was active (a replay, a batch of yesterday's receipts).

How: every ACTIVE version is a segment of time `[max(effective_at, starts_at), min(next
version's effective_at, ends_at))`. Their ends cut time into slices within which the same
versions are in force; `rules_at` finds the slice by bisection (O(log n)) and computes each
slice's campaigns once, on first use. Conditions are compiled once per text
(`compile_condition` caches them), so a reload after one change compiles only that change.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import AsyncConnection

from points.campaigns.records import VERSION_COLUMNS, version_of
from points.rules.campaigns import CompiledCampaign, compile_campaign, stacking_order
from points.rules.cel import ConditionError

log = logging.getLogger("coalition.campaigns")

CATALOG_REVISION_COLUMN = "s.campaigns_revision"
"""The column to add to a preflight that reads `coalition_settings s`."""

# One statement, so one snapshot: the revision and the versions it counts. Every ACTIVE
# version with the effective_at of the version after it (NULL: none yet).
_LOAD = text(
    "SELECT s.campaigns_revision AS revision, x.* FROM coalition_settings s LEFT JOIN ("
    f" SELECT {VERSION_COLUMNS}, lead(v.effective_at) OVER"
    "  (PARTITION BY v.campaign_id ORDER BY v.version) AS superseded_at"
    " FROM campaign_versions v JOIN campaigns c ON c.id = v.campaign_id"
    ") x ON x.status = 'ACTIVE' WHERE s.id = 1"
)


@dataclass(frozen=True, slots=True)
class Segment:
    """A version in force from `since` until `until` (None: for as long as it stays)."""

    since: datetime
    until: datetime | None
    campaign: CompiledCampaign


class CampaignCatalog:
    """Every campaign version that was ever in force, as of `revision`. Immutable, except
    for the per-slice answers it memoizes."""

    def __init__(self, revision: int, segments: list[Segment]) -> None:
        self.revision = revision
        self.segments = tuple(segments)
        bounds = {s.since for s in segments} | {s.until for s in segments if s.until}
        self._bounds = sorted(bounds)
        self._slices: dict[int, tuple[CompiledCampaign, ...]] = {}

    def rules_at(self, when: datetime) -> tuple[CompiledCampaign, ...]:
        """The campaign versions in force at `when` (an aware datetime), in stacking order."""
        index = bisect_right(self._bounds, when) - 1
        if index < 0:
            return ()
        found = self._slices.get(index)
        if found is None:
            # Every segment starts and ends on a bound: one answer for the whole slice.
            start = self._bounds[index]
            found = tuple(
                sorted(
                    (
                        s.campaign
                        for s in self.segments
                        if s.since <= start and (s.until is None or start < s.until)
                    ),
                    key=_order,
                )
            )
            self._slices[index] = found
        return found


def _order(campaign: CompiledCampaign) -> tuple[int, datetime, bytes]:
    return stacking_order(campaign.rule)


def _segment(row: Any) -> Segment | None:
    record = version_of(row)
    rule = record.rule
    since = max(record.effective_at, rule.starts_at)
    ends = [t for t in (row.superseded_at, rule.ends_at) if t is not None]
    until = min(ends) if ends else None
    if until is not None and until <= since:
        return None  # never in force (superseded or ended before it started)
    try:
        compiled = compile_campaign(rule)
    except ConditionError as exc:
        # Saving refuses such a condition; a stored one that no longer compiles (a library
        # change) must not fail every earn: the version is left out, loudly.
        log.error(
            "campaign %s version %s: condition does not compile, left out: %s",
            rule.campaign_id,
            rule.version,
            exc,
        )
        return None
    return Segment(since, until, compiled)


async def load_catalog(conn: AsyncConnection) -> CampaignCatalog:
    """The catalog as the database holds it now (one statement)."""
    rows = (await conn.execute(_LOAD)).all()
    revision = int(rows[0].revision)
    segments = [s for s in (_segment(r) for r in rows if r.campaign_id is not None) if s]
    return CampaignCatalog(revision, segments)


# One cached catalog per database (a process may reach several: tests, the CLI).
_cache: dict[URL, CampaignCatalog] = {}
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _key(conn: AsyncConnection) -> URL:
    return conn.engine.url


def _lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


async def catalog(conn: AsyncConnection, revision: int) -> CampaignCatalog:
    """The catalog at `revision` or later: the cached one while it is that recent (no
    database round trip), else loaded once (concurrent callers wait for one load)."""
    key = _key(conn)
    cached = _cache.get(key)
    if cached is not None and cached.revision >= revision:
        return cached
    async with _lock():
        cached = _cache.get(key)
        if cached is not None and cached.revision >= revision:
            return cached
        loaded = await load_catalog(conn)
        current = _cache.get(key)
        if current is None or loaded.revision >= current.revision:
            _cache[key] = loaded
        return loaded


async def rules_at(
    conn: AsyncConnection, revision: int, when: datetime
) -> tuple[CompiledCampaign, ...]:
    """The campaign versions in force at `when`, in stacking order, with `revision` the
    `coalition_settings.campaigns_revision` the caller read (its preflight)."""
    return (await catalog(conn, revision)).rules_at(when)


campaigns_in_force = rules_at
"""The earn path's name for `rules_at` (points/pricing.py)."""


async def current_revision(conn: AsyncConnection) -> int:
    """The catalog revision, for a caller without a preflight of its own."""
    revision = await conn.scalar(
        text("SELECT campaigns_revision FROM coalition_settings WHERE id = 1")
    )
    return int(revision or 0)


def cached_catalog(conn: AsyncConnection) -> CampaignCatalog | None:
    """The catalog this process holds for `conn`'s database (None: none loaded yet)."""
    return _cache.get(_key(conn))


def clear_cache() -> None:
    _cache.clear()
