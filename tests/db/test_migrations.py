"""The database: migrations build exactly the schema the models declare."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from circus_tasks.db.engine import SCHEMA_REVISION, make_engine


def test_migrations_match_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == [], "models changed: add an Alembic revision (see README)"


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'again.db'}"
    make_engine(url).dispose()
    engine = make_engine(url)
    assert {"job", "jobevent", "jobseries", "series", "image", "plugin"} <= set(
        inspect(engine).get_table_names()
    )
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == SCHEMA_REVISION


def test_the_cheap_schema_check_knows_the_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from circus_tasks.db.engine import MIGRATIONS, SCHEMA_REVISION

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION
