"""MQTT: URL parsing, the publisher, and the bridge of bus events to a real Mosquitto broker."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel

from ioc.core.db import Database
from ioc.core.events import Event, EventBus, EventCursor, Topic, publish
from ioc.core.mqtt import MqttPublisher, bridge_handler, check_topic_prefix, event_topic, parse_mqtt_url
from tests.conftest import PASSWORD, free_port


class Reading(BaseModel):
    value: float


READING = Topic("sensor.reading", Reading)


# --------------------------------------------------------------------------- URLs


def test_parse_mqtt_url_defaults_and_parts() -> None:
    plain = parse_mqtt_url("mqtt://broker.local")
    assert (plain.host, plain.port, plain.tls, plain.username, plain.password, plain.topic) == (
        "broker.local",
        1883,
        False,
        None,
        None,
        "",
    )
    full = parse_mqtt_url("mqtts://ioc%40vinh:p%3Ass@10.0.0.5:8884/city/vinh")
    assert (full.host, full.port, full.tls) == ("10.0.0.5", 8884, True)
    assert (full.username, full.password, full.topic) == ("ioc@vinh", "p:ss", "city/vinh")
    assert parse_mqtt_url("mqtts://h").port == 8883
    assert parse_mqtt_url(" mqtt://h:1884 ").port == 1884


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://broker:1883", "not an MQTT URL"),
        ("broker:1883", "not an MQTT URL"),
        ("", "not an MQTT URL"),
        ("mqtt://", "without a host"),
        ("mqtt://:1883", "without a host"),
        ("mqtt://broker:abc", "bad port"),
        ("mqtt://broker:70000", "bad port"),
        ("mqtt://broker:0", "bad port"),
        ("mqtt://broker/city/#", "wildcard"),
        ("mqtt://broker/+/x", "wildcard"),
        ("mqtt://broker?qos=1", "query"),
    ],
)
def test_parse_mqtt_url_explains_bad_urls(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_mqtt_url(url)


@pytest.mark.parametrize(
    "url", ["mqtt://ioc:s3cr3t-pw@broker:port", "mqtt://ioc:s3cr3t#pw@broker", "ftp://ioc:s3cr3t-pw@b"]
)
def test_parse_mqtt_url_never_shows_the_password(url: str) -> None:
    with pytest.raises(ValueError, match="MQTT URL") as err:
        parse_mqtt_url(url)
    assert "s3cr3t" not in str(err.value)
    assert "pw" not in str(err.value)


def test_event_topics() -> None:
    ev = Event(1, "alarm.raised", {}, created_at=None)  # type: ignore[arg-type]
    assert event_topic("ioc", ev) == "ioc/events/alarm/raised"
    assert event_topic("/city/vinh/", ev) == "city/vinh/events/alarm/raised"
    for bad in ["", "/", "ioc/#", "a/+/b"]:
        with pytest.raises(ValueError, match="prefix"):
            check_topic_prefix(bad)


def test_publisher_to_a_closed_port_fails_clearly() -> None:
    port = free_port()
    publisher = MqttPublisher(f"mqtt://127.0.0.1:{port}", timeout=2)
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        publisher.publish("ioc/test", b"{}")
    publisher.close()


# --------------------------------------------------------------------------- with a broker


class Subscriber:
    """A paho v2 client that collects the messages of ``topic`` (subscribed before returning)."""

    def __init__(self, url: str, topic: str) -> None:
        target = parse_mqtt_url(url)
        self.messages: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        connected, subscribed = threading.Event(), threading.Event()
        self.client.on_connect = lambda *_a: connected.set()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, json.loads(msg.payload)))
        self.client.connect(target.host, target.port)
        self.client.loop_start()
        assert connected.wait(10), "broker did not accept the test subscriber"
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(10), "broker did not acknowledge the subscription"

    def next(self, timeout: float = 15) -> tuple[str, dict[str, Any]]:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no MQTT message arrived") from None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def prefix() -> str:
    return f"ioc-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def subscriber(mqtt_url: str, prefix: str) -> Iterator[Subscriber]:
    sub = Subscriber(mqtt_url, f"{prefix}/#")
    yield sub
    sub.close()


def test_bridge_mirrors_events_to_the_broker(db: Database, mqtt_url: str, prefix: str, subscriber: Subscriber) -> None:
    publisher = MqttPublisher(mqtt_url, client_id=f"ioc-test-{uuid.uuid4().hex[:8]}")
    bus = EventBus(db, poll_seconds=0.05)
    bus.consume("mqtt-bridge", "*", bridge_handler(publisher, prefix), start="latest")
    bus.start()
    try:
        with db.session() as s:
            publish(s, READING, {"value": 42.5}, ward_code="16681")
        topic, body = subscriber.next()
        assert topic == f"{prefix}/events/sensor/reading"
        assert body["topic"] == "sensor.reading"
        assert body["payload"] == {"value": 42.5}
        assert body["ward_code"] == "16681"
    finally:
        bus.stop()
        publisher.close()


def test_bridge_keeps_events_while_the_broker_is_unreachable(
    settings: Any, db: Database, mqtt_url: str, prefix: str, subscriber: Subscriber
) -> None:
    """The broker is down: the event stays in the outbox (cursor not advanced); after a restart with
    the broker reachable it is delivered."""
    dead = MqttPublisher(f"mqtt://127.0.0.1:{free_port()}", timeout=2)
    down = EventBus(db)
    down.consume("bridge", "*", bridge_handler(dead, prefix))
    with db.session() as s:
        publish(s, READING, {"value": 1.0})
    down.poll_once()
    [status] = down.consumer_status()
    assert status["failures"] == 1
    assert status["last_id"] == 0
    assert "unreachable" in status["last_error"]
    dead.close()

    db2 = Database(settings.database_url)
    live = MqttPublisher(mqtt_url)
    try:
        up = EventBus(db2)
        up.consume("bridge", "*", bridge_handler(live, prefix))
        with db2.session() as s:  # an operator clears the back-off, or it simply expires
            cursor = s.get(EventCursor, "bridge")
            assert cursor is not None
            cursor.retry_at = None
        up.poll_once()
        topic, body = subscriber.next()
        assert topic == f"{prefix}/events/sensor/reading"
        assert body["payload"] == {"value": 1.0}
        assert up.consumer_status()[0]["failures"] == 0
    finally:
        live.close()
        db2.dispose()


def test_served_alarm_reaches_the_broker(
    start_server: Callable[..., Any],
    make_user: Callable[..., Any],
    mqtt_url: str,
    prefix: str,
    subscriber: Subscriber,
) -> None:
    """A real ``ioc serve`` with IOC_MQTT__URL: an alarm raised through the API is on the broker."""
    env = {"IOC_MQTT__URL": mqtt_url, "IOC_MQTT__TOPIC_PREFIX": prefix, "IOC_MODULES": "[]"}  # the core only
    try:
        server = start_server(**env)
    except RuntimeError as exc:  # the free port picked was taken before the server bound it: once more
        if "address already in use" not in str(exc):
            raise
        server = start_server(**env)
    admin = make_user("admin")
    with httpx.Client(base_url=server.url, timeout=15) as http:
        token = http.post("/api/v1/auth/token", data={"username": admin.username, "password": PASSWORD})
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        body = {
            "source": "station:aq-01",
            "type": "aqi.high",
            "severity": "MAJOR",
            "title": "AQI cao",
            "ward_code": "16681",
            "details": {"aqi": 180},
        }
        r = http.post("/api/v1/alarms", json=body, headers=headers)
        assert r.status_code == 201, r.text
    topic, message = subscriber.next()
    assert topic == f"{prefix}/events/alarm/raised"
    assert message["topic"] == "alarm.raised"
    assert message["payload"]["id"] == r.json()["id"]
    assert message["payload"]["title"] == "AQI cao"
    assert message["ward_code"] == "16681"
