"""``ioc simulate``: daily patterns and episodes of the model, and real runs over HTTP and MQTT."""

from __future__ import annotations

import argparse
import itertools
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from statistics import mean
from typing import Any

import httpx
import pytest

from ioc.app import create_app
from ioc.core.auth import create_api_key
from ioc.core.db import Database
from ioc.modules.context.contexts import DbContextSource
from ioc.modules.context.devices import demo_devices, demo_seeder
from ioc.modules.context.ingest import Ingestor
from ioc.modules.context.ld import ContextLoader
from ioc.modules.context.simulate import City, parse_duration, parse_rate, run, select_devices
from ioc.settings import Settings
from tests.conftest import LiveServer

DEVICES = {d.id: d for d in demo_devices()}


def local(hour: int, minute: int = 0) -> datetime:
    """A time on 2026-12-04 at ``hour`` in Vinh (UTC+7)."""
    return datetime(2026, 12, 4, (hour - 7) % 24, minute, tzinfo=UTC)


def pm25(city: City, at: datetime, now: float = 0.0, ward_device: str = "aq-thanh-vinh") -> float:
    return float(mean(city.reading(DEVICES[ward_device], at, now)["pm25"] for _ in range(40)))


def test_air_follows_the_rush_hours() -> None:
    city = City(rng=random.Random(1), started=0.0)
    morning, evening, night, noon = (
        pm25(city, local(7, 30)),
        pm25(city, local(18)),
        pm25(city, local(3)),
        pm25(city, local(12)),
    )
    assert morning > 1.8 * night and evening > 1.8 * night and morning > 1.3 * noon
    o3 = mean(city.reading(DEVICES["aq-vinh-phu"], local(14), 0)["o3"] for _ in range(20))
    o3_night = mean(city.reading(DEVICES["aq-vinh-phu"], local(2), 0)["o3"] for _ in range(20))
    assert o3 > 2 * o3_night
    # the sea breeze: Cửa Lò's air is cleaner than the centre's
    assert pm25(city, local(8), ward_device="aq-cua-lo") < pm25(city, local(8), ward_device="aq-thanh-vinh")


def test_pollution_episode_ramps_up() -> None:
    normal = City(rng=random.Random(2), started=0.0, ramp_seconds=60)
    episode = City(rng=random.Random(2), started=0.0, ramp_seconds=60, episode="pollution")
    at = local(10)
    assert pm25(episode, at, now=0.0) == pytest.approx(pm25(normal, at, now=0.0), rel=0.3)
    assert pm25(episode, at, now=30.0) > 2 * pm25(normal, at, now=30.0)
    assert pm25(episode, at, now=120.0) > 3.3 * pm25(normal, at, now=120.0)


def test_flood_episode_raises_rain_and_rivers() -> None:
    city = City(rng=random.Random(3), started=0.0, ramp_seconds=60, episode="flood")
    gauge, rain = DEVICES["wl-truong-vinh"], DEVICES["rain-truong-vinh"]
    start_level = city.reading(gauge, local(15), 0.0)["level"]
    levels = [city.reading(gauge, local(15), float(t))["level"] for t in range(5, 125, 5)]
    assert all(b >= a - 0.05 for a, b in itertools.pairwise(levels))  # rising
    assert levels[-1] - start_level > 2.5
    assert city.reading(rain, local(15), 120.0)["rain"] > 5  # mm in five minutes
    calm = City(rng=random.Random(3), started=0.0, ramp_seconds=60)
    calm_levels = [calm.reading(gauge, local(15), float(t))["level"] for t in range(0, 125, 5)]
    assert max(calm_levels) - min(calm_levels) < 0.5


def test_streetlights_follow_the_night() -> None:
    city = City(rng=random.Random(4))
    light = DEVICES["sl-vinh-loc"]
    assert city.reading(light, local(12), 0)["powerState"] == "off"
    evening = city.reading(light, local(20), 0)
    assert evening["powerState"] == "on" and evening["dim"] == 1.0 and evening["watts"] > 100
    assert city.reading(light, local(1), 0)["dim"] == 0.6


