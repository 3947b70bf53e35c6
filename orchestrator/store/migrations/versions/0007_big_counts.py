"""64-bit counts: a candidate's `params` (the runner's report, any int64) and `weights_elements` (the
host's count of the weights file), and a corpus check's `params`. SQLite stores any INTEGER in 64
bits; PostgreSQL's INTEGER is 32-bit and refuses larger values.

Revision ID: 0007_big_counts
Revises: 0006_selection_protocol
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_big_counts"
down_revision = "0006_selection_protocol"
branch_labels = None
depends_on = None

COLUMNS = {"candidates": ("params", "weights_elements"), "program_checks": ("params",)}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, existing_type=sa.Integer(), type_=sa.BigInteger(),
                                   existing_nullable=True)


def downgrade() -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, existing_type=sa.BigInteger(), type_=sa.Integer(),
                                   existing_nullable=True)
