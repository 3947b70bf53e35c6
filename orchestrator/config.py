"""Experiment configuration: TOML profiles validated once into typed, frozen dataclasses.

A profile is `configs/<name>.toml`; it may `extends = "<other profile>"` and override single keys.
A user file (`--config FILE`) is layered on top of a profile in the same way. Unknown sections or
keys and values of the wrong type are errors that name the offending key. Every key must be given,
except the few with a default below (settings that only a miniature changes, so that adding them did
not change the paper's resolved configuration).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The source tree nasloop runs from (profiles, Dockerfiles and the packages baked into the images).
REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO_ROOT / "configs"


class ConfigError(ValueError):
    """A profile or config file is missing, malformed or invalid."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str
    holdout_fraction: float  # the hold-out's membership is secret: drawn when a workspace prepares the data
    train_subset: int = 0  # train on this many images of the training split (0: all of it, as the paper)


@dataclass(frozen=True)
class EvaluationConfig:
    device: str
    gpus: list[int] | str  # the GPUs candidates run on (host indices), or "all" that Docker sees
    jobs_per_gpu: int  # candidates at once on each GPU (on the CPU: `jobs`)
    batch_size: int
    lr: float
    momentum: float
    dropout: float
    param_budget: int
    buffer_allowance: int  # elements beyond param_budget the weights file may hold for buffers
    suspect_gap: float  # test accuracy above hold-out accuracy by more than this: `suspect`
    crop_padding: int
    horizontal_flip: bool
    seed: int
    predict_batch_size: int
    max_source_bytes: int
    train_timeout_s: float
    predict_timeout_s: float
    check_timeout_s: float
    memory: str
    cpus: float
    pids_limit: int
    tmpfs_size: str
    max_output_bytes: int
    jobs: int
    warm_containers: bool  # start each phase's containers ahead of their candidates (same isolation)

    @property
    def hyperparameters(self) -> dict[str, float]:
        """The `prm` dict every candidate is instantiated and trained with."""
        return {"lr": self.lr, "momentum": self.momentum, "dropout": self.dropout}


@dataclass(frozen=True)
class NoveltyConfig:
    shingle_size: int
    num_perm: int
    lsh_threshold: float
    tau: float
    gen_archive: str  # J_gen against earlier "generated" samples of the cycle, or earlier "accepted" ones


@dataclass(frozen=True)
class SelectionConfig:
    accuracy_threshold: float


@dataclass(frozen=True)
class GenerationConfig:
    backend: str
    model: str
    temperature: float
    top_k: int
    top_p: float
    do_sample: bool
    max_new_tokens: int
    candidates_per_cycle: int
    batch_size: int  # sequences decoded at once; 0: as many as the GPU's free memory holds
    batching: str  # "continuous" (a finished sequence's slot refilled at once) or "static" batches
    seed: int
    gpus: list[int] | str  # the GPUs the LLM container gets (host indices), or "all"


@dataclass(frozen=True)
class FinetuneConfig:
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: list[str]
    epochs: int
    lr: float
    per_device_batch_size: int
    grad_accum_steps: int
    scheduler: str
    warmup_steps: int
    weight_decay: float
    max_grad_norm: float
    optimizer: str
    precision: str
    max_seq_length: int
    over_length: str
    gradient_checkpointing: bool
    continue_from_previous: bool


@dataclass(frozen=True)
class TinyModelConfig:
    """The local tiny model (`generation.model = "tiny"`): architecture, tokenizer, training budget."""

    vocab_size: int
    layers: int
    hidden_size: int
    intermediate_size: int
    heads: int
    context: int
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    weight_decay: float
    seed: int


@dataclass(frozen=True)
class GrammarConfig:
    """The seed-corpus grammar (`nasloop corpus synth`): how many of its programs, from which seed.
    Not part of the paper: a CPU stand-in for what a 7B code model knows (the `mini` profile)."""

    programs: int
    seed: int


@dataclass(frozen=True)
class CycleConfig:
    cycles: int
    seed_corpus: str  # "all" corpus programs (the paper), or only those that pass `nasloop corpus check`
    min_selected: int  # keep sampling (in batches) until this many are selected; 0: one batch
    max_candidates_per_cycle: int  # the most a cycle samples when min_selected is on


@dataclass(frozen=True)
class ExecutorConfig:
    """Where candidates' containers run: this machine's Docker daemon, or the nodes of a Ray cluster."""

    kind: str  # "local" or "ray"
    address: str  # the Ray cluster to join: "auto" (the one `ray start` made on this machine) or HOST:PORT
    # Ray resources each candidate phase reserves besides its CPUs (evaluation.cpus), memory (evaluation.memory)
    # and, on CUDA, its share of a GPU (1 / evaluation.jobs_per_gpu)
    resources: dict[str, float]
    retries: int  # runs of a phase again on another node after its node or Ray worker died


