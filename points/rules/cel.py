"""Campaign conditions in CEL, compiled once per campaign version.

`compile_condition(source)` returns a `Condition` or raises `ConditionError` with the
compiler's message. The library is cel-expr-python (Google's cel-cpp; bench/cel.py measured
the alternatives): its checker knows every variable's type, so a misspelt variable, a string
compared with a number or a condition that is not true/false is refused when the campaign is
saved, not discovered on a purchase.

Speed: `facts(purchase, member)` builds the activation once per purchase; `Condition.holds(facts)`
shares it (~2 µs per condition), and `condition_set(conditions).holds(facts)` judges a whole
set of campaigns in one evaluation. `matches(purchase, member)` is the one-off convenience. An evaluation error (a division by zero, a bad regex) means "does not
match": it never fails an earn.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final

from cel_expr_python import cel as _cel  # type: ignore[import-untyped]  # no py.typed

from points.rules.model import MemberFacts, PurchaseFacts

MAX_CONDITION_LENGTH: Final = 2000

_T = _cel.Type
_TYPES: Final[Mapping[str, Any]] = {
    "purchase.amount": _T.DOUBLE,
    "purchase.categories": _T.List(_T.STRING),
    "purchase.skus": _T.List(_T.STRING),
    "purchase.local_hour": _T.INT,
    "purchase.weekday": _T.INT,
    "purchase.channel": _T.STRING,
    "purchase.store": _T.STRING,
    "member.tier": _T.STRING,
    "member.purchases": _T.INT,
    "partner.slug": _T.STRING,
}

VARIABLES: Final[Mapping[str, str]] = {
    "purchase.amount": "double: the purchase amount",
    "purchase.categories": "list(string): the categories of its lines",
    "purchase.skus": "list(string): the skus of its lines",
    "purchase.local_hour": "int: 0-23, in the coalition's time zone",
    "purchase.weekday": "int: 1 = Monday ... 7 = Sunday",
    "purchase.channel": 'string: "" when none',
    "purchase.store": 'string: the store id, "" when none',
    "member.tier": 'string: the tier code, "" when none',
    "member.purchases": "int: purchases at all partners before this one",
    "partner.slug": "string: the partner where the purchase happens",
}
"""What a condition can read (for the console's help and the README)."""

_ENV: Final = _cel.NewEnv(variables=dict(_TYPES))
_BOOL: Final = _T.BOOL
_STATUS = re.compile(r"^[A-Z_]+: |\s*\[[A-Z_]+\]$|\s*\(in container ''\)")


class ConditionError(ValueError):
    """A condition that does not compile (or does not evaluate to a boolean)."""


class Facts:
    """One purchase and its member as CEL variables: build once, share across campaigns."""

    __slots__ = ("_activation",)

    def __init__(self, activation: Any) -> None:
        self._activation = activation


def _distinct(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def facts(purchase: PurchaseFacts, member: MemberFacts) -> Facts:
    """The activation for `purchase` and `member` (amount as a double only here, for CEL)."""
    lines = purchase.lines
    data = {
        "purchase.amount": float(purchase.amount),
        "purchase.categories": _distinct([ln.category for ln in lines if ln.category]),
        "purchase.skus": _distinct([ln.sku for ln in lines]),
        "purchase.local_hour": purchase.local_hour,
        "purchase.weekday": purchase.weekday,
        "purchase.channel": purchase.channel or "",
        "purchase.store": purchase.store or "",
        "member.tier": member.tier,
        "member.purchases": member.purchases,
        "partner.slug": purchase.partner_slug,
    }
    return Facts(_ENV.Activation(data=data))


class Condition:
    """A compiled, type-checked condition. Immutable; shared by every earn."""

    __slots__ = ("_expression", "always", "source")

    def __init__(self, source: str, expression: Any) -> None:
        self.source = source
        self._expression = expression
        self.always = expression is None  # "true": nothing to evaluate

    def holds(self, facts: Facts) -> bool:
        """True when the condition is true for these facts; an evaluation error is false."""
        expression = self._expression
        if expression is None:
            return True
        try:
            # An error is a value of type ERROR (a message), never the boolean True.
            return expression.eval(facts._activation).value() is True
        except Exception:  # a runtime failure must never fail an earn
            return False

    def matches(self, purchase: PurchaseFacts, member: MemberFacts) -> bool:
        return self.holds(facts(purchase, member))

    def __repr__(self) -> str:
        return f"Condition({self.source!r})"


class ConditionSet:
    """Several conditions judged in one evaluation: one call into cel-cpp per purchase rather
    than one per campaign (bench/cel.py: ~13 µs for 20 conditions instead of ~45)."""

    __slots__ = ("_expression", "conditions")

    def __init__(self, conditions: tuple[Condition, ...]) -> None:
        self.conditions = conditions
        self._expression: Any = None
        judged = [c for c in conditions if not c.always]
        if judged:
            # Each was checked alone, so the list is list(bool); a size limit of the library
            # is the only way this can fail, and then each is evaluated on its own.
            listed = ", ".join(f"({c.source.strip()})" for c in judged)
            try:
                self._expression = _ENV.compile(f"[{listed}]")
            except Exception:
                self._expression = None

    def holds(self, facts: Facts) -> dict[Condition, bool]:
        """Each condition's verdict; an evaluation error is false for that condition only."""
        values: Any = None
        if self._expression is not None:
            try:
                values = self._expression.eval(facts._activation).plain_value()
            except Exception:
                values = None
        if not isinstance(values, list):  # an error somewhere: judge each alone
            return {c: c.holds(facts) for c in self.conditions}
        verdicts = iter(values)
        return {c: True if c.always else next(verdicts) is True for c in self.conditions}


@functools.lru_cache(maxsize=256)
def condition_set(conditions: tuple[Condition, ...]) -> ConditionSet:
    """The set for these conditions, compiled once (keyed by the compiled conditions, which
    `compile_condition` shares per source)."""
    return ConditionSet(conditions)


def _message(error: Exception) -> str:
    lines = [_STATUS.sub("", line) for line in str(error).splitlines()]
    text = "\n".join(lines).strip()
    if "applied to '(double, int)'" in text or "applied to '(int, double)'" in text:
        text += "\n(purchase.amount is a double: write 1000.0, not 1000)"
    return text


@functools.lru_cache(maxsize=4096)
def compile_condition(source: str) -> Condition:
    """Compile and type-check `source`; raises `ConditionError` with the compiler's message."""
    text = source.strip()
    if not text:
        raise ConditionError("the condition is empty: write true to match every purchase")
    if len(source) > MAX_CONDITION_LENGTH:
        raise ConditionError(
            f"the condition is {len(source)} characters long; at most {MAX_CONDITION_LENGTH}"
        )
    if text == "true":
        return Condition(source, None)
    try:
        expression = _ENV.compile(text)
    except Exception as error:  # the binding raises RuntimeError with the checker's report
        raise ConditionError(_message(error)) from None
    result = expression.return_type()
    if result != _BOOL:
        raise ConditionError(
            f"the condition must be true or false, not a value of type {result.name().lower()}"
        )
    return Condition(source, expression)
