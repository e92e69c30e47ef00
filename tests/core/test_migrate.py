"""Migrations: a fresh database and the models agree; up, down and up again."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from ioc.core import migrate
from ioc.core.db import Base, Database
from ioc.models import import_all_models


def test_migrated_schema_matches_the_models(db: Database) -> None:
    import_all_models()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert migrate.is_current(db.engine)


def test_downgrade_to_base_and_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    db = Database(url)
    assert "alarms" in inspect(db.engine).get_table_names()
    from alembic import command

    command.downgrade(migrate.alembic_config(url), "base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(url)
    assert migrate.is_current(db.engine)
    db.dispose()
