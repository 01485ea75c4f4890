"""CEL conditions: every variable, the compiler's messages, and run-time errors as no match."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from points.rules.cel import (
    MAX_CONDITION_LENGTH,
    VARIABLES,
    ConditionError,
    compile_condition,
    condition_set,
    facts,
)
from tests.rules.builders import line, member, purchase

COFFEE = purchase("1200.50", line("A1", "coffee", "1000"), line("B2", None, "200.50"))


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("purchase.amount >= 1000.0", True),
        ("purchase.amount > 1200.5", False),
        ('"coffee" in purchase.categories', True),
        ("purchase.categories.size() == 1", True),  # a line without a category adds none
        ('"tea" in purchase.categories', False),
        ('purchase.skus == ["A1", "B2"]', True),
        ("purchase.local_hour >= 15 && purchase.local_hour < 17", True),
        ("purchase.weekday == 5", True),
        ('purchase.channel == "app"', True),
        ('purchase.store == "S-7"', True),
        ('member.tier == "gold"', True),
        ("member.purchases == 4", True),
        ('partner.slug in ["grocer", "fuel"]', True),
        ('partner.slug == "fuel"', False),
    ],
)
def test_each_variable(condition: str, expected: bool) -> None:
    bought = purchase(
        "1200.50",
        line("A1", "coffee", "1000"),
        line("B2", None, "200.50"),
        local_hour=16,
        weekday=5,
        channel="app",
        store="S-7",
    )
    assert compile_condition(condition).matches(bought, member("gold", 4)) is expected


def test_absent_channel_store_and_tier_are_empty_strings() -> None:
    condition = compile_condition(
        'purchase.channel == "" && purchase.store == "" && member.tier == ""'
    )
    assert condition.matches(purchase(), member())


def test_true_matches_everything_without_evaluating() -> None:
    condition = compile_condition("true")
    assert condition.always
    assert condition.matches(purchase(), member())


def test_one_activation_serves_every_condition() -> None:
    shared = facts(COFFEE, member("gold"))
    results = [
        compile_condition(c).holds(shared)
        for c in ('member.tier == "gold"', "purchase.amount < 10.0", "purchase.skus.size() == 2")
    ]
    assert results == [True, False, True]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("purchase.amout > 1.0", "undeclared reference to 'purchase.amout'"),
        ("basket.total > 1.0", "undeclared reference to 'basket.total'"),
        ("member.tier == 1", "found no matching overload for '_==_' applied to '(string, int)'"),
        ("purchase.local_hour >= ", "Syntax error"),
        ("purchase.local_hour", "must be true or false, not a value of type int"),
        ("", "the condition is empty"),
        ("   ", "the condition is empty"),
    ],
)
def test_bad_conditions_are_refused_with_the_compilers_message(
    condition: str, message: str
) -> None:
    with pytest.raises(ConditionError) as refused:
        compile_condition(condition)
    assert message in str(refused.value)


def test_the_message_points_at_the_mistake() -> None:
    with pytest.raises(ConditionError) as refused:
        compile_condition("purchase.amout > 1.0")
    assert str(refused.value).splitlines() == [
        "ERROR: <input>:1:9: undeclared reference to 'purchase.amout'",
        " | purchase.amout > 1.0",
        " | ........^",
    ]


def test_an_int_literal_against_the_amount_gets_a_hint() -> None:
    with pytest.raises(ConditionError, match=r"write 1000\.0, not 1000"):
        compile_condition("purchase.amount >= 1000")


def test_too_long_a_condition_is_refused() -> None:
    long = " || ".join(['partner.slug == "grocer"'] * 100)
    assert len(long) > MAX_CONDITION_LENGTH
    with pytest.raises(ConditionError, match=f"at most {MAX_CONDITION_LENGTH}"):
        compile_condition(long)


@pytest.mark.parametrize(
    "condition",
    [
        "int(purchase.amount) / 0 > 1",
        'purchase.skus[5] == "X"',
        'member.tier.matches("[")',
        "purchase.local_hour % (purchase.weekday - purchase.weekday) == 0",
    ],
)
def test_a_runtime_error_is_no_match(condition: str) -> None:
    assert compile_condition(condition).matches(COFFEE, member()) is False


def test_compiled_once_per_source() -> None:
    assert compile_condition("member.purchases == 0") is compile_condition("member.purchases == 0")


def test_every_variable_is_documented_and_usable() -> None:
    for name in VARIABLES:
        compile_condition(f"{name} == {name}")


def test_a_set_judges_like_each_alone() -> None:
    sources = [
        "true",
        'member.tier == "gold"',
        "purchase.amount < 10.0",
        "purchase.skus.size() == 2",
        "true",
    ]
    conditions = tuple(compile_condition(s) for s in sources)
    shared = facts(COFFEE, member("gold"))
    verdicts = condition_set(conditions).holds(shared)
    assert [verdicts[c] for c in conditions] == [c.holds(shared) for c in conditions]
    assert [verdicts[c] for c in conditions] == [True, True, False, True, True]


def test_an_error_in_a_set_fails_only_its_own_condition() -> None:
    broken = compile_condition("member.purchases / member.purchases == 1")
    fine = compile_condition("purchase.amount > 1.0")
    verdicts = condition_set((broken, fine)).holds(facts(COFFEE, member(purchases=0)))
    assert verdicts == {broken: False, fine: True}


_OPERATORS = ("&&", "||", "!", "(", ")", "[", "]", "==", "<", "in", "/", ".", ",", "?", ":", "-")
_OPERANDS = ("1", "0", "2.5", '"a"', "size(", "int(", "true", "false")
_TOKENS = st.sampled_from((*VARIABLES, *_OPERATORS, *_OPERANDS))


@settings(max_examples=300, deadline=None)
@given(source=st.one_of(st.text(max_size=60), st.lists(_TOKENS, max_size=14).map(" ".join)))
def test_any_text_compiles_or_is_refused_and_never_raises_when_judged(source: str) -> None:
    try:
        condition = compile_condition(source)
    except ConditionError as refused:
        assert str(refused)
        return
    assert condition.matches(COFFEE, member()) in (True, False)


def test_nesting_beyond_the_compilers_depth_is_refused() -> None:
    with pytest.raises(ConditionError, match="recursion"):
        compile_condition(" + ".join(["member.purchases"] * 100) + " > 0")
