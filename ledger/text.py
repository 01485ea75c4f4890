"""Text a client sends must be storable as UTF-8.

`"\\ud800"` is valid JSON, and Python decodes it into a string holding a lone UTF-16
surrogate, which no UTF-8 text can hold: orjson refuses to hash it and PostgreSQL to store it.
Such input is refused as INVALID_INPUT naming its field, before anything is hashed or sent.
"""

from __future__ import annotations

from typing import Any


def has_lone_surrogate(value: str) -> bool:
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def lone_surrogate_path(value: Any) -> list[str] | None:
    """The path (keys, list indexes as text) to the first string in `value` holding a lone
    surrogate, through dicts and lists; None when there is none. A loop, not recursion."""
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        current, path = stack.pop()
        if isinstance(current, str):
            if has_lone_surrogate(current):
                return path
        elif isinstance(current, dict):
            stack.extend((v, [*path, str(k)]) for k, v in reversed(current.items()))
        elif isinstance(current, list | tuple):
            stack.extend((v, [*path, str(i)]) for i, v in reversed(list(enumerate(current))))
    return None
