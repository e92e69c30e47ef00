"""End to end, in Debian's Chromium (Playwright, sync API) against a real `ioc serve` with the demo
data, on SQLite and on PostgreSQL:

1. an operator logs in and sees the six wards on the map;
2. a reading raises an alarm that appears live in the alarm feed, and is acknowledged there;
3. a citizen sends a report with a photo from a phone through /bao-cao;
4. the officer of the report's ward finds it in /workspace and accepts it;
5. the citizen sees the new status at /theo-doi with the tracking code.

Screenshots (test artefacts) go to var/screenshots/.
"""

from __future__ import annotations

import io
import re
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image

from tests.conftest import LiveServer
from tests.web.browsing import WARDS_VI, PageWatch, login, screenshot, ward_labels

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Geolocation

OPERATOR = ("operator", "operator-demo-2025")
ADMIN = ("admin", "admin-demo-2025")
THANH_VINH_OFFICER = ("thanhvinh", "ward-demo-2025")
THANH_VINH = "16681"
#: A point in Thành Vinh ward (checked against the ward locator in the test).
THANH_VINH_POINT: Geolocation = {"latitude": 18.6796, "longitude": 105.6813}


def _token(base: str, username: str, password: str) -> dict[str, str]:
    r = httpx.post(f"{base}/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


#: The demo's water-level gauge in Thành Vinh (a registered device; báo động III at 2.9 m).
GAUGE_DEVICE = "wl-thanh-vinh"


def _device_key(base: str) -> str:
    """The gauge's own device key, as the device in the field holds it."""
    r = httpx.post(f"{base}/api/v1/devices/{GAUGE_DEVICE}/keys", headers=_token(base, *ADMIN))
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]
    return key


def raise_alarm_from_a_reading(base: str, device_key: str, *, level_m: float) -> tuple[int, str]:
    """The trigger: the gauge device sends a water level over báo động III over HTTP telemetry;
    the context broker stores it, the environment module sees the change and raises the flood
    alarm. Returns the alarm's id and title."""
    reading = {"ts": datetime.now(UTC).isoformat(), "values": {"level": level_m}}
    r = httpx.post(
        f"{base}/api/v1/devices/{GAUGE_DEVICE}/telemetry", json=reading, headers={"X-Device-Key": device_key}
    )
    assert r.status_code == 200, r.text
    admin = _token(base, *ADMIN)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = httpx.get(
            f"{base}/api/v1/alarms", params={"source": f"gauge:{GAUGE_DEVICE}", "status": "active"}, headers=admin
        ).json()
        if found and found[0]["severity"] == "CRITICAL":
            return int(found[0]["id"]), str(found[0]["title"])
        time.sleep(0.2)
    raise AssertionError("no flood alarm was raised by the reading")


def test_operator_sees_the_wards_and_acknowledges_a_live_alarm(browser: Browser, demo_server: LiveServer) -> None:
    from playwright.sync_api import expect

    base = demo_server.url
    key = _device_key(base)
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="vi-VN")
    page = context.new_page()
    watch = PageWatch(page, base)
    try:
        login(page, base, *OPERATOR)
        # (1) the six wards, named on the map
        assert set(ward_labels(page)) == WARDS_VI
        expect(page.locator("#map")).to_have_attribute("data-layers", "ready", timeout=15000)
        expect(page.locator("#alarm-feed")).to_have_attribute("data-live", "open", timeout=15000)
        expect(page.locator("#kpi-strip")).to_have_attribute("data-state", "ready", timeout=15000)
        assert page.locator("#kpi-strip .kpi-tile").count() >= 5
        reports_on_map = page.locator('[data-layer-count="reports"]').inner_text()
        assert int(reports_on_map) > 0, "the demo reports are on the map"
        alarms_on_map = int(page.locator('[data-layer-count="alarms"]').inner_text())

        # (2) a reading raises an alarm: it appears without a reload, on the feed and the map
        alarm_id, title = raise_alarm_from_a_reading(base, key, level_m=3.4)
        item = page.locator("#alarm-feed li", has_text=title)
        expect(item).to_be_visible(timeout=10000)
        expect(item).to_have_attribute("data-status", "ACTIVE_UNACK")
        assert "báo động III" in title
        expect(item).to_contain_text("Phường Thành Vinh")
        expect(page.locator('[data-layer-count="alarms"]')).to_have_text(str(alarms_on_map + 1), timeout=10000)
        screenshot(page, "dashboard.png")

        # ... and is acknowledged from the feed
        item.get_by_role("button", name="Xác nhận").click()
        expect(item).to_have_attribute("data-status", "ACTIVE_ACK", timeout=10000)
        expect(item.get_by_role("button", name="Xác nhận")).to_have_count(0)
        stored = httpx.get(f"{base}/api/v1/alarms/{alarm_id}", headers=_token(base, *ADMIN)).json()
        assert stored["acknowledged"] is True and stored["status"] == "ACTIVE_ACK"
        assert [h["action"] for h in stored["history"]][-1] in {"ack", "acknowledged", "acknowledge"}

        # The ward filter keeps the alarm of Thành Vinh and hides it for another ward.
        page.get_by_label("Phường", exact=True).select_option(THANH_VINH)
        expect(page.locator("#alarm-feed li", has_text=title)).to_have_count(1)
        page.get_by_label("Phường", exact=True).select_option("16732")
        expect(page.locator("#alarm-feed li", has_text=title)).to_have_count(0)
        page.get_by_label("Phường", exact=True).select_option("")

        # The KPI wall (the kpi module's page), on the same screen size.
        page.goto(f"{base}/kpi")
        page.wait_for_load_state("load")
        screenshot(page, "kpi-wall.png")
        assert watch.external_requests() == []
        assert watch.errors == [], watch.errors
    finally:
        context.close()


