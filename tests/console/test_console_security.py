"""The console's security on the real broker: writes without credentials, with a wrong
password, without or with a forged CSRF token, or from another site are refused and change
nothing; PII stays masked unless the audited unmask is used; HTML in payloads and headers is
escaped (a real Chromium runs none of it); hostile URLs get a clear error page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from jobstream.config.topics import AUDIT_TOPIC
from tests.console.conftest import Scenario
from tests.console.support import TOKEN, basic, get, post, sign_in
from tests.support.stack import end_offsets


def _first_position(scenario: Scenario) -> tuple[int, int]:
    _, body, _ = get(f"{scenario.url}/dlq/{scenario.stack.job_type}")
    m = re.search(r'name="sel" value="(\d+):(\d+)"', body)
    assert m, "no dead letter listed"
    return int(m.group(1)), int(m.group(2))


def _csrf(url: str, authorization: str) -> str:
    _, body, _ = get(url, {"authorization": authorization})
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', body)
    assert m, "no CSRF token in the signed-in page"
    return m.group(1)


def _books(scenario: Scenario) -> tuple[dict[int, int], dict[int, int], int]:
    """What a write would change: the main topic, the DLQ, the audit trail."""
    s = scenario.stack
    audit = end_offsets(s.settings, AUDIT_TOPIC)[0]
    return s.end_offsets(s.topics.main), s.end_offsets(s.topics.dlq), audit


@pytest.mark.parametrize("case", ["anonymous", "wrong password", "unknown token", "no csrf",
                                  "forged csrf", "other site"])
def test_refused_writes_change_nothing(scenario: Scenario, case: str) -> None:
    jt = scenario.stack.job_type
    p, o = _first_position(scenario)
    good = _csrf(f"{scenario.url}/dlq/{jt}", basic())
    auth = {"anonymous": None, "wrong password": basic(password="nope"),
            "unknown token": "Bearer not-a-token"}.get(case, basic())
    token = {"no csrf": None, "forged csrf": "0" * 64}.get(case, good)
    headers = {"authorization": auth} if auth else {}
    if case == "other site":
        headers["origin"] = "http://evil.example"
    before = _books(scenario)
    for path, fields in (
        (f"/dlq/{jt}/replay", [("mode", "selected"), ("sel", f"{p}:{o}"), ("confirm", "yes")]),
        (f"/dlq/{jt}/replay", [("mode", "filtered"), ("confirm", "yes")]),
        (f"/dlq/{jt}/{p}/{o}/unmask", []),
    ):
        form = fields + ([("csrf", token)] if token else [])
        status, body = post(scenario.url + path, form, headers)
        expected = 401 if case in ("anonymous", "wrong password", "unknown token") else 403
        assert status == expected, (path, status, body[:500])
        assert "hunter2" not in body and "Traceback" not in body
        assert 'id="error-message"' in body
    assert _books(scenario) == before


def test_bearer_token_unmasks_and_is_audited(scenario: Scenario) -> None:
    jt = scenario.stack.job_type
    p, o = _first_position(scenario)
    record = f"{scenario.url}/dlq/{jt}/{p}/{o}"
    status, body, _ = get(record)
    assert status == 200 and "hunter2" not in body and "***" in body
    bearer = f"Bearer {TOKEN}"
    audit_before = _books(scenario)[2]
    status, body = post(record + "/unmask", [("csrf", _csrf(record, bearer))],
                        {"authorization": bearer})
    assert status == 200, body[:500]
    assert "hunter2-" in body
    assert _books(scenario)[2] > audit_before
    _, page, _ = get(f"{scenario.url}/audit")
    assert "bot@" in page


def test_security_headers_on_every_page(scenario: Scenario) -> None:
    jt = scenario.stack.job_type
    for path in ("/", f"/jobs/{jt}", "/dlq", f"/dlq/{jt}", "/audit", "/nope", "/jobs/nope"):
        _, _, headers = get(scenario.url + path)
        h = {k.lower(): v for k, v in headers.items()}
        assert "script-src" not in h["content-security-policy"]  # default-src 'none' covers it
        assert h["content-security-policy"].startswith("default-src 'none'")
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/jobs/%3Cscript%3Ealert(1)", 404, "unknown job type"),
    ("/jobs/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404, "no such page"),
    ("/dlq/nope.such", 404, "unknown job type"),
    ("/dlq/{jt}?limit=abc", 400, "limit must be a whole number"),
    ("/dlq/{jt}?limit=999999999999999999999999", 400, "limit must be"),
    ("/dlq/{jt}?limit=0", 400, "limit must be from 1"),
    ("/dlq/{jt}?since=yesterday-ish", 400, "invalid time"),
    ("/dlq/{jt}?category=bogus", 400, "unknown category"),
    ("/dlq/{jt}/-1/5", 400, "partition must be a whole number"),
    ("/dlq/{jt}/0/99999999", 404, "no dead letter at"),
    ("/dlq/{jt}/999/0", 404, "no dead letter at"),
    ("/dlq/{jt}/0/1%00", 400, "offset must be a whole number"),
    ("/audit?limit=-3", 400, "limit must be"),
    ("/no/such/page", 404, "no such page"),
])
def test_hostile_urls_get_a_clear_error_page(scenario: Scenario, path: str, status: int,
                                            says: str) -> None:
    got, body, _ = get(scenario.url + path.format(jt=scenario.stack.job_type))
    assert got == status, body[:500]
    assert says in body and "Traceback" not in body
    assert "<script>alert" not in body


def test_replay_get_is_not_a_write(scenario: Scenario) -> None:
    status, body, _ = get(f"{scenario.url}/dlq/{scenario.stack.job_type}/replay")
    assert status in (404, 405) and "Traceback" not in body


def test_html_in_headers_and_payload_is_escaped(driver: Any, scenario: Scenario) -> None:
    """A dead letter whose key, headers and payload carry HTML: shown as text, none runs."""
    s = scenario.stack
    hostile = [("js-job-type", s.job_type.encode()), ("js-job-id", b"<b>id</b>"),
               ("js-error-class", b"<img src=x onerror=window.__xss=2>"),
               ("js-error-message", b"<script>window.__xss=3</script>"),
               ("js-error-stack", b"</pre><script>window.__xss=4</script>")]
    [(p, o)] = s.produce_raw([(0, b"<svg onload=window.__xss=5>", b"<script>x</script>",
                               hostile)], topic=s.topics.dlq)
    sign_in(driver, basic())
    for url in (f"{scenario.url}/dlq/{s.job_type}",
                f"{scenario.url}/dlq/{s.job_type}?job_id=%3Cb%3Eid%3C%2Fb%3E",
                f"{scenario.url}/dlq/{s.job_type}/{p}/{o}"):
        driver.get(url)
        assert driver.execute_script("return window.__xss === undefined"), url
        assert not driver.find_elements(By.TAG_NAME, "script")
        assert not driver.find_elements(By.CSS_SELECTOR, "main img, main svg[onload], main b")
    assert driver.find_element(By.ID, "stack").text == "</pre><script>window.__xss=4</script>"
    assert driver.find_element(By.ID, "job-id").text == "<b>id</b>"
    assert "&lt;script&gt;" in driver.page_source


def test_sign_in_challenges_then_returns_to_the_page(scenario: Scenario) -> None:
    status, _, headers = get(f"{scenario.url}/login?next=/audit")
    h = {k.lower(): v for k, v in headers.items()}
    assert status == 401 and h["www-authenticate"].startswith("Basic realm=")
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    for nxt, where in (("/audit", "/audit"), ("//evil.example/x", "/"),
                       ("http://evil.example", "/")):
        req = urllib.request.Request(f"{scenario.url}/login?next={nxt}",
                                     headers={"authorization": basic()})
        try:
            opener.open(req, timeout=10)
            raise AssertionError("expected a redirect")
        except urllib.error.HTTPError as e:
            assert e.code == 303 and e.headers["location"] == where, nxt
