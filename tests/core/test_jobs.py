"""Periodic jobs: one lease per job across schedulers on the same database, the registry's jobs
run by the app's scheduler, failures logged and not retried before the interval."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from ioc.app import create_app
from ioc.core.db import Database
from ioc.core.jobs import Job, Scheduler, lease_holder, release_lease, take_lease
from ioc.core.registry import Registry
from ioc.settings import JobsSettings, Settings


def test_a_lease_has_one_holder_until_it_expires_or_is_released(db: Database) -> None:
    with db.session() as s:
        assert take_lease(s, "test.job", "worker-a", 60)
    with db.session() as s:
        assert not take_lease(s, "test.job", "worker-b", 60)
        assert not take_lease(s, "test.job", "worker-a", 60)  # not due again before the interval
        assert lease_holder(s, "test.job") == "worker-a"
    with db.session() as s:
        assert not release_lease(s, "test.job", "worker-b")  # only the holder gives it up
        assert release_lease(s, "test.job", "worker-a")
    with db.session() as s:
        assert lease_holder(s, "test.job") is None
        assert take_lease(s, "test.job", "worker-b", 0)  # a zero lease expires at once
    with db.session() as s:
        assert take_lease(s, "test.job", "worker-a", 60)


def test_two_schedulers_on_one_database_run_a_job_once(db: Database, settings: Settings) -> None:
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    def job(name: str) -> Job:
        def run(_: Database) -> None:
            with lock:
                runs[name] += 1

        return Job(name, 3600, run)

    other = Database(settings.database_url)  # a second worker: its own engine and connections
    try:
        first = Scheduler(db, [job("test.a"), job("test.b")])
        second = Scheduler(other, [job("test.a"), job("test.b")])
        assert first.holder != second.holder
        barrier = threading.Barrier(2)
        ran: dict[str, list[str]] = {}

        def work(name: str, scheduler: Scheduler) -> None:
            barrier.wait()
            ran[name] = scheduler.run_due()

        threads = [threading.Thread(target=work, args=(n, s)) for n, s in (("1", first), ("2", second))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert runs == {"test.a": 1, "test.b": 1}
        assert sorted(ran["1"] + ran["2"]) == ["test.a", "test.b"]
        # neither runs them again before the interval has passed
        assert first.run_due() == [] and second.run_due() == []
        with db.session() as s:
            assert lease_holder(s, "test.a") in {first.holder, second.holder}
    finally:
        other.dispose()


def test_a_failing_job_is_logged_and_waits_for_its_interval(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def broken(_: Database) -> None:
        calls.append(1)
        raise RuntimeError("nguồn dữ liệu không trả lời")

    scheduler = Scheduler(db, [Job("test.broken", 3600, broken), Job("test.ok", 3600, lambda _: None)])
    assert scheduler.run_due() == ["test.ok"]
    assert scheduler.run_due() == []
    assert calls == [1]
    assert "scheduled job test.broken failed" in caplog.text


def test_the_thread_runs_due_jobs_and_stops(db: Database) -> None:
    ran = threading.Event()
    scheduler = Scheduler(db, [Job("test.thread", 0.05, lambda _: ran.set())], tick_seconds=60, first_delay_seconds=0)
    scheduler.start()
    try:
        assert ran.wait(10)
        assert scheduler.running
    finally:
        started = time.monotonic()
        scheduler.stop()
    assert not scheduler.running and time.monotonic() - started < 5


def test_jobs_are_named_once_and_run_at_a_positive_interval() -> None:
    registry = Registry()
    registry.add_job("test.once", 60, lambda _: None)
    with pytest.raises(ValueError, match="twice"):
        registry.add_job("test.once", 60, lambda _: None)
    with pytest.raises(ValueError, match="positive"):
        registry.add_job("test.never", 0, lambda _: None)


def test_the_app_runs_the_registered_jobs_in_its_lifespan(settings: Settings, db: Database) -> None:
    ran = threading.Event()
    app = create_app(
        settings.model_copy(update={"modules": [], "jobs": JobsSettings(tick_seconds=0.05, first_delay_seconds=0)})
    )
    app.state.registry.add_job("test.lifespan", 0.05, lambda _: ran.set())
    app.state.scheduler.jobs.extend(app.state.registry.jobs.values())
    scheduler: Scheduler = app.state.scheduler
    with TestClient(app):
        assert ran.wait(10)
        assert scheduler.running
    assert not scheduler.running


def test_the_modules_jobs_reach_the_scheduler(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_KPI__SCHEDULER", "true")
    monkeypatch.setenv("IOC_SERVICES__SCHEDULER", "true")
    app = create_app(settings.model_copy(update={"modules": ["kpi", "services"]}))
    names = {job.name for job in app.state.scheduler.jobs}
    assert {"kpi.snapshots", "kpi.reports", "services.poll"} <= names
    monkeypatch.setenv("IOC_KPI__SCHEDULER", "false")
    monkeypatch.setenv("IOC_SERVICES__SCHEDULER", "false")
    app = create_app(settings.model_copy(update={"modules": ["kpi", "services"]}))
    assert app.state.scheduler.jobs == []
