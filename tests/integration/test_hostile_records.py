"""Well-formed records that lie: a job type on another type's topic, header times in the wrong
unit. Real broker, real worker processes."""

from __future__ import annotations

import json
from typing import Any

import yaml

from jobstream.schemas import wire
from tests.support.harness import Stack

ECHO, AECHO = "test.echo", "test.aecho"


def hdrs(msg: Any) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in msg.headers() or []}


def set_header(headers: list, name: str, value: str) -> list:
    return [*[(k, v) for k, v in headers if k != name], (name, value.encode())]


def log_lines(stack: Stack) -> list[dict[str, Any]]:
    out = []
    for path in sorted(stack.tmp.glob("worker-*.log")):
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
    return out


def test_a_job_type_on_another_types_topic_is_dead_lettered_not_run(stack_factory) -> None:
    """Issue 26 item 26: a worker handling two job types ran a test.aecho job sent to
    test.echo's topic with the test.aecho handler, so anyone allowed to write one job topic
    could run any handler. Now the record is dead-lettered (category decode, the message names
    both types) in the DLQ of the topic it came from, and only the honest jobs run."""
    stack: Stack = stack_factory(job_type=ECHO)
    other: Stack = stack_factory(job_type=AECHO)
    config = yaml.safe_load(stack.config_path.read_text())
    config["jobs"].update(yaml.safe_load(other.config_path.read_text())["jobs"])
    stack.config_path.write_text(yaml.safe_dump(config))
    with stack.publisher() as pub:
        _, smuggled_id, smuggled, smuggled_h = pub.build(AECHO, {"seq": 1}, key="k")
        _, echo_id, echo, echo_h = pub.build(ECHO, {"seq": 2}, key="k")
        _, aecho_id, aecho, aecho_h = pub.build(AECHO, {"seq": 3}, key="k")
    stack.produce_raw([(0, b"k", smuggled, smuggled_h), (0, b"k", echo, echo_h)])
    other.produce_raw([(0, b"k", aecho, aecho_h)])
    stack.start_worker("--job-type", AECHO)

    stack.wait_for(
        lambda: {r["job_id"] for r in stack.runs()} >= {echo_id, aecho_id}, 60, "both honest jobs"
    )
    dead: list[Any] = []
    stack.wait_for(lambda: bool(dead.extend(stack.read_topic(stack.topics.dlq)) or dead), 30,
                   "the dead letter")
    [letter] = dead
    h = hdrs(letter)
    assert h[wire.JOB_ID] == smuggled_id
    assert h[wire.ERROR_CATEGORY] == "decode"
    assert AECHO in h[wire.ERROR_MESSAGE] and ECHO in h[wire.ERROR_MESSAGE], h
    assert h[wire.ORIGIN_TOPIC] == stack.topics.main
    assert letter.value() == smuggled
    assert smuggled_id not in {r["job_id"] for r in stack.runs()}
    assert other.read_topic(other.topics.dlq) == []


def test_header_times_in_the_wrong_unit_neither_stall_nor_skew(stack_factory) -> None:
    """Issue 26 item 28: js-enqueued-at in seconds turned the latency metric into 1.79e9 s, and
    a js-not-before in microseconds on a retry tier paused that partition for millennia (the
    job never ran). Both times are now ignored with a header_ignored warning naming the header,
    and the jobs run at once."""
    stack: Stack = stack_factory(job_type=ECHO)
    t = stack.topics
    with stack.publisher() as pub:
        _, late_id, late, late_h = pub.build(ECHO, {"seq": 1}, key="a")
        _, micro_id, micro, micro_h = pub.build(ECHO, {"seq": 2}, key="b")
    enqueued_s = next(int(v) for k, v in late_h if k == wire.ENQUEUED_AT) // 1000
    late_h = set_header(late_h, wire.ENQUEUED_AT, str(enqueued_s))
    due_us = (next(int(v) for k, v in micro_h if k == wire.ENQUEUED_AT) + 1000) * 1000
    micro_h = set_header(set_header(micro_h, wire.NOT_BEFORE, str(due_us)), wire.ATTEMPT, "2")
    stack.produce_raw([(0, b"a", late, late_h)])
    stack.produce_raw([(0, b"b", micro, micro_h)], topic=t.retries[0])
    stack.start_worker()

    stack.wait_for(
        lambda: {r["job_id"] for r in stack.runs()} >= {late_id, micro_id}, 40, "both jobs run"
    )
    stack.stop_all()
    ignored = {
        (line["job_id"], line["reason"].split("=")[0])
        for line in log_lines(stack)
        if line["event"] == "header_ignored"
    }
    assert ignored == {
        (late_id, f"header {wire.ENQUEUED_AT}"), (micro_id, f"header {wire.NOT_BEFORE}")
    }
    levels = {line["level"] for line in log_lines(stack) if line["event"] == "header_ignored"}
    assert levels == {"warning"}
