"""compressed slice facts

Import stores facts for compressed slices too (those circus_tasks.volume.compressed decodes):
their transfer syntax and Bits Stored, the pixel data offset then pointing at the encapsulated
value. Nullable: NULL for native slices and for images imported before. Images left without
facts by an earlier import (every compressed one until now) forget that import looked at them,
so that importing their folder again gives them facts where they now apply.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("transfer_syntax", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(sa.Column("bits_stored", sa.Integer(), nullable=True))
    op.execute("UPDATE image SET file_size = NULL, file_mtime_ns = NULL WHERE header IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_column("bits_stored")
        batch_op.drop_column("transfer_syntax")
