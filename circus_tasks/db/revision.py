"""The schema revision the code expects, importable without SQLAlchemy or Alembic.

The lean ``circus jobs`` path (:func:`circus_tasks.jobs.pages.page_from_sqlite`) reads the
database with :mod:`sqlite3` only when ``alembic_version`` holds this revision; any other
database goes through SQLAlchemy, which migrates it first (:func:`circus_tasks.db.engine.migrate`).
"""

from __future__ import annotations

SCHEMA_REVISION = "0006"
"""The newest migration; ``tests/db/test_migrations.py`` checks that it is Alembic's head."""
