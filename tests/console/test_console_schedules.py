"""The schedules page in a real Chromium (issue 25): a per-second schedule fired by a real
worker is listed with its cron, zone and last slot; a signed-in operator pauses it (no slot
fires while paused), runs it now (a job with its own id runs), and resumes it (it fires again);
each write is in the audit trail with the operator's name and `via: console`. Read-only visitors
see no buttons, and a forged pause without the CSRF token changes nothing."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from jobstream.consumers.ops.audit import list_audit
from jobstream.consumers.scheduling.control import read_states
from tests.console.support import (
    USER,
    add_ui_settings,
    basic,
    browser,
    click_through,
    console_server,
    free_port_from,
    post,
    screenshot,
    sign_in,
)
from tests.support.harness import Stack, make_stack
from tests.support.schedules import add_schedules, every_second, slot_id_of


@dataclass
class Scene:
    stack: Stack
    url: str
    name: str


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory, bootstrap: str) -> Iterator[Scene]:
    unique = uuid.uuid4().hex[:8]
    stack = make_stack(tmp_path_factory.mktemp("console-schedules"), bootstrap, unique,
                       job={"partitions": 1})
    name = f"tick-{unique}"
    add_schedules(stack, {name: {**every_second(stack, "none"), "timezone": "Europe/Berlin"}})
    add_ui_settings(stack)
    stack.start_worker()
    try:
        stack.wait_for(lambda: len(_fired(stack, name)) >= 2, 60, "the schedule firing")
        with console_server(stack, free_port_from(range(8420, 8423))) as url:
            yield Scene(stack, url, name)
    finally:
        stack.stop_all()
        stack.delete_topics()


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    d = browser()
    try:
        yield d
    finally:
        d.quit()


def _fired(stack: Stack, name: str) -> list[dict[str, Any]]:
    """Runs of the schedule's slots (not of manual triggers)."""
    return [r for r in stack.runs() if slot_id_of(name, r["job_id"])]


def _click(driver: Any, name: str, button: str) -> str:
    """Press a row's button; the message of the page the form led to (a click returns before
    the browser has loaded it)."""
    click_through(driver, _row(driver, name).find_element(By.CSS_SELECTOR, f"button.{button}"))
    found = driver.find_elements(By.ID, "done")
    assert found, f"no result message: {driver.find_element(By.TAG_NAME, 'main').text[:500]}"
    return str(found[0].text)


def _row(driver: Any, name: str) -> Any:
    rows = driver.find_elements(By.CSS_SELECTOR, f'#schedules tr[data-name="{name}"]')
    assert rows, f"no row of {name}: {driver.find_element(By.TAG_NAME, 'main').text[:500]}"
    return rows[0]


def test_read_only_visitors_see_the_schedule_and_no_buttons(driver: Any, scene: Scene) -> None:
    sign_in(driver, None)
    driver.get(f"{scene.url}/schedules")
    row = _row(driver, scene.name)
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    assert cells[:4] == [scene.name, scene.stack.job_type, "* * * * * *", "Europe/Berlin"]
    assert cells[5].startswith("20") and cells[6] == "no", cells  # a slot fired; not paused
    assert not row.find_elements(By.TAG_NAME, "button")
    assert "Schedules" in driver.find_element(By.TAG_NAME, "nav").text
    screenshot(driver, "schedules")


def test_pause_trigger_resume_from_the_browser(driver: Any, scene: Scene) -> None:
    stack, name = scene.stack, scene.name
    sign_in(driver, basic())
    driver.get(f"{scene.url}/schedules")
    assert "paused" in _click(driver, name, "pause")
    assert _row(driver, name).find_element(By.CSS_SELECTOR, "td.paused").text == "yes"
    assert read_states(stack.settings)[name].paused
    time.sleep(1.5)  # a slot being fired when the pause landed may still run
    paused_at = time.time()
    time.sleep(3)
    assert not [r for r in _fired(stack, name) if r["start"] > paused_at], "fired while paused"

    done = _click(driver, name, "trigger")
    assert "triggered, job id sched:" in done, done
    jid = re.search(r"job id (sched:\S+:manual:[0-9a-f]+)", done).group(1)  # type: ignore[union-attr]
    stack.wait_for(lambda: any(r["job_id"] == jid for r in stack.runs()), 30, "the run now")

    assert "resumed" in _click(driver, name, "resume")
    assert _row(driver, name).find_element(By.CSS_SELECTOR, "td.paused").text == "no"
    resumed_at = time.time()
    stack.wait_for(lambda: any(r["start"] > resumed_at for r in _fired(stack, name)), 30,
                   "firing again after resume")
    screenshot(driver, "schedules-signed-in")

    mine = [r for r in list_audit(stack.settings, limit=500) if r.get("target") == name]
    commands = [r["command"] for r in mine]
    for cmd in ("schedules pause", "schedules trigger", "schedules resume"):
        assert cmd in commands, commands
    assert all(r.get("user") == USER and r.get("via") == "console" for r in mine), mine


def test_a_forged_or_bad_write_changes_nothing(scene: Scene) -> None:
    assert not read_states(scene.stack.settings)[scene.name].paused
    status, body = post(f"{scene.url}/schedules/{scene.name}/pause", {},
                        headers={"authorization": basic(), "origin": scene.url})
    assert status == 403 and "csrf" in body.lower(), (status, body[:300])
    time.sleep(0.5)
    assert not read_states(scene.stack.settings)[scene.name].paused
    status, body = post(f"{scene.url}/schedules/{scene.name}/pause", {"csrf": "x"})
    assert status == 401, (status, body[:300])
    status, body = post(f"{scene.url}/schedules/no-such-one/pause", {"csrf": "x"},
                        headers={"authorization": basic(), "origin": scene.url})
    assert status in (403, 404) and "Traceback" not in body
