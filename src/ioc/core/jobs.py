"""Periodic jobs without an extra service: one scheduler thread per process, one lease row per job.

Modules register jobs with ``ctx.registry.add_job(name, every_seconds, fn)``; the app runs them
in a :class:`Scheduler` started and stopped with its lifespan. Several ``ioc serve`` workers
each run a scheduler; before running a job a scheduler takes the job's lease (a row of
``job_leases``) with one conditional UPDATE, atomic on SQLite and PostgreSQL. The lease is
held until the job is next due, so a job runs once per interval across all workers (at the
scheduler's tick, so at most one tick late), and a worker that dies mid-job only delays the
next run until its lease expires.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from ioc.core.db import Base, Database, UTCDateTime, utcnow

log = logging.getLogger("ioc.jobs")

#: What a job runs: it receives the app's database and opens its own sessions.
JobFn = Callable[[Database], object]


class JobLease(Base):
    """Who runs a periodic job: one scheduler at a time holds the lease until ``until``."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100), default="")
    until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


def new_holder() -> str:
    """A holder name unique to one scheduler: the process id and a random suffix."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def take_lease(session: Session, name: str, holder: str, seconds: float) -> bool:
    """Take job ``name`` for ``seconds`` if nobody holds it (the last lease expired or was released).

    A holder does not renew its own running lease either: the job is not due before then.
    """
    now = utcnow()
    if session.get(JobLease, name) is None:
        try:
            with session.begin_nested():
                session.add(JobLease(name=name, holder="", until=None))
        except IntegrityError:
            pass  # created concurrently by another worker; the savepoint kept the transaction usable
    stmt = (
        update(JobLease)
        .where(JobLease.name == name, or_(JobLease.until.is_(None), JobLease.until <= now))
        .values(holder=holder, until=now + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )
    result: Any = session.execute(stmt)
    return int(result.rowcount or 0) == 1


def release_lease(session: Session, name: str, holder: str) -> bool:
    """Give up ``holder``'s lease of job ``name`` (the job may then run again at once)."""
    stmt = (
        update(JobLease)
        .where(JobLease.name == name, JobLease.holder == holder)
        .values(until=None)
        .execution_options(synchronize_session=False)
    )
    result: Any = session.execute(stmt)
    return int(result.rowcount or 0) == 1


def lease_holder(session: Session, name: str) -> str | None:
    """Who holds the lease of job ``name`` now (None when nobody does)."""
    row = session.scalar(select(JobLease).where(JobLease.name == name))
    return row.holder if row is not None and row.until is not None and row.until > utcnow() else None


@dataclass(frozen=True)
class Job:
    """A periodic job: run ``run(db)`` every ``every_seconds`` on one worker at a time."""

    name: str
    every_seconds: float
    run: JobFn

    def __post_init__(self) -> None:
        if self.every_seconds <= 0:
            raise ValueError(f"job {self.name!r}: every_seconds must be positive")


class Scheduler:
    """Runs each job every ``every_seconds`` on one scheduler at a time (see the module docstring).

    ``tick_seconds`` is how often the thread looks for due jobs (never longer than the
    shortest job's interval); ``first_delay_seconds`` lets the service start before the
    first run.
    """

    def __init__(
        self,
        db: Database,
        jobs: Iterable[Job] = (),
        *,
        tick_seconds: float = 60.0,
        first_delay_seconds: float = 10.0,
        holder: str | None = None,
    ) -> None:
        self.db = db
        self.jobs: list[Job] = list(jobs)
        self.tick = tick_seconds
        self.first_delay = first_delay_seconds
        self.holder = holder or new_holder()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the thread (nothing to do without jobs, or when it already runs)."""
        if self._thread is None and self.jobs:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="ioc-jobs", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, waiting up to ``timeout`` seconds for a running job to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_due(self) -> list[str]:
        """Run every job whose lease this scheduler can take now; returns the names run.

        A failing job is logged; it runs again when its lease expires (no hot retry loop).
        """
        ran = []
        for job in self.jobs:
            if self._stop.is_set() and self._thread is not None:
                break
            try:
                with self.db.session() as s:
                    if not take_lease(s, job.name, self.holder, job.every_seconds):
                        continue
                job.run(self.db)
                ran.append(job.name)
            except Exception:
                log.exception("scheduled job %s failed", job.name)
        return ran

    def _loop(self) -> None:
        wait = min([self.tick, *(job.every_seconds for job in self.jobs)])
        if self._stop.wait(self.first_delay):
            return
        while not self._stop.is_set():
            self.run_due()
            self._stop.wait(wait)
