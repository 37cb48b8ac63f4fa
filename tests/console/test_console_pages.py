"""The console in a real Chromium against a scenario a real worker ran: every page's figures,
the DLQ filters, unmasking and replaying two records to success. Screenshots of each page go
to tests/console/artifacts/ (not in git)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.console.conftest import N_DEAD, N_OK, N_RETRIED, Scenario
from tests.console.support import basic, click_through, screenshot, sign_in


def _eventually(driver: Any, url: str, check: Callable[[], bool], what: str,
                timeout: float = 40) -> None:
    """Reload until the page shows what it should (the workers commit and the console scrapes
    on their own schedules); the last check's failure is the test's."""
    deadline = time.monotonic() + timeout
    while True:
        driver.get(url)
        if check():
            return
        if time.monotonic() > deadline:
            main = driver.find_elements(By.TAG_NAME, "main")
            raise AssertionError(f"{url}: {what} not shown within {timeout}s; the page: "
                                 f"{main[0].text if main else driver.page_source[:2000]}")
        time.sleep(1)


def _cell(driver: Any, row: str, cls: str) -> str:
    text: str = driver.find_element(By.CSS_SELECTOR, f'{row} td.{cls}').text
    return text


def test_overview_shows_the_scenario(driver: Any, scenario: Scenario) -> None:
    sign_in(driver, None)
    jt = scenario.stack.job_type
    row = f'tr[data-job-type="{jt}"]'

    def right() -> bool:
        return (_cell(driver, row, "succeeded-5m") == str(N_OK + N_RETRIED)
                and _cell(driver, row, "lag") == "0")

    _eventually(driver, scenario.url + "/", right, "8 succeeded and lag 0")
    assert _cell(driver, row, "succeeded-1h") == str(N_OK + N_RETRIED)
    assert _cell(driver, row, "retried-5m") == str(N_RETRIED)
    assert _cell(driver, row, "dead-5m") == str(N_DEAD)
    assert _cell(driver, row, "dead-1h") == str(N_DEAD)
    assert _cell(driver, row, "dlq-size") == str(N_DEAD)
    assert _cell(driver, row, "dlq-ratio") == f"{N_DEAD / (N_OK + N_RETRIED + N_DEAD) * 100:.1f}%"
    assert _cell(driver, row, "rate") == f"{(N_OK + N_RETRIED + N_DEAD) / 300:.2f}"
    assert _cell(driver, row, "workers") == "1"
    assert _cell(driver, row, "breaker") == "closed"
    assert _cell(driver, row, "in-flight") == "0"
    assert f"127.0.0.1:{scenario.worker_port}" in driver.find_element(By.ID, "scrapes").text
    assert "read-only" in driver.find_element(By.CSS_SELECTOR, "header .who").text
    screenshot(driver, "overview")


def test_find_a_job_shows_its_timeline(driver: Any, scenario: Scenario) -> None:
    """Issue 25's job lookup: a dead-lettered job found by id and key, its timeline read from
    T.history; hostile input is an error page, not a traceback."""
    sign_in(driver, None)
    jt, job_id, key = scenario.stack.job_type, scenario.dead_ids[0], scenario.dead_keys[0]
    driver.get(scenario.url + "/lookup")
    Select(driver.find_element(By.ID, "job-type")).select_by_visible_text(jt)
    driver.find_element(By.ID, "job-id").send_keys(job_id)
    driver.find_element(By.ID, "key").send_keys(key)
    click_through(driver, driver.find_element(By.ID, "find"))
    assert driver.find_element(By.ID, "state").text == f"{jt} {job_id}: dead_lettered after " \
        "1 attempt(s)"
    assert "permanent" in driver.find_element(By.ID, "last-error").text
    rows = driver.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "td.outcome").text for r in rows] == ["dead_lettered"]
    screenshot(driver, "lookup")
    driver.get(f"{scenario.url}/lookup?job_type={jt}&job_id=nope-%3Cb%3E")
    assert ": unknown" in driver.find_element(By.ID, "state").text
    assert "<b>" in driver.find_element(By.ID, "state").text  # shown as text, not markup
    driver.get(f"{scenario.url}/lookup?job_type=no.such&job_id=x")
    assert "unknown job type 'no.such'" in driver.find_element(By.TAG_NAME, "main").text
    driver.get(f"{scenario.url}/lookup?job_type={jt}&job_id=%07bell")
    assert "printable" in driver.find_element(By.TAG_NAME, "main").text


def test_job_type_page(driver: Any, scenario: Scenario) -> None:
    sign_in(driver, None)
    stack = scenario.stack
    driver.get(f"{scenario.url}/jobs/{stack.job_type}")
    main = [r for r in driver.find_elements(By.CSS_SELECTOR, "#partitions tbody tr")
            if r.find_element(By.CSS_SELECTOR, "td code").text == stack.topics.main]
    assert len(main) == 3
    ends = stack.end_offsets(stack.topics.main)
    assert sum(int(r.find_element(By.CSS_SELECTOR, "td.committed").text) for r in main) \
        == sum(ends.values())
    assert all(r.find_elements(By.CSS_SELECTOR, "td")[2].text.startswith("rdkafka")
               or r.find_elements(By.CSS_SELECTOR, "td")[2].text != "-" for r in main)
    bars = driver.find_elements(By.CSS_SELECTOR, "#chart-enqueued rect")
    assert sum(int(b.get_attribute("data-n")) for b in bars) == N_OK + N_RETRIED + N_DEAD
    dead_bars = driver.find_elements(By.CSS_SELECTOR, "#chart-dead rect")
    assert sum(int(b.get_attribute("data-n")) for b in dead_bars) >= N_DEAD  # + markers
    assert driver.find_element(By.ID, "dlq-size").text == str(N_DEAD)
    assert stack.topics.retries[0] in driver.find_element(By.ID, "tiers").text
    screenshot(driver, "job-type")


def test_dlq_filters(driver: Any, scenario: Scenario) -> None:
    sign_in(driver, None)
    jt = scenario.stack.job_type
    driver.get(f"{scenario.url}/dlq/{jt}")
    rows = driver.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
    assert len(rows) == N_DEAD
    assert f"{N_DEAD} matching" in driver.find_element(By.ID, "count").text
    # The filter form, as an operator uses it.
    box = driver.find_element(By.NAME, "key")
    box.clear()
    box.send_keys(scenario.dead_keys[1])
    click_through(driver, driver.find_element(By.ID, "apply-filters"))
    rows = driver.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "td.job-id").text for r in rows] \
        == [scenario.dead_ids[1]]
    driver.get(f"{scenario.url}/dlq/{jt}?error_class=PermanentError&since=-1h")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")) == N_DEAD
    driver.get(f"{scenario.url}/dlq/{jt}?error_class=NoSuchError")
    assert not driver.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
    driver.get(f"{scenario.url}/dlq/{jt}?limit=2")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")) == 2
    assert f"oldest 2 of {N_DEAD}" in driver.find_element(By.ID, "count").text
    # Read-only: no replay buttons, a sign-in link instead.
    assert not driver.find_elements(By.ID, "replay-selected")
    screenshot(driver, "dlq-list")


def test_record_masked_then_unmasked_and_audited(driver: Any, scenario: Scenario) -> None:
    jt = scenario.stack.job_type
    sign_in(driver, None)
    driver.get(f"{scenario.url}/dlq/{jt}?key={scenario.dead_keys[0]}")
    click_through(driver, driver.find_element(By.CSS_SELECTOR, "#dead-letters tbody tr td a"))
    payload = driver.find_element(By.ID, "payload").text
    assert "hunter2-0" not in payload and '"seq": 0' in payload
    assert "<script>window.__xss=1</script>" in payload  # shown as text, not run
    assert driver.execute_script("return window.__xss === undefined")
    assert "PermanentError" in driver.find_element(By.ID, "stack").text
    assert not driver.find_elements(By.ID, "unmask")
    screenshot(driver, "dlq-record")
    record_url = driver.current_url
    sign_in(driver, basic())
    driver.get(record_url)
    assert driver.find_element(By.ID, "user").text == "alice"
    click_through(driver, driver.find_element(By.ID, "unmask"))
    assert "hunter2-0" in driver.find_element(By.ID, "payload").text
    assert driver.find_element(By.ID, "unmasked")
    driver.get(scenario.url + "/audit")
    rows = driver.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
    assert "alice@" in rows[0].find_element(By.CSS_SELECTOR, "td.user").text
    assert "show unmasked" in rows[0].find_element(By.CSS_SELECTOR, "td.command").text
    assert driver.find_element(By.ID, "chain").text.startswith("Chain intact")


def test_replay_two_records_to_success(driver: Any, scenario: Scenario) -> None:
    stack = scenario.stack
    # The fix is deployed: the worker restarts with it (same /metrics port).
    assert stack.stop_all() == [0]
    stack.procs.clear()
    stack.start_worker(JOBSTREAM_TEST_FIXED="1")
    sign_in(driver, basic())
    driver.get(f"{scenario.url}/dlq/{stack.job_type}")
    rows = driver.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
    picked = rows[:2]
    ids = [r.find_element(By.CSS_SELECTOR, "td.job-id").text for r in picked]
    for r in picked:
        r.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    click_through(driver, driver.find_element(By.ID, "replay-selected"))
    assert driver.find_element(By.ID, "dry-run-count").text == "2"
    screenshot(driver, "dlq-confirm")
    assert not any(r["job_id"] in ids for r in stack.runs())  # a dry run sent nothing
    click_through(driver, driver.find_element(By.ID, "confirm"))
    assert driver.find_element(By.ID, "replayed").text == "2"
    stack.wait_for(lambda: {r["job_id"] for r in stack.runs()} >= set(ids), 60,
                   "the two replayed jobs succeeded")
    done = [r for r in stack.runs() if r["job_id"] in ids]
    assert len(done) == 2 and all(r["attempt"] == 1 for r in done)
    driver.get(scenario.url + "/audit")
    top = driver.find_elements(By.CSS_SELECTOR, "#audit tbody tr")[0].text
    assert "alice@" in top and "replay" in top and "replayed 2" in top and "console" in top
    screenshot(driver, "audit")


def test_replay_by_filter_with_dry_run(driver: Any, scenario: Scenario) -> None:
    stack = scenario.stack
    sign_in(driver, basic())
    key = scenario.dead_keys[3]
    # limit=1 only limits the rows shown: a replay by filter takes every match.
    driver.get(f"{scenario.url}/dlq/{stack.job_type}?key={key}&limit=1")
    click_through(driver, driver.find_element(By.ID, "replay-filtered"))
    assert driver.find_element(By.ID, "dry-run-count").text == "1"
    click_through(driver, driver.find_element(By.ID, "confirm"))
    assert driver.find_element(By.ID, "replayed").text == "1"
    stack.wait_for(lambda: scenario.dead_ids[3] in {r["job_id"] for r in stack.runs()}, 60,
                   "the job replayed by filter succeeded")
