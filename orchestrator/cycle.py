"""The loop: generate -> evaluate -> select -> fine-tune, one cycle after another.

Every phase ends by recording its results and the next phase in the database, in one transaction,
so a run killed at any point resumes where it was: samples already generated are kept (the
generator resumes its own output file), candidates already evaluated are not evaluated again, and
an adapter counts only once its directory is complete (written aside, then renamed) and recorded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import docker
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session

from llm import extract_code
from llm.jobs import ADAPTER_METADATA_FILE, read_samples
from llm.prompt import chat_example, corpus_tasks
from orchestrator import images as img
from orchestrator.config import ExperimentConfig
from orchestrator.containers import InfraError, sweep_orphans
from orchestrator.corpus import Program, chat_examples, load_index
from orchestrator.corpus_check import ChecksMissing, prompt_check_protocol, valid_program_ids
from orchestrator.data import ensure_prepared
from orchestrator.db import Database
from orchestrator.evaluate import EvaluationResult, Evaluator, evaluate_many, scoring_set
from orchestrator.experiments import Adapter, Candidate, Cycle, Experiment, utcnow
from orchestrator.llm_runner import LLMRunError, finetune_job, generate_job, run_in_container
from orchestrator.novelty import NoveltyIndex
from orchestrator.selection import Ablations, Evaluated, select

LOCK_FILE = "nasloop.lock"


class CycleError(RuntimeError):
    """The loop cannot go on (infrastructure, a failed LLM job, a bad state); it stays resumable."""


@contextmanager
def workspace_lock(workdir: Path) -> Iterator[None]:
    """One `nasloop cycle` per workspace: a second one refuses instead of corrupting the first."""
    workdir.mkdir(parents=True, exist_ok=True)
    handle: TextIO = (workdir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise CycleError(f"another nasloop cycle is running on {workdir} (it holds {LOCK_FILE}); "
                         "wait for it to finish or stop it first") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def code_version() -> str:
    """The package version and the git commit of the sources, when they are a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    from importlib.metadata import version

    return f"nasloop {version('nasloop')}" + (f" ({commit})" if commit else "")


def open_experiment(session: Session, name: str, profile: str, config: ExperimentConfig,
                    ablations: Ablations) -> Experiment:
    """The experiment `name`, created on first use; a later run must use the same configuration."""
    experiment = session.scalar(sql_select(Experiment).where(Experiment.name == name))
    if experiment is None:
        experiment = Experiment(name=name, profile=profile, config=config.raw, config_sha256=config.sha256,
                                code_version=code_version(), no_novelty=ablations.no_novelty,
                                no_threshold=ablations.no_threshold, no_iteration=ablations.no_iteration)
        session.add(experiment)
        session.flush()
        return experiment
    recorded = Ablations(experiment.no_novelty, experiment.no_threshold, experiment.no_iteration)
    if experiment.config_sha256 != config.sha256 or recorded != ablations:
        raise CycleError(f"experiment {name!r} exists with another configuration ({experiment.profile}, "
                         f"{recorded.label}); give this run its own --experiment name")
    return experiment


