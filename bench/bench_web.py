"""Benchmark of the web front end in a real browser: ``run() -> dict``.

A fresh SQLite database is migrated and seeded with the Vinh demo (``ioc migrate``, ``ioc seed
--demo``) and served by ``ioc serve`` (one worker, no tile layer) on localhost; Debian's
Chromium, driven by Playwright, measures:

* the dashboard's first load: a signed-in operator opens ``/dashboard`` with an empty browser
  cache; the time from navigation start to the later of the ``load`` event and the moment every
  map layer has been fetched and drawn (the page's ``ioc:layers-loaded`` performance mark).
  Median and worst of ``IOC_BENCH_WEB_RUNS`` (5) fresh browser contexts; the goal is < 1 s;
* the citizen home page's transfer size on a phone (360 × 740): the sum of ``transferSize`` of
  the navigation and every resource in Resource Timing once the page and its live figures have
  loaded, with an empty cache (the budget is < 500 KB).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
OPERATOR = ("operator", "operator-demo-2025")
FIRST_LOAD_GOAL_MS = 1000
HOME_BUDGET_BYTES = 500_000


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(var_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env.update(
        {
            "IOC_ENV": "development",
            "IOC_VAR_DIR": var_dir,
            "IOC_DATABASE_URL": f"sqlite:///{Path(var_dir) / 'ioc.db'}",
            "IOC_LOG_JSON": "false",
            "IOC_MQTT__URL": "",
            "IOC_MAP__TILE_URL": "",
        }
    )
    for args in (["migrate"], ["seed", "--demo"]):
        subprocess.run([sys.executable, "-m", "ioc", *args], env=env, check=True, capture_output=True, timeout=600)  # noqa: S603
    base = f"http://127.0.0.1:{_port()}"
    log = open(Path(var_dir) / "server.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(  # noqa: S603 - our own command line
        [sys.executable, "-m", "ioc", "serve", "--port", base.rsplit(":", 1)[1]], env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("ioc serve did not become ready")


def _signed_in_state(browser: Any, base: str) -> Any:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/login?next=/dashboard")
    page.get_by_label("Tên đăng nhập").fill(OPERATOR[0])
    page.get_by_label("Mật khẩu").fill(OPERATOR[1])
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(f"{base}/dashboard")
    state = context.storage_state()
    context.close()
    return state


def _dashboard_first_load(browser: Any, base: str, state: Any) -> float:
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, storage_state=state)
    page = context.new_page()
    try:
        page.goto(f"{base}/dashboard", wait_until="load")
        page.locator('#map[data-layers="ready"]').wait_for(timeout=30000)
        figures = page.evaluate(
            """() => ({
                load: performance.getEntriesByType("navigation")[0].loadEventEnd,
                layers: performance.getEntriesByName("ioc:layers-loaded")[0].startTime
            })"""
        )
        return float(max(figures["load"], figures["layers"]))
    finally:
        context.close()


def _home_transfer(browser: Any, base: str) -> int:
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(f"{base}/", wait_until="load")
        page.locator('[data-live="kpi"] li').first.wait_for(timeout=30000)
        page.evaluate("document.fonts.ready.then(() => true)")
        total = page.evaluate(
            """() => performance.getEntriesByType("navigation").concat(performance.getEntriesByType("resource"))
                 .reduce((sum, e) => sum + (e.transferSize || 0), 0)"""
        )
        return int(total)
    finally:
        context.close()


def run() -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    runs = int(os.environ.get("IOC_BENCH_WEB_RUNS", "5"))
    proc, base = _serve(tempfile.mkdtemp(prefix="ioc-bench-web-"))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                state = _signed_in_state(browser, base)
                _dashboard_first_load(browser, base, state)  # warm the server (imports, caches)
                loads = [_dashboard_first_load(browser, base, state) for _ in range(runs)]
                home = _home_transfer(browser, base)
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(15)
    results = {
        "dashboard_first_load_median_ms": round(statistics.median(loads), 1),
        "dashboard_first_load_max_ms": round(max(loads), 1),
        "dashboard_first_load_goal_ms": FIRST_LOAD_GOAL_MS,
        "home_transfer_bytes": home,
        "home_budget_bytes": HOME_BUDGET_BYTES,
    }
    print(
        f"[web] dashboard first load median {results['dashboard_first_load_median_ms']} ms "
        f"(max {results['dashboard_first_load_max_ms']} ms, goal < {FIRST_LOAD_GOAL_MS} ms); "
        f"citizen home {home:,} bytes transferred (budget < {HOME_BUDGET_BYTES:,})",
        file=sys.stderr,
    )
    return results


if __name__ == "__main__":
    print(run())
