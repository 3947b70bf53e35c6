"""The experiment database's tables: the corpus (programs, their MinHash signatures, their validity
checks) and the experiments (cycles, every candidate, every adapter).

The schema is owned by the Alembic revisions in `migrations/versions/`; these are their mapped
classes, all on `Base.metadata` (a test checks that autogenerate finds no difference).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from orchestrator.store.database import Base


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- the corpus --------------------------------------------------------------------------------


class Program(Base):
    """A program read from a seed source (LEMUR). A near-duplicate of a corpus program is stored
    pointing at it (`duplicate_of_id`) and is not part of the corpus."""

    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    source: Mapped[str] = mapped_column(String)  # where it came from: "lemur"
    origin: Mapped[str] = mapped_column(String)  # file location
    code: Mapped[str] = mapped_column(Text)
    code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    cifar10_epoch1_accuracy: Mapped[float | None] = mapped_column(Float)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id"), index=True)
    duplicate_similarity: Mapped[float | None] = mapped_column(Float)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProgramSignature(Base):
    __tablename__ = "program_signatures"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"),
                                            primary_key=True)
    scheme: Mapped[str] = mapped_column(String, primary_key=True)  # MinHasher.key
    signature: Mapped[bytes] = mapped_column(LargeBinary)  # num_perm little-endian uint32
    tokenizer_fallback: Mapped[bool] = mapped_column(Boolean)


class ProgramCheck(Base):
    """A corpus program's outcome under one check protocol (`nasloop corpus check`)."""

    __tablename__ = "program_checks"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True)
    protocol: Mapped[str] = mapped_column(String, primary_key=True)  # CheckProtocol.id
    valid: Mapped[bool] = mapped_column(Boolean)
    failure: Mapped[str | None] = mapped_column(String)
    error: Mapped[str | None] = mapped_column(Text)
    # Counts a container reports (any int64) or the host counts (up to the output cap): 64-bit.
    params: Mapped[int | None] = mapped_column(BigInteger)
    seconds: Mapped[float | None] = mapped_column(Float)
    image: Mapped[str] = mapped_column(String)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# --- experiments -------------------------------------------------------------------------------


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    profile: Mapped[str] = mapped_column(String)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_sha256: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String)
    no_novelty: Mapped[bool] = mapped_column(Boolean, default=False)
    no_threshold: Mapped[bool] = mapped_column(Boolean, default=False)
    no_iteration: Mapped[bool] = mapped_column(Boolean, default=False)
    # The seed corpus, pinned when the experiment is created: program ids and the hash of their code.
    seed_program_ids: Mapped[list[int] | None] = mapped_column(JSON)
    seed_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    cycles: Mapped[list[Cycle]] = relationship(back_populates="experiment", order_by="Cycle.index")


class Cycle(Base):
    __tablename__ = "cycles"
    __table_args__ = (UniqueConstraint("experiment_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)  # 1-based
    phase: Mapped[str] = mapped_column(String)
    # Adapters, as paths relative to the workspace (an absolute path from an older run is kept as is).
    adapter_in: Mapped[str | None] = mapped_column(String)  # adapter sampled from (None: base model)
    adapter_out: Mapped[str | None] = mapped_column(String)  # adapter fine-tuned at the end
    n_generated: Mapped[int | None] = mapped_column(Integer)
    n_valid: Mapped[int | None] = mapped_column(Integer)
    n_selected: Mapped[int | None] = mapped_column(Integer)
    corpus_size: Mapped[int | None] = mapped_column(Integer)  # prompt-code pairs trained on after this cycle
    finetune_loss: Mapped[float | None] = mapped_column(Float)
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    code_version: Mapped[str | None] = mapped_column(String)  # the code that ran this cycle
    selection_protocol: Mapped[str | None] = mapped_column(String)  # how it selected (name:hash)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    experiment: Mapped[Experiment] = relationship(back_populates="cycles")
    candidates: Mapped[list[Candidate]] = relationship(back_populates="cycle", order_by="Candidate.sample_index")


class Candidate(Base):
    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("cycle_id", "sample_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id"), index=True)
    sample_index: Mapped[int] = mapped_column(Integer)
    raw_output: Mapped[str] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    code: Mapped[str | None] = mapped_column(Text)  # None: nothing could be extracted
    code_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    # Evaluation (None until evaluated): "ok" or a failure kind ("extraction" when no code).
    outcome: Mapped[str | None] = mapped_column(String)
    error: Mapped[str | None] = mapped_column(Text)
    # 64-bit counts (migration 0007): the runner's report may hold any int64, and a weights file past
    # 2**31 elements is possible under a larger output cap; PostgreSQL's INTEGER is 32-bit.
    params: Mapped[int | None] = mapped_column(BigInteger)  # counted by the sandbox's runner
    weights_elements: Mapped[int | None] = mapped_column(BigInteger)  # counted by the host in the weights file
    accuracy: Mapped[float | None] = mapped_column(Float)
    holdout_accuracy: Mapped[float | None] = mapped_column(Float)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    predict_seconds: Mapped[float | None] = mapped_column(Float)
    learn_seconds: Mapped[float | None] = mapped_column(Float)
    log_tail: Mapped[str | None] = mapped_column(Text)  # the containers' output, trimmed and escaped
    gpu: Mapped[int | None] = mapped_column(Integer)  # the GPU that evaluated it (None: CPU)
    node: Mapped[str | None] = mapped_column(String)  # the machine that evaluated it
    image: Mapped[str | None] = mapped_column(String)
    protocol: Mapped[str | None] = mapped_column(String)
    artefacts: Mapped[str | None] = mapped_column(String)
    # Novelty (valid candidates, after evaluation, in sample order) and selection.
    nn_jaccard_train: Mapped[float | None] = mapped_column(Float)
    near_dup_text_train: Mapped[bool | None] = mapped_column(Boolean)
    nearest_train: Mapped[str | None] = mapped_column(String)
    nn_jaccard_gen: Mapped[float | None] = mapped_column(Float)
    near_dup_text_gen: Mapped[bool | None] = mapped_column(Boolean)
    nearest_gen: Mapped[str | None] = mapped_column(String)
    rejection_count: Mapped[int | None] = mapped_column(Integer)
    selected: Mapped[bool | None] = mapped_column(Boolean)
    selection_reason: Mapped[str | None] = mapped_column(String)  # why (not) selected

    cycle: Mapped[Cycle] = relationship(back_populates="candidates")

    @property
    def valid(self) -> bool:
        return self.outcome == "ok"


class Adapter(Base):
    __tablename__ = "adapters"
    __table_args__ = (UniqueConstraint("experiment_id", "cycle_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), index=True)
    cycle_index: Mapped[int] = mapped_column(Integer)  # 0: the initial fine-tune on the seed corpus
    path: Mapped[str] = mapped_column(String)
    parent: Mapped[str | None] = mapped_column(String)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
