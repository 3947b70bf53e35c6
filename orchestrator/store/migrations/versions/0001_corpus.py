"""Corpus programs and their stored MinHash signatures.

Revision ID: 0001_corpus
Revises:
Create Date: 2025-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_corpus"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "programs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("cifar10_epoch1_accuracy", sa.Float(), nullable=True),
        sa.Column("cycle", sa.Integer(), nullable=True),
        sa.Column("duplicate_of_id", sa.Integer(), nullable=True),
        sa.Column("duplicate_similarity", sa.Float(), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["duplicate_of_id"], ["programs.id"],
                                name=op.f("fk_programs_duplicate_of_id_programs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programs")),
        sa.UniqueConstraint("code_sha256", name=op.f("uq_programs_code_sha256")),
        sa.UniqueConstraint("name", name=op.f("uq_programs_name")),
    )
    op.create_index(op.f("ix_programs_duplicate_of_id"), "programs", ["duplicate_of_id"])
    op.create_table(
        "program_signatures",
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("scheme", sa.String(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("tokenizer_fallback", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="CASCADE",
                                name=op.f("fk_program_signatures_program_id_programs")),
        sa.PrimaryKeyConstraint("program_id", "scheme", name=op.f("pk_program_signatures")),
    )


def downgrade() -> None:
    op.drop_table("program_signatures")
    op.drop_index(op.f("ix_programs_duplicate_of_id"), table_name="programs")
    op.drop_table("programs")
