"""The authorised Server-Sent-Events stream of the event bus: ``/api/v1/events/stream``.

* Every worker's bus reads the shared outbox, so a stream on any worker carries the events
  published on all of them.
* A client that reconnects with ``Last-Event-ID`` (browsers do it by themselves) first gets
  what it missed, replayed from the outbox, then the live events; nothing is lost or repeated
  between the two because the stream subscribes before it replays and skips ids it has sent.
  A fresh stream starts with the events committed after it connected, and first sends the
  current position as its id, so even a client that has received nothing yet resumes from the
  right place.
* A client too slow to keep up is disconnected rather than silently losing live events: it
  reconnects with its ``Last-Event-ID`` and the replay fills the gap.
* Events carrying a ward or an agency go only to callers whose remit covers them. The caller
  is authenticated with a short-lived database session (not held for the stream's life) and
  re-checked at every heartbeat, so a deactivated user or an expired token ends the stream.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from ioc.core.auth import Principal, Requires, current_principal, optional_principal
from ioc.core.db import get_database
from ioc.core.events import Event, EventBus, events_after, latest_event_id, matches
from ioc.core.problems import Problem

router = APIRouter(prefix="/api/v1/events", tags=["events"])

PERMISSION = "events:read"
HEARTBEAT_SECONDS = 15.0
REPLAY_PAGE = 500
QUEUE_LIMIT = 10_000


def authorise(request: Request) -> Principal:
    """The caller, who must hold ``events:read`` (401/403 otherwise).

    It uses a database session of its own, closed at once (a stream must not hold a pooled
    connection, or on PostgreSQL an open transaction, while the client stays connected), and
    is the same check that every heartbeat repeats.
    """
    with get_database(request).session() as session:
        principal = optional_principal(request, session)
    return Requires(PERMISSION)(current_principal(principal))


EventReader = Annotated[Principal, Depends(authorise)]


def _visible(principal: Principal, ev: Event) -> bool:
    if ev.ward_code is None and ev.agency_id is None:
        return True
    return principal.can_access(ward_code=ev.ward_code, agency_id=ev.agency_id)


def format_sse(ev: Event) -> str:
    """One event in the text/event-stream format."""
    return f"id: {ev.id}\nevent: {ev.topic}\ndata: {json.dumps(ev.as_dict(), ensure_ascii=False)}\n\n"


@router.get("/stream", response_class=StreamingResponse)
async def stream(
    request: Request,
    principal: EventReader,
    topics: Annotated[str, Query(max_length=500, description="Comma-separated globs, e.g. alarm.*")] = "*",
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="Replay events after this id")] = None,
) -> StreamingResponse:
    """Events the caller may see, as ``text/event-stream``; resumes after ``Last-Event-ID``."""
    patterns = tuple(p.strip() for p in topics.split(",") if p.strip()) or ("*",)
    bus: EventBus = request.app.state.bus
    resume = after
    if last_event_id is not None and re.fullmatch(r"[0-9]{1,18}", last_event_id.strip()):
        resume = int(last_event_id.strip())
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_LIMIT)
    overflow = asyncio.Event()

    def offer(ev: Event) -> None:  # on the event loop
        if queue.full():
            overflow.set()
        else:
            queue.put_nowait(ev)

    def on_event(ev: Event) -> None:  # on the bus's dispatcher thread
        if _visible(principal, ev):
            loop.call_soon_threadsafe(offer, ev)

    async def body() -> AsyncIterator[str]:
        # Subscribed inside the generator, so the ``finally`` below always unsubscribes; and before
        # anything is sent, so a client that has read "connected" misses nothing from then on.
        subscription = await asyncio.to_thread(bus.listen, patterns, on_event)
        try:
            # Read before "connected" goes out: an event committed once the client has read it
            # has a higher id, and is sent (read after, it would count as already sent).
            latest = await asyncio.to_thread(_latest, bus)
            yield f"retry: 3000\n: connected as {principal.name}\n\n"
            if resume is None or resume > latest:
                # A fresh stream (or an id from another database: restored, reset) starts now. What
                # commits from here on has a higher id, and comes through the queue.
                last_sent = latest
                yield f"id: {latest}\n\n"  # sets the client's Last-Event-ID without an event
            else:
                # Replay from the outbox up to where the live queue takes over (and a bit past it).
                last_sent = cursor = resume
                while True:
                    page = await asyncio.to_thread(_replay, bus, cursor)
                    for ev in page:
                        if matches(patterns, ev.topic) and _visible(principal, ev):
                            last_sent = ev.id
                            yield format_sse(ev)
                    if len(page) < REPLAY_PAGE:
                        break
                    cursor = page[-1].id
            while True:
                if overflow.is_set() and queue.empty():
                    break  # the client reconnects with Last-Event-ID and the replay fills the gap
                try:
                    ev = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    if await request.is_disconnected() or not await _still_allowed(request):
                        break
                    yield ": heartbeat\n\n"
                    continue
                if ev.id > last_sent:
                    last_sent = ev.id
                    yield format_sse(ev)
        finally:
            subscription.close()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


async def _still_allowed(request: Request) -> bool:
    try:
        await asyncio.to_thread(authorise, request)
    except Problem:
        return False
    return True


def _latest(bus: EventBus) -> int:
    with bus.db.session() as s:
        return latest_event_id(s)


def _replay(bus: EventBus, after_id: int) -> list[Event]:
    with bus.db.session() as s:
        return events_after(s, after_id, REPLAY_PAGE)
