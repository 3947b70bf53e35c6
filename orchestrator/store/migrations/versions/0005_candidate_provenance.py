"""What evaluated a candidate and what it holds: the host's weights count, the containers' log tail,
the GPU and machine; the code version per cycle; an experiment's pinned seed corpus.

Revision ID: 0005_candidate_provenance
Revises: 0004_no_generated_programs
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_candidate_provenance"
down_revision = "0004_no_generated_programs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("candidates") as batch:
        batch.add_column(sa.Column("weights_elements", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("learn_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("log_tail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("gpu", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("node", sa.String(), nullable=True))
    with op.batch_alter_table("cycles") as batch:
        batch.add_column(sa.Column("code_version", sa.String(), nullable=True))
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("seed_program_ids", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("seed_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("seed_sha256")
        batch.drop_column("seed_program_ids")
    with op.batch_alter_table("cycles") as batch:
        batch.drop_column("code_version")
    with op.batch_alter_table("candidates") as batch:
        for column in ("node", "gpu", "log_tail", "learn_seconds", "weights_elements"):
            batch.drop_column(column)
