"""Alembic environment: migrations run on the connection that
:func:`circus_tasks.db.engine.migrate` gives."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from circus_tasks.db import models  # noqa: F401  (registers the tables)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
