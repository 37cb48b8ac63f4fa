import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobstream.consumers.runtime.offsets import OffsetBook, PartitionOffsets


def test_commits_contiguous_prefix_only() -> None:
    p = PartitionOffsets()
    for offset in (10, 11, 12):
        p.track(offset)
    assert p.commit_offset() is None
    p.finish(11)
    assert p.commit_offset() is None  # 10 still running
    p.finish(10)
    assert p.commit_offset() == 12
    assert (p.in_flight, p.pending) == (1, 1)
    p.finish(12)
    assert p.commit_offset() == 13
    assert (p.in_flight, p.pending) == (0, 0)


def test_gaps_in_offsets() -> None:
    p = PartitionOffsets()
    for offset in (5, 8, 20):  # 6, 7, 9.. compacted away or transaction markers
        p.track(offset)
    p.finish(8)
    p.finish(5)
    assert p.commit_offset() == 9
    p.finish(20)
    assert p.commit_offset() == 21


def test_mark_committed_suppresses_until_progress() -> None:
    p = PartitionOffsets()
    p.track(0)
    p.track(1)
    p.finish(0)
    assert p.commit_offset() == 1
    p.mark_committed(1)
    assert p.commit_offset() is None
    p.finish(1)
    assert p.commit_offset() == 2


def test_a_failed_async_commit_is_offered_again() -> None:
    p = PartitionOffsets()
    p.track(0)
    p.finish(0)
    p.mark_committed(1)
    assert p.commit_offset() is None
    p.commit_failed(1)
    assert p.commit_offset() == 1
    p.track(1)
    p.finish(1)
    p.mark_committed(2)
    p.commit_failed(1)  # a later commit was marked meanwhile: it covers the failed one
    assert p.commit_offset() is None


def test_mark_committed_rejects_unsafe_offset() -> None:
    p = PartitionOffsets()
    p.track(0)
    with pytest.raises(ValueError):
        p.mark_committed(1)


def test_finish_untracked_or_twice_raises() -> None:
    p = PartitionOffsets()
    p.track(3)
    with pytest.raises(ValueError, match="offset 4"):
        p.finish(4)
    p.finish(3)
    with pytest.raises(ValueError, match="offset 3"):
        p.finish(3)


def test_track_out_of_order_raises() -> None:
    p = PartitionOffsets()
    p.track(3)
    with pytest.raises(ValueError, match="out of order"):
        p.track(3)


@given(
    st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=60).map(
        lambda steps: [sum(steps[: i + 1]) for i in range(len(steps))]
    ),
    st.randoms(use_true_random=False),
)
def test_never_commits_past_unfinished(offsets: list[int], rng: random.Random) -> None:
    p = PartitionOffsets()
    for offset in offsets:
        p.track(offset)
    order = offsets[:]
    rng.shuffle(order)
    unfinished = set(offsets)
    for offset in order:
        p.finish(offset)
        unfinished.discard(offset)
        commit = p.commit_offset()
        if commit is not None:
            assert all(o >= commit for o in unfinished)
            # everything tracked below the commit point is finished, and it is tight
            assert commit - 1 in offsets and commit - 1 not in unfinished
        if unfinished:
            assert commit is None or commit <= min(unfinished)
        assert p.in_flight == len(unfinished)
    assert p.commit_offset() == offsets[-1] + 1
    assert p.pending == 0


def test_offset_book() -> None:
    book = OffsetBook()
    a, b = ("jobs.x", 0), ("jobs.x", 1)
    book.track(a, 0)
    book.track(a, 1)
    book.track(b, 7)
    assert book.in_flight_total == 3
    book.finish(a, 0)
    assert book.commit_offsets() == {a: 1}
    book.mark_committed({a: 1})
    assert book.commit_offsets() == {}
    book.finish(b, 7)
    assert book.commit_offsets() == {b: 8}
    assert set(book) == {a, b} and len(book) == 2 and book[a].in_flight == 1
    dropped = book.drop(a)
    assert dropped is not None and dropped.in_flight == 1
    assert book.drop(a) is None
    book.mark_committed({a: 1, b: 8})  # a was dropped meanwhile: ignored
    assert book.commit_offsets() == {} and book.in_flight_total == 0
    with pytest.raises(ValueError, match="not tracked"):
        book.finish(a, 1)


def test_an_idle_partition_commits_the_position_past_transaction_markers() -> None:
    """Issue 26 item 22: records 0-2 and a commit marker at 3: "highest finished + 1" stopped
    at 3 for ever (lag 1). With nothing in flight the consumer's position (4) is committed;
    while anything is in flight, or without a position, the rule stays as it was."""
    p = PartitionOffsets()
    p.advance_to(-1001)  # just assigned: no position yet
    assert p.commit_offset() is None
    p.advance_to(7)  # only markers after the committed offset: nothing tracked at all
    assert p.commit_offset() == 7
    p.mark_committed(7)
    for offset in (7, 8, 9):
        p.track(offset)
    p.finish(7)
    p.advance_to(11)  # 8 and 9 in flight: never past them
    assert p.commit_offset() == 8
    p.finish(9)
    p.advance_to(11)
    assert p.commit_offset() == 8
    p.finish(8)
    assert p.commit_offset() == 10
    p.advance_to(9)  # an older position never moves the commit point back
    assert p.commit_offset() == 10
    p.advance_to(11)  # the marker at 10
    assert p.commit_offset() == 11
    p.track(12)  # the next record after the marker
    p.finish(12)
    assert p.commit_offset() == 13
