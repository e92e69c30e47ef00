"""HTTP plumbing of the NGSI-LD API (``ioc.modules.context.http``): where a by-key read runs."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest
from fastapi import Request, Response

from ioc.core.db import Database
from ioc.modules.context.http import read_by_key, writes_on_loop


def _request(db: Database, headers: dict[str, str], query: str = "") -> Request:
    app = SimpleNamespace(state=SimpleNamespace(db=db))
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/ngsi-ld/v1/entities/urn:ngsi-ld:T:1",
            "query_string": query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "app": app,
        }
    )


@pytest.mark.parametrize(
    ("headers", "query", "on_loop_if_sqlite"),
    [
        ({}, "", True),
        ({}, "options=keyValues&attrs=a", True),
        ({"Link": '<http://example.org/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"'}, "", False),
        ({}, "join=inline", False),
    ],
)
def test_a_by_key_read_runs_on_the_loop_only_where_nothing_can_wait(
    db: Database, headers: dict[str, str], query: str, on_loop_if_sqlite: bool
) -> None:
    """SQLite, the core context and no join: on the event loop's thread; a context to fetch, a
    chain of joined reads, or PostgreSQL's round trips: in the thread pool."""
    ran_on: list[threading.Thread] = []

    def read(status: int) -> Response:
        ran_on.append(threading.current_thread())
        return Response(status_code=status)

    async def call() -> tuple[Response, threading.Thread]:
        response = await read_by_key(_request(db, headers, query), read, status=203)
        return response, threading.current_thread()

    response, loop_thread = asyncio.run(call())
    assert response.status_code == 203  # the read's own answer, its arguments passed through
    assert (ran_on == [loop_thread]) is (on_loop_if_sqlite and db.dialect == "sqlite")


@pytest.mark.parametrize(
    ("headers", "on_loop"),
    [
        ({"Content-Type": "application/json"}, True),
        ({}, True),
        ({"Content-Type": "application/ld+json"}, False),
        ({"Content-Type": "Application/LD+JSON; charset=utf-8"}, False),
        ({"Link": '<http://example.org/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"'}, False),
    ],
)
def test_a_write_is_parsed_on_the_loop_only_where_no_context_can_be_fetched(
    db: Database, headers: dict[str, str], on_loop: bool
) -> None:
    """Update Attributes parses on the event loop when its @context is the core one: a Link
    header or a JSON-LD body's @context may name a context to fetch, which would hold the loop."""
    assert writes_on_loop(_request(db, headers)) is on_loop
