"""Point → ward throughput: the ward locator built from the shipped reference data.

Builds a throw-away SQLite database, loads the reference units the way ``seed`` does, builds
the :class:`~ioc.core.admin_units.WardLocator` from it, then measures bulk lookups of
1,000,000 random points in the bbox of the six wards (best of 3) and single-point latency.
The bbox includes Cửa Lò's offshore islands, so most points fall at sea or in neighbouring
communes: the worst case for the bbox prefilter, which real sensor data would not be.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ioc.core.admin_units import load_reference_units, ward_locator
from ioc.core.db import Base, Database

POINTS = 1_000_000
REPEATS = 3
SINGLE_LOOKUPS = 20_000


def run() -> dict[str, float]:
    """Measure and return the figures (points/s, microseconds, milliseconds)."""
    with tempfile.TemporaryDirectory(prefix="ioc-bench-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            Base.metadata.create_all(db.engine)
            with db.session() as session:
                load_reference_units(session)
            started = time.perf_counter()
            locator = ward_locator(db)
            build_ms = (time.perf_counter() - started) * 1000
        finally:
            db.dispose()

    if locator.bounds is None:
        raise RuntimeError("no ward boundaries in the reference data")
    min_lon, min_lat, max_lon, max_lat = locator.bounds
    rng = np.random.default_rng(20250701)
    lats = rng.uniform(min_lat, max_lat, POINTS)
    lons = rng.uniform(min_lon, max_lon, POINTS)

    best = float("inf")
    found = 0
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        codes = locator.locate_many(lats, lons)
        best = min(best, time.perf_counter() - t0)
        found = int(np.count_nonzero(codes != None))  # noqa: E711 — element-wise on an object array

    timings = []
    for lat, lon in zip(lats[:SINGLE_LOOKUPS].tolist(), lons[:SINGLE_LOOKUPS].tolist(), strict=True):
        t0 = time.perf_counter()
        locator.locate(lat, lon)
        timings.append(time.perf_counter() - t0)
    timings.sort()

    return {
        "bulk_points_per_s": round(POINTS / best),
        "bulk_1m_points_s": round(best, 4),
        "bulk_share_in_a_ward": round(found / POINTS, 4),
        "single_locate_mean_us": round(statistics.fmean(timings) * 1e6, 2),
        "single_locate_p99_us": round(timings[int(len(timings) * 0.99)] * 1e6, 2),
        "locator_build_ms": round(build_ms, 2),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