@dataclass(frozen=True)
class Ablations:
    """The paper's ablations of the full method; each is its own experiment."""

    no_novelty: bool = False  # select regardless of near-duplication (similarities still logged)
    no_threshold: bool = False  # select any valid, novel candidate
    no_iteration: bool = False  # fine-tune once on the initial corpus; sample from that adapter

    @property
    def label(self) -> str:
        names = [n for n in ("no_novelty", "no_threshold", "no_iteration") if getattr(self, n)]
        return "+".join(names) or "full"


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    data: DataConfig
    evaluation: EvaluationConfig
    novelty: NoveltyConfig
    selection: SelectionConfig
    generation: GenerationConfig
    finetune: FinetuneConfig
    cycle: CycleConfig
    tiny_model: TinyModelConfig | None  # only in profiles that use it (smoke): not part of the paper
    grammar: GrammarConfig | None  # only in profiles seeded by the grammar (mini): not part of the paper
    executor: ExecutorConfig
    raw: dict[str, Any] = field(compare=False, repr=False)

    @property
    def sha256(self) -> str:
        """Hash of the fully resolved configuration (what an experiment records), less the sections
        that say where it runs, not what it is: an experiment may move between executors and resume."""
        identity = {section: value for section, value in self.raw.items() if section not in PLACEMENT_SECTIONS}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


# Sections that say where an experiment runs, not what it is: recorded, but not part of its hash.
PLACEMENT_SECTIONS = frozenset({"executor"})

_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("executor", "kind"): ("local", "ray"),
    ("data", "dataset"): ("cifar10", "fashion-mnist", "mnist", "synthetic"),
    ("evaluation", "device"): ("cpu", "cuda"),
    ("generation", "backend"): ("transformers", "vllm"),
    ("generation", "batching"): ("continuous", "static"),
    ("finetune", "over_length"): ("skip", "error"),
    ("finetune", "precision"): ("bf16", "fp16", "fp32"),
    ("cycle", "seed_corpus"): ("all", "valid"),
    ("novelty", "gen_archive"): ("generated", "accepted"),
}


_OPTIONAL_SECTIONS = frozenset({"tiny_model", "grammar"})
# The model name that means the workspace's tiny local model (`nasloop llm tiny-model`).
TINY_MODEL = "tiny"


