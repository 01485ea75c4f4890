"""Whether a write sent outside a transaction may have happened (so it must not be retried).

A single earn or redemption is one statement on an autocommit connection: once it is sent, a
lost connection leaves its outcome unknown. The posting marks the moment it sends
(`mark_write_sent`, in the ledger); the mutation runner watches the block (`watch_write`, in
schema) and does not run the work again after that point.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class WriteMark:
    """Whether work running outside a transaction has sent its (single, atomic) write."""

    sent: bool = False


_write_mark: ContextVar[WriteMark | None] = ContextVar("coalition_write_mark", default=None)


@contextmanager
def watch_write() -> Iterator[WriteMark]:
    """Watch the work run in this block: from `mark_write_sent()` on, a lost connection
    leaves its outcome unknown, so the work must not be run again."""
    mark = WriteMark()
    token = _write_mark.set(mark)
    try:
        yield mark
    finally:
        _write_mark.reset(token)


def mark_write_sent() -> None:
    mark = _write_mark.get()
    if mark is not None:
        mark.sent = True
