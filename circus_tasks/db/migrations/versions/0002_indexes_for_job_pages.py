"""indexes for job pages

Each filter of ``list_jobs`` gets an index that ends in the job id, so that a page of the newest
jobs (``ORDER BY id DESC LIMIT n``) is read in index order instead of sorted after a scan. The
single-column indexes they replace are prefixes of the new ones.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 11:00:33.459447
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_plugin_id"))
        batch_op.drop_index(batch_op.f("ix_job_status"))
        batch_op.drop_index(batch_op.f("ix_job_user"))
        batch_op.create_index("ix_job_plugin_id_id", ["plugin_id", "id"], unique=False)
        batch_op.create_index("ix_job_status_id", ["status", "id"], unique=False)
        batch_op.create_index("ix_job_user_id", ["user", "id"], unique=False)

    with op.batch_alter_table("jobseries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobseries_series_uid"))
        batch_op.create_index(
            "ix_jobseries_series_uid_job_id", ["series_uid", "job_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("jobseries", schema=None) as batch_op:
        batch_op.drop_index("ix_jobseries_series_uid_job_id")
        batch_op.create_index(batch_op.f("ix_jobseries_series_uid"), ["series_uid"], unique=False)

    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index("ix_job_user_id")
        batch_op.drop_index("ix_job_status_id")
        batch_op.drop_index("ix_job_plugin_id_id")
        batch_op.create_index(batch_op.f("ix_job_user"), ["user"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_plugin_id"), ["plugin_id"], unique=False)
