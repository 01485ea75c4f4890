"""The benchmark harness itself, at a small scale: what it books it verifies, and its
figures add up. (The HTTP scenarios need wrk and minutes; they are run by hand.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.close import run_close
from bench.ingest import run_ingest
from bench.load import CpuSample, Figures, with_cpu
from bench.setup import drop_bench_database


@pytest.fixture
def drops() -> Iterator[list[str]]:
    """Databases a harness run creates, dropped when the test ends (on a shared server too)."""
    names: list[str] = []
    yield names
    for name in names:
        drop_bench_database(name)


def test_ingest_books_a_small_day_once_and_checks_it_in_sql(drops: list[str]) -> None:
    drops.append("coalition_bench_ingest")
    figures = run_ingest(rows=3_000, members=300, chunk=1_000, jobs=2)
    assert figures.booked == figures.rows == 3_000
    assert figures.replayed == 3_000  # the second import of the same file booked nothing
    assert figures.transfers == figures.lots == figures.keys == 3_000
    assert figures.wallet_mismatches == 0 and figures.rejected == 0
    assert figures.verified
    assert figures.earns_per_second > 0 and figures.python_cpu_us > 0


def test_close_nets_every_partner_of_a_small_period(drops: list[str]) -> None:
    drops.append("coalition_bench_close")
    figures = run_close(obligations=100_000, partners=5)
    assert figures.positions == 5  # one position per partner that owes or is owed
    assert 1 <= figures.instructions <= 4  # netted: fewer payments than partners
    assert figures.close_seconds > 0


def test_cpu_is_shared_over_every_request_of_the_sample() -> None:
    reads = Figures("reads", 100.0, 1.0, 2.0, 300, 0, 0)
    earns = Figures("earns", 50.0, 1.0, 2.0, 100, 0, 0)
    before, after = CpuSample(server=10.0, postgres=4.0), CpuSample(server=12.0, postgres=4.4)
    shared = with_cpu([reads, earns], before, after)
    assert [f.server_cpu_ms for f in shared] == [5.0, 5.0]  # 2 s over 400 requests
    assert [round(f.postgres_cpu_ms, 6) for f in shared] == [1.0, 1.0]
    assert [f.name for f in shared] == ["reads", "earns"]
