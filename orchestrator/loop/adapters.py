"""The adapters of an experiment: each fine-tuned in the LLM container on the experiment's training
set, written aside and renamed when complete, then recorded; a recorded or complete adapter is never
trained again."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from rich.console import Console
from sqlalchemy import select

from contracts.llm import ADAPTER_METADATA_FILE, FinetuneJob, GenerateJob, read_adapter_metadata
from orchestrator.config import ExperimentConfig
from orchestrator.generator.jobs import LLMRunError, finetune_job
from orchestrator.generator.runner import container_mounts
from orchestrator.generator.service import LLMService, start_container_service
from orchestrator.loop.errors import CycleError
from orchestrator.loop.training_set import write_training_set
from orchestrator.store.database import Database
from orchestrator.store.schema import Adapter
from orchestrator.untrusted import printable


@dataclass
class LLMJobs:
    """Runs the loop's LLM jobs in one LLM service container (`generator.service`), started by the
    first job and kept for the whole run (`close()` stops it), showing each job's progress as it
    happens and keeping its whole output in a log file; a failure is a CycleError (the cycle stays
    resumable), and a service that died is started afresh by the next job."""

    client: docker.DockerClient
    image_id: str
    workdir: Path
    gpus: list[int] | str | None
    console: Console | None = None
    service: LLMService | None = None

    def run(self, job: GenerateJob | FinetuneJob, log_file: Path) -> None:
        progress = ProgressLines(self.console)
        try:
            if self.service is None:
                self.service = start_container_service(self.client, self.image_id, self.workdir,
                                                       container_mounts(job, self.workdir), gpus=self.gpus)
            self.service.run(job, log_file=log_file, on_line=progress.show)
        except LLMRunError as exc:
            self._drop_dead_service()
            raise CycleError(str(exc)) from None
        except docker.errors.DockerException as exc:
            self._drop_dead_service()
            raise CycleError(f"infrastructure failure running the LLM service container: {exc}") from None

    def _drop_dead_service(self) -> None:
        if self.service is not None and self.service.process.exit_code() is not None:
            self.service.kill()
            self.service = None

    def close(self) -> None:
        if self.service is not None:
            self.service.close()
            self.service = None


class ProgressLines:
    """Which lines of an LLM job's output the cycle's display shows: nasloop's own progress lines,
    and a download's progress bar at most every few seconds."""

    def __init__(self, console: Console | None, every_s: float = 5.0) -> None:
        self.console, self.every_s, self.last = console, every_s, 0.0

    def show(self, line: str) -> None:
        if self.console is None:
            return
        text = printable(line.strip(), 300, keep_lines=False)
        if text.startswith(("generate:", "finetune:", "model:")):
            self.console.print(f"    {text}", markup=False, highlight=False)
        elif "%|" in text and time.monotonic() - self.last > self.every_s:
            self.last = time.monotonic()
            self.console.print(f"    {text}", markup=False, highlight=False)


@dataclass
class AdapterTrainer:
    db: Database
    config: ExperimentConfig
    experiment_id: int
    experiment_dir: Path
    seed_ids: set[int] | None
    llm: LLMJobs
    console: Console

    def train(self, index: int, parent: str | None) -> str:
        """The adapter after cycle `index` (0: the initial fine-tune), fine-tuned on the training set
        as it stands then; returns its path relative to the workspace (`parent` is one too). An
        adapter already complete on disk (a run killed after writing it) is recorded as it is."""
        out = self.experiment_dir / "adapters" / f"cycle-{index}"
        with self.db.transaction() as session:
            known = session.scalar(select(Adapter).where(Adapter.experiment_id == self.experiment_id,
                                                         Adapter.cycle_index == index))
            if known is not None:
                return known.path
        if not (out / ADAPTER_METADATA_FILE).is_file():
            shutil.rmtree(out, ignore_errors=True)  # never reuse a half-written adapter
            shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
            corpus_file = self.experiment_dir / f"cycle-{index}" / "corpus.jsonl"
            with self.db.transaction() as session:
                examples = write_training_set(session, corpus_file, self.config, self.seed_ids, self.experiment_id,
                                              after_cycle=index)
            job = finetune_job(self.config, self.llm.workdir, corpus_file, out,
                               previous_adapter=workspace_path(self.llm.workdir, parent) if parent else None)
            self.console.print(f"  fine-tuning on {examples} chat examples"
                               + (f" from adapter {Path(parent).name}" if job.parent_adapter else " from the base model"))
            self.llm.run(job, corpus_file.with_name("finetune.log"))
        try:
            meta = read_adapter_metadata(out)
        except ValueError as exc:
            raise CycleError(str(exc)) from None
        path = relative_path(self.llm.workdir, out)
        with self.db.transaction() as session:
            session.add(Adapter(experiment_id=self.experiment_id, cycle_index=index, path=path,
                                parent=parent, meta=meta.as_dict()))
        self.console.print(f"  adapter {out.name}: loss {meta.train_loss}, {meta.steps} steps")
        return path


def relative_path(workdir: Path, path: Path) -> str:
    """`path` as the database stores it: relative to the workspace, which may move."""
    return Path(path).resolve().relative_to(Path(workdir).resolve()).as_posix()


def workspace_path(workdir: Path, stored: str) -> Path:
    """A stored path made absolute (one stored absolute by an older nasloop is taken as it is)."""
    path = Path(stored)
    return path if path.is_absolute() else Path(workdir).resolve() / path
