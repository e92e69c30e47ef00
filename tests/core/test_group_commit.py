"""Group commit: concurrent submissions share one transaction; a failing batch fails only the item at fault."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy.orm import Session

from ioc.core.db import Database
from ioc.core.group_commit import GroupCommit


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


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
    _wait_for(lambda: len(writer._queue) == len(items) - 1)  # ...while the others queue
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


def test_group_commit_fails_only_the_submission_at_fault(db: Database) -> None:
    recorder = _Recorder(fail_on=3)
    writer: GroupCommit[int, int] = GroupCommit(db, recorder)
    results = _submit_all(writer, recorder, [1, 2, 3, 4])
    assert isinstance(results[3], ValueError)
    assert {i: results[i] for i in (1, 2, 4)} == {1: 10, 2: 20, 4: 40}
    # the failed batch was rolled back and each of its items written again on its own
    assert [b for b in recorder.batches if len(b) == 1][-3:] == [[2], [3], [4]]
