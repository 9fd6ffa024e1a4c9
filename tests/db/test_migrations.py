"""The database: migrations build exactly the schema the models declare."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

from circus_tasks.db.engine import SCHEMA_REVISION, alembic_config, make_engine


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


def test_the_combined_filter_indexes_come_to_a_database_with_jobs(tmp_path: Path) -> None:
    """0005 on a database of 0004 that holds jobs: the indexes are made, the rows stay, and
    the pages that need them read them; downgrading removes them again."""
    url = f"sqlite:///{tmp_path / 'previous.db'}"
    previous = create_engine(url)
    with previous.begin() as connection:
        command.upgrade(alembic_config(connection), "0004")
        for n, (status, plugin, user) in enumerate(
            [("FINISHED", "a@1", "ann"), ("FAILED", "a@1", "bob"), ("FAILED", "b@1", "ann")]
        ):
            connection.execute(
                text(
                    'INSERT INTO job (id, plugin_id, "user", priority, status, signature, '
                    "created_at, updated_at) VALUES (:id, :plugin, :user, 0, :status, 'S', "
                    "'2026-12-01 10:00:00', '2026-12-01 10:00:00')"
                ),
                {"id": f"01job{n}", "plugin": plugin, "user": user, "status": status},
            )
    previous.dispose()

    engine = make_engine(url)
    indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("job")}
    assert indexes["ix_job_status_plugin_id_id"] == ["status", "plugin_id", "id"]
    assert indexes["ix_job_status_user_id"] == ["status", "user", "id"]
    assert indexes["ix_job_plugin_id_user_id"] == ["plugin_id", "user", "id"]
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == SCHEMA_REVISION
        failed_of_a = connection.execute(
            text("SELECT id FROM job WHERE status = 'FAILED' AND plugin_id = 'a@1'")
        ).all()
        plan = connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT id FROM job WHERE status = 'FAILED' AND plugin_id = 'a@1' "
            "ORDER BY id DESC"
        ).all()
    assert failed_of_a == [("01job1",)]
    assert "ix_job_status_plugin_id_id" in str(plan[0][3])

    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0004")
    names = {i["name"] for i in inspect(engine).get_indexes("job")}
    assert not names & {"ix_job_status_plugin_id_id", "ix_job_status_user_id"}
    assert "ix_job_status_id" in names
