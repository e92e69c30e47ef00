"""The ``ioc`` command, run as the IT staff run it: a real process on a real database."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ioc.app import create_app
from ioc.settings import Settings

SECRET = "cli-test-secret-key-0123456789-abcdef"


def ioc(tmp: Path, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ioc`` on the database in ``tmp`` (or ``IOC_DATABASE_URL`` given in ``env``)."""
    base = {k: v for k, v in os.environ.items() if k != "IOC_DATABASE_URL"}
    full_env = {**base, "IOC_VAR_DIR": str(tmp), "IOC_SECRET_KEY": SECRET, "IOC_LOG_JSON": "false", **env}
    return subprocess.run(
        [sys.executable, "-m", "ioc", *args], input=stdin, capture_output=True, text=True, env=full_env, timeout=120
    )


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    assert ioc(tmp, "migrate").returncode == 0
    assert ioc(tmp, "seed", "--demo", "--if-empty").returncode == 0
    return tmp


def _users(db_file: Path) -> list[str]:
    with sqlite3.connect(db_file) as conn:
        return [r[0] for r in conn.execute("SELECT username FROM users ORDER BY username")]


def test_migrate_is_idempotent_and_reports_progress(tmp_path: Path) -> None:
    first = ioc(tmp_path, "migrate")
    assert first.returncode == 0, first.stderr
    assert "mới nhất" in first.stdout and "0002_core" in first.stdout and "thêm" in first.stdout
    again = ioc(tmp_path, "migrate")
    assert again.returncode == 0 and "đã đủ" in again.stdout
    assert (tmp_path / "ioc.db").exists()


def test_seed_demo_only_when_empty(demo_dir: Path) -> None:
    assert _users(demo_dir / "ioc.db") == ["admin", "lanhdao", "moitruong", "operator", "thanhvinh"]
    again = ioc(demo_dir, "seed", "--demo", "--if-empty")
    assert again.returncode == 0 and "bỏ qua" in again.stdout
    assert len(_users(demo_dir / "ioc.db")) == 5


def test_seed_demo_is_refused_in_production(tmp_path: Path) -> None:
    ioc(tmp_path, "migrate")
    result = ioc(tmp_path, "seed", "--demo", IOC_ENV="production")
    assert result.returncode == 2 and "production" in result.stderr
    assert _users(tmp_path / "ioc.db") == []


def test_user_create_with_password_from_stdin(demo_dir: Path) -> None:
    result = ioc(
        demo_dir,
        "user",
        "create",
        "--username",
        "vanhanh",
        "--role",
        "ward_officer",
        "--agency",
        "ubnd-cua-lo",
        "--password-stdin",
        stdin="mat-khau-du-dai-2025\n",
    )
    assert result.returncode == 0, result.stderr
    assert "vanhanh" in _users(demo_dir / "ioc.db")
    bad = ioc(
        demo_dir,
        "user",
        "create",
        "--username",
        "x1",
        "--role",
        "ward_officer",
        "--password-stdin",
        stdin="mat-khau-du-dai-2025\n",
    )
    assert bad.returncode == 2 and "cơ quan" in bad.stderr
    short = ioc(demo_dir, "user", "create", "--username", "x2", "--role", "viewer", "--password-stdin", stdin="ngan\n")
    assert short.returncode == 2 and "10" in short.stderr


def test_apikey_create_prints_the_key_once_and_it_works(demo_dir: Path) -> None:
    result = ioc(demo_dir, "apikey", "create", "--name", "Trạm quan trắc", "--scopes", "alarms:raise,alarms:read")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("ioc_")
    with sqlite3.connect(demo_dir / "ioc.db") as conn:
        stored = [r[0] for r in conn.execute("SELECT key_hash FROM api_keys")]
    assert key not in stored and all(len(h) == 64 for h in stored)
    app = create_app(Settings(var_dir=demo_dir, secret_key=SECRET, log_json=False))
    with TestClient(app) as client:
        body = {"source": "cli-test", "type": "test.alarm", "severity": "MINOR", "title": "Thử"}
        assert client.post("/api/v1/alarms", json=body, headers={"X-API-Key": key}).status_code == 201
        assert client.post("/api/v1/alarms", json=body, headers={"X-API-Key": key + "x"}).status_code == 401
    bad = ioc(demo_dir, "apikey", "create", "--name", "x", "--scopes", "everything")
    assert bad.returncode == 2 and "scope" in bad.stderr


def test_backup_and_restore_sqlite(demo_dir: Path, tmp_path: Path) -> None:
    backup = tmp_path / "b.db"
    result = ioc(demo_dir, "backup", "--output", str(backup))
    assert result.returncode == 0, result.stderr
    assert _users(backup) == _users(demo_dir / "ioc.db")
    assert ioc(demo_dir, "backup", "--output", str(backup)).returncode == 2  # never overwrites

    target = tmp_path / "restored"
    refused = ioc(target, "restore", str(backup))
    assert refused.returncode == 2 and "--yes" in refused.stderr
    restored = ioc(target, "restore", str(backup), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert _users(target / "ioc.db") == _users(demo_dir / "ioc.db")

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    assert ioc(target, "restore", str(junk), "--yes").returncode == 2
    assert _users(target / "ioc.db") == _users(demo_dir / "ioc.db")


def test_serve_refuses_production_with_the_default_secret(tmp_path: Path) -> None:
    env = {**os.environ, "IOC_ENV": "production", "IOC_VAR_DIR": str(tmp_path)}
    env.pop("IOC_SECRET_KEY", None)
    result = subprocess.run(
        [sys.executable, "-m", "ioc", "serve", "--port", "1"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert "IOC_SECRET_KEY" in result.stderr


def test_bad_configuration_is_reported_not_a_traceback(tmp_path: Path) -> None:
    result = ioc(tmp_path, "migrate", IOC_ENV="staging")
    assert result.returncode == 2 and "IOC_" in result.stderr and "Traceback" not in result.stderr


def test_backup_postgresql_with_pg_dump(pg_database: str, tmp_path: Path) -> None:
    if shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore not installed")
    out = tmp_path / "ioc.dump"
    result = ioc(tmp_path, "backup", "-o", str(out), IOC_DATABASE_URL=pg_database)
    assert result.returncode == 0, result.stderr
    listing = subprocess.run(["pg_restore", "--list", str(out)], capture_output=True, text=True, check=True).stdout
    assert "TABLE public audit_log" in listing and "TABLE DATA public admin_units" in listing
    refused = ioc(tmp_path, "restore", str(out), "--yes", IOC_DATABASE_URL=pg_database)
    assert refused.returncode == 2 and "pg_restore" in refused.stderr
