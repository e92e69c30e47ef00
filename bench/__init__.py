"""Benchmarks: ``make bench`` runs every ``bench_*.py`` and records the figures.

The benchmarks with a PostgreSQL leg (context, temporal, KPI) run it in the same run as their
SQLite leg, on the server :func:`postgres_url` names: ``IOC_BENCH_DATABASE_URL`` when it is set,
else the local server at ``127.0.0.1:5432`` when it answers. The database of the URL is the
bench's own, dropped and created again.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ioc.core.db import Database

#: The PostgreSQL leg's server when ``IOC_BENCH_DATABASE_URL`` is not set (trust auth, as in CI).
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/ioc_bench"


@functools.cache
def postgres_leg() -> tuple[str | None, str]:
    """(URL of the PostgreSQL leg or None, what was chosen and why), decided once per run.

    ``IOC_BENCH_DATABASE_URL`` set to a URL: that server, which must answer; set empty: no
    PostgreSQL leg; not set: the local server of :data:`DEFAULT_POSTGRES_URL` if it answers, else
    no PostgreSQL leg (said on stderr and in the results)."""
    given = os.environ.get("IOC_BENCH_DATABASE_URL")
    if given is not None and not given.strip():
        return None, "skipped: IOC_BENCH_DATABASE_URL is set empty"
    url = (given or DEFAULT_POSTGRES_URL).strip()
    problem = _unreachable(url)
    if problem is None:
        return url, f"PostgreSQL leg on {_shown(url)}"
    if given:
        raise SystemExit(f"IOC_BENCH_DATABASE_URL={_shown(url)}: {problem}")
    return None, f"skipped: none at {_shown(url)} ({problem}); set IOC_BENCH_DATABASE_URL"


def postgres_url() -> str | None:
    """The PostgreSQL leg's URL, or None (the reason is printed once on stderr)."""
    url, why = postgres_leg()
    if url is None:
        _say_once(why)
    return url


@functools.cache
def _say_once(why: str) -> None:
    print(f"!! PostgreSQL {why}", file=sys.stderr, flush=True)


def _shown(url: str) -> str:
    """``url`` with its password hidden (as given when it is not a URL)."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _unreachable(url: str) -> str | None:
    """Why the server of ``url`` cannot be used (its maintenance database ``postgres``), or None."""
    import psycopg
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except ArgumentError as exc:
        return f"not a database URL: {exc}"
    if not u.drivername.startswith("postgresql"):
        return f"not a PostgreSQL URL ({u.drivername})"
    try:
        with psycopg.connect(_maintenance(url), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL does not answer: {first}"


def _maintenance(url: str) -> str:
    """The libpq URL of the maintenance database (``postgres``) of the server of ``url``."""
    from sqlalchemy import make_url

    return make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def recreate_database(url: str) -> None:
    """Drop the PostgreSQL database of ``url`` and create it empty; nothing for SQLite."""
    import psycopg
    from sqlalchemy import make_url

    if not url.startswith("postgresql"):
        return
    name = make_url(url).database
    with psycopg.connect(_maintenance(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def vacuum_analyze(db: Database) -> None:
    """On PostgreSQL, what autovacuum does within a minute of a load: planner statistics, and a
    visibility map that lets an index answer without the table's pages; nothing for SQLite."""
    if db.dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
