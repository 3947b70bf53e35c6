"""`run_cycles`: the loop as a library call (what `nasloop cycle` does): lock the workspace and (on
PostgreSQL) the experiment, connect Docker and sweep leftovers (and join the Ray cluster, checking its
nodes, with `[executor] kind = "ray"`), open (or create) the experiment, and run cycles until done."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from orchestrator.config import Ablations, ExperimentConfig
from orchestrator.containers.images import connect, require_llm_backend
from orchestrator.containers.labels import sweep_orphans
from orchestrator.evaluation.run import fit_to_machine, open_cluster
from orchestrator.loop.cycle import CycleRunner
from orchestrator.loop.experiment import experiment_name, open_experiment, pinned_seed_ids
from orchestrator.loop.lock import cycle_lock
from orchestrator.store.database import database_url, open_database


def run_cycles(workdir: Path, config: ExperimentConfig, profile: str, cycles: int | None = None,
               ablations: Ablations = Ablations(), name: str | None = None, db_url: str | None = None,
               console: Console | None = None, until: int | None = None) -> str:
    """Run experiment `name` (default: the profile plus the ablations) until it has `until` completed
    cycles, or for the next `cycles` cycles (a resumed unfinished cycle is one of them); returns the
    experiment's name. Raises CycleError, ImageError or DataError; the experiment stays resumable
    whatever happens."""
    if (cycles is None) == (until is None):
        raise ValueError("give exactly one of cycles (more cycles) and until (a total)")
    console = console or Console()
    name = name or experiment_name(profile, ablations)
    url = database_url(workdir, db_url)
    with cycle_lock(workdir, url, name):
        docker = connect("sandbox", "llm")
        require_llm_backend(docker.client, docker.images["llm"].id, config.generation.backend)
        removed = sweep_orphans(docker.client)
        if removed:
            console.print(f"removed {removed} container(s) left behind by an interrupted run")
        with open_cluster(config, docker, [workdir], say=console.print) as cluster:
            config, placement = fit_to_machine(config, docker, say=console.print, cluster=cluster)
            db = open_database(workdir, url)
            try:
                with db.transaction() as session:
                    experiment = open_experiment(session, name, profile, config, ablations)
                    experiment_id, seed_ids = experiment.id, pinned_seed_ids(session, experiment, config)
                console.print(f"experiment [bold]{name}[/bold] ({profile}, {ablations.label}) in {workdir}")
                runner = CycleRunner(workdir, db, config, experiment_id, ablations, seed_ids, docker, console,
                                     placement, executor=cluster)
                try:
                    if until is not None:
                        done = runner.completed()
                        if done >= until:
                            console.print(f"experiment {name} has {done} completed cycle(s), at least {until}: "
                                          "nothing to do")
                        runner.run_until(until)
                    else:
                        runner.run(cycles or 0)
                finally:
                    runner.close()  # the LLM service container: stopped when the run ends or fails
                # Again at the end: a container whose start a killed run had already asked for can
                # appear after the sweep above.
                sweep_orphans(docker.client)
            finally:
                db.close()
    return name