def _jpeg() -> bytes:
    image = Image.new("RGB", (640, 480), (120, 120, 120))
    for x in range(200, 440):
        for y in range(180, 300):
            image.putpixel((x, y), (40, 35, 30))  # a pothole, roughly
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def _officer_accepts(browser: Browser, base: str, report_id: int, watch_errors: list[str]) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1366, "height": 820}, locale="vi-VN")
    page = context.new_page()
    watch = PageWatch(page, base)
    try:
        login(page, base, *THANH_VINH_OFFICER, target="/workspace")
        row = page.locator("tr", has=page.get_by_role("link", name=f"#{report_id}", exact=True))
        expect(row).to_have_count(1)
        assert "sla--" in (row.get_attribute("class") or ""), "the row carries its SLA colour"
        expect(row).to_contain_text("Chờ tiếp nhận")
        row.get_by_role("link", name=f"#{report_id}", exact=True).click()
        page.wait_for_url(f"{base}/workspace/{report_id}")
        page.get_by_label("Chuyển trạng thái").select_option("investigating")
        page.get_by_label("Trả lời công khai").fill("Đã tiếp nhận, tổ công tác sẽ kiểm tra trong ngày.")
        page.get_by_role("button", name="Cập nhật").first.click()
        expect(page.locator(".status").first).to_have_text("Đã tiếp nhận", timeout=10000)
        screenshot(page, "workspace-report.png")
        watch_errors.extend(watch.errors)
        assert watch.external_requests() == []
    finally:
        context.close()


def test_citizen_report_is_accepted_by_the_ward_officer_and_followed(browser: Browser, demo_server: LiveServer) -> None:
    from playwright.sync_api import expect

    base = demo_server.url
    located = httpx.get(
        f"{base}/api/v1/admin-units/locate",
        params={"lat": THANH_VINH_POINT["latitude"], "lon": THANH_VINH_POINT["longitude"]},
    )
    assert located.json()["ward"]["code"] == THANH_VINH
    phone = browser.new_context(
        viewport={"width": 360, "height": 740},
        is_mobile=True,
        has_touch=True,
        locale="vi-VN",
        geolocation=THANH_VINH_POINT,
        permissions=["geolocation"],
    )
    page = phone.new_page()
    watch = PageWatch(page, base)
    errors: list[str] = []
    try:
        # (3) from the home page to "report a problem", with GPS and a photo
        page.goto(f"{base}/")
        screenshot(page, "home-phone-e2e.png", full_page=True)
        page.locator("#card-report").get_by_role("link", name="Gửi phản ánh").click()
        page.wait_for_url(f"{base}/bao-cao")
        description = f"Ổ gà sâu trước số 12 đường Lê Lợi, xe máy dễ ngã ({uuid.uuid4().hex[:6]})"
        page.get_by_label("Mô tả").fill(description)
        page.get_by_role("button", name="Dùng vị trí của tôi").click()
        expect(page.locator("#lat")).to_have_value(re.compile(r"^18\.679"), timeout=10000)
        page.locator("#photos").set_input_files({"name": "o-ga.jpg", "mimeType": "image/jpeg", "buffer": _jpeg()})
        page.locator("#report-form button[type=submit]").click()
        code_el = page.locator("#tracking-code")
        expect(code_el).to_be_visible(timeout=20000)
        code = code_el.inner_text().strip()
        assert code
        screenshot(page, "report-sent-phone.png", full_page=True)
        tracked: dict[str, Any] = httpx.get(f"{base}/api/v1/reports/track/{code}").json()
        report_id = int(tracked["id"])
        assert tracked["status"] == "for_triage" and tracked["ward_code"] == THANH_VINH
        assert len(tracked["photos"]) == 1

        # (4) the officer of Thành Vinh accepts it in the work queue
        _officer_accepts(browser, base, report_id, errors)

        # (5) the citizen follows it by the tracking code
        page.goto(f"{base}/theo-doi")
        page.locator("#code").fill(code)
        page.locator("#code").press("Enter")
        page.wait_for_url(re.compile(r"/theo-doi\?code="))
        expect(page.locator(".report-card .status")).to_have_text("Đã tiếp nhận")
        expect(page.locator(".report-card")).to_contain_text("Đã tiếp nhận, tổ công tác sẽ kiểm tra trong ngày.")
        photo = page.locator(".report-card img.report-photo")
        expect(photo).to_have_count(1)
        photo.scroll_into_view_if_needed()
        expect(photo).to_have_js_property("complete", True)
        assert photo.evaluate("img => img.naturalWidth") == 640
        screenshot(page, "follow-phone.png", full_page=True)
        assert watch.external_requests() == []
        assert watch.errors + errors == [], watch.errors + errors
    finally:
        phone.close()
