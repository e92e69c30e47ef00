"""The authorised Server-Sent-Events stream of the event bus: ``/api/v1/events/stream``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from ioc.core.auth import Principal, Requires
from ioc.core.events import Event, EventBus, events_after, matches

router = APIRouter(prefix="/api/v1/events", tags=["events"])

EventReader = Annotated[Principal, Depends(Requires("events:read"))]
HEARTBEAT_SECONDS = 15.0
REPLAY_LIMIT = 1000
QUEUE_LIMIT = 10_000


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
    after: Annotated[int | None, Query(ge=0, description="Replay events after this id")] = None,
) -> StreamingResponse:
    """Events the caller may see, as ``text/event-stream``; resumes after ``Last-Event-ID``."""
    patterns = tuple(p.strip() for p in topics.split(",") if p.strip()) or ("*",)
    bus: EventBus = request.app.state.bus
    resume = after
    if last_event_id is not None and last_event_id.isdigit():
        resume = int(last_event_id)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_LIMIT)

    def on_event(ev: Event) -> None:
        if matches(patterns, ev.topic) and _visible(principal, ev):
            loop.call_soon_threadsafe(_offer, queue, ev)

    unsubscribe = bus.listen(patterns, on_event)

    async def body() -> AsyncIterator[str]:
        last_sent = 0
        try:
            yield f"retry: 3000\n: connected as {principal.name}\n\n"
            if resume is not None:
                replay = await asyncio.to_thread(_replay, bus, resume)
                for ev in replay:
                    if matches(patterns, ev.topic) and _visible(principal, ev):
                        last_sent = ev.id
                        yield format_sse(ev)
            while True:
                try:
                    ev = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    if await request.is_disconnected():
                        break
                    yield ": heartbeat\n\n"
                    continue
                if ev.id > last_sent:
                    last_sent = ev.id
                    yield format_sse(ev)
        finally:
            unsubscribe()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


def _offer(queue: asyncio.Queue[Event], ev: Event) -> None:
    if not queue.full():  # a stalled client loses live events, never the server's memory
        queue.put_nowait(ev)


def _replay(bus: EventBus, after_id: int) -> list[Event]:
    with bus.db.session() as s:
        return events_after(s, after_id, REPLAY_LIMIT)
