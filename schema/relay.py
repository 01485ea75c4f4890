"""Relay conventions: opaque global ids, the Node interface, cursor connections.

Connections page forward only (`first`/`after`), newest or oldest first as each list says;
`PageInfo` carries all four fields of the Relay cursor-connection spec, so Relay's
`@connection` and other generated clients work unchanged.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated, Generic, TypeVar

import strawberry

from core.errors import DomainError, ErrorCode

MAX_PAGE = 100
DEFAULT_PAGE = 20
T = TypeVar("T")


# The paging arguments of every connection.
First = Annotated[
    int | None,
    strawberry.argument(
        description=f"How many items to return: 1 to {MAX_PAGE} (default {DEFAULT_PAGE})."
    ),
]
After = Annotated[
    str | None,
    strawberry.argument(
        description="Return the items that follow this cursor (a previous page's"
        " `pageInfo.endCursor`); default: from the start."
    ),
]


def to_global_id(type_name: str, raw_id: uuid.UUID | str) -> strawberry.ID:
    return strawberry.ID(base64.urlsafe_b64encode(f"{type_name}:{raw_id}".encode()).decode())


def from_global_id(
    global_id: str, expected: str | None = None, field: list[str] | None = None
) -> tuple[str, uuid.UUID]:
    """Decode an id; a malformed one, or one of another type, is INVALID_INPUT naming `field`
    (the path of the input field as the client wrote it; default `["id"]`)."""
    path = ["id"] if field is None else field
    try:
        type_name, raw = base64.urlsafe_b64decode(global_id.encode()).decode().split(":", 1)
        value = uuid.UUID(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise DomainError(ErrorCode.INVALID_INPUT, "malformed id", path) from exc
    if expected is not None and type_name != expected:
        raise DomainError(ErrorCode.INVALID_INPUT, f"not a {expected} id", path)
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


@strawberry.interface(
    description="An object with a global id, fetchable again through `node(id:)` by callers"
    " allowed to see it."
)
class Node:
    id: strawberry.ID = strawberry.field(
        description="The global id: opaque, stable, unique across all types. Store it as is."
    )


@strawberry.type(
    description="Where a page sits in its list (the Relay cursor-connection spec). Lists page"
    " forward only: pass `endCursor` as `after` while `hasNextPage` is true."
)
class PageInfo:
    has_next_page: bool = strawberry.field(description="More items follow this page.")
    has_previous_page: bool = strawberry.field(
        description="Items precede this page: true when the page was asked for `after` a"
        " cursor (lists are append-only, so the item the cursor names is still there)."
    )
    start_cursor: str | None = strawberry.field(
        description="The cursor of the first item of the page; null when the page is empty."
    )
    end_cursor: str | None = strawberry.field(
        description="The cursor of the last item of the page, to pass as `after` for the next"
        " page; null when the page is empty."
    )


@strawberry.type(description="An item of a list with its cursor.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(
        description="Opaque: pass it as `after` to get the items that follow this one."
    )
    node: T = strawberry.field(description="The item.")


@strawberry.type(
    description="A page of a list (a Relay cursor connection): `first` (1 to 100, default 20)"
    " items `after` a cursor."
)
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="The page's items with their cursors.")
    page_info: PageInfo = strawberry.field(description="Where the page sits in the list.")

    @strawberry.field(description="The page's items without cursors (the same as edges' nodes).")
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]


def connection(
    items: list[T], keys: list[uuid.UUID], size: int, after: uuid.UUID | None = None
) -> Connection[T]:
    """Build a page from up to size + 1 fetched rows (the extra row says there is a next page).
    `after`: the decoded cursor the page was asked for (then items precede it)."""
    has_next = len(items) > size
    items, keys = items[:size], keys[:size]
    edges = [Edge(cursor=encode_cursor(k), node=item) for item, k in zip(items, keys, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )
