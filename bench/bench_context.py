"""Benchmarks of the NGSI-LD broker (module ``context``): ``run() -> dict``.

* batch upsert of 1,000 entities × 5 attributes per request, history on, through the ASGI
  app (the full HTTP stack in process), vs the raw rate of inserting the same rows (current
  state + history) straight into the same database in the same run;
* GET by id;
* ``type`` + ``q`` + ``geoQ`` over N entities (100,000 by default), limit 100, p95.
SQLite always; PostgreSQL too when ``IOC_BENCH_DATABASE_URL`` is set. ``IOC_BENCH_ENTITIES``
lowers N for a quick run.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert

from ioc.app import create_app
from ioc.core import migrate
from ioc.core.db import Database
from ioc.modules.context.models import NgsiAttribute, NgsiAttributeHistory, NgsiEntity
from ioc.settings import Settings

BATCH = 1000
ATTRS = 5


def _entities(start: int, n: int, rnd: random.Random) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        e: dict[str, Any] = {"id": f"urn:ngsi-ld:AirQualityObserved:{i}", "type": "AirQualityObserved"}
        for k in range(ATTRS - 1):
            e[f"m{k}"] = {"type": "Property", "value": rnd.uniform(0, 300), "observedAt": "2025-07-01T00:00:00Z"}
        e["location"] = {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [105.6 + rnd.random() * 0.2, 18.6 + rnd.random() * 0.2]},
        }
        out.append(e)
    return out


def _raw_rate(db: Database, n: int) -> float:
    """Rows per second written straight into the same tables (entity + attributes + history)."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    with db.session() as s:
        rows = [
            {"tenant": "raw", "entity_id": f"urn:raw:{i}", "types": ["T"], "created_at": now, "modified_at": now}
            for i in range(n)
        ]
        pks = [r[0] for r in s.execute(insert(NgsiEntity).returning(NgsiEntity.pk), rows).all()]
        attrs = [
            {
                "entity_pk": pk,
                "name": f"m{k}",
                "dataset_id": "",
                "tenant": "raw",
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
                "tenant": "raw",
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


def bench_database(url: str, n_entities: int) -> dict[str, Any]:
    migrate.upgrade(url)
    os.environ["IOC_NGSILD_ANONYMOUS_WRITES"] = "true"
    settings = Settings(database_url=url, var_dir=tempfile.mkdtemp(), log_json=False)
    app = create_app(settings)
    rnd = random.Random(7)
    result: dict[str, Any] = {"database": url.split(":")[0], "entities": n_entities}
    with TestClient(app) as client:
        base = "/ngsi-ld/v1"
        # batch upsert: first requests create, the measured ones update (history grows)
        timings = []
        loaded = 0
        while loaded < n_entities:
            n = min(BATCH, n_entities - loaded)
            body = _entities(loaded, n, rnd)
            t = time.perf_counter()
            r = client.post(base + "/entityOperations/upsert", json=body)
            timings.append((n, time.perf_counter() - t))
            assert r.status_code in (201, 204), r.text
            loaded += n
        upd = []
        for _ in range(5):
            body = _entities(0, BATCH, rnd)
            t = time.perf_counter()
            r = client.post(base + "/entityOperations/upsert", json=body, params={"options": "update"})
            assert r.status_code == 204, r.text
            upd.append(time.perf_counter() - t)
        http_rate = BATCH * ATTRS / statistics.median(upd)
        raw_rate = _raw_rate(Database(url), BATCH)
        result["batch_upsert_attr_updates_per_s"] = round(http_rate)
        result["raw_insert_rows_per_s"] = round(raw_rate)
        result["ratio"] = round(http_rate / raw_rate, 3)
        result["load_entities_per_s"] = round(sum(n for n, _ in timings) / sum(t for _, t in timings))
        # GET by id
        t = time.perf_counter()
        for _ in range(500):
            i = rnd.randrange(n_entities)
            assert client.get(f"{base}/entities/urn:ngsi-ld:AirQualityObserved:{i}").status_code == 200
        result["get_by_id_per_s"] = round(500 / (time.perf_counter() - t))
        # type + q + geoQ, limit 100
        lat = []
        for _ in range(40):
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
            r = client.get(base + "/entities", params=params)
            lat.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200
        lat.sort()
        result["query_p95_ms"] = round(lat[int(len(lat) * 0.95) - 1], 1)
    return result


def run() -> dict[str, Any]:
    n = int(os.environ.get("IOC_BENCH_ENTITIES", "100000"))
    results: dict[str, Any] = {}
    path = os.path.join(tempfile.mkdtemp(), "bench.db")
    results["sqlite"] = bench_database(f"sqlite:///{path}", n)
    pg = os.environ.get("IOC_BENCH_DATABASE_URL")
    if pg:
        results["postgresql"] = bench_database(pg, n)
    for name, r in results.items():
        print(
            f"[context/{name}] batch upsert {r['batch_upsert_attr_updates_per_s']}/s attribute updates over HTTP, "
            f"raw {r['raw_insert_rows_per_s']} rows/s, ratio {r['ratio']}; GET by id {r['get_by_id_per_s']}/s; "
            f"type+q+geoQ over {r['entities']} entities p95 {r['query_p95_ms']} ms",
            file=sys.stderr,
        )
    return results


if __name__ == "__main__":
    print(run())
