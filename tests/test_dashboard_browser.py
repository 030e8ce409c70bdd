"""`rediswq dashboard` in a real browser: headless Chromium, driven by Selenium through chromedriver.

Selenium with Debian's chromium and chromium-driver (the same build, so they always match): the one
choice that installs from the ordinary registries with no browser download. A real Redis, real
`rediswq work` processes draining queues, and what a person sees: the list, numbers that change, a
dead letter's error on the queue page, a requeue through its button (checked in Redis afterwards).
Screenshots of both pages go to tests/artifacts/ (git-ignored). Where Chromium, chromedriver or
Selenium is missing the test is skipped with the reason; under CI (CI=true) it fails instead.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_dashboard import RQ, TOKEN, RunningDashboard
from redis_server import RedisServer

import rediswq

ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "browser-Pa55word-never-shown"
BROWSER = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")

pytestmark = pytest.mark.slow


def _first(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if os.access(p, os.X_OK)), None)


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if _first(BROWSER) is None:
        return "no Chromium (apt-get install chromium)"
    if _first(DRIVER) is None:
        return "no chromedriver (apt-get install chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test, but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _first(BROWSER) or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,760"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_first(DRIVER)))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer(password=PASSWORD)
    yield s
    s.stop()


def worker(url: str, queue: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDISWQ_URL": url}
    return subprocess.Popen(
        [RQ, "work", queue, "--allow-dead", "--stop-after-failures", "0", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def until(check: Callable[[], Any], secs: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + secs
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return value


def test_a_person_sees_queues_drain_reads_a_dead_letter_and_requeues_it(
    browser: Any, server: RedisServer, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(exist_ok=True)
    slow = rediswq.Queue.from_url(server.url, "thumbnails")
    slow.put_many(f"photo-{i}.jpg" for i in range(400))
    broken = rediswq.Queue.from_url(server.url, "invoices")
    broken.put_many(f"invoice-{i}" for i in range(3))
    # Every invoice fails with the same error, once: three dead letters with that text.
    failing = worker(server.url, "invoices", "--max-attempts", "1", "--", "sh", "-c",
                     "echo 'printer on fire: out of paper' >&2; exit 3")  # fmt: skip
    assert failing.wait(60) == 0  # drained (--allow-dead: its dead letters are the point)
    draining = worker(server.url, "thumbnails", "--", "sleep", "0.05")
    dash = RunningDashboard(server.url, tmp_path / "log")
    try:

        def cell(queue: str, column: str) -> str:
            found = browser.find_elements(By.CSS_SELECTOR, f'tr[data-queue="{queue}"] td.c-{column}')
            return str(found[0].text) if found else ""

        browser.get(dash.base)
        until(lambda: cell("thumbnails", "done") not in ("", "0"), what="items done on the list page")
        first = int(cell("thumbnails", "done").replace(",", ""))
        until(lambda: int(cell("thumbnails", "done").replace(",", "") or 0) > first, what="done to grow")
        assert cell("invoices", "dead") == "3"
        assert [
            r.get_attribute("data-queue") for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-queue]")
        ] == [
            "invoices",
            "thumbnails",
        ]
        until(lambda: cell("thumbnails", "rate") not in ("", "-", "0.0/s"), what="a drain rate")
        assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-queue="thumbnails"] svg polyline')
        assert PASSWORD not in browser.page_source
        browser.save_screenshot(str(ARTIFACTS / "dashboard-list.png"))

        # The queue page, with the token in the fragment (never sent to the server).
        browser.get(f"{dash.base}queue?name=invoices#token={TOKEN}")
        errors = until(
            lambda: browser.find_elements(By.CSS_SELECTOR, "#dead-letters td.c-error"), what="dead letters"
        )
        assert all("printer on fire: out of paper" in e.text for e in errors), [e.text for e in errors]
        assert len(errors) == 3
        assert "#token" not in browser.current_url
        browser.save_screenshot(str(ARTIFACTS / "dashboard-queue.png"))
        print(f"screenshots: {ARTIFACTS / 'dashboard-list.png'}, {ARTIFACTS / 'dashboard-queue.png'}")

        letter = browser.find_elements(By.CSS_SELECTOR, "#dead-letters tr[data-id]")[0]
        item_id = letter.get_attribute("data-id")
        letter.find_element(By.CSS_SELECTOR, "button[data-action^=requeue-]").click()
        until(
            lambda: "put back on the queue" in browser.find_element(By.ID, "notice").text, what="the notice"
        )
        stats = broken.stats()
        assert (stats.dead, stats.pending) == (2, 1)
        assert item_id not in {d.id for d in broken.dead_letters()}
        until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#dead-letters tr[data-id]")) == 2,
              what="the page to show two dead letters")  # fmt: skip

        # Without the token (a plain POST, as a form on another site sends): refused, nothing moves.
        status, _ = dash.post(b'{"action": "requeue", "queue": "invoices"}', {})
        assert status == 403
        assert broken.stats().dead == 2
        assert PASSWORD not in browser.page_source
    finally:
        draining.terminate()
        draining.wait(30)
        dash.stop()
        for name in ("thumbnails", "invoices"):
            rediswq.Queue.from_url(server.url, name).purge()
    assert "requeue queue='invoices'" in (tmp_path / "log").read_text()
