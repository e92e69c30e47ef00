"""Group commit: concurrent submissions share one transaction; a failing batch fails only the item at fault."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session

from ioc.core.db import Database
from ioc.core.group_commit import GroupCommit
from tests.conftest import wait_for


class _Recorder:
    """A store function that records its batches; the first one waits until released."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, _session: Session, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.entered.set()
        self.release.wait(10)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"item {self.fail_on} is bad")
        return [i * 10 for i in items]


def _submit_all(writer: GroupCommit[int, int], recorder: _Recorder, items: list[int]) -> dict[int, Any]:
    results: dict[int, Any] = {}

    def submit(i: int) -> None:
        try:
            results[i] = writer.submit(i)
        except ValueError as exc:
            results[i] = exc

    first = threading.Thread(target=submit, args=(items[0],))
    first.start()
    assert recorder.entered.wait(10)  # the first item is being written alone...
    others = [threading.Thread(target=submit, args=(i,)) for i in items[1:]]
    for t in others:
        t.start()
    wait_for(lambda: len(writer._queue) == len(items) - 1)  # ...while the others queue
    recorder.release.set()
    for t in [first, *others]:
        t.join(10)
    return results


def test_group_commit_writes_queued_submissions_together(db: Database) -> None:
    recorder = _Recorder()
    writer: GroupCommit[int, int] = GroupCommit(db, recorder)
    results = _submit_all(writer, recorder, [1, 2, 3, 4, 5])
    assert results == {i: i * 10 for i in range(1, 6)}
    assert recorder.batches[0] == [1]
    assert sorted(recorder.batches[1]) == [2, 3, 4, 5]  # one transaction for the four that waited
    assert (writer.batches, writer.items) == (2, 5)


def _submit_async_all(writer: GroupCommit[int, int], recorder: _Recorder, items: list[int]) -> dict[int, Any]:
    """``items`` submitted from one event loop: the first alone, the others while it is written."""
    results: dict[int, Any] = {}

    async def submit(i: int) -> None:
        try:
            results[i] = await writer.submit_async(i)
        except ValueError as exc:
            results[i] = exc

    async def scenario() -> None:
        first = asyncio.create_task(submit(items[0]))
        while not recorder.entered.is_set():  # the loop stays free while the writer thread writes
            await asyncio.sleep(0.005)
        others = [asyncio.create_task(submit(i)) for i in items[1:]]
        while len(writer._queue) < len(items) - 1:
            await asyncio.sleep(0.005)
        recorder.release.set()
        await asyncio.wait_for(asyncio.gather(first, *others), 10)

    asyncio.run(scenario())
    return results


SubmitAll = Callable[[GroupCommit[int, int], _Recorder, list[int]], dict[int, Any]]


@pytest.mark.parametrize("submit_all", [_submit_all, _submit_async_all], ids=["threads", "event loop"])
def test_group_commit_fails_only_the_submission_at_fault(db: Database, submit_all: SubmitAll) -> None:
    recorder = _Recorder(fail_on=3)
    writer: GroupCommit[int, int] = GroupCommit(db, recorder)
    results = submit_all(writer, recorder, [1, 2, 3, 4])
    assert isinstance(results[3], ValueError)
    assert {i: results[i] for i in (1, 2, 4)} == {1: 10, 2: 20, 4: 40}
    # the failed batch was rolled back and each of its items written again on its own
    assert [b for b in recorder.batches if len(b) == 1][-3:] == [[2], [3], [4]]


def test_submissions_from_the_event_loop_are_written_together_by_one_writer_thread(db: Database) -> None:
    recorder = _Recorder()
    writer: GroupCommit[int, int] = GroupCommit(db, recorder)
    threads: set[str] = set()
    store = writer.store

    def recording_thread(session: Session, items: list[int]) -> list[int]:
        threads.add(threading.current_thread().name)
        return store(session, items)

    writer.store = recording_thread
    results = _submit_async_all(writer, recorder, [1, 2, 3, 4, 5])
    assert results == {i: i * 10 for i in range(1, 6)}
    assert recorder.batches == [[1], [2, 3, 4, 5]]  # in arrival order, one transaction for those that queued
    assert len(threads) == 1 and threading.main_thread().name not in threads
    assert not writer._draining and writer._queue == []  # the writer thread stopped with the queue empty


def test_threads_and_the_event_loop_share_one_queue(db: Database) -> None:
    """A thread's submission and the loop's queue together: each is written once, in one order."""
    recorder = _Recorder()
    recorder.release.set()
    writer: GroupCommit[int, int] = GroupCommit(db, recorder)
    results: dict[int, int] = {}

    def in_thread(i: int) -> None:
        results[i] = writer.submit(i)

    async def scenario() -> None:
        threads = [threading.Thread(target=in_thread, args=(i,)) for i in range(100, 110)]
        for t in threads:
            t.start()
        got = await asyncio.gather(*(writer.submit_async(i) for i in range(20)))
        results.update(zip(range(20), got, strict=True))
        for t in threads:
            await asyncio.to_thread(t.join, 10)

    asyncio.run(scenario())
    assert results == {i: i * 10 for i in [*range(20), *range(100, 110)]}
    written = [i for batch in recorder.batches for i in batch]
    assert sorted(written) == sorted(results)  # none twice, none lost
    assert not writer._draining


class _Stop(BaseException):
    pass


def test_a_writer_thread_that_stops_fails_what_is_still_queued(db: Database) -> None:
    """An error that is not the batch's own (a BaseException, not an Exception) stops the writer
    thread: the items still queued fail with it instead of waiting for a writer that never comes,
    and the next submission starts a new writer."""
    release = threading.Event()
    calls: list[list[int]] = []

    def store(_session: Session, items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            release.wait(10)
            raise _Stop
        return [i * 10 for i in items]

    writer: GroupCommit[int, int] = GroupCommit(db, store, max_batch=1)

    async def scenario() -> list[Any]:
        submitted = asyncio.gather(*(writer.submit_async(i) for i in range(3)), return_exceptions=True)
        while len(writer._queue) < 2:  # the first is being written, the other two queue
            await asyncio.sleep(0.005)
        release.set()
        return await asyncio.wait_for(submitted, 10)

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, _Stop) for o in outcomes), outcomes
    assert calls == [[0]] and not writer._draining
    assert asyncio.run(writer.submit_async(7)) == 70
