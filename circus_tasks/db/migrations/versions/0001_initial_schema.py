"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 10:56:29.167289
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "job",
        sa.Column("plugin_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("user", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "IN_QUEUE",
                "PROCESSING",
                "FINISHED",
                "CANCELLED",
                "INVALIDATED",
                "FAILED",
                name="jobstatus",
            ),
            nullable=False,
        ),
        sa.Column("stage", sa.Enum("PRE", "MAIN", "POST", name="jobstage"), nullable=True),
        sa.Column("error_message", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("results", sa.JSON(), nullable=True),
        sa.Column("flow_run_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("machine", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("abort_requested_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("invalidated_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("invalidated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("invalidation_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
        sa.Column("signature", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("heartbeat_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_flow_run_id"), ["flow_run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_plugin_id"), ["plugin_id"], unique=False)
        batch_op.create_index("ix_job_plugin_signature", ["plugin_id", "signature"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_user"), ["user"], unique=False)

    op.create_table(
        "plugin",
        sa.Column("plugin_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=True),
        sa.Column("registered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("plugin_id"),
    )
    with op.batch_alter_table("plugin", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plugin_name"), ["name"], unique=False)

    op.create_table(
        "series",
        sa.Column("series_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("study_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("patient_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("modality", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("series_date", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("image_count", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("pixel_spacing_row", sa.Float(), nullable=True),
        sa.Column("pixel_spacing_col", sa.Float(), nullable=True),
        sa.Column("orientation", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("series_uid"),
    )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_series_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "image",
        sa.Column("series_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("sop_instance_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=False),
        sa.Column("z", sa.Float(), nullable=True),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_uid"],
            ["series.series_uid"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sop_instance_uid"),
    )
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_series_uid"), ["series_uid"], unique=False)

    op.create_table(
        "jobevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "from_status",
            sa.Enum(
                "IN_QUEUE",
                "PROCESSING",
                "FINISHED",
                "CANCELLED",
                "INVALIDATED",
                "FAILED",
                name="jobstatus",
            ),
            nullable=True,
        ),
        sa.Column(
            "to_status",
            sa.Enum(
                "IN_QUEUE",
                "PROCESSING",
                "FINISHED",
                "CANCELLED",
                "INVALIDATED",
                "FAILED",
                name="jobstatus",
            ),
            nullable=False,
        ),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("prefect_state", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["job.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobevent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobevent_job_id"), ["job_id"], unique=False)

    op.create_table(
        "jobseries",
        sa.Column("series_uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["job.id"],
        ),
        sa.PrimaryKeyConstraint("job_id", "position"),
    )
    with op.batch_alter_table("jobseries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobseries_series_uid"), ["series_uid"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("jobseries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobseries_series_uid"))

    op.drop_table("jobseries")
    with op.batch_alter_table("jobevent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobevent_job_id"))

    op.drop_table("jobevent")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_series_uid"))

    op.drop_table("image")
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_series_patient_id"))

    op.drop_table("series")
    with op.batch_alter_table("plugin", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plugin_name"))

    op.drop_table("plugin")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_user"))
        batch_op.drop_index(batch_op.f("ix_job_status"))
        batch_op.drop_index("ix_job_plugin_signature")
        batch_op.drop_index(batch_op.f("ix_job_plugin_id"))
        batch_op.drop_index(batch_op.f("ix_job_flow_run_id"))

    op.drop_table("job")
