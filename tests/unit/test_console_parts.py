"""The console's pure parts: credentials and CSRF tokens, /metrics parsing and windows,
parameter parsing (hostile input), the chart, and the pages' rendering of hostile text."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from starlette.requests import Request

from jobstream.config.settings import load_settings
from jobstream.config.ui_section import UiAuthSettings
from jobstream.consumers.ui.auth import Auth, AuthError
from jobstream.consumers.ui.pages import _chart
from jobstream.consumers.ui.scrape import Scraper, _parse
from jobstream.consumers.ui.web import PageError, env, int_param

METRICS = """\
# HELP jobstream_jobs_total Jobs finished, by outcome.
# TYPE jobstream_jobs_total counter
jobstream_jobs_total{job_type="a",outcome="succeeded"} 7.0
jobstream_jobs_total{job_type="a",outcome="retried"} 2.0
jobstream_jobs_created{job_type="a",outcome="succeeded"} 1.7e9
# TYPE jobstream_in_flight gauge
jobstream_in_flight 3.0
# TYPE jobstream_circuit_open gauge
jobstream_circuit_open{job_type="a"} 1.0
"""


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw,
                    "scheme": "http", "server": ("127.0.0.1", 8400), "query_string": b""})


def _auth() -> Auth:
    return Auth(UiAuthSettings(passwords={"alice": "pw:with:colons"},  # type: ignore[arg-type]
                               tokens={"bot": "t0ken"}))  # type: ignore[arg-type]


def _basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


@pytest.mark.parametrize(("header", "user"), [
    (_basic("alice", "pw:with:colons"), "alice"),
    ("Bearer t0ken", "bot"),
    ("bearer t0ken", "bot"),
    (_basic("alice", "wrong"), None),
    (_basic("bob", "pw:with:colons"), None),
    ("Bearer t0ke", None),
    ("Basic !!!not-base64", None),
    ("Basic " + base64.b64encode(b"\xff\xfe").decode(), None),
    ("Digest abc", None),
    ("", None),
])
def test_credentials(header: str, user: str | None) -> None:
    assert _auth().user(_request({"authorization": header} if header else {})) == user


def test_csrf_token_is_per_user_and_per_process() -> None:
    a, b = _auth(), _auth()
    assert a.csrf_token("alice") != a.csrf_token("bot")
    assert a.csrf_token("alice") != b.csrf_token("alice")  # a restart invalidates old forms
    req = _request({"authorization": "Bearer t0ken", "host": "127.0.0.1:8400"})
    assert a.require_write(req, a.csrf_token("bot")) == "bot"
    with pytest.raises(AuthError) as e:
        a.require_write(req, a.csrf_token("alice"))  # another user's token
    assert e.value.status == 403


def test_cross_site_origin_is_refused() -> None:
    a = _auth()
    req = _request({"authorization": "Bearer t0ken", "host": "127.0.0.1:8400",
                    "origin": "http://evil.example"})
    with pytest.raises(AuthError) as e:
        a.require_write(req, a.csrf_token("bot"))
    assert e.value.status == 403 and "another site" in e.value.message
    same = _request({"authorization": "Bearer t0ken", "host": "127.0.0.1:8400",
                     "origin": "http://127.0.0.1:8400"})
    assert a.require_write(same, a.csrf_token("bot")) == "bot"


def test_writes_are_off_without_configured_credentials() -> None:
    with pytest.raises(AuthError) as e:
        Auth(UiAuthSettings()).require_write(_request({}), "x")
    assert e.value.status == 401 and "no credentials are configured" in e.value.message


def test_metrics_parsing() -> None:
    w = _parse("http://w/metrics", METRICS)
    assert w.jobs == {("a", "succeeded"): 7.0, ("a", "retried"): 2.0}
    assert w.in_flight == 3.0 and w.breaker_open == {"a": 1.0}


def test_windows_from_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Scraper(load_settings(ui={"workers": []}))
    t0 = 1_000_000.0
    s.history.extend([
        (t0, {("w", "a", "succeeded"): 10.0}),
        (t0 + 3000, {("w", "a", "succeeded"): 40.0}),
        (t0 + 3500, {("w", "a", "succeeded"): 45.0, ("w", "a", "retried"): 2.0}),
        (t0 + 3700, {("w", "a", "succeeded"): 5.0, ("w", "a", "retried"): 2.0}),  # restarted
    ])
    # retried was first seen inside the window: it counts from 0 (the worker started then).
    assert s.counted_since(300) == {("a", "succeeded"): 5.0, ("a", "retried"): 2.0}
    assert s.counted_since(3600) == {("a", "succeeded"): 5.0, ("a", "retried"): 2.0}
    s.history.pop()
    # No sample an hour before the newest: the counters count from 0 (the worker's start).
    assert s.counted_since(3600) == {("a", "succeeded"): 45.0, ("a", "retried"): 2.0}
    assert s.counted_since(600) == {("a", "succeeded"): 35.0, ("a", "retried"): 2.0}
    assert s.counted_since(400) == {("a", "succeeded"): 5.0, ("a", "retried"): 2.0}


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "1e3", "9" * 30, " 1", "0x10", "\uff11"])
def test_int_param_refuses_hostile_input(bad: str) -> None:
    with pytest.raises(PageError) as e:
        int_param(bad, "offset", 0, 10**6)
    assert e.value.status == 400 and "offset" in e.value.message


def test_int_param_bounds_and_default() -> None:
    assert int_param(None, "limit", 1, 10, default=5) == 5
    assert int_param("10", "limit", 1, 10) == 10
    with pytest.raises(PageError):
        int_param("11", "limit", 1, 10)
    with pytest.raises(PageError):
        int_param("", "offset")


def test_chart_scales_to_the_largest_bucket() -> None:
    c: dict[str, Any] = _chart([0, 5, 10], width=300, height=120)
    assert c["max"] == 10 and [b["n"] for b in c["bars"]] == [0, 5, 10]
    assert c["bars"][2]["h"] == 100 and c["bars"][0]["h"] == 0
    assert _chart([])["max"] == 1


def test_templates_escape_everything_from_kafka() -> None:
    html = env.get_template("error.html").render(
        nav=[], path="/", user=None, auth_enabled=False, csrf="", status_code=400,
        message="<script>alert(1)</script>")
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_failed_refresh_serves_the_last_reading_marked_stale(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker stall past the metadata timeout gave an error page for a page load in the middle
    of a session (seen in CI under load): a reading up to STALE_S old now stands in, marked."""
    from jobstream.consumers.ops.dlq import DlqError
    from jobstream.consumers.ui import kafka_view
    from jobstream.consumers.ui.kafka_view import KafkaView, Offsets, View

    settings = load_settings(kafka={"bootstrap_servers": "127.0.0.1:1"}, ui={"cache_s": 0})
    kv = KafkaView(settings)
    clock = [1000.0]
    monkeypatch.setattr(kafka_view.time, "monotonic", lambda: clock[0])
    good = View(clock[0], {"t": 1}, {}, Offsets(), [], "g", "stable")
    reads: list[Any] = [good, DlqError("broker unreachable at x"), DlqError("still down")]

    def read() -> View:
        r = reads.pop(0)
        if isinstance(r, Exception):
            raise r
        return r  # type: ignore[no-any-return]

    monkeypatch.setattr(kv, "_read", read)
    assert kv.view() is good and good.stale is None
    clock[0] += 5
    stale = kv.view()
    assert stale.stale == "broker unreachable at x" and stale.topics == {"t": 1}
    assert round(stale.age_s) == 5
    clock[0] += kafka_view.STALE_S
    with pytest.raises(DlqError, match="still down"):  # too old to stand in
        kv.view()
    html = env.get_template("overview.html").render(
        nav=[], path="/", user=None, auth_enabled=False, csrf="", rows=[], view=stale,
        scrapes=[], history_s=0, scrape_configured=False)
    assert 'id="stale"' in html and "broker unreachable at x" in html
