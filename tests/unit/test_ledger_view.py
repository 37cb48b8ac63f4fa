import time

from hypothesis import given, settings
from hypothesis import strategies as st

from jobstream.consumers.runtime.ledger_view import LedgerView

T0 = 1_700_000_000_000  # ms


def test_membership() -> None:
    view = LedgerView()
    view.add("job-1", T0)
    view.add("job-2", T0)
    assert "job-1" in view and "job-2" in view
    assert "job-3" not in view
    assert 42 not in view
    assert len(view) == 2


def test_readding_updates_timestamp_not_size() -> None:
    view = LedgerView()
    view.add("job-1", T0)
    view.add("job-1", T0 + 60_000)
    assert len(view) == 1
    assert view.expire(T0 + 1_000) == 0  # the newer timestamp counts
    assert view.expire(T0 + 61_000) == 1
    assert "job-1" not in view


def test_expire_boundaries() -> None:
    view = LedgerView()
    view.add("a", T0 + 500)  # stored rounded up to T0 + 1 s: never expires early
    view.add("b", T0 + 2_000)
    assert view.expire(T0 + 500) == 0
    assert view.expire(T0 + 1_000) == 0  # kept up to 1 s longer, never dropped early
    assert view.expire(T0 + 1_001) == 1
    assert "a" not in view and "b" in view
    assert view.expire(T0 + 2_000) == 0
    assert view.expire(T0 + 2_001) == 1
    assert len(view) == 0


def test_tombstones_are_reused_and_lookups_pass_them() -> None:
    view = LedgerView()
    for i in range(1_000):
        view.add(f"old-{i}", T0)
    for i in range(1_000):
        view.add(f"new-{i}", T0 + 10_000)
    assert view.expire(T0 + 5_000) == 1_000
    assert all(f"new-{i}" in view for i in range(1_000))
    assert not any(f"old-{i}" in view for i in range(1_000))
    for i in range(5_000):
        view.add(f"more-{i}", T0 + 20_000)
    assert len(view) == 6_000
    assert all(f"new-{i}" in view for i in range(1_000))


def test_growth_and_shrink() -> None:
    view = LedgerView()
    small = view.nbytes()
    for i in range(50_000):
        view.add(f"job-{i}", T0 + i)
    assert len(view) == 50_000 and view.nbytes() > 50_000 * 20
    assert all(f"job-{i}" in view for i in range(0, 50_000, 7))
    assert view.expire(T0 + 10**9) == 50_000
    assert len(view) == 0 and view.nbytes() <= small * 2


def test_add_many_matches_add() -> None:
    a, b = LedgerView(), LedgerView()
    entries = [(f"job-{i % 700}", T0 + i) for i in range(2_000)]
    for job_id, ms in entries:
        a.add(job_id, ms)
    b.add_many(entries)
    assert len(a) == len(b) == 700
    assert a.expire(T0 + 1_500) == b.expire(T0 + 1_500)


def test_bytes_per_entry_at_200k() -> None:
    view = LedgerView()
    started = time.perf_counter()
    view.add_many((f"{i:032x}", T0) for i in range(200_000))
    elapsed = time.perf_counter() - started
    assert len(view) == 200_000
    assert view.nbytes() / len(view) <= 64
    assert elapsed < 10  # ~0.7 s on a slow machine; catches an accidental O(n^2)


@settings(max_examples=50)
@given(
    st.lists(st.text(max_size=40), max_size=300, unique=True),
    st.lists(st.text(min_size=41, max_size=50), max_size=50),
)
def test_no_false_negatives(added: list[str], others: list[str]) -> None:
    view = LedgerView()
    for job_id in added:
        view.add(job_id, T0)
    assert len(view) == len(added)
    assert all(job_id in view for job_id in added)
    assert not any(job_id in view for job_id in others)
