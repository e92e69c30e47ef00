"""Citizen reports: POST throughput with 16 concurrent clients on SQLite (one worker, the embedded
default, and two), and the latency of the requests list with 1,000,000 reports in the database
(issue 5: ≥ 300/s; p95 ≤ 50 ms). ``BENCH_REPORTS_POST_ONLY=1`` measures the POSTs alone."""

from __future__ import annotations

import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert

from ioc.core import migrate
from ioc.core.admin_units import CITY_WARD_CODES, city_wards, load_reference_units
from ioc.core.auth import create_user
from ioc.core.db import Database
from ioc.core.geo import shape_from_geojson
from ioc.demo import seed_agencies
from ioc.modules.reports import catalog
from ioc.modules.reports.models import Report

CLIENTS = 16
POSTS = 3_000
ROWS = int(os.environ.get("BENCH_REPORTS_ROWS", "1000000"))
SAMPLES = 300
BENCH_PASSWORD = "bench-password-1"  # noqa: S105 - a throw-away database


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(env: dict[str, str], workers: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "ioc", "serve", "--port", str(port), "--workers", str(workers)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = time.perf_counter()
    while time.perf_counter() - started < 60:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def _points(db: Database) -> list[tuple[float, float]]:
    with db.session() as s:
        return [
            (p.y, p.x)
            for p in (shape_from_geojson(u.geometry).representative_point() for u in city_wards(s) if u.geometry)
        ]


def _post_throughput(base: str, points: list[tuple[float, float]]) -> float:
    cats = [c for c in catalog.categories() if not catalog.categories()[c].private]

    def worker(n: int) -> int:
        ok = 0
        rnd = random.Random(n)
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(POSTS // CLIENTS):
                lat, lon = rnd.choice(points)
                lat, lon = lat + rnd.uniform(-0.0005, 0.0005), lon + rnd.uniform(-0.0005, 0.0005)
                body = {"category": rnd.choice(cats), "description": "Bench: rác tồn đọng", "lat": lat, "lon": lon}
                if client.post("/api/v1/reports", json=body).status_code == 201:
                    ok += 1
        return ok

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        done = sum(pool.map(worker, range(CLIENTS)))
    elapsed = time.perf_counter() - started
    if done < POSTS // CLIENTS * CLIENTS:
        raise RuntimeError(f"only {done} reports accepted")
    return done / elapsed


def _bulk_insert(db: Database, points: list[tuple[float, float]], rows: int) -> None:
    """A million reports straight into the table (the API would take an hour for setup)."""
    rnd = random.Random(2025)
    cats = list(catalog.categories().values())
    now = datetime.now(UTC)
    statuses = ["for_triage", "investigating", "in_progress", "fixed", "fixed", "fixed", "no_further_action"]
    batch: list[dict[str, object]] = []
    with db.engine.begin() as conn:
        for i in range(rows):
            cat = rnd.choice(cats)
            ward = CITY_WARD_CODES[i % 6]
            lat, lon = points[i % len(points)]
            created = now - timedelta(minutes=rows - i)
            status = rnd.choice(statuses)
            batch.append(
                {
                    "code": f"PA-B{i:09d}",
                    "category": cat.code,
                    "description": "Phản ánh mẫu cho đo hiệu năng",
                    "lat": lat + rnd.uniform(-0.002, 0.002),
                    "lon": lon + rnd.uniform(-0.002, 0.002),
                    "address": "",
                    "ward_code": ward,
                    "agency_id": catalog.route(cat.code, ward),
                    "status": status,
                    "public": not cat.private,
                    "anonymous": True,
                    "source": "web",
                    "sla_tier": cat.tier,
                    "created_at": created,
                    "updated_at": created,
                    "accept_due": created + timedelta(days=400),
                    "resolve_due": created + timedelta(days=400),
                    "closed_at": created if status in ("fixed", "no_further_action") else None,
                    "reopen_count": 0,
                    "abuse": False,
                }
            )
            if len(batch) == 20_000:
                conn.execute(insert(Report), batch)
                batch.clear()
        if batch:
            conn.execute(insert(Report), batch)


def _p95(client: httpx.Client, path: str, **kw: object) -> tuple[float, float]:
    latencies = []
    for _ in range(SAMPLES):
        t0 = time.perf_counter()
        r = client.get(path, **kw)  # type: ignore[arg-type]
        latencies.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.95)]


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'ioc.db'}"
        migrate.upgrade(url)
        db = Database(url)
        with db.session() as s:
            load_reference_units(s)
            seed_agencies(s)
            create_user(s, username="benchop", password=BENCH_PASSWORD, role="operator", agency_id="so-khcn")
        points = _points(db)
        env = {
            "IOC_DATABASE_URL": url,
            "IOC_VAR_DIR": tmp,
            "IOC_LOG_JSON": "false",
            "IOC_MODULES": '["reports"]',
            "IOC_REPORTS__RATE_LIMIT_PER_HOUR": "100000000",
        }
        post_per_s: dict[int, float] = {}
        for workers in (1, 2):
            proc, base = _serve(env, workers)
            try:
                post_per_s[workers] = _post_throughput(base, points)
            finally:
                proc.terminate()
                proc.wait(10)
        if os.environ.get("BENCH_REPORTS_POST_ONLY"):
            figures = {
                "post_16_clients_per_s": round(post_per_s[1], 1),
                "post_16_clients_2_workers_per_s": round(post_per_s[2], 1),
            }
            print(figures)
            return figures
        started = time.perf_counter()
        _bulk_insert(db, points, ROWS)
        insert_s = time.perf_counter() - started
        db.dispose()
        proc, base = _serve(env)
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                token = client.post("/api/v1/auth/token", data={"username": "benchop", "password": BENCH_PASSWORD})
                headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
                client.get(
                    "/api/v1/reports", headers=headers
                ).raise_for_status()  # first call runs the escalation sweep
                o311_p50, o311_p95 = _p95(client, "/open311/v2/requests.json", params={"page_size": 50})
                o311_open_p50, o311_open_p95 = _p95(
                    client, "/open311/v2/requests.json", params={"page_size": 50, "status": "open"}
                )
                staff_p50, staff_p95 = _p95(client, "/api/v1/reports", params={"limit": 50}, headers=headers)
                ward_p50, ward_p95 = _p95(
                    client,
                    "/api/v1/reports",
                    params={"limit": 50, "ward_code": "16702", "sla": "open"},
                    headers=headers,
                )
                xml_p50, xml_p95 = _p95(client, "/open311/v2/requests.xml", params={"page_size": 50})
        finally:
            proc.terminate()
            proc.wait(10)
    figures = {
        "post_16_clients_per_s": round(post_per_s[1], 1),
        "post_16_clients_2_workers_per_s": round(post_per_s[2], 1),
        "rows": float(ROWS),
        "bulk_insert_s": round(insert_s, 1),
        "open311_requests_json_p50_ms": round(o311_p50, 2),
        "open311_requests_json_p95_ms": round(o311_p95, 2),
        "open311_requests_open_p95_ms": round(o311_open_p95, 2),
        "open311_requests_xml_p95_ms": round(xml_p95, 2),
        "staff_queue_p50_ms": round(staff_p50, 2),
        "staff_queue_p95_ms": round(staff_p95, 2),
        "staff_queue_ward_open_p95_ms": round(ward_p95, 2),
    }
    _ = (o311_open_p50, ward_p50, xml_p50)
    print(figures)
    return figures


if __name__ == "__main__":
    run()
