"""The SSE stream ``/api/v1/events/stream`` over real HTTP against real ``ioc serve`` processes:
fan-out across workers and servers, ``Last-Event-ID`` resumption, authentication, ward scoping."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import text

from ioc.api import events as api_events
from ioc.core.auth import User, create_api_key
from ioc.core.db import Database
from ioc.core.events import Topic, publish
from tests.conftest import PASSWORD, MakeUser, free_port

STREAM = "/api/v1/events/stream"


@dataclass
class Message:
    """One SSE message (a block ending with a blank line)."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def body(self) -> dict[str, Any]:
        assert self.data is not None
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed


class StreamEnded(Exception):
    """The server closed the stream."""


class Sse:
    """Reads a text/event-stream response message by message (read timeout = the deadline)."""

    def __init__(self, response: httpx.Response, timeout: float = 30.0) -> None:
        self.response = response
        self._lines = response.iter_lines()
        self.last_id: str | None = None
        self.deadline = time.monotonic() + timeout  # heartbeats must not keep a failing test waiting

    def message(self) -> Message:
        msg = Message()
        seen = False
        for line in self._lines:
            if time.monotonic() > self.deadline:
                raise AssertionError("no end to this stream's test: deadline passed")
            if line == "":
                if seen:
                    if msg.id is not None:
                        self.last_id = msg.id
                    return msg
                continue
            seen = True
            if line.startswith(":"):
                msg.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                msg.data = value if msg.data is None else f"{msg.data}\n{value}"
            elif name in ("id", "event"):
                setattr(msg, name, value)
        raise StreamEnded

    def event(self) -> Message:
        """The next message that carries an event (skipping comments, heartbeats, bare ids)."""
        while True:
            msg = self.message()
            if msg.data is not None:
                return msg


class Api:
    """A live server and a bearer token for it, over one pooled HTTP client."""

    def __init__(self, url: str, username: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=httpx.Timeout(15.0, read=20.0))
        r = self.http.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(path, json=body, headers=self.headers)
        assert r.status_code in (200, 201), r.text
        data: dict[str, Any] = r.json()
        return data

    def raise_alarm(self, title: str, ward_code: str | None = None) -> dict[str, Any]:
        body = {
            "source": f"test:{title}",
            "type": "test.condition",
            "severity": "MAJOR",
            "title": title,
            "ward_code": ward_code,
            "details": {"note": "Núi Quyết"},
        }
        return self.post("/api/v1/alarms", body)

    @contextmanager
    def stream(self, topics: str = "alarm.*", last_event_id: str | None = None) -> Iterator[Sse]:
        headers = dict(self.headers)
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        with self.http.stream("GET", STREAM, params={"topics": topics}, headers=headers) as r:
            assert r.status_code == 200, r.read()
            assert r.headers["content-type"].startswith("text/event-stream")
            sse = Sse(r)
            hello = sse.message()
            assert any(c.startswith("connected as") for c in hello.comments)  # subscribed from here on
            yield sse


@pytest.fixture
def login() -> Iterator[Callable[[Any, str], Api]]:
    apis: list[Api] = []

    def make(server: Any, username: str) -> Api:
        api = Api(server.url, username)
        apis.append(api)
        return api

    yield make
    for api in apis:
        api.close()


def serve(start_server: Callable[..., Any], **kwargs: Any) -> Any:
    """``start_server`` with the core only (no domain module), once more if the free port it picked
    was taken by another socket before the server bound it."""
    kwargs.setdefault("IOC_MODULES", "[]")
    try:
        return start_server(**kwargs)
    except RuntimeError as exc:
        if "address already in use" not in str(exc):
            raise
        return start_server(**kwargs)


def held_transactions(db: Database, before: Any) -> int:
    """Server connections sitting in a transaction opened before ``before`` (PostgreSQL)."""
    with db.session() as s:
        return int(
            s.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%' AND xact_start < :t"
                ),
                {"t": before},
            )
            or 0
        )


