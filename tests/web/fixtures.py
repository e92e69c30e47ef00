"""Fixtures of the browser tests (a pytest plugin loaded by tests/conftest.py, so every package's
browser tests share them): one Chromium per session, and a demo-seeded `ioc serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from ioc.settings import Settings
from tests.conftest import SECRET, LiveServer
from tests.web.browsing import CHROMIUM, CHROMIUM_ARGS, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def demo_server(browser: Browser, settings: Settings, start_server: Callable[..., LiveServer]) -> LiveServer:
    """A real `ioc serve` (this test's database, SQLite or PostgreSQL) with the Vinh demo data."""
    env = {
        **os.environ,
        "IOC_DATABASE_URL": settings.database_url,
        "IOC_SECRET_KEY": SECRET,
        "IOC_VAR_DIR": str(settings.var_dir),
        "IOC_LOG_JSON": "false",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ioc", "seed", "--demo"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The map works offline (no tile layer); no MQTT bridge; no scheduled KPI or dossier runs.
    return start_server(
        IOC_MAP__TILE_URL="", IOC_MQTT__URL="", IOC_KPI__SCHEDULER="false", IOC_SERVICES__SCHEDULER="false"
    )
