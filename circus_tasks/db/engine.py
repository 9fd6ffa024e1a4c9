"""Database engine and sessions (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from circus_tasks.db import models  # noqa: F401  (registers the tables)
from circus_tasks.db.revision import SCHEMA_REVISION
from circus_tasks.settings import get_settings


def make_engine(url: str) -> Engine:
    """An engine for ``url``, with the tables created.

    SQLite gets WAL mode and a busy time-out, so that the server, workers and the CLI can share
    one file.
    """
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    migrate(engine)
    return engine


MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Any) -> Any:
    """An Alembic configuration that migrates on ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _schema_is_current(engine: Engine) -> bool:
    """A cheap look at ``alembic_version``, without importing Alembic."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return found == SCHEMA_REVISION


def migrate(engine: Engine) -> None:
    """Bring the database schema to the latest revision (Alembic ``upgrade head``)."""
    if _schema_is_current(engine):
        return
    from alembic import command
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.begin() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        config = alembic_config(connection)
        if current == ScriptDirectory.from_config(config).get_current_head():
            return
        if current is None and inspect(connection).has_table("job"):
            # made by create_all before migrations existed: that schema is revision 0001
            command.stamp(config, "0001")
        command.upgrade(config, "head")


@lru_cache(maxsize=4)
def _engine_for(url: str) -> Engine:
    return make_engine(url)


def get_engine() -> Engine:
    """The engine of the settings in force."""
    return _engine_for(get_settings().db_url)


CHUNK = 500
"""Rows per statement when many jobs are read or updated at once (an ``IN`` list)."""


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def reset_caches() -> None:
    """Forget cached settings and engines (tests switch CIRCUS_HOME between cases)."""
    _engine_for.cache_clear()
    get_settings.cache_clear()
