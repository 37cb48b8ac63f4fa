"""Metric label values come from the worker's own job types, never from a record's headers."""

from __future__ import annotations

from prometheus_client import generate_latest

from jobstream.consumers.metrics import UNKNOWN_JOB_TYPE, Metrics


def _job_type_labels(m: Metrics) -> set[str]:
    text = generate_latest(m.registry).decode()
    labels = set()
    for line in text.splitlines():
        if line.startswith("jobstream_") and 'job_type="' in line:
            labels.add(line.split('job_type="', 1)[1].split('"', 1)[0])
    return labels


def test_job_type_labels_are_known_types_or_one_unknown_bucket() -> None:
    """Issue 26 item 27: publishers outside Python grew the label sets without bound, one
    series per typo (`job_type="orders.confirm"`) taken from the record's js-job-type header.
    Only the worker's job types are label values now; every other name shares `unknown`."""
    m = Metrics()
    m.limit_job_types(["orders.confirmation"])
    for i in range(50):
        m.job_finished(f"orders.confirm{i}", "dead_lettered", None, 0.5)
        m.retried(f"typo{i}", "1s")
    m.job_finished("", "dead_lettered", None, None)
    m.job_finished("orders.confirmation", "succeeded", 0.01, 0.02)
    m.set_breaker("orders.confirmation", "open")
    assert _job_type_labels(m) == {"orders.confirmation", UNKNOWN_JOB_TYPE}
    dead = m.registry.get_sample_value(
        "jobstream_jobs_total", {"job_type": UNKNOWN_JOB_TYPE, "outcome": "dead_lettered"}
    )
    assert dead == 51
    assert m.registry.get_sample_value(
        "jobstream_retries_total", {"job_type": UNKNOWN_JOB_TYPE, "tier": "1s"}
    ) == 50


def test_gathered_outcomes_count_as_observe_would_once_flushed() -> None:
    """The poll thread's per-job metrics are gathered (Metrics.finished) and applied every few
    milliseconds (flush): each bucket, sum and count as Histogram.observe gives them, values on
    a bucket's bound included; nothing shows before the flush."""
    values = [0.0, 0.005, 0.0051, 0.01, 0.3, 2.5, 7.0, 3600.0, 5000.0, -1.0]
    gathered, direct = Metrics(), Metrics()
    for v in values:
        gathered.finished("t", "succeeded", v, v if v >= 0 else None)
        direct.duration.labels("t").observe(v)
        if v >= 0:
            direct.latency.labels("t").observe(v)
        direct.jobs.labels("t", "succeeded").inc()
    key = {"job_type": "t", "outcome": "succeeded"}
    assert gathered.registry.get_sample_value("jobstream_jobs_total", key) is None
    gathered.flush()

    def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in m.registry.collect() for s in fam.samples
                if not s.name.endswith("_created")}

    assert samples(gathered) == samples(direct)
    gathered.flush()  # nothing twice
    assert gathered.registry.get_sample_value("jobstream_jobs_total", key) == len(values)
