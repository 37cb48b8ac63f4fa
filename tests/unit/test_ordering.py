import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobstream.consumers.runtime.ordering import KeyQueues


def test_same_key_waits_other_keys_run() -> None:
    q: KeyQueues[str] = KeyQueues()
    assert q.submit(b"a", "a1") is True
    assert q.submit(b"a", "a2") is False
    assert q.submit(b"b", "b1") is True
    assert q.submit(b"a", "a3") is False
    assert (q.queued, q.running_keys) == (2, 2)
    assert q.done(b"a") == "a2"
    assert q.done(b"b") is None
    assert q.done(b"a") == "a3"
    assert q.done(b"a") is None
    assert (q.queued, q.running_keys) == (0, 0)
    assert q.submit(b"a", "a4") is True


def test_none_key_is_a_key_like_any_other() -> None:
    q: KeyQueues[int] = KeyQueues()
    assert q.submit(None, 1) is True
    assert q.submit(None, 2) is False
    assert q.done(None) == 2


def test_done_for_idle_key_raises() -> None:
    q: KeyQueues[int] = KeyQueues()
    with pytest.raises(ValueError):
        q.done(b"x")


def test_drain_returns_queued_keeps_running() -> None:
    q: KeyQueues[str] = KeyQueues()
    q.submit(b"a", "a1")
    q.submit(b"a", "a2")
    q.submit(b"b", "b1")
    q.submit(b"b", "b2")
    q.submit(b"b", "b3")
    assert sorted(q.drain()) == ["a2", "b2", "b3"]
    assert (q.queued, q.running_keys) == (0, 2)
    assert q.done(b"a") is None
    assert q.done(b"b") is None


@given(st.lists(st.tuples(st.booleans(), st.sampled_from([b"a", b"b", b"c", None]))))
def test_per_key_order_and_exclusion(ops: list[tuple[bool, bytes | None]]) -> None:
    """Random interleaving of submits and completions (of running keys)."""
    q: KeyQueues[tuple[bytes | None, int]] = KeyQueues()
    running: dict[bytes | None, tuple[bytes | None, int]] = {}
    started: dict[bytes | None, list[int]] = {}
    seq = 0

    def start(item: tuple[bytes | None, int]) -> None:
        assert item[0] not in running  # never two of one key at once
        running[item[0]] = item
        started.setdefault(item[0], []).append(item[1])

    for submit, key in ops:
        if submit or not running:
            item = (key, seq)
            seq += 1
            if q.submit(key, item):
                start(item)
        else:
            done_key = key if key in running else next(iter(running))
            del running[done_key]
            nxt = q.done(done_key)
            if nxt is not None:
                start(nxt)
    while running:
        done_key = next(iter(running))
        del running[done_key]
        nxt = q.done(done_key)
        if nxt is not None:
            start(nxt)
    assert q.queued == 0 and q.running_keys == 0
    assert sum(len(s) for s in started.values()) == seq  # nothing lost
    for seqs in started.values():
        assert seqs == sorted(seqs)  # submission order per key
