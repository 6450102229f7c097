"""The README's dead-letter procedure, done by hand in the management UI, in a real browser.

Headless system Chromium (Debian `chromium` + `chromium-driver`, driven by Selenium through
/usr/bin/chromedriver: nothing is downloaded). The pipeline runs on a vhost of its own, with
the payment service given a single short retry tier, so a `tok_flaky` payment (the simulated
gateway is unavailable twice) exhausts its retries and is dead-lettered. Then, as an operator:
log in, open `payment.stock-reserved.dlq`, "Get messages" with requeue, read
`x-dead-letter-reason` and `x-exception-message` on the page, "Move messages" back to the work
queue (shovel plugin); the third attempt is approved and the order is CONFIRMED. Each step is
saved as a screenshot under .data/browser/.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from contracts.topology import dead_letter_queue_name, queue_name
from infra.devstack import RabbitVhost
from tests.e2e.pipeline import Pipeline, pipeline_fixture
from tests.integration.waiting import eventually

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / ".data" / "browser"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WORK_QUEUE = queue_name("payment", "StockReserved")
DLQ = dead_letter_queue_name(WORK_QUEUE)
UI_WAIT_S = 20


# A pipeline of its own: its payment service has one short retry tier, and the test counts
# the messages in that service's DLQ.
pipeline = pipeline_fixture(
    "pipeline",
    {"OUTBOX_POLL_INTERVAL_S": "0.5"},
    service_env={"payment": {"AMQP_RETRY_DELAYS_MS": "[300]"}},
    seed=(5, 100),
)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(binary), f"{binary} missing: apt-get install chromium chromium-driver"
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1400")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def _wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, UI_WAIT_S)


def _section(driver: WebDriver, title: str) -> WebElement:
    """The collapsible section under the heading `title`, opened if it was folded."""
    heading = _wait(driver).until(
        expected_conditions.element_to_be_clickable(
            (By.XPATH, f"//h2[normalize-space()='{title}']")
        )
    )
    section = heading.find_element(By.XPATH, "./following-sibling::div[1]")
    if not section.is_displayed():
        heading.click()
        _wait(driver).until(lambda _: section.is_displayed())
    # The UI slides a section open (jQuery): displayed from the animation's first frame, its
    # fields are not interactable until it ends (a CI run's click met one mid-slide).
    _wait(driver).until(
        lambda d: d.execute_script(
            "return window.jQuery === undefined || jQuery(':animated').length === 0"
        )
    )
    return section


def _interactable(element: WebElement) -> WebElement | None:
    return element if element.is_displayed() and element.is_enabled() else None


def _header_values(page_text: str) -> dict[str, str]:
    """`name: value` rows of the message's headers table, as the page shows them."""
    values: dict[str, str] = {}
    for line in page_text.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and name.startswith("x-"):
            values[name] = value.strip()
    return values


async def _flaky_order(http: httpx.AsyncClient, base: str) -> tuple[str, dict[str, str]]:
    credentials = {"email": f"ui-{uuid.uuid4().hex[:8]}@example.com", "password": "c0rrect horse"}
    created = await http.post(f"{base}/customers", json={**credentials, "name": "UI"})
    assert created.status_code == 201, created.text
    session = await http.post(f"{base}/sessions", json=credentials)
    assert session.status_code == 201, session.text
    auth = {"Authorization": f"Bearer {session.json()['token']}"}
    order = {"items": [{"sku": "SKU-0001", "quantity": 1}], "payment_method": "tok_flaky"}
    placed = await http.post(f"{base}/orders", headers=auth, json=order)
    assert placed.status_code == 202, placed.text
    return str(placed.json()["order_id"]), auth


async def test_operator_reads_the_dead_letter_and_moves_it_back_in_the_ui(
    pipeline: Pipeline, rabbitmq_vhost: RabbitVhost, browser: WebDriver
) -> None:
    vhost = unquote(pipeline.amqp_url.rsplit("/", 1)[1])
    management = rabbitmq_vhost.management
    queue_api = f"/queues/{quote(vhost, safe='')}/{quote(DLQ, safe='')}"
    async with httpx.AsyncClient(timeout=10) as http:
        base = pipeline.url("order")
        order_id, auth = await _flaky_order(http, base)

        async def status() -> str:
            response = await http.get(f"{base}/orders/{order_id}", headers=auth)
            return str(response.json()["status"])

        async def confirmed() -> bool:
            return await status() == "CONFIRMED"

        # Stats refresh every 5 s: the UI shows the depth the API reports.
        await eventually(
            lambda: management.request("GET", queue_api).json().get("messages") == 1, 30, 0.5
        )
        assert await status() == "RESERVED"  # stuck: its payment is dead-lettered

        # 1. Log in.
        browser.get(management.url)
        _wait(browser).until(
            expected_conditions.visibility_of_element_located((By.NAME, "username"))
        )
        browser.find_element(By.NAME, "username").send_keys(management.user)
        browser.find_element(By.NAME, "password").send_keys(management.password)
        _shot(browser, "1-login")
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        _wait(browser).until(expected_conditions.presence_of_element_located((By.ID, "logout")))
        # The page re-renders itself every 5 s by default, replacing the forms being filled in
        # (a click then meets a detached element); an operator at work turns that off too.
        refresh = _wait(browser).until(
            expected_conditions.element_to_be_clickable((By.ID, "update-every"))
        )
        Select(refresh).select_by_value("")

        # 2. Queues -> the DLQ of this run's vhost.
        browser.get(f"{management.url}/#/queues/{quote(vhost, safe='')}/{quote(DLQ, safe='')}")
        _wait(browser).until(
            expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "h1"), DLQ)
        )
        _shot(browser, "2-dlq-queue")

        # 3. Get messages, "Nack message requeue true": look without removing.
        get = _section(browser, "Get messages")
        count = _wait(browser).until(lambda _: _interactable(get.find_element(By.NAME, "count")))
        assert count is not None
        Select(get.find_element(By.NAME, "ackmode")).select_by_value("ack_requeue_true")
        count.clear()
        count.send_keys("1")
        get.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        message = _wait(browser).until(
            expected_conditions.visibility_of_element_located((By.ID, "msg-wrapper"))
        )
        _wait(browser).until(lambda _: "x-dead-letter-reason" in message.text)
        text = message.text
        browser.execute_script("arguments[0].scrollIntoView();", message)
        _shot(browser, "3-get-messages")
        headers = _header_values(text)
        assert headers.get("x-dead-letter-reason") == "retries exhausted", text
        assert "unavailable" in headers.get("x-exception-message", "").lower(), text
        assert order_id in text  # the payload names the order

        # 4. Move messages back to the work queue (a shovel the UI creates).
        move = _section(browser, "Move messages")
        destination = _wait(browser).until(
            lambda _: _interactable(move.find_element(By.NAME, "dest-queue"))
        )
        assert destination is not None
        destination.clear()
        destination.send_keys(WORK_QUEUE)
        _shot(browser, "4-move-messages")
        move.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

        # 5. The third gateway call is approved: the order completes, the DLQ empties.
        assert await eventually(confirmed, 45, 0.3)
        await eventually(
            lambda: management.request("GET", queue_api).json().get("messages") == 0, 30, 0.5
        )
        # The queue page again: its depth is 0 now (the UI polls every 5 s).
        browser.get(f"{management.url}/#/queues/{quote(vhost, safe='')}/{quote(DLQ, safe='')}")
        _wait(browser).until(
            expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "h1"), DLQ)
        )
        _shot(browser, "5-dlq-empty")
