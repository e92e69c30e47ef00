"""``ioc simulate``: the demo's devices sending plausible telemetry over MQTT or HTTP.

Air stations follow a daily pattern (PM2.5, NO2 and CO peak at the morning and evening rush
hours, ozone in the early afternoon), rain gauges have rain events that raise the water level
at the gauges of the same ward with a lag, streetlights switch on at dusk and dim after
midnight. ``--episode pollution`` drives PM2.5/PM10 up to about four times their normal level
over the first third of the run; ``--episode flood`` brings heavy rain on every ward and the
rivers rise by about three metres. The clock is the real one (Asia/Ho_Chi_Minh local time);
``--seed`` makes a run repeatable.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .devices import DEMO_WARDS, DeviceCreate, demo_devices, demo_kind
from .ingest import telemetry_topic

VN = timezone(timedelta(hours=7))
#: How strongly each ward's air is polluted, relative to the city (traffic, industry, the sea breeze).
WARD_AIR = {"16681": 1.15, "16690": 1.2, "16702": 1.0, "16708": 0.95, "16732": 0.7, "17920": 1.05}
#: Normal water level (m) at each ward's gauge.
WARD_LEVEL = {"16681": 1.1, "16690": 0.9, "16702": 1.0, "16708": 1.2, "16732": 0.6, "17920": 1.3}
RAIN_INTERVAL_H = 5 / 60  # a rain gauge reports the rain of the last five minutes
SHOWER_EVERY = 3 * 3600.0


def _bump(hour: float, centre: float, width: float) -> float:
    """A daily bell curve around ``centre`` (hours), wrapping around midnight."""
    d = min(abs(hour - centre), 24 - abs(hour - centre))
    return math.exp(-((d / width) ** 2))


@dataclass
class WardWeather:
    rain_rate: float = 0.0  # mm/h
    raining_until: float = 0.0  # monotonic seconds
    level: float | None = None
    updated: float | None = None
    checked: float | None = None


@dataclass
class City:
    """The state of the simulated city: weather per ward and the episode under way."""

    rng: random.Random
    episode: str | None = None
    ramp_seconds: float = 600.0
    started: float = field(default_factory=time.monotonic)
    wards: dict[str, WardWeather] = field(default_factory=dict)

    def strength(self, now: float) -> float:
        """How far the episode has gone: 0 at the start, 1 after the ramp."""
        if self.episode is None:
            return 0.0
        return min(1.0, max(0.0, (now - self.started) / self.ramp_seconds))

    def weather(self, ward: str, now: float) -> WardWeather:
        w = self.wards.setdefault(ward, WardWeather())
        if self.episode == "flood":
            w.rain_rate = 15 + 65 * self.strength(now) + self.rng.uniform(-5, 5)
        elif now >= w.raining_until:
            w.rain_rate = 0.0
            # A shower starts now and then: about one every SHOWER_EVERY seconds per ward, whatever the rate.
            elapsed = max(0.0, now - (w.checked if w.checked is not None else now))
            if self.rng.random() < 1 - math.exp(-elapsed / SHOWER_EVERY):
                w.raining_until = now + self.rng.uniform(300, 2400)
                w.rain_rate = self.rng.uniform(2, 20)
        w.checked = now
        return w

    def air(self, ward: str, at: datetime, now: float) -> dict[str, Any]:
        hour = at.astimezone(VN).hour + at.astimezone(VN).minute / 60
        rush = _bump(hour, 7.5, 1.3) + _bump(hour, 18.0, 1.6)
        factor = WARD_AIR.get(ward, 1.0) * self.rng.lognormvariate(0, 0.12)
        if self.episode == "pollution":
            factor *= 1 + 3 * self.strength(now)
        rain = self.weather(ward, now).rain_rate
        episode = self.strength(now)
        washout = 1 / (1 + rain / 10)  # rain cleans the air
        pm25 = (16 + 30 * rush + 8 * _bump(hour, 23, 2.5)) * factor * washout
        return {
            "pm25": round(pm25, 1),
            "pm10": round(pm25 * self.rng.uniform(1.4, 1.8), 1),
            "no2": round((15 + 35 * rush) * WARD_AIR.get(ward, 1.0) * self.rng.uniform(0.85, 1.15), 1),
            "o3": round((25 + 70 * _bump(hour, 14, 3)) * self.rng.uniform(0.85, 1.15), 1),
            "so2": round(6 + 4 * self.rng.random() + (10 * episode if self.episode == "pollution" else 0), 1),
            "co": round((500 + 900 * rush) * factor, 0),
            "temperature": round(26 + 5 * math.sin((hour - 8) / 24 * 2 * math.pi) + self.rng.uniform(-0.5, 0.5), 1),
            "humidity": round(min(1.0, 0.78 - 0.12 * math.sin((hour - 8) / 24 * 2 * math.pi) + rain / 200), 2),
        }

    def rain(self, ward: str, now: float) -> dict[str, Any]:
        rate = self.weather(ward, now).rain_rate
        return {"rain": round(max(0.0, rate) * RAIN_INTERVAL_H, 2)}

    def water(self, ward: str, now: float) -> dict[str, Any]:
        w = self.weather(ward, now)
        base = WARD_LEVEL.get(ward, 1.0)
        target = base + 0.04 * w.rain_rate  # 80 mm/h of rain: about +3.2 m
        if w.level is None or w.updated is None:
            w.level = base
        else:
            tau = self.ramp_seconds / 3 if self.episode == "flood" else 1800.0
            w.level += (target - w.level) * min(1.0, (now - w.updated) / tau)
        w.updated = now
        return {"level": round(w.level + self.rng.uniform(-0.01, 0.01), 3)}

    def light(self, at: datetime) -> dict[str, Any]:
        local = at.astimezone(VN)
        minutes = local.hour * 60 + local.minute
        on = minutes >= 17 * 60 + 45 or minutes < 5 * 60 + 45
        dim = 0.0 if not on else (0.6 if minutes >= 23 * 60 or minutes < 4 * 60 + 30 else 1.0)
        watts = round(120 * dim * self.rng.uniform(0.97, 1.03), 1) if on else 0.3
        return {"powerState": "on" if on else "off", "dim": dim, "watts": watts}

    def reading(self, device: DeviceCreate, at: datetime, now: float) -> dict[str, Any]:
        """The values a demo device reports at ``at`` (``now``: the monotonic clock)."""
        ward = device.ward_code or ""
        kind = demo_kind(device.id)
        if kind == "air":
            return self.air(ward, at, now)
        if kind == "rain":
            return self.rain(ward, now)
        if kind == "water":
            return self.water(ward, now)
        return self.light(at)


def parse_rate(text: str) -> float:
    """``5``, ``5/s``, ``120/min`` or ``3600/h`` → messages per second."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|min|m|h))?\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"bad rate {text!r}: use N, N/s, N/min or N/h")
    per = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) / per


