"""Build validated settings from a YAML file, the environment and the command line.

Precedence, highest first: command-line flags and ``key.path=value`` overrides, environment
variables ``SAM2TOOL_SECTION__KEY``, the YAML file, defaults. :func:`load_settings_with_origins`
reads each layer as a plain mapping, merges them in that order (defaults, YAML, environment,
command line, each overriding the one before) and validates the result once; a bare
``Sam2ToolSettings()`` reads nothing but its arguments. Every problem is collected and raised at
once as a :class:`~sam2tool.config.problems.ConfigError`, each naming the dotted key, the value
and where the value came from (``file:line``, the environment variable, or the command line).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import EnvSettingsSource, SettingsError

from sam2tool.config.cross_checks import CROSS_CHECKS
from sam2tool.config.problems import UNSET, ConfigError, ConfigProblem, did_you_mean
from sam2tool.config.schema import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    SECTIONS,
    CrossFieldProblems,
    Sam2ToolSettings,
)
from sam2tool.config.sources import (
    MISSING,
    YamlLayer,
    get_path,
    merge_layers,
    parse_overrides,
    read_yaml_config,
    set_path,
)


def load_settings(
    config_file: Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
    *,
    environment: bool = True,
) -> Sam2ToolSettings:
    """Load and validate settings; see :func:`load_settings_with_origins`."""
    return load_settings_with_origins(config_file, overrides, flags, environment=environment)[0]


def load_settings_with_origins(
    config_file: Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
    *,
    environment: bool = True,
) -> tuple[Sam2ToolSettings, SettingsOrigins]:
    """Load and validate settings, and say where each value came from.

    Args:
        config_file: YAML file, or None for defaults (plus environment and command line).
        overrides: ``key.path=value`` strings from the command line.
        flags: Dedicated command-line flags as ``{"optimizer.lr": 3e-5}``; None values are
            ignored (the flag was not given). Flags win over ``overrides``.
        environment: Read ``SAM2TOOL_*`` variables (``resume`` does not: a run continues with the
            settings it was started with).

    Returns:
        The validated settings, and their origins (for messages about values that are valid
        but point at something missing).

    Raises:
        ConfigError: Anything is wrong; every problem is listed.

    """
    layer = read_yaml_config(config_file) if config_file is not None else None
    cli = parse_overrides(overrides)
    for dotted, value in (flags or {}).items():
        if value is not None:
            set_path(cli, dotted.split("."), value)

    problems = _unknown_environment_variables() if environment else []
    variables, environment_problem = _read_environment() if environment else ({}, None)
    if environment_problem is not None:
        # pydantic-settings stops at the first variable it cannot parse: report it, then
        # validate everything else without the environment (``variables`` is empty).
        problems.append(environment_problem)
    origins = SettingsOrigins(cli, variables, layer)
    # Defaults are the schema's own: validation fills in every key that no layer sets.
    merged = merge_layers(layer.data if layer is not None else {}, variables, cli)
    try:
        settings = Sam2ToolSettings.model_validate(merged)
    except ValidationError as exc:
        problems += _problems(exc, origins)
    if problems:
        raise ConfigError(problems)
    return settings, origins


def _read_environment() -> tuple[dict[str, Any], ConfigProblem | None]:
    """The ``SAM2TOOL_*`` variables as a nested mapping, or a problem.

    pydantic-settings' environment source reads them, configured by ``Sam2ToolSettings.model_config``
    (prefix, ``__`` between section and key, JSON for lists and sections, ``null`` for None).
    """
    try:
        return EnvSettingsSource(Sam2ToolSettings)(), None
    except SettingsError:
        pass
    for name, value in _settings_variables().items():
        if not (value.lstrip().startswith(("[", "{")) or _is_list_setting(name)):
            continue
        try:
            json.loads(value)
        except ValueError:
            return {}, ConfigProblem(
                key=_key_of_variable(name),
                message=f'cannot parse environment variable {name}; lists must be JSON, e.g. {name}=\'["a", "b"]\'',
                value=value,
                source=f"environment variable {name}",
            )
    return {}, ConfigProblem(key="", message="cannot parse the SAM2TOOL_* environment variables; check their values")


def _settings_variables() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name.upper().startswith(ENV_PREFIX)}


def _key_of_variable(name: str) -> str:
    return name[len(ENV_PREFIX) :].lower().replace(ENV_NESTED_DELIMITER, ".")


def _is_list_setting(name: str) -> bool:
    parts = _key_of_variable(name).split(".")
    if len(parts) != 2 or parts[0] not in SECTIONS:
        return False
    section = Sam2ToolSettings.model_fields[parts[0]].annotation
    assert isinstance(section, type) and issubclass(section, BaseModel)
    field = section.model_fields.get(parts[1])
    return field is not None and "list" in str(field.annotation)


def _unknown_environment_variables() -> list[ConfigProblem]:
    """``SAM2TOOL_*`` variables that name no section (pydantic-settings would ignore them)."""
    problems = []
    for name in _settings_variables():
        section = name[len(ENV_PREFIX) :].split(ENV_NESTED_DELIMITER)[0].lower()
        if section in SECTIONS:
            continue
        variables = [f"{ENV_PREFIX}{s.upper()}{ENV_NESTED_DELIMITER}KEY" for s in SECTIONS]
        guess = did_you_mean(section, SECTIONS, noun="sections")
        problems.append(
            ConfigProblem(
                key="",
                message=f"environment variable {name} names no setting ({guess}); "
                f"settings variables look like {variables[0]}",
                source=f"environment variable {name}",
            )
        )
    return problems


class SettingsOrigins:
    """Where a value came from: the first layer (by precedence) that sets the key."""

    def __init__(self, cli: dict[str, Any], env: dict[str, Any], yaml_file: YamlLayer | None) -> None:
        self.cli, self.env, self.yaml_file = cli, env, yaml_file

    def source(self, key: str) -> str | None:
        """``file:line``, the environment variable, ``command line``, or None for a default."""
        return self.lookup(key.split("."))[1]

    def lookup(self, parts: Sequence[str]) -> tuple[Any, str | None]:
        """Return ``(value, source)`` for a key path; ``(UNSET, None)`` when only the default sets it.

        A key missing from every layer (such as the second item of a one-item list) is
        attributed to the nearest enclosing key that is set.
        """
        for depth in range(len(parts), 0, -1):
            prefix = parts[:depth]
            value = get_path(self.cli, prefix)
            if value is not MISSING:
                return (value if depth == len(parts) else UNSET), "command line"
            value = get_path(self.env, prefix)
            if value is not MISSING:
                return (value if depth == len(parts) else UNSET), "environment variable " + self._variable(prefix)
            if self.yaml_file is not None:
                value = get_path(self.yaml_file.data, prefix)
                if value is not MISSING:
                    return (value if depth == len(parts) else UNSET), self.yaml_file.source_of(parts)
        return UNSET, None

    @staticmethod
    def _variable(parts: Sequence[str]) -> str:
        """The variable that set ``parts``: ``SAM2TOOL_SECTION__KEY`` or, if that is unset, ``SAM2TOOL_SECTION``."""
        names = {name.upper(): name for name in _settings_variables()}
        for depth in (2, 1):
            candidate = ENV_PREFIX + ENV_NESTED_DELIMITER.join(parts[:depth]).upper()
            if candidate in names:
                return names[candidate]
        return ENV_PREFIX + ENV_NESTED_DELIMITER.join(parts[:2]).upper()


def _problems(exc: ValidationError, origins: SettingsOrigins) -> list[ConfigProblem]:
    """Translate pydantic errors into one problem per key, then add the cross-field problems."""
    merged: dict[str, ConfigProblem] = {}
    for error in exc.errors(include_url=False):
        ctx = error.get("ctx") or {}
        cross = ctx.get("error")
        if isinstance(cross, CrossFieldProblems):
            for key, message in cross.problems:
                value, source = origins.lookup(key.split("."))
                merged.setdefault(key, ConfigProblem(key=key, message=message, value=value, source=source))
            continue
        parts, unknown = _key_parts(error["loc"], error["type"] == "extra_forbidden")
        key = ".".join(parts)
        _, source = origins.lookup(parts)
        if error["type"] == "extra_forbidden":
            problem = ConfigProblem(key=key, message=_unknown_key_message(parts, unknown), source=source)
        else:
            message = _clean_message(error["msg"])
            problem = ConfigProblem(key=key, message=message, value=error.get("input", UNSET), source=source)
        previous = merged.get(key)
        if previous is not None:
            if problem.message in previous.message:
                continue
            problem = ConfigProblem(
                key=key,
                message=f"{previous.message}, or {problem.message}",
                value=previous.value,
                source=previous.source,
            )
        merged[key] = problem
    problems = list(merged.values()) + _cross_field_problems_of_valid_keys(set(merged), origins)
    return sorted(problems, key=_position_in_file)


def _unknown_key_message(parts: Sequence[str], unknown: str) -> str:
    parent = "".join(f"{part}." for part in parts[:-1])
    message = "unknown key; " + did_you_mean(unknown, _field_names(parts[:-1]), prefix=parent)
    if len(parts) == 1 and "." in unknown:
        section, _, rest = unknown.partition(".")
        message += f" (dotted keys are for the command line; in YAML write `{section}:` and under it `  {rest}: ...`)"
    return message


def _cross_field_problems_of_valid_keys(failed: set[str], origins: SettingsOrigins) -> list[ConfigProblem]:
    """Run the cross-field rules whose keys are all valid, though other keys are not."""
    problems = []
    for check in CROSS_CHECKS:
        if any(_overlaps(key, bad) for key in check.keys for bad in failed):
            continue
        try:
            values = {key: _validated_value(key, origins) for key in check.keys}
        except (ValidationError, ValueError, KeyError):
            continue
        for key, message in check.rule(values):
            value, source = origins.lookup(key.split("."))
            problems.append(ConfigProblem(key=key, message=message, value=value, source=source))
    return problems


def _overlaps(key: str, bad: str) -> bool:
    return key == bad or key.startswith(bad + ".") or bad.startswith(key + ".") or bad == ""


def _validated_value(key: str, origins: SettingsOrigins) -> Any:
    """Validate one field on its own, from the layer that sets it (or its default)."""
    section_name, name = key.split(".")
    section = Sam2ToolSettings.model_fields[section_name].annotation
    assert isinstance(section, type) and issubclass(section, BaseModel)
    raw, _ = origins.lookup([section_name, name])
    if raw is UNSET:
        return section.model_fields[name].get_default(call_default_factory=True)
    instance = section.model_construct()
    section.__pydantic_validator__.validate_assignment(instance, name, raw)
    return getattr(instance, name)


def _position_in_file(problem: ConfigProblem) -> tuple[int, int]:
    """Sort key: problems at a line of the YAML file first, in file order; the rest after."""
    _, _, line = (problem.source or "").rpartition(":")
    return (0, int(line)) if line.isdigit() else (1, 0)


def _key_parts(loc: tuple[int | str, ...], extra: bool) -> tuple[list[str], str]:
    """The dotted-key parts of a pydantic ``loc``, without union branch tags like ``int``.

    Returns the parts and, for unknown keys, the unknown name itself.
    """
    parts: list[str] = []
    cursor: Any = Sam2ToolSettings
    for index, element in enumerate(loc):
        is_last = index == len(loc) - 1
        if isinstance(element, int):
            parts.append(str(element))  # an item of a list: the cursor already is the item's model
        elif isinstance(cursor, type) and issubclass(cursor, BaseModel) and element in cursor.model_fields:
            parts.append(element)
            cursor = _model_inside(cursor.model_fields[element].annotation)
        elif extra and is_last:
            parts.append(str(element))
        else:
            break  # a union branch tag such as 'int' or 'list[int]'
    return parts, parts[-1] if parts else ""


def _model_inside(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: ``Model``, or the item model of ``list[Model]``; else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        if isinstance(argument, type) and issubclass(argument, BaseModel):
            return argument
    return None


def _field_names(parts: Sequence[str]) -> list[str]:
    cursor: Any = Sam2ToolSettings
    for part in parts:
        if not part.isdigit():
            cursor = _model_inside(cursor.model_fields[part].annotation)
    return list(cursor.model_fields) if cursor is not None else []


def _clean_message(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message[:1].lower() + message[1:]
