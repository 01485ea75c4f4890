"""Funding splits: the parts always add up to the line, each within a point of its share."""

from __future__ import annotations

import itertools
import uuid
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from points.rules.funding import split_points
from points.rules.model import Funded, FundingShare
from tests.rules.builders import CINEMA, FUEL, GROCER, shares


def test_no_shares_the_default_pays_all() -> None:
    assert split_points(7, (), default=GROCER) == (Funded(GROCER, 7),)


def test_half_and_half_odd_points_go_to_the_first_named() -> None:
    assert split_points(7, shares((GROCER, "0.5"), (FUEL, "0.5")), default=None) == (
        Funded(GROCER, 4),
        Funded(FUEL, 3),
    )


def test_largest_remainder_wins_the_leftover_point() -> None:
    # 10 × (0.25, 0.35, 0.4) = 2.5, 3.5, 4: one point left, remainders tie, the first named wins.
    split = split_points(
        10, shares((GROCER, "0.25"), (FUEL, "0.35"), (CINEMA, "0.4")), default=None
    )
    assert split == (Funded(GROCER, 3), Funded(FUEL, 3), Funded(CINEMA, 4))
    split = split_points(
        10, shares((GROCER, "0.24"), (FUEL, "0.36"), (CINEMA, "0.4")), default=None
    )
    assert split == (Funded(GROCER, 2), Funded(FUEL, 4), Funded(CINEMA, 4))


def test_the_operator_is_a_funder() -> None:
    assert split_points(3, shares((None, "0.5"), (GROCER, "0.5")), default=FUEL) == (
        Funded(None, 2),
        Funded(GROCER, 1),
    )


def test_thirds_add_up() -> None:
    third = "0.3333333333333333333333333333"
    split = split_points(100, shares((GROCER, third), (FUEL, third), (CINEMA, third)), default=None)
    assert [f.points for f in split] == [34, 33, 33]


def test_zero_parts_are_left_out_and_zero_points_fund_nothing() -> None:
    assert split_points(1, shares((GROCER, "0.5"), (FUEL, "0.5")), default=None) == (
        Funded(GROCER, 1),
    )
    assert split_points(0, shares((GROCER, "1")), default=None) == ()


def test_a_funder_named_twice_is_paid_once() -> None:
    assert split_points(
        9, shares((GROCER, "0.5"), (FUEL, "0.25"), (GROCER, "0.25")), default=None
    ) == (
        Funded(GROCER, 7),
        Funded(FUEL, 2),
    )


_funders = st.sampled_from([GROCER, FUEL, CINEMA, None, uuid.UUID(int=99)])


@st.composite
def _shares(draw: st.DrawFn) -> tuple[FundingShare, ...]:
    """Shares in hundredths (as a marketer types them) summing to exactly 1."""
    count = draw(st.integers(1, 6))
    cuts = sorted(
        draw(st.lists(st.integers(1, 99), min_size=count - 1, max_size=count - 1, unique=True))
    )
    bounds = [0, *cuts, 100]
    return tuple(
        FundingShare(draw(_funders), Decimal(hi - lo) / 100)
        for lo, hi in itertools.pairwise(bounds)
    )


@given(points=st.integers(0, 10**9), split=_shares())
def test_parts_add_up_exactly_and_stay_within_a_point(
    points: int, split: tuple[FundingShare, ...]
) -> None:
    funded = split_points(points, split, default=GROCER)
    assert sum(f.points for f in funded) == points
    assert all(f.points > 0 for f in funded)
    exact: dict[uuid.UUID | None, Fraction] = {}
    count: dict[uuid.UUID | None, int] = {}
    for s in split:
        exact[s.funder] = exact.get(s.funder, Fraction(0)) + points * Fraction(s.share)
        count[s.funder] = count.get(s.funder, 0) + 1
    for f in funded:
        assert abs(f.points - exact[f.funder]) < count[f.funder]


@given(points=st.integers(1, 10**6), split=_shares())
def test_deterministic_and_negatives_mirror(points: int, split: tuple[FundingShare, ...]) -> None:
    once = split_points(points, split, default=None)
    assert once == split_points(points, split, default=None)
    assert split_points(-points, split, default=None) == tuple(
        Funded(f.funder, -f.points) for f in once
    )
