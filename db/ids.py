"""Identifiers: UUIDv7 everywhere (time-ordered for index locality, not a guessable sequence)."""

import uuid

import uuid6


def new_id() -> uuid.UUID:
    value = uuid6.uuid7()
    return uuid.UUID(bytes=value.bytes)
