"""Flags that set a setting with a fixed list of values take exactly the values the schema accepts."""

from __future__ import annotations

import enum
import inspect
import types
import typing
from typing import Any

import pytest
import typer
from pydantic import BaseModel
from typer.testing import CliRunner

from sam2tool.cli import COMMANDS, app
from sam2tool.config.choices import Backend, Device, EvalProtocol, ExportDtype, PromptKind
from sam2tool.config.presets import PRESETS
from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.data.formats import FORMATS
from sam2tool.data.formats.synthetic import STYLES

#: (command, flag, the setting it sets) for every flag whose values are a setting's choices.
SETTING_FLAGS = [
    ("train", "--precision", "trainer.precision"),
    ("train", "--accelerator", "trainer.accelerator"),
    ("train", "--strategy", "trainer.strategy"),
]
#: The service each of those commands calls with its settings.
SERVICES = {"train": "sam2tool.services.train.train"}
#: Flags with fixed choices that set no setting.
OTHER_FLAGS = {
    ("init-config", "--preset"),
    ("prepare-data", "--format"),
    ("prepare-data", "--style"),
    ("evaluate", "--prompt"),
    ("evaluate", "--device"),
    ("evaluate", "--protocol"),
    ("export", "--dtype"),
    ("predict-video", "--device"),
    ("predict-video", "--backend"),
}


#: Flags with fixed choices that set no setting -> the values the code below the command line takes.
VOCABULARIES: dict[tuple[str, str], list[str]] = {
    ("init-config", "--preset"): list(PRESETS),
    ("prepare-data", "--format"): list(FORMATS),
    ("prepare-data", "--style"): list(STYLES),
    ("evaluate", "--prompt"): list(typing.get_args(PromptKind)),
    ("evaluate", "--device"): list(typing.get_args(Device)),
    ("evaluate", "--protocol"): list(typing.get_args(EvalProtocol)),
    ("export", "--dtype"): list(typing.get_args(ExportDtype)),
    ("predict-video", "--device"): list(typing.get_args(Device)),
    ("predict-video", "--backend"): list(typing.get_args(Backend)),
}


def schema_choices(key: str) -> list[str]:
    """The values the schema's ``Literal`` type of a setting accepts."""
    section, name = key.split(".")
    model = Sam2ToolSettings.model_fields[section].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    annotation = model.model_fields[name].annotation
    assert typing.get_origin(annotation) is typing.Literal, f"{key} is not a Literal"
    return [str(value) for value in typing.get_args(annotation)]


def declared_choices(command: str) -> dict[str, list[str]]:
    """The flags of a command that have fixed choices -> the values their declared type allows."""
    choices = {}
    # The signature Typer reads (prepare-data builds its own from the registered formats).
    parameters = inspect.signature(COMMANDS[command], eval_str=True).parameters
    for name, hint in ((name, parameter.annotation) for name, parameter in parameters.items()):
        kind = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            choices["--" + name.replace("_", "-")] = [str(member.value) for member in kind]
        elif typing.get_origin(kind) is typing.Literal:
            choices["--" + name.replace("_", "-")] = [str(value) for value in typing.get_args(kind)]
    return choices


def setting_from_flag(monkeypatch: pytest.MonkeyPatch, command: str, flag: str, value: str, key: str) -> Any:
    """Run ``sam2tool COMMAND FLAG VALUE`` up to its service call: the value of ``key`` it would run with."""
    seen: dict[str, Any] = {}

    def service(settings: Sam2ToolSettings, **kwargs: Any) -> None:
        seen["value"] = settings.value_of(key)
        raise typer.Exit(0)

    monkeypatch.setattr(SERVICES[command], service)
    result = CliRunner().invoke(app, [command, flag, value], terminal_width=200)
    assert result.exit_code == 0 and "value" in seen, f"sam2tool {command} {flag} {value}:\n{result.output}"
    return seen["value"]


@pytest.mark.parametrize(
    ("command", "flag", "key", "value"),
    [(command, flag, key, value) for command, flag, key in SETTING_FLAGS for value in schema_choices(key)],
)
def test_the_flag_takes_every_value_the_setting_accepts(
    monkeypatch: pytest.MonkeyPatch, command: str, flag: str, key: str, value: str
) -> None:
    assert setting_from_flag(monkeypatch, command, flag, value, key) == value


@pytest.mark.parametrize(
    ("command", "flag", "key", "value"),
    [(command, flag, key, value) for command, flag, key in SETTING_FLAGS for value in declared_choices(command)[flag]],
)
def test_the_setting_accepts_every_value_of_the_flag(
    monkeypatch: pytest.MonkeyPatch, command: str, flag: str, key: str, value: str
) -> None:
    assert value in schema_choices(key)
    assert setting_from_flag(monkeypatch, command, flag, value, key) == value


@pytest.mark.parametrize(("command", "flag", "key"), SETTING_FLAGS)
def test_the_flag_refuses_what_the_setting_refuses(command: str, flag: str, key: str) -> None:
    assert "not-a-choice" not in schema_choices(key)
    result = CliRunner().invoke(app, [command, flag, "not-a-choice"], terminal_width=200)
    assert result.exit_code == 2 and "not-a-choice" in result.output


def test_every_flag_with_fixed_choices_is_checked_or_sets_no_setting() -> None:
    """A new flag with choices is listed above: in SETTING_FLAGS when it sets a setting."""
    found = {(command, flag) for command in COMMANDS for flag in declared_choices(command)}
    assert found == {(command, flag) for command, flag, _ in SETTING_FLAGS} | OTHER_FLAGS


@pytest.mark.parametrize(("command", "flag"), sorted(VOCABULARIES))
def test_flags_that_set_no_setting_offer_what_the_code_below_takes(command: str, flag: str) -> None:
    assert declared_choices(command)[flag] == VOCABULARIES[command, flag]
