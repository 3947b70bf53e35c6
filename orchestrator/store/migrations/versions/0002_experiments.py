"""Experiments, cycles, candidates and adapters.

Revision ID: 0002_experiments
Revises: 0001_corpus
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_experiments"
down_revision = "0001_corpus"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("profile", sa.String(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_sha256", sa.String(64), nullable=False),
        sa.Column("code_version", sa.String(), nullable=False),
        sa.Column("no_novelty", sa.Boolean(), nullable=False),
        sa.Column("no_threshold", sa.Boolean(), nullable=False),
        sa.Column("no_iteration", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("name", name=op.f("uq_experiments_name")),
    )
    op.create_table(
        "cycles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(), nullable=False),
        sa.Column("adapter_in", sa.String(), nullable=True),
        sa.Column("adapter_out", sa.String(), nullable=True),
        sa.Column("n_generated", sa.Integer(), nullable=True),
        sa.Column("n_valid", sa.Integer(), nullable=True),
        sa.Column("n_selected", sa.Integer(), nullable=True),
        sa.Column("corpus_size", sa.Integer(), nullable=True),
        sa.Column("finetune_loss", sa.Float(), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"],
                                name=op.f("fk_cycles_experiment_id_experiments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycles")),
        sa.UniqueConstraint("experiment_id", "index", name=op.f("uq_cycles_experiment_id")),
    )
    op.create_index(op.f("ix_cycles_experiment_id"), "cycles", ["experiment_id"])
    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("raw_output", sa.Text(), nullable=False),
        sa.Column("finish_reason", sa.String(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("code_sha256", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("params", sa.Integer(), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("holdout_accuracy", sa.Float(), nullable=True),
        sa.Column("train_seconds", sa.Float(), nullable=True),
        sa.Column("predict_seconds", sa.Float(), nullable=True),
        sa.Column("image", sa.String(), nullable=True),
        sa.Column("protocol", sa.String(), nullable=True),
        sa.Column("artefacts", sa.String(), nullable=True),
        sa.Column("nn_jaccard_train", sa.Float(), nullable=True),
        sa.Column("near_dup_text_train", sa.Boolean(), nullable=True),
        sa.Column("nearest_train", sa.String(), nullable=True),
        sa.Column("nn_jaccard_gen", sa.Float(), nullable=True),
        sa.Column("near_dup_text_gen", sa.Boolean(), nullable=True),
        sa.Column("nearest_gen", sa.String(), nullable=True),
        sa.Column("rejection_count", sa.Integer(), nullable=True),
        sa.Column("selected", sa.Boolean(), nullable=True),
        sa.Column("selection_reason", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["cycle_id"], ["cycles.id"], name=op.f("fk_candidates_cycle_id_cycles")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidates")),
        sa.UniqueConstraint("cycle_id", "sample_index", name=op.f("uq_candidates_cycle_id")),
    )
    op.create_index(op.f("ix_candidates_cycle_id"), "candidates", ["cycle_id"])
    op.create_index(op.f("ix_candidates_code_sha256"), "candidates", ["code_sha256"])
    op.create_table(
        "adapters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("cycle_index", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("parent", sa.String(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"],
                                name=op.f("fk_adapters_experiment_id_experiments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adapters")),
        sa.UniqueConstraint("experiment_id", "cycle_index", name=op.f("uq_adapters_experiment_id")),
    )
    op.create_index(op.f("ix_adapters_experiment_id"), "adapters", ["experiment_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_adapters_experiment_id"), table_name="adapters")
    op.drop_table("adapters")
    op.drop_index(op.f("ix_candidates_code_sha256"), table_name="candidates")
    op.drop_index(op.f("ix_candidates_cycle_id"), table_name="candidates")
    op.drop_table("candidates")
    op.drop_index(op.f("ix_cycles_experiment_id"), table_name="cycles")
    op.drop_table("cycles")
    op.drop_table("experiments")
