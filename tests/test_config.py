from pathlib import Path

import pytest

from orchestrator.config import ConfigError, available_profiles, load_config


def test_paper_profile_has_the_papers_settings() -> None:
    config = load_config("paper")
    assert config.evaluation.hyperparameters == {"lr": 0.01, "momentum": 0.9, "dropout": 0.2}
    assert config.evaluation.batch_size == 16 and config.evaluation.param_budget == 500_000
    assert (config.novelty.shingle_size, config.novelty.num_perm) == (10, 256)
    assert (config.novelty.lsh_threshold, config.novelty.tau) == (0.85, 0.90)
    assert config.selection.accuracy_threshold == 0.40
    assert (config.generation.temperature, config.generation.top_k, config.generation.top_p) == (0.2, 50, 0.9)
    assert config.finetune.lora_r == 32 and config.finetune.epochs == 5 and config.cycle.cycles == 22


def test_smoke_extends_paper_and_overrides_only_what_it_lists() -> None:
    paper, smoke = load_config("paper"), load_config("smoke")
    assert {"paper", "smoke"} <= set(available_profiles())
    assert smoke.data.dataset == "synthetic" and smoke.evaluation.device == "cpu"
    assert smoke.evaluation.batch_size == paper.evaluation.batch_size
    assert smoke.novelty == paper.novelty and smoke.sha256 != paper.sha256


def test_config_file_layers_on_top_of_profile(tmp_path: Path) -> None:
    path = tmp_path / "my.toml"
    path.write_text("[evaluation]\njobs = 7\n")
    assert load_config("smoke", path).evaluation.jobs == 7


@pytest.mark.parametrize("text, message", [
    ("[evaluation]\njobz = 1\n", "unknown key(s) jobz"),
    ("[evaluation]\njobs = 'two'\n", "evaluation.jobs: expected int"),
    ("[evaluation]\ndevice = 'tpu'\n", "evaluation.device: 'tpu' is not one of"),
    ("[surprise]\nx = 1\n", "unknown section(s) surprise"),
    ("[novelty]\ntau = 1.5\n", "novelty.tau: value out of range"),
    ("[evaluation\n", "invalid TOML"),
])
def test_bad_config_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        load_config("paper", path)
    assert message in str(info.value)


def test_unknown_profile_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'nope'.*paper"):
        load_config("nope")


def test_tiny_model_lives_in_the_smoke_profile_only(tmp_path: Path) -> None:
    assert load_config("paper").tiny_model is None  # not part of the paper
    assert load_config("smoke").tiny_model is not None
    path = tmp_path / "tiny.toml"
    path.write_text("[generation]\nmodel = 'tiny'\n")
    with pytest.raises(ConfigError, match=r'generation.model = "tiny" needs a \[tiny_model\] section'):
        load_config("paper", path)
    path.write_text("[tiny_model]\nheads = 3\n")
    with pytest.raises(ConfigError, match="tiny_model.heads: value out of range"):
        load_config("smoke", path)


def test_container_side_mirrors_of_config_sections_have_the_same_fields() -> None:
    """`contracts.llm.LoraHyperparameters` and `llm.tiny.TinyModelSpec` mirror config sections (the LLM
    container cannot import the orchestrator): same names, same types, same order."""
    import dataclasses
    import typing

    from contracts.llm import LoraHyperparameters
    from llm.tiny import TinyModelSpec
    from orchestrator.config import FinetuneConfig, TinyModelConfig

    def fields(cls: type, leave_out: tuple[str, ...] = ()) -> list[tuple[str, object]]:
        hints = typing.get_type_hints(cls)
        return [(f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.name not in leave_out]

    # continue_from_previous is the host's decision (it picks the parent adapter), not the container's.
    assert fields(LoraHyperparameters) == fields(FinetuneConfig, leave_out=("continue_from_previous",))
    assert fields(TinyModelSpec) == fields(TinyModelConfig)


def test_mini_profile_is_smoke_on_real_data_with_the_papers_rules() -> None:
    """The CPU miniature changes sizes and data, never the paper's novelty settings or statistics; its
    optional settings stay out of the paper's resolved configuration (and so out of its hash)."""
    paper, smoke, mini = load_config("paper"), load_config("smoke"), load_config("mini")
    assert mini.data.dataset == "fashion-mnist" and 0 < mini.data.train_subset < 54_000
    assert mini.novelty == paper.novelty and mini.evaluation.suspect_gap == paper.evaluation.suspect_gap
    assert mini.grammar is not None and mini.grammar.programs > 0
    assert mini.tiny_model is not None and mini.generation.model == smoke.generation.model == "tiny"
    assert paper.grammar is None and smoke.grammar is None
    assert paper.data.train_subset == 0 and "train_subset" not in paper.raw["data"]


def test_optional_keys_are_checked_like_the_others(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    for profile, text, message in (
            ("paper", "[data]\ntrain_subset = -1\n", "data.train_subset: value out of range"),
            ("mini", "[data]\ntrain_subset = 'all'\n", "data.train_subset: expected int"),
            ("mini", "[grammar]\nprograms = 0\n", "grammar.programs: value out of range"),
            ("smoke", "[grammar]\nprograms = 10\n", "[grammar]: missing key(s) seed")):
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(profile, path)
        assert message in str(info.value)


def test_the_generation_prompt_states_the_datas_shape() -> None:
    from orchestrator.corpus.checks import prompt_check_protocol
    from orchestrator.corpus.tasks import generation_task

    assert generation_task(load_config("paper")).dataset == "CIFAR-10"
    assert generation_task(load_config("smoke")).dataset == "CIFAR-10"  # synthetic data is CIFAR-shaped
    task = generation_task(load_config("mini"))
    assert (task.dataset, task.channels, task.height, task.width) == ("MNIST", 1, 28, 28)
    assert prompt_check_protocol(load_config("mini")).in_shape == [1, 1, 28, 28]
    assert prompt_check_protocol(load_config("paper")).in_shape == [1, 3, 32, 32]


def test_the_executor_is_validated_and_not_part_of_the_experiments_identity(tmp_path: Path) -> None:
    local = load_config("smoke")
    assert (local.executor.kind, local.executor.address, local.executor.resources) == ("local", "auto", {})
    path = tmp_path / "ray.toml"
    path.write_text('[executor]\nkind = "ray"\naddress = "10.0.0.1:6379"\nresources = {nasloop = 1}\n')
    on_ray = load_config("smoke", path)
    assert on_ray.executor.kind == "ray" and on_ray.executor.resources == {"nasloop": 1.0}
    assert on_ray.raw["executor"]["kind"] == "ray"  # recorded,
    assert on_ray.sha256 == local.sha256  # but an experiment may move between executors and resume
    for text, message in [('[executor]\nkind = "slurm"\n', "executor.kind: 'slurm' is not one of local, ray"),
                          ("[executor]\nresources = {gpu = 'one'}\n", "executor.resources.gpu: expected a number"),
                          ("[executor]\nresources = {gpu = 0}\n", "executor.resources: value out of range"),
                          ("[executor]\nretries = -1\n", "executor.retries: value out of range")]:
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config("smoke", path)
        assert message in str(info.value)


def test_executor_options_override_the_profile() -> None:
    from orchestrator.commands.common import executor_overrides

    assert executor_overrides(None, None) == {}
    overrides = executor_overrides("ray", "10.0.0.1:6379")
    assert overrides == {"executor": {"kind": "ray", "address": "10.0.0.1:6379"}}
    assert load_config("smoke", None, overrides).executor.address == "10.0.0.1:6379"
