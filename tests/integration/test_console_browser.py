"""The console in a real headless browser (Debian's chromium and chromium-driver, driven by
Selenium; nothing downloaded at run time): log in, watch the overview's counts move
after real SMTP traffic, find a bounced message by its recipient in the event history
and a booking's message by its X-Booking-Id, hold and
release it, act on the queue after a confirmation, add and remove a suppression,
and read it on a phone-sized screen. Each page's screenshot is written to
docs/console/ (shown in the README).

One browser, one gateway, one walk: CPU is scarce, and each step needs the last.
"""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.fixtures.admin import TOKEN, admin_section
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import write_policy
from tests.fixtures.sink import Sink

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CONSENT = """\
    categories:
      transactional: {basis: contract}
      marketing: {basis: consent, tracking: true}
    """


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    for path in (CHROMIUM, DRIVER):
        assert shutil.which(path), f"{path} is missing: .ci/install-deps installs it"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1280,1000",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    # The driver's path is given, so Selenium Manager never looks for (or fetches) one.
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def booking(booking_id: str, to: str) -> bytes:
    return (f"From: Booking <app@example.com>\r\nTo: {to}\r\nSubject: Booking {booking_id}\r\n"
            f"X-Booking-Id: {booking_id}\r\n\r\nYour booking is confirmed.\r\n").encode()


