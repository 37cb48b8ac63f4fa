"""Secure connections against a real broker: SASL_SSL with SCRAM-SHA-512, and mutual TLS.

A throwaway KRaft broker (tests/secure_broker.py) runs on free loopback ports with a CA, a
server certificate and a client certificate made for this module. As in the Helm chart, the
YAML config carries no secrets: passwords come in as environment variables.

Checked: `topics apply`, `publish` and a `jobstream worker` process run a job end to end over
each secured listener and commit it; wrong credentials or certificates make each command exit
non-zero within seconds with one line naming the cause and the address, never the secret.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobstream.config.settings import SettingsError, load_settings
from jobstream.producers.publisher import Publisher, PublishError
from tests.secure_broker import SCRAM_USER, Pki, SecureBroker, secure_broker
from tests.support.harness import ROOT, Stack, make_stack

# Generous bound for a failing command: the check itself answers in about a second, the rest
# is interpreter start-up on a busy machine. Without the check these hung or took 30 s+.
FAIL_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SecureBroker, Pki]]:
    # No skip when Java or the jars are missing: BrokerError fails every test here loudly.
    with secure_broker(tmp_path_factory.mktemp("secure-broker")) as (broker, pki):
        yield broker, pki


def sasl_kafka(broker: SecureBroker, pki: Pki) -> dict[str, Any]:
    return {
        "bootstrap_servers": broker.sasl_bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": SCRAM_USER,
        "ssl_ca_location": str(pki.ca),
    }


def mtls_kafka(broker: SecureBroker, pki: Pki) -> dict[str, Any]:
    return {
        "bootstrap_servers": broker.mtls_bootstrap,
        "security_protocol": "SSL",
        "ssl_ca_location": str(pki.ca),
        "ssl_certificate_location": str(pki.client_cert),
        "ssl_key_location": str(pki.client_key),
    }


def secured_stack(tmp: Path, kafka: dict[str, Any], secrets: dict[str, str]) -> Stack:
    """A harness Stack whose config file has `kafka` (no secrets) and whose in-process settings
    also carry `secrets` (setting name -> value), for the test's own clients."""
    unique = uuid.uuid4().hex[:8]
    stack = make_stack(tmp, kafka["bootstrap_servers"], unique, create=False)
    data = yaml.safe_load(stack.config_path.read_text())
    data["kafka"].update(kafka)
    stack.config_path.write_text(yaml.safe_dump(data))
    settings = load_settings(**{**data, "kafka": {**data["kafka"], **secrets}})
    return dataclasses.replace(stack, settings=settings)


def secret_env(secrets: dict[str, str]) -> dict[str, str]:
    """The environment variables the chart sets from Kubernetes Secrets."""
    return {f"JOBSTREAM_KAFKA__{k.upper()}": v for k, v in secrets.items()}


def cli(
    stack: Stack, env: dict[str, str], *args: str, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "jobstream", *args],
        env=stack.env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc, time.monotonic() - started


def run_one_job(stack: Stack, env: dict[str, str], secret_values: list[str]) -> None:
    """topics apply + publish (CLI) + a worker process over the secured listener: the job runs,
    its offset is committed, the worker stops cleanly and no secret shows in any output."""
    outputs: list[str] = []
    proc, _ = cli(stack, env, "topics", "apply", "--job-type", stack.job_type)
    outputs += [proc.stdout, proc.stderr]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert stack.topics.main in proc.stdout

    payload = json.dumps({"seq": 1, "behaviour": "ok"})
    proc, _ = cli(stack, env, "publish", stack.job_type, "--json", payload, "--key", "k1")
    outputs += [proc.stdout, proc.stderr]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_id = proc.stdout.strip()

    worker = stack.start_worker(log_name="worker.log", **env)
    try:
        runs = stack.wait_runs(1, timeout=45)
        assert [r["job_id"] for r in runs] == [job_id]
        assert runs[0]["key"] == "k1" and runs[0]["attempt"] == 1

        # The completion is committed through the secured connection (transactional mode).
        main = stack.topics.main
        ends = stack.end_offsets(main)
        stack.wait_for(
            lambda: {p: max(o, 0) for p, o in stack.committed(main).items()} == ends,
            20,
            f"committed offsets == end offsets {ends}",
        )
    finally:
        codes = stack.stop_all(timeout=30)  # never leave a worker behind, pass or fail
    assert codes == [0] and worker.returncode == 0, codes

    log = (stack.tmp / "worker.log").read_text()
    assert '"event": "subscribed"' in log, log[-2000:]
    outputs.append(log)
    for secret in secret_values:
        for text in outputs:
            assert secret not in text


def test_job_end_to_end_over_sasl_ssl_scram(
    secure: tuple[SecureBroker, Pki], tmp_path: Path
) -> None:
    broker, pki = secure
    secrets = {"sasl_password": broker.scram_password}
    stack = secured_stack(tmp_path, sasl_kafka(broker, pki), secrets)
    assert broker.scram_password not in stack.config_path.read_text()
    run_one_job(stack, secret_env(secrets), [broker.scram_password])


def test_job_end_to_end_over_mutual_tls(secure: tuple[SecureBroker, Pki], tmp_path: Path) -> None:
    broker, pki = secure
    # The client key is encrypted: kafka.ssl_key_password is used (and kept secret) too.
    secrets = {"ssl_key_password": pki.client_key_password}
    stack = secured_stack(tmp_path, mtls_kafka(broker, pki), secrets)
    run_one_job(stack, secret_env(secrets), [pki.client_key_password])


