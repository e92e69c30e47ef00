"""Group commit: writes submitted at the same time by many request threads share one transaction.

A small write (a citizen report, an NGSI-LD attribute update) is a handful of rows: the record,
its history, an audit row or an event. Written one transaction per request, a burst of them pays
a transaction, a commit, a hand-over of the database's single writer slot (SQLite's write lock;
on PostgreSQL the event bus's publish lock, held until COMMIT) and a wake-up of the event bus
per request, and the request threads contend for the interpreter while one of them holds that
slot. Here the first thread to arrive writes; those that arrive meanwhile queue, and the next
writer takes them all in one transaction. Alone, an item is written at once as before; under
load the batches grow.

Each item is stored exactly as it would be alone, in arrival order, so a later item of a batch
sees the earlier ones. If a batch fails, it is rolled back and every item of it is written again
on its own: only the item at fault fails. A ``store`` function that gives an expected refusal
back as its item's result (rather than raising) keeps the rest of the batch.

A request served on the event loop submits with :meth:`GroupCommit.submit_async`: it awaits its
item's result while one writer thread writes the queue, batch after batch, so that the request
itself never takes a worker thread (a thread each, handed the request and the answer back, and
all of them contending for the interpreter, cost more than a small write's own work).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.orm import Session

from ioc.core.db import Database

T = TypeVar("T")
R = TypeVar("R")


log = logging.getLogger("ioc.group_commit")


class _Pending(Generic[T, R]):
    __slots__ = ("done", "error", "item", "notify", "result")

    def __init__(self, item: T, notify: Callable[[], Any] | None = None) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None
        self.notify = notify  # told (from the writer's thread) once the item is done

    def succeed(self, result: R) -> None:
        self.result, self.done = result, True
        if self.notify is not None:
            self.notify()

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True
        if self.notify is not None:
            self.notify()

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        return cast(R, self.result)


class GroupCommit(Generic[T, R]):
    """Stores items with ``store(session, items) -> results``, concurrent ones in one transaction."""

    def __init__(self, db: Database, store: Callable[[Session, list[T]], list[R]], max_batch: int = 32) -> None:
        self.db = db
        self.store = store
        self.max_batch = max_batch
        self._queue: list[_Pending[T, R]] = []
        self._queue_lock = threading.Lock()
        self._writer = threading.Lock()
        self._draining = False  # a writer thread of submit_async's is writing the queue
        self.batches = 0
        self.items = 0

    def submit(self, item: T) -> R:
        """Store ``item`` (blocking until its transaction is committed) and return what ``store`` gave."""
        pending: _Pending[T, R] = _Pending(item)
        with self._queue_lock:
            self._queue.append(pending)
        with self._writer:
            while not pending.done:
                with self._queue_lock:
                    batch = self._take_batch()
                if not batch:  # cannot happen: our own item is queued until it is done
                    raise RuntimeError("group commit: submission lost")
                self._write(batch)
        return pending.outcome()

    async def submit_async(self, item: T) -> R:
        """:meth:`submit` from the event loop: the item is queued and awaited, the queue written
        by one writer thread (started here when none is writing). The loop serves other requests
        meanwhile; their items join the queue and the writer's next batch."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def notify() -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed (the server stopped): nobody awaits it
                loop.call_soon_threadsafe(_resolve, done)

        pending: _Pending[T, R] = _Pending(item, notify)
        with self._queue_lock:
            self._queue.append(pending)
            start, self._draining = not self._draining, True
        if start:
            writer = loop.run_in_executor(None, self._drain)
            writer.add_done_callback(_log_failure)
        await done
        return pending.outcome()

    def _drain(self) -> None:
        """Write the queue, batch after batch, until it is empty (submit_async's writer thread).
        Should the thread itself be stopped (an error ``_write`` does not keep to its batch), every
        item still queued fails with that error rather than wait for a writer."""
        try:
            while True:
                with self._writer:
                    with self._queue_lock:
                        batch = self._take_batch()
                        if not batch:
                            self._draining = False
                            return
                    self._write(batch)
        except BaseException as exc:
            with self._queue_lock:
                rest, self._queue = self._queue, []
                self._draining = False
            for p in rest:
                p.fail(exc)
            raise

    def _take_batch(self) -> list[_Pending[T, R]]:
        """The next items to write, in arrival order (the queue's lock held)."""
        batch = self._queue[: self.max_batch]
        del self._queue[: self.max_batch]
        return batch

    def _write(self, batch: list[_Pending[T, R]]) -> None:
        try:
            with self.db.session() as session:
                results = self.store(session, [p.item for p in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].fail(exc)
            else:  # find the one at fault: each alone, in the same order
                for p in batch:
                    self._write([p])
            return
        except BaseException as exc:
            for p in batch:
                p.fail(exc)
            raise
        self.batches += 1
        self.items += len(batch)
        for p, result in zip(batch, results, strict=True):
            p.succeed(result)


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _log_failure(writer: asyncio.Future[None]) -> None:
    if not writer.cancelled() and writer.exception() is not None:
        log.error("group commit: the writer thread failed", exc_info=writer.exception())
