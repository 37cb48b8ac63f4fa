"""Issue 26 item 10: settings errors must never echo a secret. Before, a mistyped key printed its
value (`kafka.sasl_pasword: ... (got 'hunter2-typo')`), a bad value under a secret-looking
`kafka.extra` name was printed once per union member (four times), a section given as a string
was printed whole, and a YAML syntax error quoted the line holding the password. Now values of
unknown keys, of secret-looking names and of whole sections are never shown; ordinary values
still are, so the user sees what was wrong."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobstream.config.settings import SettingsError, load_settings

SECRET = "hunter2-s3cr3t"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import os

    for name in list(os.environ):
        if name.upper().startswith("JOBSTREAM_"):
            monkeypatch.delenv(name)
    yield


def _error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, yaml_text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    monkeypatch.setenv("JOBSTREAM_CONFIG", str(path))
    with pytest.raises(SettingsError) as info:
        load_settings()
    return str(info.value)


def test_a_mistyped_key_names_the_key_and_the_likely_one_but_not_its_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    msg = _error(monkeypatch, tmp_path, f"kafka:\n  sasl_pasword: {SECRET}\n")
    assert SECRET not in msg
    assert "kafka.sasl_pasword" in msg
    assert "kafka.sasl_password" in msg  # the suggestion


def test_a_mistyped_key_from_the_environment_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBSTREAM_KAFKA__SASL_PASWORD", SECRET)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert SECRET not in str(info.value)
    assert "kafka.sasl_pasword" in str(info.value)


@pytest.mark.parametrize(
    "name",
    [
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "sasl.jaas.config",
        "ssl.key.pem",
        "ssl.key.password",
        "ssl.keystore.password",
        "my.api.token",
    ],
)
def test_a_bad_value_under_a_secret_looking_extra_name_is_not_echoed_and_reported_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    # A list is no valid librdkafka value: the error must name the entry without its value.
    msg = _error(monkeypatch, tmp_path, f"kafka:\n  extra:\n    {name}: [{SECRET}]\n")
    assert SECRET not in msg
    assert msg.count(f"kafka.extra.{name}") == 1, msg


def test_a_section_given_as_a_string_is_not_echoed_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    msg = _error(
        monkeypatch, tmp_path, f'kafka: "bootstrap_servers=b:9093 sasl_password={SECRET}"\n'
    )
    assert SECRET not in msg
    assert "kafka:" in msg
    assert "string" in msg  # says what it got, without the value


def test_a_yaml_syntax_error_gives_the_position_but_not_the_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    msg = _error(monkeypatch, tmp_path, f'kafka:\n  sasl_password: "{SECRET}\n  x: [\n')
    assert SECRET not in msg
    assert "line 2" in msg


def test_an_environment_value_that_is_not_json_names_the_variable_but_not_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: pydantic-settings' own error escaped as `internal error`, exit 70.
    monkeypatch.setenv("JOBSTREAM_KAFKA__EXTRA", f"sasl.password={SECRET}")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert SECRET not in str(info.value)
    assert "JOBSTREAM_KAFKA__EXTRA" in str(info.value)
    assert "JSON" in str(info.value)


def test_ordinary_values_are_still_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The masking above is not a blanket one: a wrong port is shown as given."""
    msg = _error(monkeypatch, tmp_path, "worker:\n  http_port: lots\n")
    assert "worker.http_port" in msg
    assert "'lots'" in msg
