"""The dashboard in a real browser: Debian's Chromium driven by Playwright against `ioc serve`.

The server runs as a subprocess on a free 127.0.0.1 port, on a temporary SQLite database made
by `ioc migrate` and `ioc seed --demo`. Skipped when Chromium (/usr/bin/chromium, from
`apt-get install chromium`) or the `playwright` package is missing, unless IOC_TEST_BROWSER=1,
which turns the skip into a failure (CI that promises a browser must have one).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "var" / "screenshots"
DEMO_ADMIN = ("admin", "admin-demo-2025")
WARDS_VI = {"Thành Vinh", "Trường Vinh", "Vinh Phú", "Vinh Lộc", "Cửa Lò", "Vinh Hưng"}
FORCED = os.environ.get("IOC_TEST_BROWSER") == "1"


def _unavailable(reason: str) -> None:
    if FORCED:
        pytest.fail(f"IOC_TEST_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ioc(args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run(
            [sys.executable, "-m", "ioc", *args], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=300
        )
    if done.returncode != 0:
        pytest.fail(f"`ioc {' '.join(args)}` failed ({done.returncode}):\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def live_server(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ioc serve` on a migrated, demo-seeded temporary SQLite database; yields its base URL."""
    var_dir = tmp_path_factory.mktemp("ioc-browser")
    log = var_dir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update(
        {
            "IOC_ENV": "development",
            "IOC_VAR_DIR": str(var_dir),
            "IOC_DATABASE_URL": f"sqlite:///{var_dir / 'ioc.db'}",
            "IOC_LOG_JSON": "false",
            "IOC_MQTT__URL": "",
            # The map must work offline: no tile layer.
            "IOC_MAP__TILE_URL": "",
        }
    )
    _ioc(["migrate"], env, log)
    _ioc(["seed", "--demo"], env, log)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "ioc", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"ioc serve exited ({server.returncode}):\n{log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:  # noqa: S310 (local)
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"ioc serve did not answer /healthz in 60 s:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


class PageWatch:
    """Everything a page asked the network for, and every script error or CSP violation."""

    def __init__(self, page: Page, base: str) -> None:
        self.base = base
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)
        page.on("response", self._response)

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status}: {response.url}")

    def _console(self, message: Any) -> None:
        # "Failed to load resource" is reported with its URL by _response.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {message.text}")

    def external_requests(self) -> list[str]:
        return [url for url in self.requests if not url.startswith((self.base, "data:", "blob:"))]


def _login(page: Page, base: str) -> None:
    page.goto(f"{base}/dashboard")
    # Logged out: redirected to the login form, which comes back to the dashboard.
    assert "/login" in page.url
    page.get_by_label("Tên đăng nhập").fill(DEMO_ADMIN[0])
    page.get_by_label("Mật khẩu").fill(DEMO_ADMIN[1])
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(f"{base}/dashboard")


def _ward_labels(page: Page) -> list[str]:
    from playwright.sync_api import expect

    # A locator wait, not wait_for_function: a string predicate would be eval'd in the page,
    # which the app's CSP (script-src 'self', no 'unsafe-eval') rightly forbids.
    expect(page.locator(".leaflet-tooltip.ward-label")).to_have_count(6, timeout=15000)
    labels = page.locator(".leaflet-tooltip.ward-label")
    for i in range(labels.count()):
        assert labels.nth(i).is_visible()
    return [text.strip() for text in labels.all_inner_texts()]


def test_dashboard_map_shows_the_six_wards_in_vietnamese(browser: Browser, live_server: str) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 820}, locale="vi-VN")
    page = context.new_page()
    watch = PageWatch(page, live_server)
    try:
        _login(page, live_server)
        labels = _ward_labels(page)
        assert set(labels) == WARDS_VI
        assert page.locator("html").get_attribute("lang") == "vi"
        assert page.locator("#map").get_attribute("data-state") == "ready"
        assert page.locator("#ward-list button").count() == 6
        # The vendored font is what renders the Vietnamese text.
        page.evaluate("document.fonts.ready.then(() => true)")
        assert page.evaluate("document.fonts.check('700 14px \"Be Vietnam Pro\"', 'Trường Vinh Cửa Lò')")
        assert page.evaluate(
            "[...document.fonts].some(f => f.family.includes('Be Vietnam Pro') && f.status === 'loaded')"
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dashboard.png"))
        assert watch.external_requests() == [], "the page must not load anything from outside (no CDN)"
        assert watch.errors == [], watch.errors
    finally:
        context.close()


def test_dashboard_in_english_uses_english_ward_names(browser: Browser, live_server: str) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 820})
    page = context.new_page()
    watch = PageWatch(page, live_server)
    try:
        _login(page, live_server)
        page.get_by_role("link", name="English").click()
        page.wait_for_url(f"{live_server}/dashboard")
        assert page.locator("html").get_attribute("lang") == "en"
        labels = _ward_labels(page)
        assert not set(labels) & WARDS_VI
        assert any("Vinh" in label for label in labels)
        assert page.get_by_role("button", name="Log out").is_visible()
        assert watch.external_requests() == []
        assert watch.errors == [], watch.errors
    finally:
        context.close()


def test_home_and_docs_render_without_script_errors(browser: Browser, live_server: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    watch = PageWatch(page, live_server)
    try:
        page.goto(f"{live_server}/")
        assert page.get_by_role("heading", level=1).inner_text().startswith("Vinh Smart")
        assert page.get_by_text("Chưa có dữ liệu quan trắc.").is_visible()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "home-mobile.png"), full_page=True)
        # Keyboard users reach the skip link first.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.classList.contains('skip-link')")
        page.goto(f"{live_server}/docs")
        page.wait_for_selector(".swagger-ui .information-container", timeout=15000)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=str(SCREENSHOTS / "docs.png"))
        assert watch.external_requests() == []
        assert watch.errors == [], watch.errors
    finally:
        context.close()
