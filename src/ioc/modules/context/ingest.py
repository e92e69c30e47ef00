"""Device telemetry into NGSI-LD entities, over HTTP and MQTT, and the offline alarm.

A payload is ``{"ts": ..., "values": {...}}``, a flat object of values (with an optional
``ts``), or a list of either. Each reading's values are mapped through the device's attribute
map to NGSI-LD Properties (``observedAt`` = the reading's time, ``unitCode`` from the map) and
written through the broker's own write path, so history rows and ``context.entity.*`` events
follow as for any NGSI-LD write. Readings of many devices are written together: one change
set per round (a device's first readings, then its second ones, ...), each flushed in bulk, all
in one transaction; a device's readings are applied oldest first, so the entity ends with the
newest values and every reading is in the history with its own time.

MQTT: ``<prefix>/<tenant>/devices/<device_id>/telemetry`` (the tenant ``default`` is the
default tenant), QoS 1, through a shared subscription so several workers share the load.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session

from ioc.core import alarms
from ioc.core.alarms import AlarmCreate, Severity
from ioc.core.db import Database, utcnow
from ioc.core.jobs import JobFn
from ioc.core.mqtt import check_topic_prefix, parse_mqtt_url

from . import service
from .devices_models import Device
from .entity import EntityInput, format_datetime, parse_datetime, parse_entity
from .errors import NgsiError
from .events import write_changes
from .ld import ContextLoader
from .store import ChangeSet, StoredEntity, load_entities
from .validation import schemas

log = logging.getLogger("ioc.context.devices")

MAX_READINGS = 10_000
#: Readings stamped further in the future than this are refused (a device's clock gone wrong).
MAX_CLOCK_SKEW = timedelta(hours=1)
OFFLINE_ALARM = "device.offline"
DEFAULT_TENANT_TOPIC = "default"


class TelemetryError(ValueError):
    """A payload that cannot be read as telemetry; the message says why."""


@dataclass
class Reading:
    """One timestamped set of values from a device (``ts`` None: received now)."""

    ts: datetime | None
    values: dict[str, Any]


@dataclass
class Outcome:
    """What became of one device's payload."""

    device_id: str
    readings: int = 0
    ignored: list[str] = field(default_factory=list)
    error: str | None = None


def _timestamp(raw: Any, now: datetime) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise TelemetryError("ts must be an ISO 8601 time or epoch seconds/milliseconds.")
    if isinstance(raw, int | float):
        if not math.isfinite(raw) or raw < 0:
            raise TelemetryError(f"ts {raw!r} is not a valid epoch time.")
        seconds = raw / 1000 if raw > 1e11 else raw  # milliseconds from 1973 on
        try:
            ts = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise TelemetryError(f"ts {raw!r} is not a valid epoch time.") from exc
    elif isinstance(raw, str):
        try:
            ts = parse_datetime(raw, "ts")
        except NgsiError as exc:
            raise TelemetryError(exc.detail) from exc
    else:
        raise TelemetryError("ts must be an ISO 8601 time or epoch seconds/milliseconds.")
    if ts > now + MAX_CLOCK_SKEW:
        raise TelemetryError(f"ts {raw!r} is in the future (check the device's clock).")
    return ts


def _reading(item: Any, now: datetime) -> Reading:
    if not isinstance(item, dict):
        raise TelemetryError("Each reading must be a JSON object.")
    if "values" in item:
        extra = set(item) - {"ts", "values"}
        if extra:
            raise TelemetryError(f"Unexpected member(s) next to values: {', '.join(sorted(extra))}.")
        values = item["values"]
        if not isinstance(values, dict):
            raise TelemetryError("values must be a JSON object.")
    else:
        values = {k: v for k, v in item.items() if k != "ts"}
    if not values:
        raise TelemetryError("A reading without values.")
    for key, value in values.items():
        if value is None:
            raise TelemetryError(f"{key}: null is not a value.")
        if isinstance(value, float) and not math.isfinite(value):
            raise TelemetryError(f"{key}: NaN and Infinity are not JSON.")
    return Reading(_timestamp(item.get("ts"), now), dict(values))