@dataclass
class CycleRunner:
    workdir: Path
    db: Database
    config: ExperimentConfig
    experiment_id: int
    ablations: Ablations
    console: Console

    @property
    def experiment_dir(self) -> Path:
        with self.db.transaction() as session:
            name = session.get(Experiment, self.experiment_id).name  # type: ignore[union-attr]
        return self.workdir / "experiments" / name

    # --- the loop ------------------------------------------------------------------------------

    def run(self, cycles: int) -> None:
        client = img.docker_client()
        self.sandbox_image = img.resolve(client, "sandbox")
        self.llm_image = img.resolve(client, "llm")
        self.client = client
        removed = sweep_orphans(client)
        if removed:
            self.console.print(f"removed {removed} container(s) left behind by an interrupted run")
        with self.db.transaction() as session:
            if not session.scalar(sql_select(Program.id).where(Program.duplicate_of_id.is_(None)).limit(1)):
                raise CycleError("the corpus is empty: run `nasloop corpus import --lemur PATH` first")
            self.seed_ids = self._seed_programs(session)
        done = 0
        while done < cycles:
            cycle_id = self._current_cycle()
            self._run_cycle(cycle_id)
            done += 1

    def _current_cycle(self) -> int:
        """The unfinished cycle, or a new one after the last finished one."""
        with self.db.transaction() as session:
            last = session.scalar(sql_select(Cycle).where(Cycle.experiment_id == self.experiment_id)
                                  .order_by(Cycle.index.desc()).limit(1))
            if last is not None and last.phase != "done":
                return last.id
            index = 1 if last is None else last.index + 1
            phase = "initial_finetune" if index == 1 else "generate"
            cycle = Cycle(experiment_id=self.experiment_id, index=index, phase=phase, timings={},
                          adapter_in=None if last is None else last.adapter_out)
            session.add(cycle)
            session.flush()
            return cycle.id

    def _run_cycle(self, cycle_id: int) -> None:
        steps = {"initial_finetune": self._initial_finetune, "generate": self._generate,
                 "evaluate": self._evaluate, "select": self._select, "finetune": self._finetune}
        while True:
            with self.db.transaction() as session:
                cycle = session.get(Cycle, cycle_id)
                assert cycle is not None
                phase, index = cycle.phase, cycle.index
            if phase == "done":
                self._summary(cycle_id)
                return
            self.console.print(f"[bold]cycle {index}[/bold]: {phase.replace('_', ' ')}")
            started = time.monotonic()
            next_phase = steps[phase](cycle_id, index)
            with self.db.transaction() as session:
                cycle = session.get(Cycle, cycle_id)
                assert cycle is not None
                cycle.timings = {**cycle.timings, phase: round(time.monotonic() - started, 2)}
                cycle.phase = next_phase
                if next_phase == "done":
                    cycle.finished_at = utcnow()

    # --- phases --------------------------------------------------------------------------------

    def _initial_finetune(self, cycle_id: int, index: int) -> str:
        """Adapter 0: a fine-tune on the initial corpus, which cycle 1 samples from (and every cycle
        under --no-iteration)."""
        adapter = self._train_adapter(0, parent=None)
        with self.db.transaction() as session:
            cycle = session.get(Cycle, cycle_id)
            assert cycle is not None
            cycle.adapter_in = adapter
        return "generate"

    def _generate(self, cycle_id: int, index: int) -> str:
        with self.db.transaction() as session:
            cycle = session.get(Cycle, cycle_id)
            assert cycle is not None
            adapter = cycle.adapter_in
        out = self.experiment_dir / f"cycle-{index}" / "samples"
        out.mkdir(parents=True, exist_ok=True)
        job = generate_job(self.config, self.workdir, out, adapter=Path(adapter) if adapter else None)
        self.console.print(f"  sampling {job.num_samples} programs from "
                           f"{'adapter ' + Path(adapter).name if adapter else 'the base model'}")
        self._llm(job)
        samples = read_samples(out)
        if len(samples) < job.num_samples:
            raise CycleError(f"the generator wrote {len(samples)} of {job.num_samples} samples to {out}")
        with self.db.transaction() as session:
            known = set(session.scalars(sql_select(Candidate.sample_index).where(Candidate.cycle_id == cycle_id)))
            for sample in samples[:job.num_samples]:
                if sample["index"] in known:
                    continue
                code = extract_code(sample["text"])
                session.add(Candidate(
                    cycle_id=cycle_id, sample_index=sample["index"], raw_output=sample["text"],
                    finish_reason=sample.get("finish_reason"), completion_tokens=sample.get("completion_tokens"),
                    code=code, code_sha256=hashlib.sha256(code.encode()).hexdigest() if code else None,
                    outcome=None if code else "extraction",
                    error=None if code else "no program could be extracted from the sample"))
            cycle = session.get(Cycle, cycle_id)
            assert cycle is not None
            cycle.n_generated = job.num_samples
        self.console.print(f"  stored {job.num_samples} samples")
        return "evaluate"

    def _evaluate(self, cycle_id: int, index: int) -> str:
        with self.db.transaction() as session:
            pending = [(c.id, c.sample_index, c.code) for c in session.scalars(
                sql_select(Candidate).where(Candidate.cycle_id == cycle_id, Candidate.outcome.is_(None))
                .order_by(Candidate.sample_index))]
        data = self.config.data
        prepared = ensure_prepared(data.dataset, self.workdir, self.workdir / "data", data.holdout_fraction, data.seed)
        ids = {f"sample-{sample}": candidate_id for candidate_id, sample, _ in pending}
        stats = {"done": 0, "valid": 0, "accuracy": 0.0}
        with scoring_set(prepared, self.workdir / "scratch") as scoring, self._progress() as progress:
            task = progress.add_task(f"  evaluating on {data.dataset}", total=len(pending), extra="")
            evaluator = Evaluator(self.client, self.sandbox_image, prepared, self.config.evaluation,
                                  self.experiment_dir / f"cycle-{index}" / "artefacts", scoring)

            def record(result: EvaluationResult) -> None:
                with self.db.transaction() as session:
                    candidate = session.get(Candidate, ids[result.path])
                    assert candidate is not None
                    _store_evaluation(candidate, result)
                stats["done"] += 1
                if result.valid:
                    stats["valid"] += 1
                    stats["accuracy"] += result.accuracy or 0.0
                mean = stats["accuracy"] / stats["valid"] if stats["valid"] else 0.0
                progress.update(task, advance=1, extra=f"valid {stats['valid']}/{stats['done']}, "
                                                       f"mean accuracy {100 * mean:.1f}%")

            try:
                evaluate_many(evaluator, [(f"sample-{s}", code.encode()) for _, s, code in pending],
                              self.config.evaluation.jobs, on_result=record)
            except InfraError as exc:
                raise CycleError(f"infrastructure failure during evaluation: {exc}") from None
        return "select"

    def _select(self, cycle_id: int, index: int) -> str:
        with self.db.transaction() as session:
            corpus = self._corpus_index(session, before_cycle=index)
            candidates = list(session.scalars(sql_select(Candidate).where(Candidate.cycle_id == cycle_id)
                                              .order_by(Candidate.sample_index)))
            evaluated = [Evaluated(f"cycle-{index}/sample-{c.sample_index}", c.valid, c.accuracy, c.code)
                         for c in candidates]
            decisions = select(evaluated, corpus, self.config.novelty.tau,
                               self.config.selection.accuracy_threshold, self.ablations)
            for candidate, decision in zip(candidates, decisions):
                candidate.selected = decision.selected
                candidate.selection_reason = decision.reason
                if decision.novelty is not None:
                    n = decision.novelty
                    candidate.nn_jaccard_train, candidate.near_dup_text_train = n.nn_jaccard_train, n.near_dup_text_train
                    candidate.nearest_train, candidate.nn_jaccard_gen = n.nearest_train, n.nn_jaccard_gen
                    candidate.near_dup_text_gen, candidate.nearest_gen = n.near_dup_text_gen, n.nearest_gen
                    candidate.rejection_count = n.rejection_count
            cycle = session.get(Cycle, cycle_id)
            assert cycle is not None
            cycle.n_valid = sum(c.valid for c in candidates)
            cycle.n_selected = sum(d.selected for d in decisions)
            cycle.corpus_size = len(corpus) + cycle.n_selected
            if self.ablations.no_iteration:
                cycle.adapter_out = cycle.adapter_in  # the fixed adapter of the initial fine-tune
        return "done" if self.ablations.no_iteration else "finetune"

    def _finetune(self, cycle_id: int, index: int) -> str:
        with self.db.transaction() as session:
            cycle = session.get(Cycle, cycle_id)
            assert cycle is not None
            parent = cycle.adapter_in
        adapter = self._train_adapter(index, parent=parent)
        with self.db.transaction() as session:
            cycle = session.get(Cycle, cycle_id)
            assert cycle is not None
            cycle.adapter_out = adapter
            meta = session.scalar(sql_select(Adapter.meta).where(Adapter.experiment_id == self.experiment_id,
                                                                  Adapter.cycle_index == index))
            cycle.finetune_loss = (meta or {}).get("train_loss")
        return "done"

    # --- helpers -------------------------------------------------------------------------------

    def _train_adapter(self, index: int, parent: str | None) -> str:
        """Fine-tune on the experiment's corpus as it stands after cycle `index`; returns the adapter
        path. An adapter already complete on disk (a run killed after writing it) is recorded as is."""
        out = self.experiment_dir / "adapters" / f"cycle-{index}"
        with self.db.transaction() as session:
            known = session.scalar(sql_select(Adapter).where(Adapter.experiment_id == self.experiment_id,
                                                              Adapter.cycle_index == index))
            if known is not None:
                return known.path
        if not (out / ADAPTER_METADATA_FILE).is_file():
            shutil.rmtree(out, ignore_errors=True)  # never reuse a half-written adapter
            shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
            corpus_file = self.experiment_dir / f"cycle-{index}" / "corpus.jsonl"
            examples = self._export_corpus(corpus_file, after_cycle=index)
            job = finetune_job(self.config, self.workdir, corpus_file, out,
                               previous_adapter=Path(parent) if parent else None)
            self.console.print(f"  fine-tuning on {examples} chat examples"
                               + (f" from adapter {Path(parent).name}" if job.parent_adapter else " from the base model"))
            self._llm(job)
        meta = json.loads((out / ADAPTER_METADATA_FILE).read_text())
        with self.db.transaction() as session:
            session.add(Adapter(experiment_id=self.experiment_id, cycle_index=index, path=str(out),
                                parent=parent, meta=meta))
        loss = meta.get("train_loss")
        self.console.print(f"  adapter {out.name}: loss {loss}, {meta.get('steps')} steps")
        return str(out)

    def _llm(self, job: Any) -> None:
        try:
            run_in_container(job, self.workdir, self.llm_image.id, gpu=self.config.evaluation.device == "cuda",
                             client=self.client)
        except LLMRunError as exc:
            raise CycleError(str(exc)) from None
        except docker.errors.DockerException as exc:
            raise CycleError(f"infrastructure failure running the LLM container: {exc}") from None

    def _seed_programs(self, session: Session) -> set[int] | None:
        """The seed corpus's program ids when the profile seeds with the valid programs only, else
        None (every corpus program)."""
        if self.config.cycle.seed_corpus == "all":
            return None
        try:
            return valid_program_ids(session, prompt_check_protocol(self.config.evaluation).id)
        except ChecksMissing as exc:
            raise CycleError(f'cycle.seed_corpus = "valid", but {exc}') from None

    def _selected_code(self, session: Session, up_to_cycle: int) -> list[tuple[str, str]]:
        rows = session.execute(
            sql_select(Cycle.index, Candidate.sample_index, Candidate.code)
            .join(Cycle, Candidate.cycle_id == Cycle.id)
            .where(Cycle.experiment_id == self.experiment_id, Cycle.index <= up_to_cycle,
                   Candidate.selected.is_(True))
            .order_by(Cycle.index, Candidate.sample_index))
        return [(f"cycle-{c}/sample-{s}", code) for c, s, code in rows]

    def _corpus_index(self, session: Session, before_cycle: int) -> NoveltyIndex:
        """The seed corpus plus this experiment's programs selected before `before_cycle`."""
        index = load_index(session, self.config.novelty, program_ids=self.seed_ids)
        for name, code in self._selected_code(session, before_cycle - 1):
            index.add(name, index.hasher.signature(code).values)
        return index

    def _export_corpus(self, path: Path, after_cycle: int) -> int:
        """The fine-tuning set: seed corpus plus selected programs, two chat examples each."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        budget = self.config.evaluation.param_budget
        count = 0
        with self.db.transaction() as session, partial.open("w", encoding="utf-8") as fh:
            for example in chat_examples(session, budget, self.seed_ids):
                fh.write(json.dumps(example, ensure_ascii=False) + "\n")
                count += 1
            for _, code in self._selected_code(session, after_cycle):
                for task in corpus_tasks(budget):
                    fh.write(json.dumps({"messages": chat_example(task, code)}, ensure_ascii=False) + "\n")
                    count += 1
        partial.replace(path)
        return count

    def _progress(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), console=self.console)

    def _summary(self, cycle_id: int) -> None:
        with self.db.transaction() as session:
            cycle = session.get(Cycle, cycle_id)
            assert cycle is not None
            accuracies = [c.accuracy for c in cycle.candidates if c.valid and c.accuracy is not None]
            threshold = self.config.selection.accuracy_threshold
            n, valid = cycle.n_generated or 0, cycle.n_valid or 0
            best = f"{100 * max(accuracies):.2f}%" if accuracies else "-"
            mean = f"{100 * sum(accuracies) / len(accuracies):.2f}%" if accuracies else "-"
            share = (f"{100 * sum(a >= threshold for a in accuracies) / len(accuracies):.2f}%"
                     if accuracies else "-")
            valid_rate = f"{100 * valid / n:.1f}%" if n else "-"
            self.console.print(
                f"cycle {cycle.index}: generated {n}, valid {valid} ({valid_rate}), best {best}, mean {mean}, "
                f">= {100 * threshold:.0f}%: {share}, selected {cycle.n_selected}, corpus {cycle.corpus_size}"
                + (f", fine-tune loss {cycle.finetune_loss}" if cycle.finetune_loss is not None else ""))


def _store_evaluation(candidate: Candidate, result: EvaluationResult) -> None:
    candidate.outcome = "ok" if result.valid else result.failure
    candidate.error = result.error
    candidate.params = result.params
    candidate.accuracy = result.accuracy
    candidate.holdout_accuracy = result.holdout_accuracy
    candidate.train_seconds = result.train_seconds
    candidate.predict_seconds = result.predict_seconds
    candidate.image = result.image
    candidate.protocol = result.protocol
    candidate.artefacts = result.artefacts


EXPORT_FIELDS = ("experiment", "cycle", "candidate", "valid", "failure", "accuracy", "holdout_accuracy", "params",
                 "nn_jaccard_train", "near_dup_text_train", "nn_jaccard_gen", "near_dup_text_gen",
                 "rejection_count", "selected", "code_sha256")


def export_rows(session: Session, experiments: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """One record per candidate in the paper's per-candidate log format (plus provenance fields)."""
    query = (sql_select(Candidate, Cycle, Experiment).join(Cycle, Candidate.cycle_id == Cycle.id)
             .join(Experiment, Cycle.experiment_id == Experiment.id)
             .order_by(Experiment.name, Cycle.index, Candidate.sample_index))
    if experiments:
        query = query.where(Experiment.name.in_(experiments))
    for candidate, cycle, experiment in session.execute(query):
        yield {
            "experiment": experiment.name, "cycle": cycle.index, "candidate": candidate.sample_index,
            "valid": candidate.valid, "failure": None if candidate.valid else candidate.outcome,
            "accuracy": candidate.accuracy, "holdout_accuracy": candidate.holdout_accuracy,
            "params": candidate.params, "nn_jaccard_train": candidate.nn_jaccard_train,
            "near_dup_text_train": candidate.near_dup_text_train, "nn_jaccard_gen": candidate.nn_jaccard_gen,
            "near_dup_text_gen": candidate.near_dup_text_gen, "rejection_count": candidate.rejection_count,
            "selected": bool(candidate.selected), "code_sha256": candidate.code_sha256,
            "nearest_train": candidate.nearest_train, "selection_reason": candidate.selection_reason,
            "corpus_size": cycle.corpus_size, "protocol": candidate.protocol, "image": candidate.image,
        }
