"""The KPI wall, its drill-down and the dossier dashboard in a real browser.

Debian's Chromium driven by Playwright against a real ``ioc serve`` (fixture ``start_server``) on
a database seeded with the demo (``ioc seed --demo``). Skipped when Chromium or the playwright
package is missing, unless IOC_TEST_BROWSER=1, which turns the skip into a failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.conftest import LiveServer
from tests.web.browsing import SCREENSHOTS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

DEMO_ADMIN = ("admin", "admin-demo-2025")
#: The status colours of the wall (left border of a card), as the browser computes them.
COLOURS = {
    "on_track": "rgb(30, 123, 52)",
    "at_risk": "rgb(183, 121, 31)",
    "off_track": "rgb(180, 35, 24)",
}
LOGIN_ONLY = "infrastructure-security"  # target 5, public = false


class Watch:
    """Script errors and failed requests of a page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("response", self._response)

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.errors.append(f"HTTP {response.status}: {response.url}")


def _cards(page: Page) -> dict[str, dict[str, str]]:
    """Each card of the wall: its status class, value text, number and left-border colour."""
    found: dict[str, dict[str, str]] = page.eval_on_selector_all(
        "article.kpi-card",
        """cards => Object.fromEntries(cards.map(c => [c.dataset.kpi, {
            status: [...c.classList].find(x => x.startsWith('kpi-card--')).slice(10),
            value: c.querySelector('.kpi-actual').textContent.trim(),
            title: c.querySelector('h3').textContent.trim(),
            badge: getComputedStyle(c.querySelector('.kpi-status')).backgroundColor,
            colour: getComputedStyle(c).borderLeftColor,
        }]))""",
    )
    return found


def _numbered(cards: dict[str, dict[str, str]]) -> dict[int, dict[str, str]]:
    out = {}
    for kpi_id, card in cards.items():
        head = card["title"].split(".", 1)[0]
        if head.isdigit():
            out[int(head)] = card | {"id": kpi_id}
    return out


def test_kpi_wall_drill_down_and_dossier_dashboard(browser: Browser, demo_server: LiveServer) -> None:
    from playwright.sync_api import expect

    base = demo_server.url
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="vi-VN")
    page = context.new_page()
    watch = Watch(page)
    try:
        # Anonymous: the public KPIs, not the login-only one, and an invitation to log in.
        page.goto(f"{base}/kpi")
        public = _cards(page)
        assert LOGIN_ONLY not in public
        assert set(_numbered(public)) == set(range(1, 14)) - {5}
        assert page.locator("p.note").is_visible()
        r = page.request.get(f"{base}/kpi/{LOGIN_ONLY}")
        assert r.status == 401
        assert page.request.get(f"{base}/api/v1/kpis/{LOGIN_ONLY}").status == 401

        # Logged in: all 13 targets, each with a value and a status shown in its colour.
        page.goto(f"{base}/login?next=/kpi")
        page.get_by_label("Tên đăng nhập").fill(DEMO_ADMIN[0])
        page.get_by_label("Mật khẩu").fill(DEMO_ADMIN[1])
        page.get_by_role("button", name="Đăng nhập").click()
        page.wait_for_load_state()
        if not page.url.endswith("/kpi"):
            page.goto(f"{base}/kpi")
        cards = _cards(page)
        targets = _numbered(cards)
        assert sorted(targets) == list(range(1, 14)), sorted(targets)
        for number, card in targets.items():
            assert card["value"] not in ("", "—") and card["value"].endswith("%"), (number, card)
            assert card["status"] in COLOURS, (number, card)
            assert card["colour"] == COLOURS[card["status"]], (number, card)
        statuses = {c["status"] for c in targets.values()}
        assert len(statuses) >= 2, statuses  # the demo is not all one colour
        # The value on the card is the API's value for the same KPI.
        api = {k["id"]: k for k in page.request.get(f"{base}/api/v1/kpis").json()}
        for card in targets.values():
            assert card["value"] == f"{api[card['id']]['value']:.1f}%", card
            assert card["status"] == api[card["id"]]["status"]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "kpi-wall.png"), full_page=True)

        # Drill-down of an imported indicator: the lineage names the import file and its lines.
        page.locator("article[data-kpi='ehr-coverage'] h3 a").click()
        page.wait_for_url(f"{base}/kpi/ehr-coverage")
        expect(page.get_by_role("heading", level=1)).to_contain_text("7.")
        lineage = page.locator("table.kpi-table").nth(1)
        assert "health.ehr_citizens" in lineage.inner_text() and "population.total" in lineage.inner_text()
        assert "demo-chi-tieu-vinh-2026.csv" in lineage.inner_text()
        detail = page.request.get(f"{base}/api/v1/kpis/ehr-coverage").json()
        rows = [r for i in detail["lineage"]["inputs"] for r in i["rows"]]
        assert rows and all(r["file"] == "demo-chi-tieu-vinh-2026.csv" and r["line"] > 1 for r in rows)
        assert f"dòng {rows[0]['line']}" in lineage.inner_text().lower()
        ward_rows = page.locator("table.kpi-table").nth(2).locator("tr")
        assert ward_rows.count() == 6

        # Drill-down of a module measure: the lineage links to the dossiers behind the value.
        page.goto(f"{base}/kpi/dossiers-online")
        href = page.locator("a[href^='/api/v1/services/dossiers']").first.get_attribute("href")
        assert href is not None and "received_from=" in href
        listed = page.request.get(f"{base}{href}")
        assert listed.status == 200
        body = listed.json()
        items = body["items"] if isinstance(body, dict) else body
        assert items and all("code" in d for d in items)

        # The dossier dashboard renders its monitor.
        page.goto(f"{base}/services")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        rates = page.locator(".svc-rate strong").all_inner_texts()
        assert len(rates) == 7 and any(r.endswith("%") for r in rates), rates
        assert page.locator(".svc-table").count() == 3
        assert page.locator(".svc-table").first.locator("tbody tr").count() >= 5
        page.screenshot(path=str(SCREENSHOTS / "services-dashboard.png"), full_page=True)
        assert watch.errors == [], watch.errors
    finally:
        context.close()