def test_event_stream_across_servers(
    start_server: Callable[..., Any], login: Callable[[Any, str], Api], make_user: MakeUser, db: Database
) -> None:
    """Two ``ioc serve`` processes, A and B, share the database: two workers behind a balancer.
    (One test, so that the servers start once per database: they are the slow part.)"""
    server_a = serve(start_server)
    server_b = serve(start_server)
    admin, officer = make_user("admin"), make_user("ward_officer")  # the officer's ward: 16681
    on_a = login(server_a, admin.username)
    admin_b = login(server_b, admin.username)
    officer_b = login(server_b, officer.username)
    check_fan_out_scope_and_topics(on_a, admin_b, officer_b, db)
    check_last_event_id_resumes(on_a, admin_b, officer_b)


def check_fan_out_scope_and_topics(on_a: Api, admin_b: Api, officer_b: Api, db: Database) -> None:
    """An alarm raised on A is on B's streams, each reader seeing only its remit and its topics."""
    with (
        admin_b.stream() as admin_sse,
        officer_b.stream() as officer_sse,
        admin_b.stream(topics="alarm.acknowledged") as acks_sse,
    ):
        if db.dialect == "postgresql":
            with db.session() as s:
                connected_at = s.scalar(text("SELECT clock_timestamp()"))
        other_ward = on_a.raise_alarm("Ngập đường Lê Lợi", ward_code="16690")
        own_ward = on_a.raise_alarm("Mất điện trạm bơm", ward_code="16681")
        no_ward = on_a.raise_alarm("Mất kết nối trung tâm dữ liệu")
        on_a.post(f"/api/v1/alarms/{own_ward['id']}/ack", {"note": "đã nhận"})

        seen = [admin_sse.event() for _ in range(4)]
        assert [m.event for m in seen] == ["alarm.raised"] * 3 + ["alarm.acknowledged"]
        expected = [other_ward["id"], own_ward["id"], no_ward["id"], own_ward["id"]]
        assert [m.body["payload"]["id"] for m in seen] == expected
        assert seen[0].body["payload"]["title"] == "Ngập đường Lê Lợi"
        assert seen[0].body["ward_code"] == "16690"
        ids = [int(m.id or 0) for m in seen]
        assert ids == sorted(ids) and len(set(ids)) == 4

        # The officer gets their ward's and unscoped events, never ward 16690's (events come in id
        # order, so had it been sent it would have come before the next one).
        mine = [officer_sse.event() for _ in range(3)]
        assert [m.body["payload"]["id"] for m in mine] == [own_ward["id"], no_ward["id"], own_ward["id"]]

        ack = acks_sse.event()
        assert ack.event == "alarm.acknowledged"
        assert ack.body["payload"]["acknowledged"] is True

        if db.dialect == "postgresql":
            # Three streams are open: none of them keeps a database transaction (or connection) for itself.
            assert held_transactions(db, connected_at) == 0


def check_last_event_id_resumes(on_a: Api, admin_b: Api, officer_b: Api) -> None:
    """A client reconnecting with Last-Event-ID gets what it missed, then the live events."""
    with admin_b.stream() as sse, officer_b.stream() as officer_sse:
        first = on_a.raise_alarm("một", ward_code="16681")
        seen = sse.event()
        assert seen.body["payload"]["id"] == first["id"]
        assert officer_sse.event().body["payload"]["id"] == first["id"]
    resume_from = seen.id
    missed = [on_a.raise_alarm("hai", ward_code="16690"), on_a.raise_alarm("ba", ward_code="16681")]

    with admin_b.stream(last_event_id=resume_from) as sse:
        replayed = [sse.event(), sse.event()]
        assert [m.body["payload"]["id"] for m in replayed] == [a["id"] for a in missed]
        live = on_a.raise_alarm("bốn")
        nxt = sse.event()
        assert nxt.body["payload"]["id"] == live["id"]  # then live, with nothing repeated
        assert int(replayed[0].id or 0) < int(replayed[1].id or 0) < int(nxt.id or 0)

    with officer_b.stream(last_event_id=resume_from) as officer_sse:  # the replay keeps to the remit too
        assert [officer_sse.event().body["payload"]["id"] for _ in range(2)] == [missed[1]["id"], live["id"]]

    # A stream that has received nothing yet still knows where it is: it sends its position as an id.
    with admin_b.stream() as sse:
        position = sse.message()
        assert position.data is None and position.id is not None
    later = on_a.raise_alarm("năm")
    with admin_b.stream(last_event_id=position.id) as sse:
        assert sse.event().body["payload"]["id"] == later["id"]

    # An id from some other database (ahead of this one) does not silence the stream.
    with admin_b.stream(last_event_id="999999999") as sse:
        live = on_a.raise_alarm("sáu")
        assert sse.event().body["payload"]["id"] == live["id"]


