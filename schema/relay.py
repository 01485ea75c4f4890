"""Relay conventions: opaque global ids, the Node interface, cursor connections."""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Generic, TypeVar

import strawberry

from ledger.errors import DomainError, ErrorCode

MAX_PAGE = 100
DEFAULT_PAGE = 20
T = TypeVar("T")


def to_global_id(type_name: str, raw_id: uuid.UUID | str) -> strawberry.ID:
    return strawberry.ID(base64.urlsafe_b64encode(f"{type_name}:{raw_id}".encode()).decode())


def from_global_id(global_id: str, expected: str | None = None) -> tuple[str, uuid.UUID]:
    """Decode an id; a malformed one, or one of another type, is reported as not found."""
    try:
        type_name, raw = base64.urlsafe_b64decode(global_id.encode()).decode().split(":", 1)
        value = uuid.UUID(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise DomainError(ErrorCode.INVALID_INPUT, "malformed id", ["id"]) from exc
    if expected is not None and type_name != expected:
        raise DomainError(ErrorCode.INVALID_INPUT, f"not a {expected} id", ["id"])
    return type_name, value


def encode_cursor(value: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"c:{value}".encode()).decode()


def decode_cursor(cursor: str | None) -> uuid.UUID | None:
    if cursor is None:
        return None
    try:
        prefix, raw = base64.urlsafe_b64decode(cursor.encode()).decode().split(":", 1)
        if prefix != "c":
            raise ValueError(prefix)
        return uuid.UUID(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise DomainError(ErrorCode.INVALID_CURSOR, "malformed cursor", ["after"]) from exc


def page_size(first: int | None) -> int:
    size = DEFAULT_PAGE if first is None else first
    if not 0 < size <= MAX_PAGE:
        raise DomainError(ErrorCode.INVALID_INPUT, f"first must be 1 to {MAX_PAGE}", ["first"])
    return size


@strawberry.interface(description="An object with a global id, fetchable through `node`.")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]


def connection(items: list[T], keys: list[uuid.UUID], size: int) -> Connection[T]:
    """Build a page from up to size + 1 fetched rows (the extra row says there is a next page)."""
    has_next = len(items) > size
    items, keys = items[:size], keys[:size]
    edges = [Edge(cursor=encode_cursor(k), node=item) for item, k in zip(items, keys, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
    )
