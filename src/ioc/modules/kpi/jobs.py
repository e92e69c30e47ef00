"""Scheduled jobs without an extra service: a background thread per process and a lease row per job.

Several ``ioc serve`` workers may each run the thread; before running a job a worker takes the
job's lease with one conditional UPDATE (atomic on SQLite and PostgreSQL). The lease then stays
with it until the job is next due, so the job runs once per interval across all workers, and a
worker that dies mid-job only delays the next run until the lease expires.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ioc.core.db import Database, utcnow

from .models import KpiJobLease as JobLease

log = logging.getLogger("ioc.kpi.jobs")
HOLDER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def take_lease(session: Session, name: str, holder: str, seconds: float) -> bool:
    """Take job ``name`` for ``seconds`` unless another holder's lease is still running."""
    now = utcnow()
    if session.get(JobLease, name) is None:
        try:
            with session.begin_nested():
                session.add(JobLease(name=name, holder="", until=None))
        except IntegrityError:
            pass  # created concurrently by another worker; the savepoint kept the transaction usable
    stmt = (
        update(JobLease)
        .where(JobLease.name == name, or_(JobLease.until.is_(None), JobLease.until < now, JobLease.holder == holder))
        .values(holder=holder, until=now + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )
    result: Any = session.execute(stmt)
    return int(result.rowcount or 0) == 1


def lease_holder(session: Session, name: str) -> str | None:
    row = session.scalar(select(JobLease).where(JobLease.name == name))
    return row.holder if row and row.until and row.until > utcnow() else None


@dataclass
class Job:
    name: str
    every_seconds: float
    run: Callable[[Database], object]


class Scheduler:
    """Runs each job every ``every_seconds`` on one worker at a time (see the module docstring)."""

    def __init__(self, db: Database, jobs: list[Job], tick_seconds: float, first_delay_seconds: float) -> None:
        self.db = db
        self.jobs = jobs
        self.tick = tick_seconds
        self.first_delay = first_delay_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="ioc.kpi.jobs", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_due(self) -> list[str]:
        """Run every job whose lease this worker can take now; returns the names run."""
        ran = []
        for job in self.jobs:
            try:
                with self.db.session() as s:
                    if not take_lease(s, job.name, HOLDER, job.every_seconds):
                        continue
                job.run(self.db)
                ran.append(job.name)
            except Exception:
                log.exception("scheduled job %s failed", job.name)
        return ran

    def _loop(self) -> None:
        if self._stop.wait(self.first_delay):
            return
        while not self._stop.is_set():
            self.run_due()
            self._stop.wait(self.tick)
