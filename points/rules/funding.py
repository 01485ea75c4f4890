"""Who pays a line's points: shares split by the largest remainder method, so the parts add up
to the line exactly and a funder is never given a fraction of a point."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from fractions import Fraction

from points.rules.model import Funded, FundingShare


def split_points(
    points: int, shares: Sequence[FundingShare], *, default: uuid.UUID | None
) -> tuple[Funded, ...]:
    """Split `points` among `shares` (empty: `default` pays all).

    Each funder gets the floor of its exact quota; the points left over go one each to the
    largest fractional remainders, ties to the share given first (deterministic, so a quote and
    the booking agree). Shares are taken relative to their sum, so exact arithmetic (Fraction)
    keeps the parts adding up even when a validator upstream let 0.333… through. A funder named
    twice is paid once, the sum of its parts; funders with 0 points are left out.
    """
    if points < 0:
        return tuple(
            Funded(f.funder, -f.points) for f in split_points(-points, shares, default=default)
        )
    if points == 0:
        return ()
    weights = [Fraction(s.share) for s in shares if s.share > 0]
    if not weights:
        return (Funded(default, points),)
    funders = [s.funder for s in shares if s.share > 0]
    total = sum(weights, Fraction(0))
    quotas = [points * w / total for w in weights]
    floors = [q.numerator // q.denominator for q in quotas]
    left = points - sum(floors)
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - floors[i]), i))
    for i in by_remainder[:left]:
        floors[i] += 1
    merged: dict[uuid.UUID | None, int] = {}
    for funder, part in zip(funders, floors, strict=True):
        merged[funder] = merged.get(funder, 0) + part
    return tuple(Funded(funder, part) for funder, part in merged.items() if part)
