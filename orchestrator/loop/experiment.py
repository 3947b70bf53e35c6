"""An experiment's identity: created on first use with its configuration, ablations and code version;
a later run must bring the same configuration. Its seed corpus is the profile's choice of programs."""

from __future__ import annotations

import subprocess
from importlib.metadata import version

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.config import REPO_ROOT, Ablations, ExperimentConfig
from orchestrator.corpus.checks import ChecksMissing, prompt_check_protocol, valid_program_ids
from orchestrator.loop.errors import CycleError
from orchestrator.store.readers import ablations_of
from orchestrator.store.schema import Experiment, Program


def code_version() -> str:
    """The package version and the git commit of the sources, when they are a checkout."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return f"nasloop {version('nasloop')}" + (f" ({commit})" if commit else "")


def experiment_name(profile: str, ablations: Ablations) -> str:
    """The default name: the profile plus the ablations."""
    return profile if ablations.label == "full" else f"{profile}-{ablations.label}"


def open_experiment(session: Session, name: str, profile: str, config: ExperimentConfig,
                    ablations: Ablations) -> Experiment:
    """The experiment `name`, created on first use; a later run must use the same configuration."""
    experiment = session.scalar(select(Experiment).where(Experiment.name == name))
    if experiment is None:
        experiment = Experiment(name=name, profile=profile, config=config.raw, config_sha256=config.sha256,
                                code_version=code_version(), no_novelty=ablations.no_novelty,
                                no_threshold=ablations.no_threshold, no_iteration=ablations.no_iteration)
        session.add(experiment)
        session.flush()
        return experiment
    recorded = ablations_of(experiment)
    if experiment.config_sha256 != config.sha256 or recorded != ablations:
        raise CycleError(f"experiment {name!r} exists with another configuration ({experiment.profile}, "
                         f"{recorded.label}); give this run its own --experiment name")
    return experiment


def seed_program_ids(session: Session, config: ExperimentConfig) -> set[int] | None:
    """The seed corpus's program ids when the profile seeds with the valid programs only, else
    None (every corpus program). CycleError when the corpus is empty or not fully checked."""
    if not session.scalar(select(Program.id).where(Program.duplicate_of_id.is_(None)).limit(1)):
        raise CycleError("the corpus is empty: run `nasloop corpus import --lemur PATH` first")
    if config.cycle.seed_corpus == "all":
        return None
    try:
        return valid_program_ids(session, prompt_check_protocol(config.evaluation).id)
    except ChecksMissing as exc:
        raise CycleError(f'cycle.seed_corpus = "valid", but {exc}') from None
