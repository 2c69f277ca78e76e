"""Settings precedence, overrides and error reporting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sam2tool.config.loading import load_settings
from sam2tool.config.problems import ConfigError
from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.config.sources import merge_layers, parse_overrides

WriteFile = Callable[[str, str], Path]


def problems_of(excinfo: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {p.key: p.render() for p in excinfo.value.problems}


def test_defaults_are_the_documented_seed_values() -> None:
    settings = load_settings()
    assert settings.dataset.video_clip_length == 5
    assert settings.dataset.image_size == 512
    assert settings.dataset.batch_size == 1
    assert settings.optimizer.lr == 1e-4
    assert settings.model.trainable_modules == ["all"]
    assert settings.model.version == "sam2.1"


def test_yaml_overrides_defaults(write_file: WriteFile) -> None:
    path = write_file("c.yaml", "optimizer:\n  lr: 3.0e-5\ndataset:\n  image_size: 256\n")
    settings = load_settings(path)
    assert settings.optimizer.lr == 3e-5
    assert settings.dataset.image_size == 256
    assert settings.dataset.batch_size == 1  # untouched keys keep their defaults


def test_environment_overrides_yaml(write_file: WriteFile, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_file("c.yaml", "optimizer:\n  lr: 3.0e-5\n  weight_decay: 0.05\n")
    monkeypatch.setenv("SAM2TOOL_OPTIMIZER__LR", "7e-5")
    settings = load_settings(path)
    assert settings.optimizer.lr == 7e-5
    assert settings.optimizer.weight_decay == 0.05  # env replaced one key, not the section


def test_only_load_settings_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM2TOOL_OPTIMIZER__LR", "7e-5")
    assert Sam2ToolSettings().optimizer.lr == 1e-4
    assert Sam2ToolSettings.model_validate({"optimizer": {"weight_decay": 0.5}}).optimizer.lr == 1e-4
    assert load_settings().optimizer.lr == 7e-5
    assert load_settings(environment=False).optimizer.lr == 1e-4


def test_options_of_pydantic_settings_are_unknown_keys(write_file: WriteFile) -> None:
    path = write_file("c.yaml", "_env_file: .env\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, ["_secrets_dir=/run/secrets"])
    found = problems_of(excinfo)
    assert found["_env_file"].startswith(f"{path}:1: _env_file: unknown key")
    assert found["_secrets_dir"].startswith("command line: _secrets_dir: unknown key")


def test_layers_merge_key_by_key_each_over_the_one_before() -> None:
    yaml_file = {"optimizer": {"lr": 1, "weight_decay": 2}, "dataset": {"mix": [{"root": "a"}]}}
    environment = {"optimizer": {"lr": 3}, "dataset": {"mix": []}}
    command_line = {"optimizer": {"betas": [0.9, 0.99]}, "model": {"size": "micro"}}
    merged = merge_layers(yaml_file, environment, command_line)
    assert merged == {
        "optimizer": {"lr": 3, "weight_decay": 2, "betas": [0.9, 0.99]},
        "dataset": {"mix": []},
        "model": {"size": "micro"},
    }
    assert merge_layers({"model": {"size": "tiny"}}, {"model": 5}, {"model": {"checkpoint": None}}) == {
        "model": {"checkpoint": None}
    }
    merged["dataset"]["mix"].append("x")
    assert environment == {"optimizer": {"lr": 3}, "dataset": {"mix": []}}  # the layers are not changed


def test_command_line_overrides_environment(write_file: WriteFile, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_file("c.yaml", "optimizer:\n  lr: 3.0e-5\n")
    monkeypatch.setenv("SAM2TOOL_OPTIMIZER__LR", "7e-5")
    settings = load_settings(path, ["optimizer.lr=9e-5"])
    assert settings.optimizer.lr == 9e-5


def test_dedicated_flags_win_over_overrides_and_none_means_not_given() -> None:
    settings = load_settings(
        None, ["optimizer.lr=9e-5", "trainer.max_epochs=3"], {"optimizer.lr": 2e-5, "trainer.max_epochs": None}
    )
    assert settings.optimizer.lr == 2e-5
    assert settings.trainer.max_epochs == 3


def test_list_values_from_environment_are_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM2TOOL_MODEL__TRAINABLE_MODULES", '["sam_mask_decoder", "memory_attention"]')
    assert load_settings().model.trainable_modules == ["sam_mask_decoder", "memory_attention"]


def test_unparseable_environment_list_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM2TOOL_MODEL__TRAINABLE_MODULES", "[sam_mask_decoder")
    with pytest.raises(ConfigError, match=r"environment variable.*must be JSON"):
        load_settings()


def test_overrides_are_parsed_as_yaml() -> None:
    assert parse_overrides(["a.b=1e-4", "a.c=null", "a.d=[x, y]", "e=true", "f=some text", "g="]) == {
        "a": {"b": 1e-4, "c": None, "d": ["x", "y"]},
        "e": True,
        "f": "some text",
        "g": None,
    }


@pytest.mark.parametrize("bad", ["optimizer.lr", "=3", "optimizer..lr=3", ".lr=3"])
def test_malformed_override_names_itself(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"must look like section\.key=value") as excinfo:
        parse_overrides([bad])
    assert bad in str(excinfo.value)


def test_override_value_that_is_not_yaml() -> None:
    with pytest.raises(ConfigError, match="cannot parse the value"):
        parse_overrides(["model.size=[unclosed"])


def test_every_problem_is_reported_at_once_with_file_and_line(write_file: WriteFile) -> None:
    path = write_file(
        "bad.yaml",
        "model:\n  size: huge\n  chekpoint: x\ndataset:\n  image_size: 500\noptimizer:\n  lr: -1\nmodle: {}\n",
    )
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path)
    found = problems_of(excinfo)
    assert set(found) == {"model.size", "model.chekpoint", "dataset.image_size", "optimizer.lr", "modle"}
    assert found["model.size"].startswith(f"{path}:2: model.size:")
    assert "'huge'" in found["model.size"]
    assert "did you mean 'model.checkpoint'?" in found["model.chekpoint"]
    assert found["dataset.image_size"].startswith(f"{path}:5:")
    assert "multiple of 32" in found["dataset.image_size"] and "480 or 512" in found["dataset.image_size"]
    assert "greater than 0" in found["optimizer.lr"]
    assert "did you mean 'model'?" in found["modle"]
    # Problems are listed in file order.
    assert [p.key for p in excinfo.value.problems] == [
        "model.size",
        "model.chekpoint",
        "dataset.image_size",
        "optimizer.lr",
        "modle",
    ]


def test_wrong_type_names_key_value_and_source() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(None, ["trainer.max_steps=abc"])
    assert problems_of(excinfo)["trainer.max_steps"] == (
        "command line: trainer.max_steps: input should be a valid integer, "
        "unable to parse string as an integer (got 'abc')"
    )


def test_problem_from_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM2TOOL_DATASET__BATCH_SIZE", "0")
    monkeypatch.setenv("SAM2TOOL_DATASET__BATCHSIZE", "2")
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    found = problems_of(excinfo)
    assert found["dataset.batch_size"].startswith("environment variable SAM2TOOL_DATASET__BATCH_SIZE:")
    assert "did you mean 'dataset.batch_size'?" in found["dataset.batchsize"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("- model\n- dataset\n", "holds a list, but a config must be a mapping of sections"),
        ("42\n", "holds a int"),
        ("model:\n  size: tiny\n size: small\n", "YAML syntax error at .*c.yaml:3"),
        ("model: [unclosed\n", "YAML syntax error at .*c.yaml:2.*flow sequence that starts at line 1"),
        ('model:\n  size: "tiny\nx: 1\n', "YAML syntax error at .*c.yaml:4.*quoted scalar that starts at line 2"),
        ("model:\n  size: tiny\n  size: small\n", "model.size: key appears twice \\(lines 2 and 3\\)"),
    ],
)
def test_broken_files_give_one_clear_message(write_file: WriteFile, text: str, message: str) -> None:
    path = write_file("c.yaml", text)
    with pytest.raises(ConfigError, match=message) as excinfo:
        load_settings(path)
    assert str(path) in str(excinfo.value)
    assert excinfo.value.exit_code == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; create one with `sam2tool init-config"):
        load_settings(tmp_path / "nope.yaml")


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_settings(path)


def test_section_that_is_not_a_mapping(write_file: WriteFile) -> None:
    path = write_file("c.yaml", "model: 5\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path)
    assert f"{path}:1: model:" in str(excinfo.value)


def test_null_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM2TOOL_MODEL__CHECKPOINT", "null")
    monkeypatch.setenv("SAM2TOOL_MODEL__SIZE", "micro")
    assert load_settings().model.checkpoint is None


def test_environment_variable_naming_no_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM2TOOL_MODLE__SIZE", "tiny")
    monkeypatch.setenv("SAM2TOOL_DATASET_IMAGE_SIZE", "500")
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    text = str(excinfo.value)
    assert "environment variable SAM2TOOL_MODLE__SIZE names no setting (did you mean 'model'?)" in text
    assert "environment variable SAM2TOOL_DATASET_IMAGE_SIZE names no setting" in text


def test_unparseable_environment_list_names_the_variable_and_other_problems_still_show(
    write_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAM2TOOL_MODEL__TRAINABLE_MODULES", "sam_mask_decoder")
    path = write_file("c.yaml", "dataset:\n  image_size: 500\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path)
    found = problems_of(excinfo)
    assert (
        "cannot parse environment variable SAM2TOOL_MODEL__TRAINABLE_MODULES; lists must be JSON"
        in (found["model.trainable_modules"])
    )
    assert "multiple of 32" in found["dataset.image_size"]


def test_whole_section_from_one_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM2TOOL_DATASET", '{"image_size": 500}')
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    assert problems_of(excinfo)["dataset.image_size"].startswith("environment variable SAM2TOOL_DATASET: ")


def test_cross_field_problems_are_reported_with_field_problems(write_file: WriteFile) -> None:
    path = write_file(
        "c.yaml",
        "model:\n  size: micro\n  version: sam2\n  checkpoint: official\n  drop_path_rate: 2\n"
        "trainer:\n  max_steps: 10\n  max_epochs: null\nscheduler:\n  warmup_steps: 100\noptimizer:\n  lr: -1\n",
    )
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path)
    found = problems_of(excinfo)
    assert set(found) == {"model.checkpoint", "model.drop_path_rate", "scheduler.warmup_steps", "optimizer.lr"}
    assert found["model.checkpoint"].startswith(f"{path}:4: model.checkpoint: there is no official checkpoint")
    assert found["scheduler.warmup_steps"].startswith(f"{path}:10:")


def test_non_string_keys(write_file: WriteFile) -> None:
    path = write_file("c.yaml", "1: x\nmodel:\n  null: 3\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path)
    found = problems_of(excinfo)
    assert found["1"] == f"{path}:1: 1: keys must be names such as model or image_size; quote it if it really is one"
    assert found["model.null"].startswith(f"{path}:3:")


def test_dotted_key_in_yaml_gets_a_hint(write_file: WriteFile) -> None:
    path = write_file("c.yaml", "model.size: small\n")
    with pytest.raises(ConfigError, match=r"in YAML write `model:` and under it `  size: \.\.\.`"):
        load_settings(path)


def test_section_with_every_key_commented_out_means_defaults(write_file: WriteFile) -> None:
    path = write_file("c.yaml", "model:\n  # size: large\ndataset:\n  image_size: 256\n")
    assert load_settings(path).model.size == "tiny"


def test_one_beta_names_the_file(write_file: WriteFile) -> None:
    path = write_file("c.yaml", "optimizer:\n  betas: [0.9]\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path)
    assert problems_of(excinfo)["optimizer.betas"].startswith(f"{path}:2: optimizer.betas: give exactly two betas")


def test_paths_expand_home_and_empty_paths_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings(None, ["dataset.root=~/data", "output.dir=~/runs", "model.cache_dir=~/cache"])
    assert settings.dataset.root == tmp_path / "data"
    assert settings.output.dir == tmp_path / "runs"
    assert settings.model.cache_dir == tmp_path / "cache"
    with pytest.raises(ConfigError) as excinfo:
        load_settings(None, ["dataset.root=''", "output.dir=''"])
    assert set(problems_of(excinfo)) == {"dataset.root", "output.dir"}


def test_download_url_needs_a_scheme() -> None:
    with pytest.raises(ConfigError, match=r"model\.download_url: must start with http://, https:// or file://"):
        load_settings(None, ["model.download_url=mirror.local/files"])
