"""The ``ioc`` command: serve, migrate, seed, user, apikey, backup, restore."""

from __future__ import annotations

import argparse
import getpass
import importlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from ioc import __version__
from ioc.core.problems import Problem
from ioc.settings import Settings, SettingsError

if TYPE_CHECKING:
    from ioc.core.db import Database


def _say(message: str) -> None:
    print(message, flush=True)


def _fail(message: str, code: int = 2) -> int:
    print(f"ioc: {message}", file=sys.stderr, flush=True)
    return code


@contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    """The configured database for one command, disposed of when the command ends."""
    from ioc.core.db import Database

    db = Database(settings.database_url)
    try:
        yield db
    finally:
        db.dispose()


# --------------------------------------------------------------------------- commands


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from ioc.core import migrate
    from ioc.core.admin_units import load_reference_units

    _say(f"→ Cập nhật lược đồ cơ sở dữ liệu ({make_url(settings.database_url).render_as_string()}) …")
    migrate.upgrade(settings.database_url)
    with _database(settings) as db:
        state = "mới nhất (up to date)" if migrate.is_current(db.engine) else "CHƯA đủ (incomplete)"
        _say(f"  lược đồ {state}: {migrate.describe(migrate.head_revisions())}")
        with db.session() as session:
            added = load_reference_units(session)
        _say(f"→ Dữ liệu đơn vị hành chính: thêm {added} bản ghi" if added else "→ Dữ liệu đơn vị hành chính: đã đủ")
    return 0


def cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    from ioc import demo
    from ioc.app import create_app

    if not args.demo:
        return _fail("chỉ có `ioc seed --demo` (the Vinh demo)")
    if settings.env == "production" and not args.force:
        return _fail("không nạp dữ liệu mẫu (mật khẩu công khai) vào môi trường production; dùng --force nếu chắc chắn")
    with _database(settings) as db:
        with db.session() as session:
            if args.if_empty and not demo.is_empty(session):
                _say("→ Cơ sở dữ liệu đã có người dùng: bỏ qua dữ liệu mẫu.")
                return 0
            created = demo.seed_demo(session)
            registry = create_app(settings).state.registry  # the modules' demo data
            for name, seeder in registry.seeders.items():
                _say(f"→ Dữ liệu mẫu của mô-đun {name} …")
                seeder(session)
        _say(f"→ Đã nạp dữ liệu mẫu Vinh: {len(created)} tài khoản.")
        for login in created:
            _say(f"   {login.role.value:15} {login.username} / {login.password}")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from ioc import serving
    from ioc.core.logs import uvicorn_log_config

    try:
        settings.check_for_start()
    except SettingsError as exc:
        return _fail(str(exc))
    url = f"http://{args.host}:{args.port}"
    _say(f"Vinh IOC {__version__} — {url}")
    _say(f"  Vinh Smart (công dân):   {url}/")
    _say(f"  Bảng điều hành IOC:      {url}/dashboard")
    _say(f"  API (OpenAPI):           {url}/docs")
    _say(f"  Sức khoẻ:                {url}/healthz  {url}/readyz")
    if settings.env == "development":
        from ioc.demo import DEMO_LOGINS

        _say("  Tài khoản mẫu (demo logins, development only):")
        for login in DEMO_LOGINS:
            _say(f"    {login.role.value:15} {login.username} / {login.password}")
    return serving.serve(
        "ioc.app:create_app_from_env",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=uvicorn_log_config(settings.log_json),
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
    )


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if args.password:
        return str(args.password)
    first = getpass.getpass("Mật khẩu: ")
    if getpass.getpass("Nhập lại: ") != first:
        raise Problem(422, "Hai lần nhập mật khẩu không khớp.")
    return first


def cmd_user_create(settings: Settings, args: argparse.Namespace) -> int:
    from ioc.core import audit
    from ioc.core.auth import create_user

    password = _read_password(args)
    with _database(settings) as db, db.session() as session:
        user = create_user(
            session,
            username=args.username,
            password=password,
            role=args.role,
            full_name=args.full_name or "",
            email=args.email,
            agency_id=args.agency,
        )
        audit.record(
            session,
            None,
            "user.create",
            "user",
            user.id,
            after={"username": user.username, "role": user.role, "agency_id": user.agency_id},
        )
        _say(f"→ Đã tạo người dùng {user.username} ({user.role}) id={user.id}")
    return 0


def cmd_apikey_create(settings: Settings, args: argparse.Namespace) -> int:
    from ioc.app import create_app
    from ioc.core import audit
    from ioc.core.auth import AccessPolicy, create_api_key

    app = create_app(settings)  # the policy includes the modules' permissions
    policy: AccessPolicy = app.state.policy
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    with _database(settings) as db:
        with db.session() as session:
            row, key = create_api_key(
                session, policy, name=args.name, scopes=scopes, agency_id=args.agency, created_by="cli"
            )
            audit.record(
                session,
                None,
                "apikey.create",
                "apikey",
                row.id,
                after={"name": row.name, "scopes": row.scopes, "agency_id": row.agency_id},
            )
        _say(f"→ Khoá API '{args.name}' (id {row.id}, phạm vi {', '.join(row.scopes)}).")
        _say("  Lưu lại ngay — khoá chỉ hiện một lần (shown once):")
        print(key, flush=True)
    return 0