def test_options_and_loop() -> None:
    assert parse_rate("5") == 5 and parse_rate("5/s") == 5 and parse_rate("120/min") == 2
    assert parse_duration("90") == 90 and parse_duration("2m") == 120 and parse_duration("1h") == 3600
    for bad in ("0", "-1", "fast"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_rate(bad)
    assert {d.id for d in select_devices("water,aq-cua-lo")} == {
        *(d for d in DEVICES if d.startswith("wl-")),
        "aq-cua-lo",
    }
    with pytest.raises(ValueError, match="nope"):
        select_devices("air,nope")
    # the loop keeps its rate on a fake clock and survives failures
    clock = [0.0]
    sent_to: list[str] = []

    def send(device: Any, payload: dict[str, Any]) -> None:
        if device.id == "rain-cua-lo":
            raise RuntimeError("server away")
        assert set(payload) == {"ts", "values"}
        sent_to.append(device.id)

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    devices = select_devices("rain")
    sent, failed = run(
        send, devices, rate=4, duration=3, city=City(rng=random.Random(5)), say=lambda _m: None,
        clock=lambda: clock[0], sleep=sleep,
    )  # fmt: skip
    assert sent + failed == 12 and failed == 2 and len(set(sent_to)) == 5


# --------------------------------------------------------------------------- real runs


def _seed_and_key(settings: Settings, db: Database) -> str:
    loader = ContextLoader(lambda: DbContextSource(db), timeout=5, refresh_seconds=3600, max_bytes=2_000_000)
    policy = create_app(settings).state.policy
    with db.session() as s:
        assert demo_seeder(Ingestor(loader))(s) == 24
        _, key = create_api_key(s, policy, name="simulator", scopes=["context:write", "context:read"])
    return key


def _simulate(settings: Settings, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ioc", "simulate", *args],
        env={
            **os.environ,
            "IOC_VAR_DIR": str(settings.var_dir),
            "IOC_DATABASE_URL": settings.database_url,
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _values(server: LiveServer, key: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for type_ in ("AirQualityObserved", "FloodMonitoring", "WeatherObserved", "Streetlight"):
        r = httpx.get(
            server.url + "/ngsi-ld/v1/entities",
            params={"type": type_, "limit": 100, "options": "keyValues"},
            headers={"X-API-Key": key},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        found.update({e["id"]: e for e in r.json()})
    return found


WANTED = {
    "AirQualityObserved": ("pm25", "pm10", "no2", "relativeHumidity"),
    "FloodMonitoring": ("currentLevel",),
    "WeatherObserved": ("precipitation",),
    "Streetlight": ("powerState", "illuminanceLevel"),
}


def _all_reported(values: dict[str, dict[str, Any]]) -> bool:
    return len(values) == 24 and all(all(a in e for a in WANTED[e["type"]]) for e in values.values())


def _check_all_reported(values: dict[str, dict[str, Any]]) -> None:
    assert len(values) == 24
    wanted = WANTED
    for eid, e in values.items():
        missing = [a for a in wanted[e["type"]] if a not in e]
        assert not missing, (eid, missing, e)


def test_simulate_over_http(settings: Settings, db: Database, start_server: Callable[..., LiveServer]) -> None:
    key = _seed_and_key(settings, db)
    server = start_server()
    out = _simulate(settings, "--http", server.url, "--api-key", key, "--rate", "20/s", "--count", "48", "--seed", "7")
    assert "lỗi" in out and ", 0 lỗi" in out, out
    values = _values(server, key)
    _check_all_reported(values)
    r = httpx.get(server.url + "/api/v1/devices", params={"status": "online"}, headers={"X-API-Key": key}, timeout=10)
    assert len(r.json()) == 24


def test_simulate_over_mqtt(
    settings: Settings, db: Database, start_server: Callable[..., LiveServer], mqtt_url: str
) -> None:
    key = _seed_and_key(settings, db)
    prefix = f"sim-{uuid.uuid4().hex[:8]}"
    server = start_server(IOC_MQTT__URL=mqtt_url, IOC_MQTT__TOPIC_PREFIX=prefix)
    env = {"IOC_MQTT__TOPIC_PREFIX": prefix}
    # The server subscribes in the background as it starts: what is published before is not kept
    # (clean session), so a run that came too early is repeated.
    values: dict[str, dict[str, Any]] = {}
    for _attempt in range(3):
        _simulate(settings, "--mqtt", mqtt_url, "--rate", "40", "--count", "48", "--episode", "flood", env=env)
        deadline = time.monotonic() + 30
        values = _values(server, key)
        while time.monotonic() < deadline and not _all_reported(values):
            time.sleep(0.3)
            values = _values(server, key)
        if _all_reported(values):
            break
    _check_all_reported(values)
