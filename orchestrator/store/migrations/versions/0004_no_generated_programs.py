"""Programs come from seed sources only: selected generations live in `candidates` per experiment.

Revision ID: 0004_no_generated_programs
Revises: 0003_program_checks
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_no_generated_programs"
down_revision = "0003_program_checks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("programs") as batch:
        batch.drop_column("cycle")


def downgrade() -> None:
    with op.batch_alter_table("programs") as batch:
        batch.add_column(sa.Column("cycle", sa.Integer(), nullable=True))
