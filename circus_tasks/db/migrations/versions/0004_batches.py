"""batches

Batches and their items; jobs gain the batch that made them, the job they re-run, and their
provenance (a digest of the images they used and of their plug-in's folder).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 14:49:06.924775
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("plugin_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("request_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("user", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column(
            "status",
            sa.Enum("RUNNING", "PAUSED", "CANCELLED", "COMPLETED", name="batchstatus"),
            nullable=False,
        ),
        sa.Column("planned_run", sa.Integer(), nullable=False),
        sa.Column("planned_skipped", sa.Integer(), nullable=False),
        sa.Column("planned_refused", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_batch_request_key"), "batch", ["request_key"], unique=False)
    active = sa.text("status IN ('RUNNING', 'PAUSED')")
    op.create_index(
        "ux_batch_active_request",
        "batch",
        ["request_key"],
        unique=True,
        sqlite_where=active,
        postgresql_where=active,
    )
    op.create_table(
        "batch_item",
        sa.Column("series", sa.JSON(), nullable=True),
        sa.Column(
            "outcome", sa.Enum("RUN", "SKIPPED", "REFUSED", name="itemoutcome"), nullable=False
        ),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("related_job_ids", sa.JSON(), nullable=True),
        sa.Column("supersedes_job_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("batch_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batch.id"],
        ),
        sa.PrimaryKeyConstraint("batch_id", "position"),
    )
    # Added in place, not by copying the job table (which other tables reference): SQLite
    # adds a nullable column with its reference in one statement.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE job ADD COLUMN batch_id VARCHAR REFERENCES batch (id)")
    else:
        op.add_column("job", sa.Column("batch_id", sqlmodel.sql.sqltypes.AutoString()))
        op.create_foreign_key("fk_job_batch_id_batch", "job", "batch", ["batch_id"], ["id"])
    op.add_column(
        "job", sa.Column("supersedes_job_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
    )
    # provenance: which images and which plug-in files a job used
    op.add_column("job", sa.Column("input_digest", sqlmodel.sql.sqltypes.AutoString()))
    op.add_column("job", sa.Column("input_count", sa.Integer()))
    op.add_column("job", sa.Column("plugin_digest", sqlmodel.sql.sqltypes.AutoString()))
    op.create_index(op.f("ix_job_batch_id"), "job", ["batch_id"], unique=False)
    # events: every status move is also sent to Prefect; the moves made before were not
    op.add_column("jobevent", sa.Column("emitted_at", sqlmodel.sql.sqltypes.UTCDateTime()))
    op.execute("UPDATE jobevent SET emitted_at = at")
    op.create_index(op.f("ix_jobevent_emitted_at"), "jobevent", ["emitted_at"], unique=False)
    op.create_table(
        "batch_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "from_status",
            sa.Enum("RUNNING", "PAUSED", "CANCELLED", "COMPLETED", name="batchstatus"),
            nullable=True,
        ),
        sa.Column(
            "to_status",
            sa.Enum("RUNNING", "PAUSED", "CANCELLED", "COMPLETED", name="batchstatus"),
            nullable=False,
        ),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("emitted_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_batch_event_batch_id"), "batch_event", ["batch_id"], unique=False)
    op.create_index(op.f("ix_batch_event_emitted_at"), "batch_event", ["emitted_at"], unique=False)


def downgrade() -> None:
    op.drop_table("batch_event")
    op.drop_index(op.f("ix_jobevent_emitted_at"), table_name="jobevent")
    with op.batch_alter_table("jobevent", schema=None) as batch_op:
        batch_op.drop_column("emitted_at")
    op.drop_index(op.f("ix_job_batch_id"), table_name="job")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("plugin_digest")
        batch_op.drop_column("input_count")
        batch_op.drop_column("input_digest")
        batch_op.drop_column("supersedes_job_id")
        batch_op.drop_column("batch_id")

    op.drop_table("batch_item")
    op.drop_table("batch")
    if op.get_bind().dialect.name == "postgresql":
        for name in ("batchstatus", "itemoutcome"):
            sa.Enum(name=name).drop(op.get_bind(), checkfirst=True)
