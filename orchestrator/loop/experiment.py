"""An experiment's identity: created on first use with its configuration, ablations and code version;
a later run must bring the same configuration. Its seed corpus (the profile's choice of corpus
programs) is pinned when it is created: the program ids and a hash of their code, so that a later
`corpus import` cannot change a running experiment."""

from __future__ import annotations

import hashlib
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
    """The experiment `name`, created on first use (its seed corpus pinned then); a later run must
    use the same configuration."""
    experiment = session.scalar(select(Experiment).where(Experiment.name == name))
    if experiment is None:
        seed = sorted(choose_seed_ids(session, config))
        experiment = Experiment(name=name, profile=profile, config=config.raw, config_sha256=config.sha256,
                                code_version=code_version(), no_novelty=ablations.no_novelty,
                                no_threshold=ablations.no_threshold, no_iteration=ablations.no_iteration,
                                seed_program_ids=seed, seed_sha256=seed_fingerprint(session, seed))
        session.add(experiment)
        session.flush()
        return experiment
    recorded = ablations_of(experiment)
    if experiment.config_sha256 != config.sha256 or recorded != ablations:
        raise CycleError(f"experiment {name!r} exists with another configuration ({experiment.profile}, "
                         f"{recorded.label}); give this run its own --experiment name")
    return experiment


def choose_seed_ids(session: Session, config: ExperimentConfig) -> set[int]:
    """The corpus programs a new experiment seeds with: every one ("all"), or those that pass the
    validity checks ("valid"). CycleError when the corpus is empty or not fully checked."""
    corpus = set(session.scalars(select(Program.id).where(Program.duplicate_of_id.is_(None))))
    if not corpus:
        raise CycleError("the corpus is empty: run `nasloop corpus import --lemur PATH` first")
    if config.cycle.seed_corpus == "all":
        return corpus
    try:
        return valid_program_ids(session, prompt_check_protocol(config).id)
    except ChecksMissing as exc:
        raise CycleError(f'cycle.seed_corpus = "valid", but {exc}') from None


def seed_fingerprint(session: Session, program_ids: list[int]) -> str:
    """A hash of the seed programs: their ids and the SHA-256 of their code, in id order."""
    rows = {program_id: sha for program_id, sha in
            session.execute(select(Program.id, Program.code_sha256).where(Program.id.in_(program_ids)))}
    digest = hashlib.sha256()
    for program_id in sorted(program_ids):
        digest.update(f"{program_id}:{rows.get(program_id)}\n".encode())
    return digest.hexdigest()


def pinned_seed_ids(session: Session, experiment: Experiment, config: ExperimentConfig) -> set[int]:
    """The experiment's seed corpus as pinned at its creation (pinned now for an experiment made by
    an older nasloop); CycleError if those programs are no longer what they were."""
    if experiment.seed_program_ids is None:
        seed = sorted(choose_seed_ids(session, config))
        experiment.seed_program_ids, experiment.seed_sha256 = seed, seed_fingerprint(session, seed)
    ids = list(experiment.seed_program_ids)
    if seed_fingerprint(session, ids) != experiment.seed_sha256:
        raise CycleError(f"experiment {experiment.name!r}: its seed corpus ({len(ids)} programs pinned when it was "
                         "created) has changed in the database; give a new experiment its own --experiment name")
    return set(ids)
