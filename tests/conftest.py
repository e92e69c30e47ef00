"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

* SQLite: a template database is migrated once per session; each test gets a copy.
* PostgreSQL (``IOC_TEST_DATABASE_URL``): a throw-away database is created and migrated once
  per session; each test starts from truncated tables (reference data kept).
* MQTT (``IOC_TEST_MQTT_URL``): tests that need a broker use the ``mqtt_url`` fixture.

Without those variables the PostgreSQL and MQTT legs are skipped with a printed reason;
with ``IOC_TEST_REQUIRE_SERVICES=1`` (set by ``.ci/run``) a missing leg fails instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ioc.app import create_app
from ioc.core import migrate
from ioc.core.admin_units import load_reference_units
from ioc.core.auth import User, create_user
from ioc.core.db import Database
from ioc.demo import seed_agencies
from ioc.settings import Settings

pytest_plugins = ["tests.web.fixtures"]

PG_URL = os.environ.get("IOC_TEST_DATABASE_URL", "")
MQTT_URL = os.environ.get("IOC_TEST_MQTT_URL", "")
REQUIRE = os.environ.get("IOC_TEST_REQUIRE_SERVICES") == "1"
PASSWORD = "test-password-123"
SECRET = "test-secret-key-for-the-suite-0123456789"
REFERENCE_TABLES = {"admin_units", "admin_unit_crosswalk", "alembic_version"}


def _missing(what: str, var: str) -> None:
    message = f"{what} leg not run: set {var}"
    if REQUIRE:
        pytest.fail(message + " (required by IOC_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    db = Database(url)
    with db.session() as s:
        load_reference_units(s)
    db.dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    if not PG_URL:
        _missing("PostgreSQL", "IOC_TEST_DATABASE_URL")
    server = make_url(PG_URL)
    name = f"ioc_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    db = Database(url)
    with db.session() as s:
        load_reference_units(s)
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_pg(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [
            r[0]
            for r in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            if r[0] not in REFERENCE_TABLES
        ]
        if tables:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "ioc.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_database")
    _truncate_pg(url)
    return url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        var_dir=tmp_path / "var",
        secret_key=SECRET,
        log_json=False,
        events_poll_seconds=0.05,
        login_attempts_per_minute=1000,
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    with database.session() as s:
        seed_agencies(s)
    yield database
    database.dispose()


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


MakeUser = Callable[..., User]


@pytest.fixture
def make_user(db: Database) -> MakeUser:
    counter = iter(range(1, 10_000))

    def make(role: str, agency_id: str | None = None, password: str = PASSWORD, username: str | None = None) -> User:
        if agency_id is None and role == "ward_officer":
            agency_id = "ubnd-thanh-vinh"
        if agency_id is None and role == "agency_officer":
            agency_id = "so-nnmt"
        with db.session() as s:
            return create_user(
                s,
                username=username or f"{role.replace('_', '')}{next(counter)}",
                password=password,
                role=role,
                agency_id=agency_id,
                full_name=f"Test {role}",
            )

    return make


@pytest.fixture
def token_headers(client: TestClient) -> Callable[[User], dict[str, str]]:
    def headers(user: User, password: str = PASSWORD) -> dict[str, str]:
        r = client.post("/api/v1/auth/token", data={"username": user.username, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    return headers


@pytest.fixture
def mqtt_url() -> str:
    if not MQTT_URL:
        _missing("MQTT", "IOC_TEST_MQTT_URL")
    return MQTT_URL


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy (its value) or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """An ``ioc serve`` process on a free port (a new port is tried if another process took it)."""

    READY_SECONDS = 60

    def __init__(self, env: dict[str, str], workers: int = 1) -> None:
        for attempt in range(3):
            try:
                self._start(env, workers)
                return
            except RuntimeError as exc:
                if "address already in use" not in str(exc).lower() or attempt == 2:
                    raise

    def _start(self, env: dict[str, str], workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(env["IOC_VAR_DIR"]) / f"server-{self.port}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ioc", "serve", "--port", str(self.port), "--workers", str(workers)],
            env={**os.environ, **env},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.READY_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log_file.close()
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log_file.close()


@pytest.fixture
def start_server(settings: Settings, db: Database) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(workers: int = 1, **extra: Any) -> LiveServer:
        env = {
            "IOC_DATABASE_URL": settings.database_url,
            "IOC_SECRET_KEY": SECRET,
            "IOC_VAR_DIR": str(settings.var_dir),
            "IOC_EVENTS_POLL_SECONDS": "0.05",
            "IOC_LOG_JSON": "true",
            **{k: str(v) for k, v in extra.items()},
        }
        server = LiveServer(env, workers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
