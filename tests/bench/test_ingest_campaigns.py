"""`bench ingest --campaigns` at a small scale: both imports verify what they booked, and with
the campaigns live every purchase is priced by the engine (a BONUS for the operator's share of
the co-funded bonus on each) while without them none is."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.ingest import ratio, run_comparison
from bench.setup import drop_bench_database


@pytest.fixture
def dropped() -> Iterator[None]:
    yield
    drop_bench_database("coalition_bench_ingest")


def test_the_comparison_books_and_verifies_both_imports(dropped: None) -> None:
    runs = run_comparison(repeat=1, rows=1_500, members=200, chunk=500, jobs=2)
    assert [f.campaigns for f in runs] == [False, True]
    plain, priced = runs
    assert plain.verified and priced.verified
    assert plain.booked == priced.booked == 1_500
    assert (plain.bonus_transfers, priced.bonus_transfers) == (0, 1_500)
    assert priced.replayed == 1_500  # the second import of the same file booked nothing
    assert ratio(runs) > 0