def parse_payload(body: Any, now: datetime | None = None) -> list[Reading]:
    """The readings of a telemetry payload (one of the three shapes); TelemetryError otherwise."""
    now = now or utcnow()
    items = body if isinstance(body, list) else [body]
    if not items:
        raise TelemetryError("An empty list of readings.")
    if len(items) > MAX_READINGS:
        raise TelemetryError(f"At most {MAX_READINGS} readings per payload.")
    return [_reading(item, now) for item in items]


def decode(raw: bytes) -> Any:
    """JSON of an MQTT message or request body; TelemetryError when it is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TelemetryError(f"The payload is not valid JSON: {exc}.") from exc


# --------------------------------------------------------------------------- writing


def _time_attribute(entity_type: str) -> str | None:
    """The Smart Data Models attribute that carries the observation time of a type, if any."""
    props = schemas().get(entity_type, {}).get("properties", {})
    for name in ("dateObserved", "observationDateTime", "dateLastValueReported"):
        if name in props:
            return name
    return None


def _fragment(device: Device, reading: Reading, now: datetime) -> tuple[dict[str, Any], list[str]]:
    observed = format_datetime(reading.ts or now)
    body: dict[str, Any] = {"id": device.entity_id, "type": device.entity_type}
    ignored: list[str] = []
    for key, value in reading.values.items():
        spec = device.attributes.get(key)
        if not isinstance(spec, dict):
            ignored.append(key)
            continue
        attr: dict[str, Any] = {"type": "Property", "value": value, "observedAt": observed}
        if spec.get("unitCode"):
            attr["unitCode"] = spec["unitCode"]
        body[spec["attribute"]] = attr
    stamp = _time_attribute(device.entity_type)
    if stamp and len(body) > 2 and stamp not in body:
        body[stamp] = {"type": "Property", "value": {"@type": "DateTime", "@value": observed}}
    return body, ignored


def entity_body(device: Device) -> dict[str, Any]:
    """The entity a device feeds, before any telemetry: its type, name and location."""
    body: dict[str, Any] = {
        "id": device.entity_id,
        "type": device.entity_type,
        "name": {"type": "Property", "value": device.name},
    }
    if device.location:
        body["location"] = {"type": "GeoProperty", "value": device.location}
    return body


class Ingestor:
    """Writes device telemetry through the broker's write path and tracks who is online."""

    def __init__(self, loader: ContextLoader, *, misses: int = 3) -> None:
        self.loader = loader
        self.misses = misses

    def register(self, session: Session, device: Device) -> None:
        """Create the device's entity (name, location) or merge them into the existing one."""
        inp = parse_entity(entity_body(device), self.loader.core, merge=True)
        cs = ChangeSet(device.tenant, utcnow())
        current = load_entities(session, device.tenant, [device.entity_id]).get(device.entity_id)
        if current is None:
            service.create(cs, None, inp)
        else:
            service.merge(cs, current, inp)
        write_changes(session, cs, self.loader.core)

    def write(self, session: Session, items: Sequence[tuple[Device, list[Reading]]]) -> list[Outcome]:
        """Write the readings of several devices in the session's transaction; one outcome per item.

        An item whose values break the NGSI-LD rules (or a data-model schema) gets an error and
        writes nothing; the others are written.
        """
        now = utcnow()
        outcomes: list[Outcome] = []
        planned: list[tuple[Device, list[EntityInput], datetime]] = []
        for device, readings in items:
            outcome = Outcome(device.id)
            outcomes.append(outcome)
            ordered = sorted(readings, key=lambda r: r.ts or now)
            inputs: list[EntityInput] = []
            try:
                for reading in ordered:
                    body, ignored = _fragment(device, reading, now)
                    outcome.ignored.extend(k for k in ignored if k not in outcome.ignored)
                    if len(body) > 2:
                        inputs.append(parse_entity(body, self.loader.core, merge=True))
            except NgsiError as exc:
                outcome.error = exc.detail
                continue
            outcome.readings = len(inputs)
            planned.append((device, inputs, max((r.ts or now for r in ordered), default=now)))
        for tenant in dict.fromkeys(device.tenant for device, _, _ in planned):
            group = [(d, inputs) for d, inputs, _ in planned if d.tenant == tenant and inputs]
            self._write_tenant(session, tenant, group, now)
        for device, _, observed in planned:
            self.seen(session, device, now, observed=observed)
        return outcomes

    def _write_tenant(
        self, session: Session, tenant: str, group: list[tuple[Device, list[EntityInput]]], now: datetime
    ) -> None:
        entities: dict[str, StoredEntity] = load_entities(session, tenant, [d.entity_id for d, _ in group])
        # Round i holds the i-th reading of each device, so an entity changes once per change set
        # (one event and one history row per reading).
        for i in range(max((len(inputs) for _, inputs in group), default=0)):
            cs = ChangeSet(tenant, now)
            for device, inputs in group:
                if i >= len(inputs):
                    continue
                current = entities.get(device.entity_id)
                if current is None:
                    base = parse_entity(entity_body(device), self.loader.core, merge=True)
                    base.attrs.update(inputs[i].attrs)
                    entities[device.entity_id] = service.create(cs, None, base)
                else:
                    service.merge(cs, current, inputs[i])
            write_changes(session, cs, self.loader.core)

    def seen(self, session: Session, device: Device, now: datetime, *, observed: datetime | None = None) -> None:
        """Record that ``device`` reported; a device back from offline gets its alarm cleared."""
        device.last_seen_at = now
        if observed is not None and (device.last_observed_at is None or observed > device.last_observed_at):
            device.last_observed_at = observed
        if not device.online:
            device.online = True
            alarms.clear_condition(session, alarm_source(device.id), OFFLINE_ALARM, note="Thiết bị đã kết nối lại.")

    def check_offline(self, session: Session, now: datetime | None = None) -> list[str]:
        """Raise the offline alarm of every online device that missed ``misses`` reports in a row.

        ``now`` is the clock (tests pass their own). A device never seen raises nothing: it
        has not been commissioned yet. Returns the ids of the devices that went offline.
        """
        now = now or utcnow()
        gone: list[str] = []
        rows = session.scalars(
            select(Device).where(Device.online.is_(True), Device.enabled.is_(True), Device.last_seen_at.is_not(None))
        )
        for device in rows:
            assert device.last_seen_at is not None
            silence = now - device.last_seen_at
            if silence < timedelta(seconds=device.expected_interval_seconds * self.misses):
                continue
            device.online = False
            missed = int(silence.total_seconds() // device.expected_interval_seconds)
            alarms.raise_alarm(
                session,
                AlarmCreate(
                    source=alarm_source(device.id),
                    type=OFFLINE_ALARM,
                    severity=Severity.WARNING,
                    title=f"Thiết bị {device.name} mất kết nối"[:300],
                    ward_code=device.ward_code,
                    agency_id=device.agency_id,
                    details={
                        "device_id": device.id,
                        "entity_id": device.entity_id,
                        "last_seen_at": device.last_seen_at.isoformat(),
                        "expected_interval_seconds": device.expected_interval_seconds,
                        "missed_reports": missed,
                    },
                ),
                module="context",
            )
            gone.append(device.id)
        return gone


def alarm_source(device_id: str) -> str:
    """The source of a device's alarms."""
    return f"device:{device_id}"


# --------------------------------------------------------------------------- MQTT


def telemetry_filter(prefix: str, share_group: str = "") -> str:
    """The subscription: ``<prefix>/+/devices/+/telemetry``, shared by the workers of ``share_group``."""
    topic = f"{check_topic_prefix(prefix)}/+/devices/+/telemetry"
    return f"$share/{share_group}/{topic}" if share_group else topic


def parse_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """(tenant, device id) of a telemetry topic, None for any other topic."""
    head = check_topic_prefix(prefix) + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) != 4 or parts[1] != "devices" or parts[3] != "telemetry" or not parts[2]:
        return None
    tenant = "" if parts[0] in ("", DEFAULT_TENANT_TOPIC) else parts[0]
    return tenant, parts[2]


