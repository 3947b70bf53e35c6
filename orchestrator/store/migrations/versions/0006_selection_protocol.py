"""The selection protocol (novelty settings, J_gen's archive, threshold, ablations) per cycle.

Revision ID: 0006_selection_protocol
Revises: 0005_candidate_provenance
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_selection_protocol"
down_revision = "0005_candidate_provenance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cycles") as batch:
        batch.add_column(sa.Column("selection_protocol", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cycles") as batch:
        batch.drop_column("selection_protocol")