def send(port: int, rcpt: str, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("app@example.com", [rcpt], data)


def card(driver: WebDriver, name: str) -> int:
    return int(driver.find_element(By.CSS_SELECTOR, f"#card-{name} b").text)


def until(driver: WebDriver, check: Callable[[], bool], what: str, *, reload: bool = True,
          timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not _holds(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"never true: {what}\n{driver.page_source[:3000]}")
        time.sleep(0.25)
        if reload:
            driver.refresh()


def shows(driver: WebDriver, text: str) -> None:
    """Wait (bounded) until the page that a click led to shows `text`."""
    until(driver, lambda: text in driver.find_element(By.TAG_NAME, "main").text,
          f"the page shows {text!r}", reload=False, timeout=10.0)


def _holds(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except (NoSuchElementException, StaleElementReferenceException):
        return False  # the page was being replaced under us: look again
    except WebDriverException as exc:
        # The same race as Chromium 156 sometimes words it ("Node with given id does
        # not belong to the document"); anything else is a real failure.
        if "does not belong to the document" in str(exc):
            return False
        raise


def shot(driver: WebDriver, name: str) -> None:
    """The whole page: the window is made as tall as the page for the picture."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], min(max(int(height) + 140, 600), 3000))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(size["width"], size["height"])


def submit(driver: WebDriver, button_text: str, scope: str = "") -> None:
    driver.find_element(By.XPATH, f"{scope}//button[normalize-space()='{button_text}']").click()


def walk(driver: WebDriver, base: str, smtp_port: int, sink: Sink) -> None:
    driver.get(f"{base}/console/overview?window=hour")
    assert driver.current_url == f"{base}/console/login"
    shot(driver, "login")
    driver.find_element(By.NAME, "token").send_keys(TOKEN)
    submit(driver, "Log in")
    shows(driver, "Over time")
    assert driver.current_url == f"{base}/console/overview"
    driver.get(f"{base}/console/overview?window=hour")
    before = {name: card(driver, name) for name in ("sent", "delivered", "bounced")}

    for rcpt in ("guest@example.net", "family@example.net", "gone@example.net",
                 "slow@example.net"):
        send(smtp_port, rcpt, booking("B-1234" if rcpt == "slow@example.net" else "B-77", rcpt))
    until(driver, lambda: card(driver, "sent") == before["sent"] + 4
          and card(driver, "delivered") == before["delivered"] + 2
          and card(driver, "bounced") == before["bounced"] + 1, "the overview counts the mail")
    assert "5.1.1" in driver.find_element(By.TAG_NAME, "main").text  # the bounce's reason
    shot(driver, "overview")

    # Mail no longer queued (bounced, delivered) is found by recipient in the event history.
    driver.get(f"{base}/console/trace")
    Select(driver.find_element(By.NAME, "by")).select_by_value("recipient")
    driver.find_element(By.NAME, "q").send_keys("Gone@Example.NET")
    submit(driver, "Find")
    shows(driver, "Message-ID")
    found = driver.find_elements(By.CSS_SELECTOR, ".message")
    assert len(found) == 1 and "550 5.1.1 no such user" in found[0].text, found[0].text
    assert "bounced" in found[0].text and "gone@example.net" in found[0].text
    assert found[0].find_element(By.CSS_SELECTOR, ".state").text == "not in the queue"
    assert not found[0].find_elements(By.TAG_NAME, "button")  # nothing to hold or retry

    driver.get(f"{base}/console/trace")
    Select(driver.find_element(By.NAME, "by")).select_by_value("x-booking-id")
    driver.find_element(By.NAME, "q").send_keys("B-1234")
    submit(driver, "Find")
    shows(driver, "Message-ID")
    state = driver.find_element(By.CSS_SELECTOR, ".message .state")
    assert state.text == "in the queue: deferred", state.text
    assert "451 4.2.0 mailbox busy" in driver.find_element(By.CSS_SELECTOR, ".message").text
    submit(driver, "Hold", "//section[@class='message']")
    shows(driver, ": held")
    assert driver.find_element(By.CSS_SELECTOR, ".message .state").text == "in the queue: hold"
    shot(driver, "trace")
    submit(driver, "Release", "//section[@class='message']")
    shows(driver, ": released")
    assert "released by operator" in driver.find_element(By.CSS_SELECTOR, ".message table").text

    driver.get(f"{base}/console/queue?state=deferred&domain=example.net")
    until(driver, lambda: "slow@example.net" in driver.find_element(By.TAG_NAME, "main").text,
          "the released message is deferred again")
    driver.find_element(By.CSS_SELECTOR, "input[name=id]").click()
    Select(driver.find_element(By.NAME, "action")).select_by_value("retry")
    shot(driver, "queue")
    submit(driver, "Continue…")
    shows(driver, "Retry these 1 messages?")
    submit(driver, "Yes, retry 1")
    shows(driver, "retry: 1 of 1 done")

    driver.get(f"{base}/console/suppressions")
    driver.find_element(By.NAME, "target").send_keys("Complainer@Example.org")
    driver.find_element(By.NAME, "note").send_keys("asked by phone")
    submit(driver, "Suppress")
    shows(driver, "suppressed complainer@example.org (all)")
    assert "asked by phone" in driver.find_element(By.TAG_NAME, "main").text
    shot(driver, "suppressions")
    driver.find_element(By.NAME, "why").send_keys("guest asked again")
    submit(driver, "Remove")
    shows(driver, "removed 1 suppression(s)")

    driver.set_window_size(390, 844)  # a phone
    driver.get(f"{base}/console/overview?window=day")
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    shot(driver, "overview-phone")


async def test_console_in_a_real_browser(tmp_path: Path, browser: WebDriver) -> None:
    write_policy(tmp_path, "consent.yaml", CONSENT)
    sink = Sink().start()
    sink.replies["gone@example.net"] = "550 5.1.1 no such user"
    sink.replies["slow@example.net"] = "451 4.2.0 mailbox busy, try later"
    config = write_config(tmp_path, sink.port, extra=admin_section(
        tmp_path, extra="correlation_headers: [X-Booking-Id]\n"))
    try:
        async with running_gateway(config) as gw:
            assert gw.admin is not None
            # The browser blocks: it runs in a thread while the gateway serves it here.
            await asyncio.to_thread(walk, browser, f"http://127.0.0.1:{gw.admin.port}",
                                    gw.ports["relay"], sink)
            actions = [(e.actor, e.action) for e in await gw.state.audit.entries(50)]
            for action in ("console.login", "queue.hold", "queue.release", "queue.retry",
                           "suppress.add", "suppress.remove", "suppress.remove.reason"):
                assert ("console:admin", action) in actions, action
    finally:
        sink.stop()