# --------------------------------------------------------------------------- in-process server


class Thing(BaseModel):
    n: int


THING = Topic("test.thing", Thing)


@pytest.fixture
def live_app(app: FastAPI) -> Iterator[Any]:
    """The test app served by uvicorn on a thread (real HTTP; module constants can be patched)."""
    for _attempt in range(3):
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if server.started:
            break
        thread.join(5)  # the port was taken in between: pick another
    assert server.started, "uvicorn did not start"
    yield type("Live", (), {"url": f"http://127.0.0.1:{port}"})()
    server.should_exit = True
    thread.join(10)


def read_until_closed(sse: Sse, deadline: float) -> None:
    """Read until the server ends the stream (AssertionError at the deadline)."""
    while time.monotonic() < deadline:
        try:
            sse.message()
        except StreamEnded:
            return
    raise AssertionError("the stream was not closed")


def read_events(sse: Sse, into: list[int], total: int) -> None:
    """Append payload numbers to ``into`` until ``total`` or the end of the stream."""
    while len(into) < total:
        try:
            into.append(sse.event().body["payload"]["n"])
        except StreamEnded:
            return


def test_a_client_too_slow_for_the_queue_is_cut_off_and_resumes_without_loss(
    live_app: Any,
    login: Callable[[Any, str], Api],
    make_user: MakeUser,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream whose queue overflows is closed (not silently thinned out); reconnecting with
    Last-Event-ID replays the rest: the client sees every event once, in order."""
    monkeypatch.setattr(api_events, "QUEUE_LIMIT", 1)
    api = login(live_app, make_user("admin").username)
    received: list[int] = []
    deadline = time.monotonic() + 30
    with api.stream(topics="test.*") as sse:
        with db.session() as s:  # 40 events in one go: far more than the queue holds
            for n in range(40):
                publish(s, THING, {"n": n})
        read_events(sse, received, 40)
        last_id = sse.last_id
    while len(received) < 40:
        assert time.monotonic() < deadline, f"only {len(received)} events arrived"
        with api.stream(topics="test.*", last_event_id=last_id) as sse:
            read_events(sse, received, 40)
            last_id = sse.last_id
    assert received == list(range(40))


def test_stream_ends_when_the_user_is_deactivated(
    live_app: Any,
    login: Callable[[Any, str], Api],
    make_user: MakeUser,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api_events, "HEARTBEAT_SECONDS", 0.1)
    officer = make_user("ward_officer")
    api = login(live_app, officer.username)
    with api.stream() as sse:
        with db.session() as s:
            user = s.get(User, officer.id)
            assert user is not None
            user.active = False
        read_until_closed(sse, time.monotonic() + 15)


# --------------------------------------------------------------------------- auth (no stream opened)


def test_stream_needs_authentication(client: TestClient) -> None:
    r = client.get(STREAM)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.get(STREAM, headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401


def test_stream_needs_the_events_read_scope(app: FastAPI, client: TestClient, db: Database) -> None:
    with db.session() as s:
        _row, key = create_api_key(s, app.state.policy, name="alarm feeder", scopes=["alarms:raise"])
    r = client.get(STREAM, headers={"X-API-Key": key})
    assert r.status_code == 403, r.text
    assert r.json()["permission"] == "events:read"


def test_stream_rejects_bad_resume_points(
    client: TestClient, make_user: MakeUser, token_headers: Callable[..., dict[str, str]]
) -> None:
    headers = token_headers(make_user("admin"))
    r = client.get(STREAM, params={"after": -1}, headers=headers)
    assert r.status_code == 422
    r = client.get(STREAM, params={"after": 2**64}, headers=headers)
    assert r.status_code == 422
