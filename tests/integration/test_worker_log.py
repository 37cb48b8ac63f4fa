"""The worker's output is one JSON log: librdkafka's lines, a handler's standard-library logging
and print all come out as JSON events on it, and dead letters stand out by level."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.support.harness import Stack, free_port

RAW_LIBRDKAFKA = re.compile(r"%\d\|")


def read_log(stack: Stack) -> tuple[list[str], list[dict[str, Any]]]:
    """(lines that are not JSON objects, the JSON events) of every worker log of the stack."""
    other, events = [], []
    for path in sorted(stack.tmp.glob("worker-*.log")):
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict):
                events.append(event)
            elif line.strip():
                other.append(line)
    return other, events


def test_librdkafka_lines_handler_logging_and_print_are_json_events(
    stack_factory, bootstrap: str
) -> None:
    """Issue 26 item 23: raw librdkafka lines (`%3|...|FAIL|...` while a broker could not be
    reached, `%4|...|GETPID|...` after start-up) broke the JSON log, a handler's logging.info
    was dropped and its print came out as raw text. Now, with two of three bootstrap brokers
    unreachable, the worker's stdout and stderr hold JSON events only: librdkafka's lines as
    `kafka` events, the handler's logging.info and print as events of their own."""
    stack: Stack = stack_factory()
    config = yaml.safe_load(stack.config_path.read_text())
    dead = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    config["kafka"]["bootstrap_servers"] = ",".join([dead[0], bootstrap, dead[1]])
    stack.config_path.write_text(yaml.safe_dump(config))
    word = f"hello-{stack.group}"
    [jid] = stack.publish_many([({"seq": 0, "behaviour": f"log:{word}"}, "k")])
    stack.start_worker(stdout=True)
    stack.wait_runs(1, timeout=60)
    assert stack.stop_all() == [0]

    other, events = read_log(stack)
    assert [line for line in other if RAW_LIBRDKAFKA.search(line)] == []
    assert other == [], other[:5]
    kafka = [e for e in events if e["event"] == "kafka"]
    assert kafka, "no librdkafka line came through the log (the dead brokers were never tried?)"
    assert all(e["facility"] and e["client"] and e["message"] for e in kafka), kafka[:3]
    assert any(
        e["facility"] == "FAIL" and any(d in e["message"] for d in dead) for e in kafka
    ), kafka[:5]
    [logged] = [e for e in events if e["event"] == f"handler logged {word}"]
    assert (logged["level"], logged["logger"]) == ("info", "tests.apps.sink")
    [printed] = [e for e in events if e["event"] == f"handler printed {word}"]
    assert (printed["level"], printed["logger"]) == ("info", "print")
    assert jid in {r["job_id"] for r in stack.runs()}


def test_dead_letters_are_logged_at_warning(stack_factory) -> None:
    """Issue 26 item 25: `failed` and `dead_lettered` were logged at INFO, so a WARNING filter
    hid every dead letter. A dead letter's `failed` event (with its reason) and its
    `dead_lettered` event are WARNINGs now; a failure that is retried stays at INFO."""
    stack: Stack = stack_factory()
    [dead_id, retried_id] = stack.publish_many(
        [
            ({"seq": 0, "behaviour": "permanent"}, "a"),
            ({"seq": 1, "behaviour": "fail_until:2"}, "b"),
        ]
    )
    stack.start_worker()
    stack.wait_runs(1, timeout=60)  # the retried job succeeds on its 2nd attempt
    stack.wait_for(lambda: bool(stack.read_topic(stack.topics.dlq)), 30, "the dead letter")
    stack.stop_all()
    _, events = read_log(stack)

    def levels(job_id: str, event: str) -> list[str]:
        return [e["level"] for e in events if e["event"] == event and e.get("job_id") == job_id]

    assert levels(dead_id, "failed") == ["warning"]
    assert levels(dead_id, "dead_lettered") == ["warning"]
    assert levels(retried_id, "failed") == ["info"]
    assert levels(retried_id, "retried") == ["info"]
