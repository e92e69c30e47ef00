"""Alembic migrations, run programmatically.

The core has one linear history (``0001_core`` …); each module keeps its own branch in the
same versions folder (``branch_labels=("<module>",)``, ``depends_on="0001_core"``), so modules
add tables without touching each other's history. "Current" means every head is applied.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic configuration for ``url`` without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at ``url`` to ``revision`` (every branch's head by default)."""
    command.upgrade(alembic_config(url), revision)


def head_revisions() -> set[str]:
    """The newest revision of every branch (core and modules)."""
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    """The revisions the database is at."""
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def applied_revisions(engine: Engine) -> set[str]:
    """Every revision applied, including those the stored heads depend on."""
    current = current_revisions(engine)
    if not current:
        return set()
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {rev.revision for rev in script.iterate_revisions(tuple(current), "base")}


def is_current(engine: Engine) -> bool:
    """Whether every branch's newest migration is applied.

    A module branch depends on the core's revision, so the database may store only the
    module heads; the core's revision then counts as applied through that dependency.
    """
    return head_revisions() <= applied_revisions(engine)


def describe(revisions: set[str]) -> str:
    return ", ".join(sorted(revisions)) or "(none)"
