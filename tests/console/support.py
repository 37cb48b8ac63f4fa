"""What the console tests share: a console server process, a real Chromium (Selenium), a
scenario of jobs that succeeded, were retried and were dead-lettered on the real broker."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.harness import ROOT, Stack

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("JOBSTREAM_TEST_ARTIFACTS")
                 or ROOT / "tests" / "console" / "artifacts")
USER, PASSWORD, TOKEN = "alice", "s3cret-pw", "tok-7f3a9c"


def free_port_from(candidates: range) -> int:
    """The first port of this session's range that nothing listens on (another process
    holding one must not fail the run)."""
    import socket

    for port in candidates:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError(f"no free port in {candidates.start}-{candidates.stop - 1}")


def basic(user: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def add_ui_settings(stack: Stack, **ui: Any) -> None:
    """Write a ui section into the stack's settings file (read by the console process)."""
    data = yaml.safe_load(stack.config_path.read_text())
    data["ui"] = {"auth": {"passwords": {USER: PASSWORD}, "tokens": {"bot": TOKEN}},
                  "cache_s": 0, **ui}
    stack.config_path.write_text(yaml.safe_dump(data))


@contextmanager
def console_server(stack: Stack, port: int) -> Iterator[str]:
    """`jobstream ui` as a process on 127.0.0.1:port; its base URL once it answers."""
    log = open(stack.tmp / f"console-{port}.log", "ab")  # noqa: SIM115 (kept for the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobstream", "ui", "--port", str(port)],
        env=stack.env(), stdout=log, stderr=log, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the console exited with {proc.returncode}; log in "
                                     f"{stack.tmp}/console-{port}.log")
            try:
                urllib.request.urlopen(url + "/static/console.css", timeout=2).close()
                time.sleep(0.3)
                if proc.poll() is None:  # ours answered, not another server on the port
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise AssertionError("the console did not answer within 30s") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def browser() -> Any:
    """Headless Chromium through chromedriver. A missing browser fails the run, loudly:
    scripts/ensure-browser.sh (make test) installs it."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            pytest.fail(f"{path} is missing: run scripts/ensure-browser.sh (apt-get install "
                        "chromium chromium-driver)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,1000", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Network.enable", {})
    return driver


def click_through(driver: Any, element: Any, timeout: float = 30) -> None:
    """Click a link or a form's button and wait for the page it leads to: a click returns
    before the browser has loaded it, and reading the old page then is a flaky test."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    element.click()

    def gone(_driver: Any) -> bool:
        # Mid-navigation chromedriver can answer "Node with given id does not belong to the
        # document" (an unknown error, not a stale reference): the old page is gone too.
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return True
            raise
        return False

    WebDriverWait(driver, timeout).until(gone)


def sign_in(driver: Any, authorization: str | None) -> None:
    """Send (or stop sending) an Authorization header with every request, as a browser does
    after a basic-auth prompt."""
    headers = {"Authorization": authorization} if authorization else {}
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def post(url: str, fields: dict[str, str] | list[tuple[str, str]],
         headers: dict[str, str] | None = None) -> tuple[int, str]:
    """A form POST outside the browser (what a forged or scripted request sends)."""
    from urllib.parse import urlencode

    req = urllib.request.Request(url, data=urlencode(fields).encode(), method="POST",
                                 headers={"content-type": "application/x-www-form-urlencoded",
                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)
