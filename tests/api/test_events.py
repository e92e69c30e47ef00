"""The SSE stream ``/api/v1/events/stream`` over real HTTP against real ``ioc serve`` processes:
fan-out across workers and servers, ``Last-Event-ID`` resumption, authentication, ward scoping."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from ioc.core.auth import create_api_key
from ioc.core.db import Database
from tests.conftest import PASSWORD, MakeUser

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


class Sse:
    """Reads a text/event-stream response message by message (read timeout = the deadline)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()
        self.last_id: str | None = None

    def message(self) -> Message:
        msg = Message()
        seen = False
        for line in self._lines:
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
        raise AssertionError("the stream ended")

    def event(self) -> Message:
        """The next message that carries an event (skipping comments, heartbeats, bare ids)."""
        while True:
            msg = self.message()
            if msg.data is not None:
                return msg


@dataclass
class Api:
    """A live server and a bearer token for it."""

    url: str
    headers: dict[str, str]

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(self.url + path, json=body, headers=self.headers, timeout=15)
        assert r.status_code in (200, 201), r.text
        data: dict[str, Any] = r.json()
        return data

    def raise_alarm(self, title: str, ward_code: str | None = None, source: str | None = None) -> dict[str, Any]:
        body = {
            "source": source or f"test:{title}",
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
        timeout = httpx.Timeout(15.0, read=20.0)
        with httpx.stream(
            "GET", f"{self.url}{STREAM}", params={"topics": topics}, headers=headers, timeout=timeout
        ) as r:
            assert r.status_code == 200, r.read()
            assert r.headers["content-type"].startswith("text/event-stream")
            sse = Sse(r)
            hello = sse.message()
            assert any(c.startswith("connected as") for c in hello.comments)  # subscribed from here on
            yield sse


def login(url: str, username: str) -> Api:
    r = httpx.post(f"{url}/api/v1/auth/token", data={"username": username, "password": PASSWORD}, timeout=15)
    assert r.status_code == 200, r.text
    return Api(url, {"Authorization": f"Bearer {r.json()['access_token']}"})


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


def test_alarm_raised_on_one_server_reaches_streams_on_another(
    start_server: Callable[..., Any], make_user: MakeUser, db: Database
) -> None:
    """Server A (two workers) and server B share the database: an alarm raised on A is on B's streams,
    each reader seeing only its remit and its topics."""
    server_a = start_server(workers=2)
    server_b = start_server()
    admin, officer = make_user("admin"), make_user("ward_officer")  # the officer's ward: 16681
    on_a = login(server_a.url, admin.username)
    admin_b = login(server_b.url, admin.username)
    officer_b = login(server_b.url, officer.username)

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
        assert [m.body["payload"]["id"] for m in seen] == [
            other_ward["id"],
            own_ward["id"],
            no_ward["id"],
            own_ward["id"],
        ]
        assert seen[0].body["payload"]["title"] == "Ngập đường Lê Lợi"
        assert seen[0].body["ward_code"] == "16690"
        ids = [int(m.id or 0) for m in seen]
        assert ids == sorted(ids) and len(set(ids)) == 4

        # The officer gets their ward's and unscoped events, never ward 16690's (events come in id
        # order, so had it been sent it would come before the next one).
        mine = [officer_sse.event() for _ in range(3)]
        assert [m.body["payload"]["id"] for m in mine] == [own_ward["id"], no_ward["id"], own_ward["id"]]
        assert all(m.body["payload"]["ward_code"] != "16690" for m in mine)

        ack = acks_sse.event()
        assert ack.event == "alarm.acknowledged"
        assert ack.body["payload"]["acknowledged"] is True

        if db.dialect == "postgresql":
            # Three streams are open: none of them keeps a database transaction (or connection) for itself.
            assert held_transactions(db, connected_at) == 0


def test_last_event_id_resumes_with_what_was_missed(start_server: Callable[..., Any], make_user: MakeUser) -> None:
    server = start_server()
    api = login(server.url, make_user("admin").username)

    with api.stream() as sse:
        first = api.raise_alarm("một")
        seen = sse.event()
        assert seen.body["payload"]["id"] == first["id"]
    resume_from = seen.id
    missed = [api.raise_alarm("hai"), api.raise_alarm("ba")]  # while disconnected

    with api.stream(last_event_id=resume_from) as sse:
        replayed = [sse.event(), sse.event()]
        assert [m.body["payload"]["id"] for m in replayed] == [a["id"] for a in missed]
        live = api.raise_alarm("bốn")
        nxt = sse.event()
        assert nxt.body["payload"]["id"] == live["id"]  # then live, with nothing repeated
        assert int(replayed[0].id or 0) < int(replayed[1].id or 0) < int(nxt.id or 0)

    # A stream that has received nothing yet still knows where it is: it sends its position as an id.
    with api.stream() as sse:
        position = sse.message()
        assert position.data is None and position.id is not None
    later = api.raise_alarm("năm")
    with api.stream(last_event_id=position.id) as sse:
        assert sse.event().body["payload"]["id"] == later["id"]

    # An id from some other database (ahead of this one) does not silence the stream.
    with api.stream(last_event_id="999999999") as sse:
        live = api.raise_alarm("sáu")
        assert sse.event().body["payload"]["id"] == live["id"]


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