def _sqlite_path(settings: Settings) -> Path | None:
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    path = _sqlite_path(settings)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    if path is None:
        url = make_url(settings.database_url).set(drivername="postgresql")
        out = Path(args.output or settings.var_dir / "backups" / f"ioc-{stamp}.dump")
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            return _fail("PostgreSQL: cần pg_dump (apt-get install postgresql-client); xem docs/OPERATIONS.md")
        out.parent.mkdir(parents=True, exist_ok=True)
        _say(f"→ pg_dump --format=custom → {out}")
        subprocess.run(  # noqa: S603 - fixed argument list, no shell
            [pg_dump, "--format=custom", "--file", str(out), url.render_as_string(hide_password=False)],
            check=True,
        )
        _say(f"✓ Sao lưu xong: {out} ({out.stat().st_size} byte)")
        return 0
    if not path.exists():
        return _fail(f"không có cơ sở dữ liệu {path}")
    out = Path(args.output or settings.var_dir / "backups" / f"ioc-{stamp}.db")
    if out.exists():
        return _fail(f"{out} đã tồn tại; chọn tên khác")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    with sqlite3.connect(path) as src, sqlite3.connect(tmp) as dst:

        def progress(_status: int, remaining: int, total: int) -> None:
            _say(f"  {total - remaining}/{total} trang")

        src.backup(dst, pages=1024, progress=progress)
    tmp.replace(out)  # a backup file exists only once it is whole
    _say(f"✓ Sao lưu trực tuyến xong: {out} ({out.stat().st_size} byte)")
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    source = Path(args.file)
    if not source.exists():
        return _fail(f"không có tệp {source}")
    path = _sqlite_path(settings)
    if path is None:
        return _fail(
            "PostgreSQL: khôi phục bằng `pg_restore --clean --if-exists --dbname URL FILE` "
            "khi dịch vụ đã dừng (see docs/OPERATIONS.md)"
        )
    if not args.yes:
        return _fail(f"khôi phục sẽ ghi đè {path}; chạy lại với --yes (stop `ioc serve` first)")
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src:
        try:
            check = src.execute("PRAGMA integrity_check").fetchone()
            version = src.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError as exc:
            return _fail(f"{source} không phải bản sao lưu IOC hợp lệ (not an IOC backup): {exc}")
        if not check or check[0] != "ok" or not version:
            return _fail(f"{source} không phải bản sao lưu IOC hợp lệ: {check}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as dst:
            src.backup(dst)
    _say(f"✓ Đã khôi phục {path} từ {source} (lược đồ {version[0]}); chạy `ioc migrate` nếu bản sao lưu cũ hơn")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ioc", description="Vinh IOC — Trung tâm điều hành đô thị thông minh")
    parser.add_argument("--version", action="version", version=f"ioc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="chạy dịch vụ web / serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="cập nhật lược đồ và dữ liệu tham chiếu / migrate").set_defaults(func=cmd_migrate)

    seed = sub.add_parser("seed", help="nạp dữ liệu mẫu / seed")
    seed.add_argument("--demo", action="store_true", help="the Vinh demo")
    seed.add_argument("--if-empty", action="store_true", help="only when no user exists yet")
    seed.add_argument("--force", action="store_true", help="allow in production")
    seed.set_defaults(func=cmd_seed)

    user = sub.add_parser("user", help="người dùng / users").add_subparsers(dest="user_command", required=True)
    create = user.add_parser("create", help="tạo người dùng / create a user")
    create.add_argument("--username", required=True)
    create.add_argument(
        "--role", required=True, choices=["admin", "operator", "agency_officer", "ward_officer", "viewer"]
    )
    create.add_argument("--agency", help="agency id (required for officers)")
    create.add_argument("--full-name")
    create.add_argument("--email")
    create.add_argument("--password", help="avoid: visible in the process list; prefer the prompt")
    create.add_argument("--password-stdin", action="store_true")
    create.set_defaults(func=cmd_user_create)

    apikey = sub.add_parser("apikey", help="khoá API / API keys").add_subparsers(dest="apikey_command", required=True)
    key_create = apikey.add_parser("create", help="tạo khoá API (in ra một lần) / create a key (printed once)")
    key_create.add_argument("--name", required=True)
    key_create.add_argument("--scopes", required=True, help="comma-separated, e.g. alarms:raise,events:read")
    key_create.add_argument("--agency")
    key_create.set_defaults(func=cmd_apikey_create)

    backup = sub.add_parser("backup", help="sao lưu / back up (SQLite online; PostgreSQL via pg_dump)")
    backup.add_argument("--output", "-o")
    backup.set_defaults(func=cmd_backup)

    restore = sub.add_parser("restore", help="khôi phục / restore a SQLite backup")
    restore.add_argument("file")
    restore.add_argument("--yes", action="store_true")
    restore.set_defaults(func=cmd_restore)
    _add_module_commands(sub)
    return parser


def _add_module_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands that modules ship: ``ioc.modules.<name>.commands.add_commands(sub)``.

    A module that offers commands has a ``commands`` submodule with
    ``add_commands(sub)``, adding subparsers whose ``func(settings, args) -> int`` the CLI
    calls like its own. The CLI imports it by name only, as the app factory loads ``setup``.
    """
    from ioc.app import available_modules

    for name in available_modules():
        try:
            module = importlib.import_module(f"ioc.modules.{name}.commands")
        except ModuleNotFoundError as exc:
            if exc.name == f"ioc.modules.{name}.commands":
                continue
            raise
        module.add_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's message names the bad variable
        return _fail(f"cấu hình IOC_* không hợp lệ: {exc}")
    from ioc.core.logs import configure

    configure(json_logs=settings.log_json and args.command == "serve")
    try:
        code: int = args.func(settings, args)
    except Problem as exc:
        return _fail(exc.detail)
    except SettingsError as exc:
        return _fail(str(exc))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
