"""Benchmarks of the NGSI-LD broker (module ``context``) against a real ``ioc serve``: ``run() -> dict``.

Each database gets a fresh schema and its own ``ioc serve`` subprocess (one worker, anonymous
writes on, the daily jobs off), driven over HTTP from this process (the concurrent figures with
the lean keep-alive client of ``bench/loadgen.py``, the rest with httpx):

* batch upsert of 1,000 entities × 5 attributes per request, history on (``options=update``,
  median of 5), vs the raw rate of inserting the same rows (entity + attributes + history)
  straight into the same database with Core ``executemany`` in the same run (median of 3;
  print both and the ratio);
* single-entity ``PATCH /entities/{id}/attrs``, 16 concurrent clients: throughput and p99 of
  3,000 PATCHes, after 300 unmeasured ones and their consumers' reactions (the floor's phases
  warm up the same way);
* after the batches and after the PATCHes, the time the server's durable consumers (environment,
  subscriptions, ...) take to handle every event written, and the server CPU with them: each
  phase starts with the previous one's reactions done, and its CPU figures say both;
* ``GET /entities/{id}``, 16 concurrent clients: rate;
* the PATCH and GET phases again against ``ioc serve --workers 2`` (one worker process per core,
  as a deployment on this machine would run), CPU summed over the workers;
* ``type`` + ``q`` + ``geoQ`` over N entities (100,000 by default; bulk-loaded through the
  store's bulk path, not HTTP), limit 100, p95 of 40 queries (after 5 unmeasured ones);
* the floor: the same clients against the same stack (uvicorn, FastAPI, the thread pool) with
  handlers that do nothing (``bench/floor_app.py``): what a request costs before the broker's work.

One year of hourly values of one attribute is ``bench_temporal``'s.

SQLite, and PostgreSQL on the server ``bench.postgres_url`` names (``IOC_BENCH_DATABASE_URL``,
else the local one; the database is dropped and created again). ``IOC_BENCH_ENTITIES`` lowers N
for a quick run. The client shares the machine with the server: on 2 cores the concurrent figures
are bounded by the client's own CPU too.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select

from bench import loadgen, postgres_leg, postgres_url, recreate_database, vacuum_analyze
from ioc.core import migrate
from ioc.core.db import Database, utcnow
from ioc.core.events import EventCursor, OutboxEvent
from ioc.modules.context.entity import parse_entity
from ioc.modules.context.ld import ContextLoader
from ioc.modules.context.models import NgsiAttribute, NgsiAttributeHistory, NgsiEntity
from ioc.modules.context.service import create
from ioc.modules.context.store import ChangeSet, flush

BATCH = 1000
ATTRS = 5
CLIENTS = 16
#: Measured PATCHes per phase, after ``WARM_UP`` unmeasured ones (the floor's phases the same).
PATCHES = 3000
WARM_UP = 300
#: Worker processes of the second serving of the PATCH and GET phases: one per core of the bench machine.
WORKERS = 2
BASE = "/ngsi-ld/v1"
ROOT = Path(__file__).resolve().parent.parent


def _entities(start: int, n: int, rnd: random.Random) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        e: dict[str, Any] = {"id": f"urn:ngsi-ld:AirQualityObserved:{i}", "type": "AirQualityObserved"}
        for k in range(ATTRS - 1):
            e[f"m{k}"] = {"type": "Property", "value": rnd.uniform(0, 300), "observedAt": "2025-07-01T00:00:00Z"}
        # a station stays where it is: its place is a function of its number, spread over the city
        e["location"] = {
            "type": "GeoProperty",
            "value": {
                "type": "Point",
                "coordinates": [105.6 + (i * 7919 % 10007) / 50035, 18.6 + (i * 104729 % 10009) / 50045],
            },
        }
        out.append(e)
    return out


def _raw_rate(db: Database, n: int, tenant: str = "raw") -> float:
    """Attribute rows per second written straight into the same tables (entity + attributes + history)."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    with db.session() as s:
        rows = [
            {"tenant": tenant, "entity_id": f"urn:raw:{i}", "types": ["T"], "created_at": now, "modified_at": now}
            for i in range(n)
        ]
        pks = [r[0] for r in s.execute(insert(NgsiEntity).returning(NgsiEntity.pk), rows).all()]
        attrs = [
            {
                "entity_pk": pk,
                "name": f"m{k}",
                "dataset_id": "",
                "tenant": tenant,
                "kind": "Property",
                "value_kind": "num",
                "value_num": 1.0,
                "doc": {"type": "Property", "value": 1.0},
                "created_at": now,
                "modified_at": now,
            }
            for pk in pks
            for k in range(ATTRS)
        ]
        s.execute(insert(NgsiAttribute), attrs)
        hist = [
            {
                "tenant": tenant,
                "entity_id": f"urn:raw:{i}",
                "name": f"m{k}",
                "dataset_id": "",
                "instance_id": f"urn:i:{i}:{k}",
                "op": "create",
                "kind": "Property",
                "value_num": 1.0,
                "doc": {"type": "Property", "value": 1.0},
                "recorded_at": now,
            }
            for i in range(n)
            for k in range(ATTRS)
        ]
        s.execute(insert(NgsiAttributeHistory), hist)
    return n * ATTRS / (time.perf_counter() - started)


