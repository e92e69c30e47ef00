"""The service as the IT staff meet it: restart time, alarm API latency, event throughput."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from ioc.core import migrate
from ioc.core.admin_units import load_reference_units
from ioc.core.alarms import AlarmCreate, Severity, raise_alarm
from ioc.core.db import Database
from ioc.core.events import EventBus
from ioc.demo import seed_demo

ALARMS = 2_000
EVENTS = 5_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_until_ready(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, float]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "ioc", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        if time.perf_counter() - started > 60:
            proc.kill()
            raise RuntimeError("server did not start")
        time.sleep(0.02)


def _raise_alarms(db: Database, count: int, severity: Severity) -> None:
    """Raise ``count`` alarms (one source each) in one transaction."""
    with db.session() as s:
        for i in range(count):
            raise_alarm(
                s,
                AlarmCreate(
                    source=f"bench:{i}", type="bench.alarm", severity=severity, title=f"Bench {i}", ward_code="16681"
                ),
            )


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'ioc.db'}"
        started = time.perf_counter()
        migrate.upgrade(url)
        db = Database(url)
        with db.session() as s:
            load_reference_units(s)
            seed_demo(s)
        setup_s = time.perf_counter() - started

        started = time.perf_counter()
        _raise_alarms(db, ALARMS, Severity.MINOR)
        raise_per_s = ALARMS / (time.perf_counter() - started)

        bus = EventBus(db)
        seen: list[int] = []
        bus.listen("*", lambda ev: seen.append(ev.id))
        bus.poll_once()
        seen.clear()
        _raise_alarms(db, EVENTS, Severity.MAJOR)  # repeats: each updates its alarm and publishes an event
        started = time.perf_counter()
        bus.poll_once()
        dispatch_per_s = len(seen) / (time.perf_counter() - started)
        db.dispose()

        env = {"IOC_DATABASE_URL": url, "IOC_VAR_DIR": tmp, "IOC_LOG_JSON": "false"}
        proc, base, first_start_s = _serve_until_ready(env)
        try:
            token = httpx.post(
                base + "/api/v1/auth/token", data={"username": "admin", "password": "admin-demo-2025"}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            latencies = []
            with httpx.Client(base_url=base, headers=headers) as client:
                for _ in range(200):
                    t0 = time.perf_counter()
                    r = client.get("/api/v1/alarms", params={"status": "active", "limit": 100})
                    latencies.append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
            first_load_ms = 0.0
            with httpx.Client(base_url=base) as client:
                t0 = time.perf_counter()
                client.get("/").raise_for_status()
                client.get("/api/v1/admin-units/wards.geojson").raise_for_status()
                first_load_ms = (time.perf_counter() - t0) * 1000
        finally:
            proc.terminate()
            proc.wait(10)
        proc, _, restart_s = _serve_until_ready(env)
        proc.terminate()
        proc.wait(10)
    latencies.sort()
    return {
        "migrate_and_seed_s": round(setup_s, 3),
        "first_start_to_ready_s": round(first_start_s, 3),
        "restart_to_ready_s": round(restart_s, 3),
        "alarm_raise_per_s": round(raise_per_s, 1),
        "event_dispatch_per_s": round(dispatch_per_s, 1),
        "alarm_list_p50_ms": round(statistics.median(latencies), 2),
        "alarm_list_p95_ms": round(latencies[int(len(latencies) * 0.95)], 2),
        "home_and_wards_ms": round(first_load_ms, 2),
    }
