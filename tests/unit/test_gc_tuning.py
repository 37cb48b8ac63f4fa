"""The worker raises the garbage collector's young threshold from CPython's 700 to 10,000 when
it starts: at 700 the young collections promoted the in-flight jobs' objects every few jobs and
the middle generation's collections took about a tenth of the poll thread (gc.callbacks: 1.1 s
of 11 s for 40,000 no-op jobs). A threshold the job module set itself is kept."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from jobstream.consumers.runtime.loop import GC_YOUNG_THRESHOLD, tune_gc


@pytest.fixture
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_default_threshold_is_raised(thresholds: None) -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)


def test_a_threshold_the_job_module_set_is_kept(thresholds: None) -> None:
    gc.set_threshold(2_000, 15, 20)
    tune_gc()
    assert gc.get_threshold() == (2_000, 15, 20)