def parse_duration(text: str) -> float:
    """``30``, ``30s``, ``5m`` or ``1h`` → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: use N, Ns, Nm or Nh")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with its offset (``2025-09-22T16:00:00+07:00``)."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad time {text!r}: use ISO 8601, e.g. 2025-09-22T16:00:00+07:00") from exc
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"bad time {text!r}: give its UTC offset (+07:00 or Z)")
    return at


def select_devices(spec: str | None) -> list[DeviceCreate]:
    """The demo devices named by ``spec``: kinds (air, water, rain, light) and/or device ids."""
    devices = demo_devices()
    if not spec:
        return devices
    wanted = {s.strip() for s in spec.split(",") if s.strip()}
    chosen = [d for d in devices if d.id in wanted or demo_kind(d.id) in wanted]
    unknown = wanted - {d.id for d in chosen} - {demo_kind(d.id) for d in chosen}
    if unknown or not chosen:
        kinds = ", ".join(sorted({k for d in devices if (k := demo_kind(d.id))}))
        raise ValueError(f"unknown devices {', '.join(sorted(unknown)) or spec!r}; use {kinds} or device ids")
    return chosen


Sender = Callable[[DeviceCreate, dict[str, Any]], None]


def http_sender(base_url: str, api_key: str | None, timeout: float = 30.0) -> tuple[Sender, Callable[[], None]]:
    import httpx

    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-Device-Key" if api_key.startswith("iocd_") else "X-API-Key"] = api_key
    client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def send(device: DeviceCreate, payload: dict[str, Any]) -> None:
        r = client.post(f"/api/v1/devices/{device.id}/telemetry", content=json.dumps(payload))
        if r.status_code >= 300:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")

    return send, client.close


def mqtt_sender(url: str, prefix: str, tenant: str) -> tuple[Sender, Callable[[], None]]:
    from ioc.core.mqtt import MqttPublisher

    publisher = MqttPublisher(url, client_id=f"ioc-simulate-{random.getrandbits(32):08x}")
    publisher.connect()

    def send(device: DeviceCreate, payload: dict[str, Any]) -> None:
        publisher.publish(telemetry_topic(prefix, tenant, device.id), json.dumps(payload).encode())

    return send, publisher.close


def run(
    send: Sender,
    devices: list[DeviceCreate],
    *,
    rate: float,
    duration: float | None,
    city: City,
    count: int | None = None,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    replay: tuple[datetime, float] | None = None,
) -> tuple[int, int]:
    """Send readings round-robin at ``rate`` per second until ``duration`` is over or ``count`` messages
    went out; returns (sent, failed).

    ``replay=(start, step_seconds)`` runs on a simulated clock instead: every device reports once per
    ``step`` from ``start`` on, as fast as the target takes them, until ``duration`` simulated
    seconds have passed (history for a demo, a test or a benchmark)."""
    sent = failed = 0
    start = clock()
    next_report = start + 5
    i = 0
    while count is None or i < count:
        if replay is None:
            if duration is not None and clock() - start >= duration:
                break
            at, now = datetime.now(UTC), clock()
        else:
            elapsed = replay[1] * (i // len(devices))
            if duration is not None and elapsed >= duration:
                break
            at, now = replay[0] + timedelta(seconds=elapsed), city.started + elapsed
        device = devices[i % len(devices)]
        payload = {"ts": at.isoformat().replace("+00:00", "Z"), "values": city.reading(device, at, now)}
        try:
            send(device, payload)
            sent += 1
        except Exception as exc:  # keep simulating: the server may be restarting
            failed += 1
            if failed <= 5:
                say(f"  ! {device.id}: {exc}")
        i += 1
        now = clock()
        if now >= next_report:
            say(f"  … {sent} bản tin đã gửi, {failed} lỗi (messages sent, failed)")
            next_report = now + 5
        delay = start + i / rate - now
        if delay > 0 and replay is None:
            sleep(delay)
    return sent, failed


def main(args: argparse.Namespace, *, mqtt_url: str, mqtt_prefix: str, base_url: str) -> int:
    """The ``ioc simulate`` command (defaults from the settings: the MQTT broker, else the base URL)."""

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        devices = select_devices(args.devices)
    except ValueError as exc:
        print(f"ioc: {exc}", file=sys.stderr)
        return 2
    for d in devices:
        d.tenant = args.tenant or ""
    rng = random.Random(args.seed)  # noqa: S311 - a simulation, not cryptography
    ramp = min(600.0, max(5.0, args.duration / 3)) if args.duration else 600.0
    city = City(rng=rng, episode=args.episode, ramp_seconds=ramp)
    replay = None
    if args.start is not None:
        if args.duration is None and args.count is None:
            print("ioc: --from needs --duration or --count (a replay ends)", file=sys.stderr)
            return 2
        replay = (args.start, args.every)
        city.started = 0.0
    target = args.mqtt or (None if args.http else mqtt_url or None)
    if target:
        send, close = mqtt_sender(target, mqtt_prefix, args.tenant or "")
        where = f"MQTT {target} ({telemetry_topic(mqtt_prefix, args.tenant or '', '<id>')})"
    else:
        url = args.http or base_url
        send, close = http_sender(url, args.api_key)
        where = f"HTTP {url}/api/v1/devices/<id>/telemetry"
    episode = f", đợt {args.episode}" if args.episode else ""
    say(f"→ Mô phỏng {len(devices)} thiết bị qua {where}, {args.rate:g} bản tin/giây{episode}")
    try:
        sent, failed = run(
            send, devices, rate=args.rate, duration=args.duration, count=args.count, city=city, say=say, replay=replay
        )
    except KeyboardInterrupt:
        say("→ Dừng (interrupted).")
        return 0
    finally:
        close()
    say(f"✓ Đã gửi {sent} bản tin, {failed} lỗi (sent, failed).")
    return 0 if sent or not failed else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--mqtt", metavar="URL", help="publish to this MQTT broker (default: IOC_MQTT__URL)")
    target.add_argument("--http", metavar="URL", help="POST to this IOC (default: IOC_BASE_URL)")
    parser.add_argument("--rate", type=parse_rate, default=2.0, help="messages per second: N, N/s, N/min (2)")
    parser.add_argument("--duration", type=parse_duration, help="stop after 30s, 5m, 1h (default: run until Ctrl-C)")
    parser.add_argument("--count", type=int, help="stop after this many messages")
    parser.add_argument("--devices", help="kinds (air,water,rain,light) and/or device ids; default all demo devices")
    parser.add_argument("--tenant", default="", help="NGSI-LD tenant of the devices (default tenant)")
    parser.add_argument("--api-key", help="HTTP: an API key with context:write (or one device's key)")
    parser.add_argument("--seed", type=int, help="random seed, for a repeatable run")
    parser.add_argument("--episode", choices=["pollution", "flood"], help="drive a pollution or flood episode")
    parser.add_argument(
        "--from",
        dest="start",
        type=parse_time,
        help="replay on a simulated clock from this ISO 8601 time (with offset), as fast as the target takes it;"
        " --duration is then simulated time",
    )
    parser.add_argument(
        "--every", type=parse_duration, default=300.0, help="replay: one reading per device every 5m (default)"
    )


__all__ = ["DEMO_WARDS", "City", "add_arguments", "main", "parse_duration", "parse_rate", "run", "select_devices"]
