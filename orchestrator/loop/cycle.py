"""The loop: generate -> evaluate -> select -> fine-tune, one cycle after another.

Every phase ends by recording its results and the next phase in the database, in one transaction,
so a run killed at any point resumes where it was: samples already generated are kept (the
generator resumes its own output file), candidates already evaluated are not evaluated again, and
an adapter counts only once its directory is complete (written aside, then renamed) and recorded.
This module holds the phase machine only; each phase's work lives in the modules it calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from sqlalchemy import func, select

from contracts.llm import read_samples
from orchestrator.config import Ablations, ExperimentConfig
from orchestrator.containers.client import InfraError
from orchestrator.containers.images import Docker
from orchestrator.data import ensure_prepared
from orchestrator.evaluation.evaluator import Evaluator
from orchestrator.evaluation.result import EvaluationResult
from orchestrator.evaluation.run import Placement, evaluate_many
from orchestrator.evaluation.scoring import scoring_set
from orchestrator.executors.base import Executor
from orchestrator.generator.jobs import generate_job
from orchestrator.loop import display
from orchestrator.loop.adapters import AdapterTrainer, LLMJobs, workspace_path
from orchestrator.loop.candidates import pending_submissions, store_decision, store_evaluation, store_samples
from orchestrator.loop.errors import CycleError
from orchestrator.loop.experiment import code_version
from orchestrator.loop.selection import Evaluated, select_candidates, selection_protocol
from orchestrator.loop.training_set import corpus_index, selected_code, training_pairs
from orchestrator.store.database import Database
from orchestrator.store.names import candidate_name
from orchestrator.store.schema import Adapter, Candidate, Cycle, Experiment, utcnow

# A cycle's phases in order; cycle 1 starts with the initial fine-tune (adapter 0).
PHASES = ("initial_finetune", "generate", "evaluate", "select", "finetune", "done")


@dataclass
class CycleRunner:
    workdir: Path
    db: Database
    config: ExperimentConfig
    experiment_id: int
    ablations: Ablations
    seed_ids: set[int] | None
    docker: Docker
    console: Console
    placement: Placement = Placement()
    executor: Executor | None = None  # where candidates' containers run (None: this machine's Docker daemon)

    def __post_init__(self) -> None:
        with self.db.transaction() as session:
            name = session.get(Experiment, self.experiment_id).name  # type: ignore[union-attr]
        self.experiment_dir = self.workdir / "experiments" / name
        self.code_version = code_version()
        self.selection = selection_protocol(self.config, self.ablations)
        self.llm = LLMJobs(self.docker.client, self.docker.images["llm"].id, self.workdir,
                           gpus=self.config.generation.gpus if self.config.evaluation.device == "cuda" else None,
                           console=self.console)
        self.adapters = AdapterTrainer(self.db, self.config, self.experiment_id, self.experiment_dir,
                                       self.seed_ids, self.llm, self.console)

    def close(self) -> None:
        """Stop the LLM service (started by the run's first LLM job, kept across its cycles)."""
        self.llm.close()

    def run(self, cycles: int) -> None:
        """The next `cycles` cycles (a resumed unfinished cycle is one of them)."""
        for _ in range(cycles):
            self.run_cycle(self._current_cycle())

    def run_until(self, total: int) -> None:
        """Cycles until the experiment has `total` completed ones (nothing if it has them already)."""
        while self.completed() < total:
            self.run_cycle(self._current_cycle())

    def completed(self) -> int:
        with self.db.transaction() as session:
            return session.scalar(select(func.count()).where(Cycle.experiment_id == self.experiment_id,
                                                             Cycle.phase == "done")) or 0

    def _current_cycle(self) -> int:
        """The unfinished cycle, or a new one after the last finished one."""
        with self.db.transaction() as session:
            last = session.scalar(select(Cycle).where(Cycle.experiment_id == self.experiment_id)
                                  .order_by(Cycle.index.desc()).limit(1))
            if last is not None and last.phase != "done":
                return last.id
            index = 1 if last is None else last.index + 1
            cycle = Cycle(experiment_id=self.experiment_id, index=index, timings={},
                          phase="initial_finetune" if index == 1 else "generate",
                          adapter_in=None if last is None else last.adapter_out, code_version=self.code_version,
                          selection_protocol=self.selection.id)
            session.add(cycle)
            session.flush()
            return cycle.id

    def run_cycle(self, cycle_id: int) -> None:
        steps: dict[str, Callable[[Cycle], str]] = {
            "initial_finetune": self._initial_finetune, "generate": self._generate, "evaluate": self._evaluate,
            "select": self._select, "finetune": self._finetune}
        while True:
            with self.db.transaction() as session:
                cycle = self._cycle(session, cycle_id)
            if cycle.phase == "done":
                with self.db.transaction() as session:
                    self.console.print(display.summary_line(self._cycle(session, cycle_id),
                                                            self.config.selection.accuracy_threshold))
                return
            self.console.print(f"[bold]cycle {cycle.index}[/bold]: {cycle.phase.replace('_', ' ')}")
            if cycle.code_version != self.code_version:  # resumed by other code: say so in the record
                with self.db.transaction() as session:
                    current = self._cycle(session, cycle_id)
                    if self.code_version not in (current.code_version or ""):
                        current.code_version = f"{current.code_version} (resumed with {self.code_version})"
            started = time.monotonic()
            next_phase = steps[cycle.phase](cycle)
            assert next_phase in PHASES, next_phase
            with self.db.transaction() as session:
                current = self._cycle(session, cycle_id)
                spent = time.monotonic() - started + current.timings.get(cycle.phase, 0.0)  # a phase may recur
                current.timings = {**current.timings, cycle.phase: round(spent, 2)}
                current.phase = next_phase
                if next_phase == "done":
                    current.finished_at = utcnow()

    @staticmethod
    def _cycle(session, cycle_id: int) -> Cycle:  # type: ignore[no-untyped-def]
        cycle = session.get(Cycle, cycle_id)
        assert cycle is not None
        return cycle

    # --- phases: each takes the cycle as it was read and returns the next phase ------------------

    def _initial_finetune(self, cycle: Cycle) -> str:
        """Adapter 0: a fine-tune on the seed corpus, which cycle 1 samples from (and every cycle
        under --no-iteration)."""
        adapter = self.adapters.train(0, parent=None)
        with self.db.transaction() as session:
            self._cycle(session, cycle.id).adapter_in = adapter
        return "generate"

    def _generate(self, cycle: Cycle) -> str:
        """Sample the cycle's candidates: one batch of candidates_per_cycle, or one more batch when
        selection asked for more (`[cycle] min_selected`); an interrupted job resumes its own file."""
        out = self.experiment_dir / f"cycle-{cycle.index}" / "samples"
        out.mkdir(parents=True, exist_ok=True)
        adapter = cycle.adapter_in
        target = min((cycle.n_generated or 0) + self.config.generation.candidates_per_cycle,
                     self.config.cycle.max_candidates_per_cycle)
        job = generate_job(self.config, self.workdir, out, num_samples=target,
                           adapter=workspace_path(self.workdir, adapter) if adapter else None, cycle=cycle.index)
        self.console.print(f"  sampling {job.num_samples} programs from "
                           f"{'adapter ' + Path(adapter).name if adapter else 'the base model'}")
        self.llm.run(job, out.with_name("generate.log"))
        try:
            samples = read_samples(out)
        except ValueError as exc:
            raise CycleError(f"the generator's output is unreadable: {exc}") from None
        if len(samples) < job.num_samples:
            raise CycleError(f"the generator wrote {len(samples)} of {job.num_samples} samples to {out}")
        with self.db.transaction() as session:
            store_samples(session, cycle.id, samples[:job.num_samples])
            self._cycle(session, cycle.id).n_generated = job.num_samples
        self.console.print(f"  stored {job.num_samples} samples")
        return "evaluate"

    def _evaluate(self, cycle: Cycle) -> str:
        with self.db.transaction() as session:
            pending = pending_submissions(session, cycle.id)
        data = self.config.data
        prepared = ensure_prepared(data.dataset, self.workdir, self.workdir / "data", data.holdout_fraction,
                                   data.train_subset)
        counts = {"done": 0, "valid": 0, "accuracy": 0.0}
        artefacts = self.experiment_dir / f"cycle-{cycle.index}" / "artefacts"
        with scoring_set(prepared, self.workdir / "scratch") as scoring, display.progress(self.console) as bars, \
                Evaluator(self.docker.client, self.docker.images["sandbox"], prepared, self.config.evaluation,
                          artefacts, scoring, pool_size=self.placement.per_device, executor=self.executor) as evaluator:
            task = bars.add_task(f"  evaluating on {data.dataset}", total=len(pending), extra="")

            def record(result: EvaluationResult) -> None:
                with self.db.transaction() as session:
                    candidate = session.get(Candidate, result.key)
                    assert candidate is not None
                    store_evaluation(candidate, result)
                counts["done"] += 1
                if result.valid:
                    counts["valid"] += 1
                    counts["accuracy"] += result.accuracy or 0.0
                mean = counts["accuracy"] / counts["valid"] if counts["valid"] else 0.0
                bars.update(task, advance=1, extra=f"valid {counts['valid']}/{counts['done']}, "
                                                   f"mean accuracy {100 * mean:.1f}%")

            try:
                evaluate_many(evaluator, pending, self.placement, on_result=record)
            except InfraError as exc:
                raise CycleError(f"infrastructure failure during evaluation: {exc}") from None
        return "select"

    def _select(self, cycle: Cycle) -> str:
        iterate = not self.ablations.no_iteration
        with self.db.transaction() as session:
            corpus = corpus_index(session, self.config, self.seed_ids, self.experiment_id, before_cycle=cycle.index,
                                  with_selections=iterate)
            candidates = list(session.scalars(select(Candidate).where(Candidate.cycle_id == cycle.id)
                                              .order_by(Candidate.sample_index)))
            evaluated = [Evaluated(candidate_name(cycle.index, c.sample_index), c.valid, c.accuracy, c.code)
                         for c in candidates]
            decisions = select_candidates(evaluated, corpus, self.config.novelty.tau,
                                          self.config.selection.accuracy_threshold, self.ablations,
                                          self.config.novelty.gen_archive)
            for candidate, decision in zip(candidates, decisions):
                store_decision(candidate, decision)
            current = self._cycle(session, cycle.id)
            current.n_valid = sum(c.valid for c in candidates)
            current.n_selected = sum(d.selected for d in decisions)
            current.selection_protocol = self.selection.id
            selected_so_far = len(selected_code(session, self.experiment_id, cycle.index)) if iterate else 0
            current.corpus_size = training_pairs(len(self.seed_ids or ()), selected_so_far)
            wanted = self.config.cycle.min_selected
            if wanted and current.n_selected < wanted and \
                    (current.n_generated or 0) < self.config.cycle.max_candidates_per_cycle:
                self.console.print(f"  selected {current.n_selected} of the {wanted} wanted: sampling more")
                return "generate"
            if not iterate:
                current.adapter_out = current.adapter_in  # the fixed adapter of the initial fine-tune
        return "finetune" if iterate else "done"

    def _finetune(self, cycle: Cycle) -> str:
        adapter = self.adapters.train(cycle.index, parent=cycle.adapter_in)
        with self.db.transaction() as session:
            current = self._cycle(session, cycle.id)
            current.adapter_out = adapter
            meta = session.scalar(select(Adapter.meta).where(Adapter.experiment_id == self.experiment_id,
                                                             Adapter.cycle_index == cycle.index))
            current.finetune_loss = (meta or {}).get("train_loss")
        return "done"