def _check_value(value: Any, expected: Any, where: str) -> Any:
    if isinstance(expected, types.UnionType):  # list[int] | str: the one that fits
        problems = []
        for option in typing.get_args(expected):
            try:
                return _check_value(value, option, where)
            except ConfigError as exc:
                problems.append(str(exc).split(": ", 1)[1])
        raise ConfigError(f"{where}: {' or '.join(problems)}")
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if expected is int or expected is bool or expected is str:
        if type(value) is not expected:
            raise ConfigError(f"{where}: expected {expected.__name__}, got {value!r}")
        return value
    if typing.get_origin(expected) is dict:
        key_type, value_type = typing.get_args(expected)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return {_check_value(k, key_type, f"{where} key"): _check_value(v, value_type, f"{where}.{k}")
                for k, v in value.items()}
    if typing.get_origin(expected) is list:
        (item_type,) = typing.get_args(expected)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_value(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ConfigError(f"{where}: unsupported type {expected}")  # pragma: no cover


def _build_section(cls: type, table: Any, section: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{section}] must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"[{section}]: unknown key(s) {', '.join(unknown)}")
    missing = sorted(names - optional - set(table))
    if missing:
        raise ConfigError(f"[{section}]: missing key(s) {', '.join(missing)}")
    values = {}
    for name in names & set(table):
        where = f"{section}.{name}"
        values[name] = _check_value(table[name], hints[name], where)
        choices = _CHOICES.get((section, name))
        if choices and values[name] not in choices:
            raise ConfigError(f"{where}: {values[name]!r} is not one of {', '.join(choices)}")
    return cls(**values)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _resolve(table: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    parent = table.pop("extends", None)
    if parent is None:
        return table
    if not isinstance(parent, str):
        raise ConfigError(f"'extends' must be a profile name, got {parent!r}")
    if parent in seen:
        raise ConfigError(f"profile inheritance loops: {' -> '.join(seen + (parent,))}")
    return _merge(_resolve(_read_toml(profile_path(parent)), seen + (parent,)), table)


def profile_path(name: str) -> Path:
    path = PROFILES_DIR / f"{name}.toml"
    if not name.replace("-", "").replace("_", "").isalnum() or not path.is_file():
        known = ", ".join(available_profiles())
        raise ConfigError(f"unknown profile {name!r} (known: {known})")
    return path


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_config(profile: str = "paper", config_file: Path | None = None,
                overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Resolve `profile`, then layer `config_file` and `overrides` ({section: {key: value}})."""
    raw = _resolve(_read_toml(profile_path(profile)), (profile,))
    if config_file is not None:
        user = _read_toml(config_file)
        user.pop("extends", None)
        raw = _merge(raw, user)
    if overrides:
        raw = _merge(raw, overrides)
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    sections = {f.name: f.type for f in dataclasses.fields(ExperimentConfig)
                if f.name not in ("name", "raw")}
    hints = typing.get_type_hints(ExperimentConfig)
    unknown = sorted(set(raw) - set(sections) - {"name"})
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str):
        raise ConfigError("config needs a string 'name'")
    built: dict[str, Any] = {}
    for section in sections:
        if section not in raw:
            if section not in _OPTIONAL_SECTIONS:
                raise ConfigError(f"missing section [{section}]")
            built[section] = None
            continue
        cls = next(t for t in typing.get_args(hints[section]) if t is not type(None)) \
            if section in _OPTIONAL_SECTIONS else hints[section]
        built[section] = _build_section(cls, raw[section], section)
    if built["generation"].model == TINY_MODEL and built["tiny_model"] is None:
        raise ConfigError('generation.model = "tiny" needs a [tiny_model] section (see configs/smoke.toml)')
    _validate_ranges(built)
    return ExperimentConfig(name=name, raw=json.loads(json.dumps(raw)), **built)


def _validate_ranges(sections: dict[str, Any]) -> None:
    checks = [
        ("data.holdout_fraction", 0.0 <= sections["data"].holdout_fraction < 1.0),
        ("data.train_subset", sections["data"].train_subset >= 0),
        ("evaluation.batch_size", sections["evaluation"].batch_size >= 1),
        ("evaluation.param_budget", sections["evaluation"].param_budget >= 1),
        ("evaluation.buffer_allowance", sections["evaluation"].buffer_allowance >= 0),
        ("evaluation.suspect_gap", 0.0 < sections["evaluation"].suspect_gap <= 1.0),
        ("evaluation.jobs", sections["evaluation"].jobs >= 1),
        ("evaluation.jobs_per_gpu", sections["evaluation"].jobs_per_gpu >= 1),
        ("evaluation.gpus", _gpus_ok(sections["evaluation"].gpus)),
        ("generation.gpus", _gpus_ok(sections["generation"].gpus)),
        ("generation.batch_size", sections["generation"].batch_size >= 0),
        ("evaluation.train_timeout_s", sections["evaluation"].train_timeout_s > 0),
        ("evaluation.predict_timeout_s", sections["evaluation"].predict_timeout_s > 0),
        ("evaluation.check_timeout_s", sections["evaluation"].check_timeout_s > 0),
        ("novelty.tau", 0.0 < sections["novelty"].tau <= 1.0),
        ("novelty.lsh_threshold", 0.0 < sections["novelty"].lsh_threshold <= 1.0),
        ("novelty.shingle_size", sections["novelty"].shingle_size >= 1),
        ("selection.accuracy_threshold", 0.0 <= sections["selection"].accuracy_threshold <= 1.0),
        ("generation.candidates_per_cycle", sections["generation"].candidates_per_cycle >= 1),
        ("cycle.cycles", sections["cycle"].cycles >= 1),
        ("cycle.min_selected", sections["cycle"].min_selected >= 0),
        ("executor.retries", sections["executor"].retries >= 0),
        ("executor.resources", all(v > 0 for v in sections["executor"].resources.values())),
        ("cycle.max_candidates_per_cycle",
         sections["cycle"].max_candidates_per_cycle >= sections["generation"].candidates_per_cycle),
    ]
    tiny = sections["tiny_model"]
    if tiny is not None:
        checks += [
            ("tiny_model.steps", tiny.steps >= 1),
            ("tiny_model.heads", tiny.heads >= 1 and tiny.hidden_size % tiny.heads == 0),
        ]
    grammar = sections["grammar"]
    if grammar is not None:
        checks += [("grammar.programs", grammar.programs >= 1), ("grammar.seed", grammar.seed >= 0)]
    for where, ok in checks:
        if not ok:
            raise ConfigError(f"{where}: value out of range")


def _gpus_ok(gpus: list[int] | str) -> bool:
    return gpus == "all" or (isinstance(gpus, list) and len(gpus) > 0 and all(g >= 0 for g in gpus)
                             and len(set(gpus)) == len(gpus))


def as_dict(section: Any) -> dict[str, Any]:
    return dataclasses.asdict(section)


