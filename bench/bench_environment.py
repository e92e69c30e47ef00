"""VN_AQI arithmetic (module ``environment``), computational only: no server, no database. ``run() -> dict``.

* ``aqi_hourly_s`` / ``aqi_daily_s`` / ``aqi_total_s``: hourly (NowCast) and daily VN_AQI of
  1,000 stations × 30 days (720 hours, six pollutants, values with one decimal, 3 % missing),
  through the batch engine the ``ioc env`` command uses (median of 3); target: total ≤ 2 s.
  ``aqi_total_cpu_s`` is the CPU time of the same work: on a shared machine the wall clock also
  counts the time other processes hold the cores;
* ``aqi_station_hours_per_s``: hourly results per second from the same run;
* ``cli_hourly_rows_per_s`` / ``cli_daily_rows_per_s``: ``ioc env aqi`` end to end (CSV parsing,
  computing, writing) on 50 stations × 720 rows, in process.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from ioc.modules.environment.aqi import POLLUTANTS, VN_TZ, daily_aqi_batch, hourly_aqi_batch
from ioc.modules.environment.cli import run_aqi

STATIONS = 1000
HOURS = 30 * 24
TARGET_S = 2.0
SCALES = {"pm25": 40, "pm10": 70, "o3": 80, "no2": 60, "so2": 30, "co": 2000}


def _dataset(stations: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    data = []
    for _ in range(stations):
        arrays = {}
        for p in POLLUTANTS:
            x = np.round(rng.gamma(2.0, SCALES[p] / 2, HOURS), 1)
            x[rng.random(HOURS) < 0.03] = np.nan
            arrays[p] = x
        data.append(arrays)
    return data


def _csv(data: list[dict[str, Any]], start: datetime) -> str:
    lines = ["station_id,time," + ",".join(POLLUTANTS)]
    for s, arrays in enumerate(data):
        for k in range(HOURS):
            t = (start + timedelta(hours=k)).isoformat()
            cells = ["" if np.isnan(arrays[p][k]) else f"{arrays[p][k]:.1f}" for p in POLLUTANTS]
            lines.append(f"S{s:04d},{t}," + ",".join(cells))
    return "\n".join(lines) + "\n"


def run() -> dict[str, Any]:
    rng = np.random.default_rng(2019)
    start = datetime(2025, 7, 1, 1, tzinfo=VN_TZ)
    items = [(start, arrays) for arrays in _dataset(STATIONS, rng)]
    hourly_s, daily_s, cpu_s = [], [], []
    for _ in range(3):
        cpu = time.process_time()
        t = time.perf_counter()
        hourly = hourly_aqi_batch(items)
        hourly_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        daily = daily_aqi_batch(items)
        daily_s.append(time.perf_counter() - t)
        cpu_s.append(time.process_time() - cpu)
    assert len(hourly) == STATIONS and len(hourly[0]) == HOURS and len(daily[0]) == 30
    assert (hourly[0].aqi[12:] >= 0).mean() > 0.9
    h, d = statistics.median(hourly_s), statistics.median(daily_s)
    result: dict[str, Any] = {
        "stations": STATIONS,
        "hours": HOURS,
        "aqi_hourly_s": round(h, 3),
        "aqi_daily_s": round(d, 3),
        "aqi_total_s": round(h + d, 3),
        "aqi_total_cpu_s": round(statistics.median(cpu_s), 3),
        "aqi_target_s": TARGET_S,
        "aqi_station_hours_per_s": round(STATIONS * HOURS / h),
    }

    text = _csv(_dataset(50, rng), start)
    rows = text.count("\n") - 1
    for mode in ("hourly", "daily"):
        out, err = io.StringIO(), io.StringIO()
        t = time.perf_counter()
        code = run_aqi("-", daily=mode == "daily", stdin=io.StringIO(text), stdout=out, stderr=err)
        elapsed = time.perf_counter() - t
        assert code == 0 and not err.getvalue(), err.getvalue()
        result[f"cli_{mode}_rows_per_s"] = round(rows / elapsed)
    print(
        f"[environment] VN_AQI of {STATIONS} stations × {HOURS} h: hourly {h:.3f} s + daily {d:.3f} s = "
        f"{h + d:.3f} s, CPU {result['aqi_total_cpu_s']:.3f} s (target ≤ {TARGET_S} s); "
        f"`ioc env aqi` {result['cli_hourly_rows_per_s']} rows/s hourly, "
        f"{result['cli_daily_rows_per_s']} rows/s daily",
        file=sys.stderr,
    )
    return result


if __name__ == "__main__":
    print(run())
