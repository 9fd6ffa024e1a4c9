"""stored slice facts

What import learns of each slice for pre-processing: the slice's N.json object, its format,
position and pixel data offset, and the stored file's size and modification time. Nullable:
images imported before stay without them and are parsed as before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 13:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_INTEGERS = ("rows", "columns", "bits_allocated", "pixel_representation")
_FLOATS = ("spacing_x", "spacing_y", "position_x", "position_y", "position_z")
_BIG_INTEGERS = ("pixel_offset", "file_size", "file_mtime_ns")


def upgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("header", sa.JSON(), nullable=True))
        for name in _INTEGERS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=True))
        for name in _FLOATS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
        for name in _BIG_INTEGERS:
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        for name in ("header", *_INTEGERS, *_FLOATS, *_BIG_INTEGERS):
            batch_op.drop_column(name)