def assert_clear_failure(
    proc: subprocess.CompletedProcess[str],
    elapsed: float,
    address: str,
    must_say: list[str],
    secrets: list[str],
) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode not in (0, None), output
    assert elapsed < FAIL_WITHIN_S, f"took {elapsed:.1f}s: {output}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{proc.stderr}"
    line = lines[0]
    assert line.startswith("error: cannot connect to Kafka at "), line
    assert address in line, line
    for words in must_say:
        assert words in line, f"{words!r} not in {line!r}"
    assert "Traceback" not in output
    for secret in secrets:
        assert secret not in output


COMMANDS = {
    "worker": ["worker", "--app", "tests.apps.sink"],
    "topics apply": ["topics", "apply", "--job-type", "test.echo"],
    "publish": ["publish", "test.echo", "--json", '{"seq": 1}'],
    "dlq list": ["dlq", "list", "test.echo"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_wrong_password_fails_fast_with_one_clear_line(
    secure: tuple[SecureBroker, Pki], tmp_path: Path, command: str
) -> None:
    broker, pki = secure
    wrong = "wrong-" + uuid.uuid4().hex
    stack = secured_stack(tmp_path, sasl_kafka(broker, pki), {"sasl_password": wrong})
    proc, elapsed = cli(stack, secret_env({"sasl_password": wrong}), *COMMANDS[command])
    assert_clear_failure(
        proc,
        elapsed,
        broker.sasl_bootstrap,
        ["authentication failed", "SCRAM-SHA-512", repr(SCRAM_USER), "invalid credentials"],
        [wrong, broker.scram_password],
    )


@dataclasses.dataclass(frozen=True)
class Misconfig:
    kafka: dict[str, Any]  # settings in the config file
    secrets: dict[str, str]  # settings given as environment variables
    address: str  # the address the error must name
    must_say: list[str]


def _no_client_cert(broker: SecureBroker, pki: Pki) -> Misconfig:
    # (d) the mTLS listener requires a certificate the client does not present.
    kafka = mtls_kafka(broker, pki)
    del kafka["ssl_certificate_location"], kafka["ssl_key_location"]
    return Misconfig(
        kafka,
        {},
        broker.mtls_bootstrap,
        ["TLS connection rejected by the broker", "kafka.ssl_certificate_location"],
    )


def _untrusted_broker(broker: SecureBroker, pki: Pki) -> Misconfig:
    # The broker's certificate is not signed by the CA the client trusts.
    return Misconfig(
        {**sasl_kafka(broker, pki), "ssl_ca_location": str(pki.other_ca)},
        {"sasl_password": broker.scram_password},
        broker.sasl_bootstrap,
        ["certificate verify failed", "kafka.ssl_ca_location"],
    )


def _wrong_key_password(broker: SecureBroker, pki: Pki) -> Misconfig:
    # The client key cannot be decrypted with the password given.
    return Misconfig(
        mtls_kafka(broker, pki),
        {"ssl_key_password": "wrong-" + uuid.uuid4().hex},
        broker.mtls_bootstrap,
        ["ssl.key.location", "kafka.ssl_key_password"],
    )


MISCONFIGURED = {
    "no client certificate": _no_client_cert,
    "untrusted broker certificate": _untrusted_broker,
    "wrong key password": _wrong_key_password,
}


@pytest.mark.parametrize("case", list(MISCONFIGURED))
def test_tls_misconfiguration_fails_fast_with_one_clear_line(
    secure: tuple[SecureBroker, Pki], tmp_path: Path, case: str
) -> None:
    broker, pki = secure
    bad = MISCONFIGURED[case](broker, pki)
    stack = secured_stack(tmp_path, bad.kafka, bad.secrets)
    proc, elapsed = cli(stack, secret_env(bad.secrets), *COMMANDS["worker"])
    assert_clear_failure(
        proc,
        elapsed,
        bad.address,
        bad.must_say,
        [broker.scram_password, pki.client_key_password, *bad.secrets.values()],
    )


def test_publisher_library_says_why_nothing_is_acknowledged(
    secure: tuple[SecureBroker, Pki], tmp_path: Path
) -> None:
    """A service using Publisher directly (no CLI start-up check) still learns the reason."""
    broker, pki = secure
    wrong = "wrong-" + uuid.uuid4().hex
    stack = secured_stack(tmp_path, sasl_kafka(broker, pki), {"sasl_password": wrong})
    pub = Publisher(stack.settings)
    with pytest.raises(PublishError) as failed:
        pub.send("jobs.any", b"k", b"v", [])
        left = pub.flush(8)
        assert left == 1
        pub.close(timeout=0.1)
    message = str(failed.value)
    assert "authentication failed" in message and broker.sasl_bootstrap in message, message
    assert wrong not in message


def test_settings_never_echo_secrets() -> None:
    secret = "s3cret-" + uuid.uuid4().hex
    s = load_settings(kafka={"sasl_password": secret, "ssl_key_password": secret})
    assert s.kafka.sasl_password is not None
    assert s.kafka.sasl_password.get_secret_value() == secret
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.kafka)):
        assert secret not in text
    # A bad value next to a secret: the error names the field but not the value.
    with pytest.raises(SettingsError) as bad:
        load_settings(kafka={"sasl_password": {"nested": secret}, "bootstrap_servers": "x"})
    message = str(bad.value)
    assert "kafka.sasl_password" in message and "kafka.bootstrap_servers" in message
    assert secret not in message
