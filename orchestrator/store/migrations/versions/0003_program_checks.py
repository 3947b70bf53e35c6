"""Validity checks of corpus programs, per check protocol.

Revision ID: 0003_program_checks
Revises: 0002_experiments
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_program_checks"
down_revision = "0002_experiments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "program_checks",
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(), nullable=False),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("failure", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("params", sa.Integer(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("image", sa.String(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE",
                                name=op.f("fk_program_checks_program_id_programs")),
        sa.PrimaryKeyConstraint("program_id", "protocol", name=op.f("pk_program_checks")),
    )


def downgrade() -> None:
    op.drop_table("program_checks")