def telemetry_topic(prefix: str, tenant: str, device_id: str) -> str:
    """Where a device publishes its telemetry."""
    return f"{check_topic_prefix(prefix)}/{tenant or DEFAULT_TENANT_TOPIC}/devices/{device_id}/telemetry"


Message = tuple[str, bytes]


class MqttIngest:
    """Subscribes to device telemetry and hands it to ``handle`` in batches, on its own thread.

    Messages are queued by the MQTT network thread and written by a worker in batches of up to
    ``batch`` messages (or what arrived within ``linger`` seconds), so a burst of telemetry
    costs a few transactions, not one per message. A batch that fails is retried three times.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        handle: Callable[[list[Message]], None],
        *,
        share_group: str = "",
        batch: int = 500,
        linger: float = 0.2,
    ) -> None:
        self.target = parse_mqtt_url(url)
        self.filter = telemetry_filter(prefix, share_group)
        self.handle = handle
        self.batch = batch
        self.linger = linger
        self.subscribed = threading.Event()
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=100_000)
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ioc-ingest-{uuid.uuid4().hex[:8]}")
        if self.target.username:
            self._client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            self._client.tls_set()
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 30)
        self._worker: threading.Thread | None = None

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT telemetry: connection refused: %s", reason)
            return
        client.subscribe(self.filter, qos=1)  # again after every reconnect (clean session)

    def _on_subscribe(self, *_args: Any) -> None:
        self.subscribed.set()

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        try:
            self._queue.put_nowait((msg.topic, bytes(msg.payload)))
        except queue.Full:
            log.error("MQTT telemetry: queue full, message on %s dropped", msg.topic)

    def start(self) -> None:
        """Connect in the background (retrying while the broker is away) and start the worker."""
        self._worker = threading.Thread(target=self._work, name="ioc-mqtt-ingest", daemon=True)
        self._worker.start()
        self._client.connect_async(self.target.host, self.target.port, keepalive=30)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect, then write what is queued and stop the worker."""
        self._client.disconnect()
        self._client.loop_stop()
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            pause = threading.Event()
            stop = False
            while len(batch) < self.batch:
                try:
                    item = self._queue.get(timeout=self.linger)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            for attempt in range(3):
                try:
                    self.handle(batch)
                    break
                except Exception:
                    log.exception("MQTT telemetry: a batch of %d messages failed (attempt %d)", len(batch), attempt + 1)
                    pause.wait(0.5 * 2**attempt)
            if stop:
                return


