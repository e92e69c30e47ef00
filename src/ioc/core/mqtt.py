"""MQTT: URL parsing, a small publisher, and the bridge that mirrors bus events to the broker.

Events are published to ``<prefix>/events/<topic with dots as slashes>`` (``ioc/events/alarm/raised``)
as JSON with QoS 1. The bridge is a durable consumer, so an event reaches the broker at least
once even across restarts and broker outages: a publish that the broker does not acknowledge
fails the consumer, which retries it with back-off.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session

from ioc.core.events import DurableHandler, Event

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class MqttTarget:
    """Where an ``mqtt://`` or ``mqtts://`` URL points."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    topic: str


def _shown(parts: SplitResult) -> str:
    """The URL for an error message: without its password, query or fragment."""
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[1]}"
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else netloc + parts.path


def parse_mqtt_url(url: str) -> MqttTarget:
    """Parse ``mqtt[s]://[user[:pass]@]host[:port][/topic]``; ValueError with a reason otherwise.

    Reserved characters in the user name or password are percent-encoded (``%40`` for ``@``).
    The password never appears in an error message.
    """
    parts = urlsplit(url.strip())
    shown = _shown(parts)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"not an MQTT URL (use mqtt:// or mqtts://): {shown!r}")
    if "#" in url:  # not echoed: a '#' in an unencoded password cuts the URL anywhere
        raise ValueError("MQTT URL with '#': no wildcard in the topic (percent-encode it as %23 in a password)")
    if "+" in parts.path:
        raise ValueError(f"MQTT URL with a wildcard '+' in its topic: {shown!r}")
    if not parts.hostname:
        raise ValueError(f"MQTT URL without a host: {shown!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"MQTT URL with a bad port (a number 1-65535): {shown!r}") from None
    if port == 0:
        raise ValueError(f"MQTT URL with a bad port (a number 1-65535): {shown!r}")
    if parts.query:
        raise ValueError(f"MQTT URL with a query (?...), which means nothing here: {shown!r}")
    tls = parts.scheme == "mqtts"
    return MqttTarget(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[parts.scheme],
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        topic=unquote(parts.path.lstrip("/")),
    )


class MqttPublisher:
    """A connected client that publishes with QoS 1 and waits for the broker's PUBACK.

    It connects on first use, reconnects in the background after the broker goes away, and
    raises :class:`ConnectionError` (never blocks longer than ``timeout``) while the broker is
    unreachable, refuses the connection or does not acknowledge a message.
    """

    def __init__(self, url: str, client_id: str = "", timeout: float = 10.0) -> None:
        self.target = parse_mqtt_url(url)
        self.timeout = timeout
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.connect_timeout = min(timeout, 5.0)
        if self.target.username:
            self._client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            self._client.tls_set()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._connected = threading.Event()
        self._answered = threading.Event()  # CONNACK received, accepted or not
        self._refusal: str | None = None
        self._lock = threading.Lock()
        self._started = False

    @property
    def broker(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            self._refusal = str(reason)
            self._connected.clear()
        else:
            self._refusal = None
            self._connected.set()
        self._answered.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self._connected.clear()

    def connect(self) -> None:
        """Connect (once) and wait for the broker to accept; ConnectionError otherwise."""
        with self._lock:
            if not self._started:
                self._answered.clear()
                try:
                    self._client.connect(self.target.host, self.target.port, keepalive=30)
                except OSError as exc:
                    raise ConnectionError(f"MQTT broker {self.broker} unreachable: {exc}") from exc
                self._client.loop_start()
                self._started = True
                if not self._answered.wait(self.timeout):
                    raise ConnectionError(f"MQTT broker {self.broker} did not answer")
                if self._refusal is not None:
                    refusal = self._refusal
                    self._stop_client()
                    raise ConnectionError(f"MQTT broker {self.broker} refused the connection: {refusal}")
        # Connected before, or paho is reconnecting in the background: wait for it a while.
        if not self._connected.wait(self.timeout):
            raise ConnectionError(f"MQTT broker {self.broker} not connected")

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Publish and, for QoS 1 and 2, wait until the broker acknowledges."""
        self.connect()
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError) as exc:
            raise ConnectionError(f"MQTT publish to {topic!r} on {self.broker} failed: {exc}") from exc
        if not info.is_published():
            raise ConnectionError(f"MQTT publish to {topic!r} on {self.broker} not acknowledged")

    def _stop_client(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._started = False
        self._connected.clear()

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        with self._lock:
            if self._started:
                self._stop_client()


def check_topic_prefix(prefix: str) -> str:
    """``prefix`` without surrounding slashes; ValueError if it cannot start an MQTT topic."""
    cleaned = prefix.strip().strip("/")
    if not cleaned or "+" in cleaned or "#" in cleaned or "\x00" in cleaned:
        raise ValueError(f"bad MQTT topic prefix {prefix!r}: give words separated by '/', no + or #")
    return cleaned


def event_topic(prefix: str, ev: Event) -> str:
    """The MQTT topic of an event: ``<prefix>/events/alarm/raised`` for ``alarm.raised``."""
    return f"{check_topic_prefix(prefix)}/events/{ev.topic.replace('.', '/')}"


def bridge_handler(publisher: MqttPublisher, prefix: str) -> DurableHandler:
    """A durable-consumer handler that mirrors each event to the broker."""
    cleaned = check_topic_prefix(prefix)

    def handle(_session: Session, ev: Event) -> None:
        publisher.publish(event_topic(cleaned, ev), json.dumps(ev.as_dict(), ensure_ascii=False).encode())

    return handle