def _bulk_load(db: Database, start: int, n: int, rnd: random.Random) -> float:
    """Entities per second stored through the store's bulk path (parse, ChangeSet, flush), no HTTP."""
    core = ContextLoader().core
    started = time.perf_counter()
    for i in range(start, start + n, 10_000):
        with db.session() as s:
            cs = ChangeSet("", utcnow())
            for body in _entities(i, min(10_000, start + n - i), rnd):
                create(cs, None, parse_entity(body, core))
            flush(s, cs)
    return n / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve(url: str, var_dir: str, workers: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "IOC_DATABASE_URL": url,
        "IOC_VAR_DIR": var_dir,
        "IOC_NGSILD_ANONYMOUS_WRITES": "true",
        "IOC_LOG_JSON": "false",
        # The daily jobs (reports, KPI snapshots) would run in the first minute of a fresh server,
        # inside the measured window; in service they run once a day.
        "IOC_JOBS__ENABLED": "false",
    }
    log = open(os.path.join(var_dir, "serve.log"), "wb")  # noqa: SIM115 - closed with the process
    command = [str(ROOT / ".venv" / "bin" / "ioc"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(  # noqa: S603 - our own command line
        [*command, "--workers", str(workers)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ioc serve exited: {Path(var_dir, 'serve.log').read_text()[-2000:]}")
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("ioc serve did not become ready")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop an ``ioc serve`` started by :func:`_serve` (killed after 20 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _warm_up(base: str, make: Callable[[int], loadgen.Request], db: Database | None = None) -> None:
    """``WARM_UP`` requests before a measured phase, and the consumers' reactions to them: the
    phase then measures the server in its steady state, not its first requests of a kind (their
    statements compiled, caches filled, the first collections of the new objects)."""
    asyncio.run(loadgen.run(base, WARM_UP, lambda i: make(i + 1_000_000), CLIENTS))
    if db is not None:
        _caught_up(db)


def _caught_up(db: Database, timeout: float = 900) -> float:
    """Seconds until every durable consumer of the server (environment, subscriptions, ...) has
    handled the last event written so far: a phase's reactions are its own, not the next one's."""
    started = time.perf_counter()
    with db.session() as s:
        last = s.scalar(select(func.max(OutboxEvent.id))) or 0
    while True:
        with db.session() as s:
            low = s.scalar(select(func.min(EventCursor.last_id)))
        elapsed = time.perf_counter() - started
        if low is not None and low >= last:
            return elapsed
        if elapsed > timeout:
            raise RuntimeError(f"the consumers are still at event {low} of {last} after {timeout} s")
        time.sleep(0.05)


def _geo_queries(client: httpx.Client, rnd: random.Random, n: int = 40) -> list[float]:
    """Latencies (ms) of ``n`` type + q + geoQ queries (3 km around random points of the city)."""
    lat = []
    for k in range(n + 5):  # the first 5 warm the server's connections and caches, unmeasured
        lon, la = 105.6 + rnd.random() * 0.2, 18.6 + rnd.random() * 0.2
        params = {
            "type": "AirQualityObserved",
            "q": "m0>100",
            "limit": "100",
            "georel": "near;maxDistance==3000",
            "geometry": "Point",
            "coordinates": f"[{lon},{la}]",
        }
        t = time.perf_counter()
        r = client.get("/entities", params=params)
        if k >= 5:
            lat.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    return lat


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process ``pid`` and its children (the workers of
    ``ioc serve --workers N``) have used so far (Linux)."""
    total = 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for p in [pid, *(int(c) for c in children.read_text().split())]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[max(0, int(len(ordered) * p) - 1)], 1)


def bench_database(url: str, n_entities: int) -> dict[str, Any]:
    recreate_database(url)
    migrate.upgrade(url)
    var_dir = tempfile.mkdtemp()
    rnd = random.Random(7)
    result: dict[str, Any] = {"database": url.split(":")[0].split("+")[0], "entities": n_entities}
    proc, base = _serve(url, var_dir)
    db = Database(url)
    try:
        with httpx.Client(base_url=base + BASE, timeout=300) as client:
            # batch upsert: the first request creates, the measured ones update (history grows)
            t = time.perf_counter()
            r = client.post("/entityOperations/upsert", json=_entities(0, BATCH, rnd))
            assert r.status_code == 201, r.text
            result["batch_create_attrs_per_s"] = round(BATCH * ATTRS / (time.perf_counter() - t))
            _caught_up(db)
            upd = []
            cpu = _cpu_s(proc.pid)
            for _ in range(5):
                body = _entities(0, BATCH, rnd)
                t = time.perf_counter()
                r = client.post("/entityOperations/upsert", json=body, params={"options": "update"})
                upd.append(time.perf_counter() - t)
                assert r.status_code == 204, r.text
            result["batch_server_cpu_ms_per_1000"] = round((_cpu_s(proc.pid) - cpu) / 5 * 1000)
            # the consumers' reactions to the 5,000 events, off the write path (§ Events)
            result["batch_consumers_catch_up_s"] = round(_caught_up(db), 2)
            result["batch_server_cpu_ms_per_1000_with_consumers"] = round((_cpu_s(proc.pid) - cpu) / 5 * 1000)
        http_rate = BATCH * ATTRS / statistics.median(upd)
        # the median of three, as the HTTP rate is the median of five: a single raw write ranged
        # ~10,000-18,000 rows/s on PostgreSQL from one run to the next on the shared machine
        raw_rate = statistics.median(_raw_rate(db, BATCH, f"raw{k}") for k in range(3))
        result["batch_upsert_attr_updates_per_s"] = round(http_rate)
        result["raw_insert_rows_per_s"] = round(raw_rate)
        result["ratio"] = round(http_rate / raw_rate, 3)

        # 16 clients, single-entity PATCH of one attribute
        def patch(i: int) -> tuple[str, str, dict[str, Any], int]:
            eid = f"urn:ngsi-ld:AirQualityObserved:{(i * 7919) % BATCH}"
            body = {"m0": {"type": "Property", "value": i % 300, "observedAt": "2025-07-01T01:00:00Z"}}
            return "PATCH", f"{BASE}/entities/{eid}/attrs", {"json": body}, 204

        failed: list[str] = []
        _warm_up(base, patch, db)
        cpu = _cpu_s(proc.pid)
        rate, lat = asyncio.run(loadgen.run(base, PATCHES, patch, CLIENTS, failed))
        result["patch_16_clients_per_s"] = round(rate)
        result["patch_errors"] = len(failed)
        result["patch_server_cpu_ms"] = round((_cpu_s(proc.pid) - cpu) / PATCHES * 1000, 2)
        result["patch_p99_ms"] = _pct(lat, 0.99)
        result["patch_consumers_catch_up_s"] = round(_caught_up(db), 2)
        result["patch_server_cpu_ms_with_consumers"] = round((_cpu_s(proc.pid) - cpu) / PATCHES * 1000, 2)

        # the rest of the N entities, straight through the store's bulk path
        if n_entities > BATCH:
            result["bulk_load_entities_per_s"] = round(_bulk_load(db, BATCH, n_entities - BATCH, rnd))
            # as autovacuum would (PostgreSQL 13+ vacuums insert-only tables too): without the
            # visibility map the grid index reads the table's pages of its candidates
            vacuum_analyze(db)

        def get(i: int) -> tuple[str, str, dict[str, Any], int]:
            return "GET", f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:{(i * 7919) % n_entities}", {}, 200

        cpu = _cpu_s(proc.pid)
        rate, lat = asyncio.run(loadgen.run(base, 4000, get, CLIENTS))
        result["get_by_id_per_s"] = round(rate)
        result["get_server_cpu_ms"] = round((_cpu_s(proc.pid) - cpu) / 4000 * 1000, 2)
        result["get_p99_ms"] = _pct(lat, 0.99)

        # type + q + geoQ, limit 100 (sequential)
        with httpx.Client(base_url=base + BASE, timeout=300) as client:
            lat = _geo_queries(client, rnd)
        result["query_p95_ms"] = _pct(lat, 0.95)

        # the same PATCH and GET with one worker process per core (``ioc serve --workers 2``)
        _stop(proc)
        proc, base = _serve(url, var_dir, workers=WORKERS)
        asyncio.run(loadgen.run(base, 200, get, CLIENTS))  # each worker's connections and caches
        _warm_up(base, patch, db)
        cpu = _cpu_s(proc.pid)
        failed.clear()
        rate, lat = asyncio.run(loadgen.run(base, PATCHES, patch, CLIENTS, failed))
        result[f"patch_16_clients_per_s_{WORKERS}_workers"] = round(rate)
        result[f"patch_errors_{WORKERS}_workers"] = len(failed)
        result[f"patch_p99_ms_{WORKERS}_workers"] = _pct(lat, 0.99)
        result[f"patch_server_cpu_ms_{WORKERS}_workers"] = round((_cpu_s(proc.pid) - cpu) / PATCHES * 1000, 2)
        _caught_up(db)
        cpu = _cpu_s(proc.pid)
        rate, lat = asyncio.run(loadgen.run(base, 4000, get, CLIENTS))
        result[f"get_by_id_per_s_{WORKERS}_workers"] = round(rate)
        result[f"get_p99_ms_{WORKERS}_workers"] = _pct(lat, 0.99)
        result[f"get_server_cpu_ms_{WORKERS}_workers"] = round((_cpu_s(proc.pid) - cpu) / 4000 * 1000, 2)
    finally:
        _stop(proc)
        db.engine.dispose()
    return result


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of the process ``pid`` in MB (Linux)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return tuple(round(int(fields[k].split()[0]) / 1024, 1) for k in ("VmRSS", "VmHWM"))  # type: ignore[return-value]


def bench_rss(n_entities: int) -> dict[str, Any]:
    """Server memory with ``n_entities`` on SQLite: bulk-load them through the store's bulk path,
    start ``ioc serve``, run GETs by id and type+q+geoQ queries, read the server's RSS."""
    path = os.path.join(tempfile.mkdtemp(), "rss.db")
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    db = Database(url)
    rnd = random.Random(11)
    rate = _bulk_load(db, 0, n_entities, rnd)
    db.engine.dispose()
    result: dict[str, Any] = {"entities": n_entities, "bulk_load_entities_per_s": round(rate)}
    result["database_mb"] = round(os.path.getsize(path) / 2**20)
    var_dir = tempfile.mkdtemp()
    proc, base = _serve(url, var_dir)
    try:
        result["rss_idle_mb"] = _rss_mb(proc.pid)[0]

        def get(i: int) -> tuple[str, str, dict[str, Any], int]:
            return "GET", f"{BASE}/entities/urn:ngsi-ld:AirQualityObserved:{(i * 7919) % n_entities}", {}, 200

        asyncio.run(loadgen.run(base, 2000, get, CLIENTS))
        with httpx.Client(base_url=base + BASE, timeout=300) as client:
            lat = _geo_queries(client, rnd)
            r = client.get("/entities", params={"type": "AirQualityObserved", "count": "true", "limit": "1"})
            assert r.status_code == 200, r.text
        result["query_p95_ms"] = _pct(lat, 0.95)
        result["rss_mb"], result["rss_peak_mb"] = _rss_mb(proc.pid)
    finally:
        _stop(proc)
    os.remove(path)
    return result


def bench_floor() -> dict[str, Any]:
    """PATCH and GET against handlers that do nothing (``bench/floor_app.py``), same clients: what
    uvicorn and FastAPI alone cost per request on this machine, the floor under the broker's figures."""
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own command line
        [sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/entities/x", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        body = {"m0": {"type": "Property", "value": 1, "observedAt": "2025-07-01T01:00:00Z"}}
        result: dict[str, Any] = {}
        for name, make in (
            ("patch", lambda i: ("PATCH", f"/entities/urn:x:{i}/attrs", {"json": body}, 204)),
            ("get", lambda i: ("GET", f"/entities/urn:x:{i}", {}, 200)),
        ):
            _warm_up(base, make)
            cpu = _cpu_s(proc.pid)
            rate, lat = asyncio.run(loadgen.run(base, PATCHES, make, CLIENTS))
            result[f"{name}_16_clients_per_s"] = round(rate)
            result[f"{name}_server_cpu_ms"] = round((_cpu_s(proc.pid) - cpu) / PATCHES * 1000, 2)
            result[f"{name}_p99_ms"] = _pct(lat, 0.99)
        return result
    finally:
        _stop(proc)


def run() -> dict[str, Any]:
    n = int(os.environ.get("IOC_BENCH_ENTITIES", "100000"))
    results: dict[str, Any] = {}
    path = os.path.join(tempfile.mkdtemp(), "bench.db")
    results["sqlite"] = bench_database(f"sqlite:///{path}", n)
    pg = postgres_url()
    if pg:
        results["postgresql"] = bench_database(pg, n)
    floor = bench_floor()
    print(
        f"[context/floor] do-nothing handlers, same stack and clients: PATCH {floor['patch_16_clients_per_s']}/s "
        f"({floor['patch_server_cpu_ms']} ms server CPU each), GET {floor['get_16_clients_per_s']}/s "
        f"({floor['get_server_cpu_ms']} ms)",
        file=sys.stderr,
    )
    rss_n = int(os.environ.get("IOC_BENCH_RSS_ENTITIES", "0"))
    rss = bench_rss(rss_n) if rss_n else None
    for name, r in results.items():
        print(
            f"[context/{name}] batch upsert {r['batch_upsert_attr_updates_per_s']}/s attribute updates over HTTP, "
            f"raw {r['raw_insert_rows_per_s']} rows/s, ratio {r['ratio']}; "
            f"PATCH ×{CLIENTS} {r['patch_16_clients_per_s']}/s p99 {r['patch_p99_ms']} ms; "
            f"GET by id {r['get_by_id_per_s']}/s; type+q+geoQ over {r['entities']} entities p95 "
            f"{r['query_p95_ms']} ms (the temporal year: bench_temporal)",
            file=sys.stderr,
        )
    if not pg:
        results["postgresql"] = {"skipped": postgres_leg()[1]}
    results["framework_floor"] = floor
    if rss is not None:
        results["sqlite_memory"] = rss
        print(
            f"[context/sqlite] {rss_n} entities: server RSS {rss['rss_mb']} MB (peak {rss['rss_peak_mb']})",
            file=sys.stderr,
        )
    return results


if __name__ == "__main__":
    print(run())