def mqtt_handler(db: Database, ingestor: Ingestor, prefix: str) -> Callable[[list[Message]], None]:
    """Write a batch of MQTT messages: one transaction, bad messages logged and skipped."""

    def handle(messages: list[Message]) -> None:
        parsed: list[tuple[str, str, list[Reading]]] = []
        now = utcnow()
        for topic, raw in messages:
            where = parse_topic(prefix, topic)
            if where is None:
                continue
            try:
                parsed.append((*where, parse_payload(decode(raw), now)))
            except TelemetryError as exc:
                log.warning("MQTT telemetry on %s refused: %s", topic, exc)
        if not parsed:
            return
        with db.session() as session:
            devices = {d.id: d for d in session.scalars(select(Device).where(Device.id.in_({d for _, d, _ in parsed})))}
            items: dict[str, tuple[Device, list[Reading]]] = {}
            for tenant, device_id, readings in parsed:
                device = devices.get(device_id)
                if device is None or device.tenant != tenant or not device.enabled:
                    log.warning("MQTT telemetry from unknown or disabled device %r (tenant %r)", device_id, tenant)
                    continue
                items.setdefault(device_id, (device, []))[1].extend(readings)
            for outcome in ingestor.write(session, list(items.values())):
                if outcome.error:
                    log.warning("MQTT telemetry of %s refused: %s", outcome.device_id, outcome.error)
                elif outcome.ignored:
                    log.info(
                        "MQTT telemetry of %s: keys not in the attribute map: %s", outcome.device_id, outcome.ignored
                    )

    return handle


def mqtt_lifespan(
    db: Database, ingestor: Ingestor, url: str, prefix: str, share_group: str
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A router lifespan: the telemetry subscriber runs while the app serves (``app.state.mqtt_ingest``)."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        subscriber = MqttIngest(url, prefix, mqtt_handler(db, ingestor, prefix), share_group=share_group)
        app.state.mqtt_ingest = subscriber
        subscriber.start()
        log.info(
            "MQTT telemetry: subscribing to %s on %s:%s",
            subscriber.filter,
            subscriber.target.host,
            subscriber.target.port,
        )
        try:
            yield
        finally:
            subscriber.stop()

    return lifespan


def offline_job(ingestor: Ingestor) -> JobFn:
    """The periodic offline check (``context.devices.offline``)."""

    def run(db: Database) -> None:
        with db.session() as session:
            gone = ingestor.check_offline(session)
        if gone:
            log.warning("devices offline: %s", ", ".join(gone))

    return run
