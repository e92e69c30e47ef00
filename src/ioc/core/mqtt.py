"""MQTT: URL parsing, a small publisher, and the bridge that mirrors bus events to the broker.

Events are published to ``<prefix>/events/<topic>`` as JSON with QoS 1. The bridge is a
durable consumer, so an event reaches the broker at least once even across restarts.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from sqlalchemy.orm import Session

from ioc.core.events import DurableHandler, Event


@dataclass(frozen=True)
class MqttTarget:
    """Where an ``mqtt://`` or ``mqtts://`` URL points."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    topic: str


def parse_mqtt_url(url: str) -> MqttTarget:
    """Parse ``mqtt[s]://[user:pass@]host[:port][/topic]``; ValueError with a reason otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"not an MQTT URL (mqtt:// or mqtts://): {url!r}")
    if not parts.hostname:
        raise ValueError(f"MQTT URL without a host: {url!r}")
    tls = parts.scheme == "mqtts"
    return MqttTarget(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        topic=parts.path.lstrip("/"),
    )


class MqttPublisher:
    """A connected client that publishes with QoS 1 and waits for the broker's PUBACK."""

    def __init__(self, url: str, client_id: str = "", timeout: float = 10.0) -> None:
        self.target = parse_mqtt_url(url)
        self.timeout = timeout
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        if self.target.username:
            self._client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            self._client.tls_set()
        self._connected = threading.Event()
        self._client.on_connect = lambda *_a, **_k: self._connected.set()
        self._started = False

    def connect(self) -> None:
        if self._started:
            return
        self._client.connect(self.target.host, self.target.port, keepalive=30)
        self._client.loop_start()
        self._started = True
        if not self._connected.wait(self.timeout):
            raise ConnectionError(f"MQTT broker {self.target.host}:{self.target.port} did not answer")

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        self.connect()
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(self.timeout)
        if not info.is_published():
            raise ConnectionError(f"MQTT publish to {topic!r} not acknowledged")

    def close(self) -> None:
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False


def event_topic(prefix: str, ev: Event) -> str:
    return f"{prefix}/events/{ev.topic.replace('.', '/')}"


def bridge_handler(publisher: MqttPublisher, prefix: str) -> DurableHandler:
    """A durable-consumer handler that mirrors each event to the broker."""

    def handle(_session: Session, ev: Event) -> None:
        publisher.publish(event_topic(prefix, ev), json.dumps(ev.as_dict(), ensure_ascii=False).encode())

    return handle
