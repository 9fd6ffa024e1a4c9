"""indexes for combined filters

``list_jobs`` (and ``circus jobs``) combine filters: the failed jobs of a plug-in, a user's
queued jobs, a user's jobs of one plug-in. With an index per filter only, such a page walks
one filter's index and reads every job in it until it has found a page that also matches the
other: with 1,000,000 jobs, tens of thousands of rows for a rare pair. These indexes give the
jobs of each pair of status, plug-in and user newest first, straight from the index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_job_status_plugin_id_id", "job", ["status", "plugin_id", "id"])
    op.create_index("ix_job_status_user_id", "job", ["status", "user", "id"])
    op.create_index("ix_job_plugin_id_user_id", "job", ["plugin_id", "user", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_plugin_id_user_id", table_name="job")
    op.drop_index("ix_job_status_user_id", table_name="job")
    op.drop_index("ix_job_status_plugin_id_id", table_name="job")
