"""Ledger pieces without a broker: when a pending entry starts to count (no partition is
acquired, so no restore runs), and reading an entry's finished_at as the restore does."""

from jobstream.config.settings import load_settings
from jobstream.consumers.runtime.ledger import Ledger, routed_key
from jobstream.consumers.runtime.ledger_view import LedgerView
from jobstream.schemas.ledger_entry import decode_entry, encode_entry, entry_finished_at

TP = ("t.ledger", 0)


def _ledger(mode: str = "at_least_once") -> Ledger:
    ledger = Ledger(load_settings(worker={"mode": mode}))
    ledger.views[TP] = LedgerView()  # as after a finished restore
    return ledger


def test_an_acknowledged_entry_outlives_an_aborted_interval() -> None:
    ledger = _ledger()
    ledger.add_pending(TP, "acked", 1)
    ledger.add_pending(TP, "in-flight", 2)
    assert ledger.is_done(TP, "acked") and ledger.is_done(TP, "in-flight")
    ledger.acked(TP, "acked")  # at least once: the broker acknowledged it
    ledger.aborted()
    assert ledger.is_done(TP, "acked")
    assert not ledger.is_done(TP, "in-flight")


def test_an_ack_for_an_entry_no_longer_pending_adds_nothing() -> None:
    ledger = _ledger()
    ledger.add_pending(TP, "job", 1)
    ledger.aborted()  # the interval was given up before the acknowledgement was served
    ledger.acked(TP, "job")
    assert not ledger.is_done(TP, "job")


def test_committed_moves_every_pending_entry() -> None:
    ledger = _ledger("transactional")
    ledger.add_pending(TP, "a", 1)
    ledger.add_pending(TP, "b", 2)
    ledger.committed()
    ledger.aborted()
    assert ledger.is_done(TP, "a") and ledger.is_done(TP, "b")


def test_each_mode_counts_an_entry_at_its_own_moment() -> None:
    alo = _ledger()
    alo.add_pending(TP, "in-flight", 1)
    alo.committed()  # an async offset commit does not make an unacknowledged entry durable
    alo.aborted()
    assert not alo.is_done(TP, "in-flight")
    txn = _ledger("transactional")
    txn.add_pending(TP, "acked", 1)
    txn.acked(TP, "acked")  # visible to nobody until the transaction commits
    txn.aborted()
    assert not txn.is_done(TP, "acked")


def test_entry_finished_at_reads_what_the_encoder_wrote() -> None:
    for status in ("succeeded", "retried", "dead_lettered"):
        for ms in (0, 1, 63, 64, 1795474937360, 2**62):
            value = encode_entry(status, ms, 3, "worker-1")
            assert entry_finished_at(value) == ms == decode_entry(value)["finished_at"]


def test_entry_finished_at_refuses_what_is_not_an_entry() -> None:
    good = encode_entry("succeeded", 1795474937360, 1, "w")
    for junk in (b"", b"\x00", b"\x06" + good[1:], b"\x01" + good[1:], good[:3],
                 b"\x00" + b"\xff" * 12, b"{\"status\": 1}"):
        assert entry_finished_at(junk) is None, junk


def test_was_routed_sees_a_mark_wherever_it_is() -> None:
    """The poll loop asks was_routed for every record, and it answers False without building
    the mark's key while no mark was ever added for the ledger partition. A mark must be seen
    whether it is pending (this interval's), acknowledged or committed (in the view), restored
    (add_many, as the restore adds what it reads) or added while the view was being restored."""
    key = routed_key("t.jobs", 2, 40)
    for mode in ("at_least_once", "transactional"):
        ledger = _ledger(mode)
        ledger.add_pending(TP, "a-job", 1)  # a completion is not a mark
        assert not ledger.was_routed(TP, "t.jobs", 2, 40)
        ledger.add_pending(TP, key, 2)
        assert ledger.was_routed(TP, "t.jobs", 2, 40), mode
        assert not ledger.was_routed(TP, "t.jobs", 2, 41)
        ledger.acked(TP, key)
        ledger.committed()
        assert ledger.was_routed(TP, "t.jobs", 2, 40), mode
        ledger.aborted()
        assert ledger.was_routed(TP, "t.jobs", 2, 40), mode

    ledger = _ledger()
    ledger.add_pending(TP, routed_key("t.jobs", 0, 1), 1)
    ledger.aborted()  # never written: no mark any more
    assert not ledger.was_routed(TP, "t.jobs", 0, 1)

    restored = _ledger()
    restored.views[TP].add_many([("job-1", 5), (key, 6)])
    assert restored.was_routed(TP, "t.jobs", 2, 40)

    early = _ledger("transactional")
    del early.views[TP]
    early._restoring.add(TP)  # committed while its restore runs: kept for the view
    early.add_pending(TP, key, 3)
    early.committed()
    assert early.was_routed(TP, "t.jobs", 2, 40) is False  # no view yet: nothing is known
    view = LedgerView()
    view.add_many(early._early.pop(TP).items())
    early.views[TP] = view
    assert early.was_routed(TP, "t.jobs", 2, 40)
