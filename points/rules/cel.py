"""Campaign conditions in CEL, compiled once per campaign version.

Interface (implemented in the engine work): `compile_condition(source)` returns a `Condition`
or raises `ConditionError` with the compiler's message; `Condition.matches(purchase, member)`
evaluates it against the variables CONTRACT.md names.
"""

from __future__ import annotations

from points.rules.model import MemberFacts, PurchaseFacts


class ConditionError(ValueError):
    """A condition that does not compile (or does not evaluate to a boolean)."""


class Condition:
    source: str

    def matches(self, purchase: PurchaseFacts, member: MemberFacts) -> bool:
        raise NotImplementedError


def compile_condition(source: str) -> Condition:
    raise NotImplementedError
