"""The audit trail's hash chain on the real broker: concurrent writers form one line, tampering
is found, and `jobstream audit verify` reports it with a clear exit code."""

from __future__ import annotations

import json
import threading

from confluent_kafka import Producer

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.config.topics import TopicSpec
from jobstream.consumers.ops.audit import write_audit
from jobstream.consumers.ops.audit_chain import append, verify
from jobstream.consumers.ops.topic_plan import ensure
from jobstream.schemas.chain import seal
from tests.support.harness import run_cli


def _scratch_topic(settings: Settings, name: str) -> str:
    """Created and usable: right after creation the topic's metadata can still lack a leader,
    which made a writer here fail once with "does not exist" on a loaded machine."""
    ensure(settings, TopicSpec(name, "audit", 1, {}))
    return name


def test_concurrent_writers_form_one_chain(env: dict[str, str], unique: str) -> None:
    """Three writers appending at once must each link to the true tail (the shared
    transactional id fences the others while one reads the tail and writes). Verified right
    after: once 8 of the 9 were seen, because a commit returns before its markers are written
    and a read_committed reader stops at the last stable offset; an append now waits until its
    record is visible."""
    settings = Settings()
    topic = _scratch_topic(settings, f"test.chain.{unique}")
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(3):
                append(settings, b"k", {"writer": w, "i": i}, topic=topic)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    report = verify(settings, topic=topic)
    assert report.ok, report.as_dict()
    assert report.verifier.records == 9 and report.verifier.unchained == 0


def test_a_forged_record_is_found(env: dict[str, str], unique: str) -> None:
    settings = Settings()
    topic = _scratch_topic(settings, f"test.chain.{unique}")
    first = append(settings, b"k", {"n": 0}, topic=topic)
    append(settings, b"k", {"n": 1}, topic=topic)
    # Someone with write access appends a record claiming to follow the first one.
    forged = seal({"n": "forged"}, first["chain"]["hash"])
    p = Producer(client_config(settings.kafka))
    p.produce(topic, key=b"k", value=json.dumps(forged).encode(), partition=0)
    assert p.flush(20) == 0
    report = verify(settings, topic=topic)
    assert [pr.offset for pr in report.problems] == [report.verifier.head_offset]
    assert "removed, changed or reordered" in report.problems[0].reason


def test_audit_verify_cli_on_the_audit_trail(env: dict[str, str]) -> None:
    settings = Settings()
    write_audit(settings, {"command": "test", "status": "completed"})
    res = run_cli("audit", "verify", "--json", env={"JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS":
                                                     settings.kafka.bootstrap_servers})
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["ok"] and data["head"] and data["records"] >= 1
    kafka_env = {"JOBSTREAM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers}
    good = run_cli("audit", "verify", "--anchor", f"{data['head_offset']}:{data['head']}",
                   env=kafka_env)
    assert good.returncode == 0 and "chain intact" in good.stdout, good.stdout + good.stderr
    bad = run_cli("audit", "verify", "--anchor", f"{data['head_offset']}:{'0' * 64}",
                  env=kafka_env)
    assert bad.returncode == 1 and "anchor" in bad.stdout, bad.stdout + bad.stderr
    typo = run_cli("audit", "verify", "--anchor", "12:xyz", env=kafka_env)
    assert typo.returncode == 1 and "expected OFFSET:HASH" in typo.stderr
    assert "Traceback" not in typo.stderr
