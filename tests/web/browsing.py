"""Helpers of the browser tests: Debian's Chromium driven by Playwright (sync API)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

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
WARDS_VI = {"Thành Vinh", "Trường Vinh", "Vinh Phú", "Vinh Lộc", "Cửa Lò", "Vinh Hưng"}
FORCED = os.environ.get("IOC_TEST_BROWSER") == "1"


def unavailable(reason: str) -> None:
    """Skip, or fail when IOC_TEST_BROWSER=1 promised a browser."""
    if FORCED:
        pytest.fail(f"IOC_TEST_BROWSER=1 but {reason}")
    pytest.skip(reason)


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


def login(page: Page, base: str, username: str, password: str, target: str = "/dashboard") -> None:
    """Open ``target`` logged out, get the login form, log in and come back to ``target``."""
    page.goto(f"{base}{target}")
    assert "/login" in page.url
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(password)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(f"{base}{target}")


def ward_labels(page: Page) -> list[str]:
    """The ward names drawn on the map, once all six are there."""
    from playwright.sync_api import expect

    # A locator wait, not wait_for_function: a string predicate would be eval'd in the page,
    # which the app's CSP (script-src 'self', no 'unsafe-eval') rightly forbids.
    expect(page.locator(".leaflet-tooltip.ward-label")).to_have_count(6, timeout=15000)
    labels = page.locator(".leaflet-tooltip.ward-label")
    for i in range(labels.count()):
        assert labels.nth(i).is_visible()
    return [text.strip() for text in labels.all_inner_texts()]


def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """A test artefact under var/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


#: Text/background contrast of every visible text element, computed in the page (WCAG 2.1).
CONTRAST_SCRIPT = """
() => {
  function rgba(s) {
    const m = s.match(/rgba?\\(([^)]+)\\)/); if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  }
  function lum(c) {
    const v = c.slice(0, 3).map(x => {
      x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
  }
  function blend(top, under) {
    const a = top[3]; return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a)).concat([1]);
  }
  function background(el) {
    const layers = [];
    for (let n = el; n; n = n.parentElement) {
      const cs = getComputedStyle(n);
      if (cs.backgroundImage && cs.backgroundImage !== "none") return null;  // unknown: skip
      const c = rgba(cs.backgroundColor); if (c[3] > 0) layers.push(c); if (c[3] >= 1) break;
    }
    let bg = [255, 255, 255, 1];
    for (let i = layers.length - 1; i >= 0; i--) bg = blend(layers[i], bg);
    return bg;
  }
  const failures = [];
  let checked = 0;
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const r = el.getBoundingClientRect(); const cs = getComputedStyle(el);
    if (!r.width || !r.height || cs.visibility === "hidden" || cs.display === "none") continue;
    if (el.closest(".visually-hidden, .leaflet-container")) continue;
    const bg = background(el); if (!bg) continue;
    const fg = blend(rgba(cs.color), bg);
    const a = lum(fg), b = lum(bg); const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(cs.fontSize); const bold = parseInt(cs.fontWeight, 10) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    checked++;
    if (ratio < (large ? 3 : 4.5) - 0.01) {
      const text = el.textContent.trim().slice(0, 40);
      failures.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)} «${text}»`);
    }
  }
  return { checked, failures };
}
"""

#: Form controls without an accessible name (label, aria-label or aria-labelledby).
UNLABELLED_SCRIPT = """
() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button")]
  .filter(el => el.getClientRects().length)
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
    && !el.getAttribute("aria-labelledby") && !(el.tagName === "BUTTON" && el.textContent.trim()))
  .map(el => el.outerHTML.slice(0, 120))
"""
