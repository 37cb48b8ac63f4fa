"""When a job lookup reads a partition on (producers/status.py `_Source.reopen`): only to an end
whose EOF event it has not read yet. The story is in the docstring of
tests/integration/test_job_lookup.py::test_a_refresh_does_not_wait_for_an_eof_it_has_already_read."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from jobstream.producers.status import _Source


def _source(end: int, eof_at: int) -> _Source:
    return _Source(TopicPartition("t", 0, 0), end, done=True, eof_at=eof_at)


def test_new_records_past_the_last_eof_are_read() -> None:
    s = _source(50, 50)
    s.reopen(70)
    assert (s.end, s.done) == (70, False)


def test_an_end_already_reported_by_an_eof_is_not_waited_for() -> None:
    s = _source(50, 60)  # records 50..59 and their EOF came during the last read
    s.reopen(60)
    assert (s.end, s.done) == (50, True)


def test_an_open_transaction_keeps_the_old_end() -> None:
    s = _source(105, 100)  # EOF at the last stable offset, an open transaction behind it
    s.reopen(105)
    assert s.done
