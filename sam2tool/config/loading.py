"""Build validated settings from a YAML file, the environment and the command line.

Precedence, highest first: command-line flags and ``key.path=value`` overrides, environment
variables ``SAM2TOOL_SECTION__KEY``, the YAML file, defaults. Every problem is collected and
raised at once as a :class:`~sam2tool.config.problems.ConfigError`, each naming the dotted key,
the value and where the value came from (``file:line``, the environment variable, or the
command line).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import EnvSettingsSource, SettingsError

from sam2tool.config.problems import UNSET, ConfigError, ConfigProblem, did_you_mean
from sam2tool.config.schema import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    CrossFieldProblems,
    Sam2ToolSettings,
)
from sam2tool.config.sources import (
    MISSING,
    YamlLayer,
    get_path,
    parse_overrides,
    read_yaml_config,
    set_path,
    yaml_layer,
)


def load_settings(
    config_file: Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> Sam2ToolSettings:
    """Load and validate settings; see :func:`load_settings_with_origins`."""
    return load_settings_with_origins(config_file, overrides, flags)[0]


def load_settings_with_origins(
    config_file: Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> tuple[Sam2ToolSettings, SettingsOrigins]:
    """Load and validate settings, and say where each value came from.

    Args:
        config_file: YAML file, or None for defaults (plus environment and command line).
        overrides: ``key.path=value`` strings from the command line.
        flags: Dedicated command-line flags as ``{"optimizer.lr": 3e-5}``; None values are
            ignored (the flag was not given). Flags win over ``overrides``.

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
    with yaml_layer(layer):
        try:
            settings = Sam2ToolSettings(**cli)
        except SettingsError as exc:
            raise ConfigError.single("", f"cannot parse an environment variable: {_settings_error_text(exc)}") from None
        except ValidationError as exc:
            raise ConfigError(_problems(exc, SettingsOrigins(cli, _environment(), layer))) from None
    return settings, SettingsOrigins(cli, _environment(), layer)


def _settings_error_text(exc: SettingsError) -> str:
    cause = exc.__cause__
    text = str(exc)
    if cause is not None:
        text += f" ({cause})"
    return (
        text + f"; list values must be JSON, e.g. {ENV_PREFIX}MODEL{ENV_NESTED_DELIMITER}TRAINABLE_MODULES='[\"all\"]'"
    )


def _environment() -> dict[str, Any]:
    """The ``SAM2TOOL_*`` environment variables as a nested mapping, as pydantic-settings sees them."""
    try:
        return EnvSettingsSource(Sam2ToolSettings)()
    except SettingsError:
        return {}


class SettingsOrigins:
    """Where a value came from: the first layer (by precedence) that sets the key."""

    def __init__(self, cli: dict[str, Any], env: dict[str, Any], yaml_file: YamlLayer | None) -> None:
        self.cli, self.env, self.yaml_file = cli, env, yaml_file

    def source(self, key: str) -> str | None:
        """``file:line``, the environment variable, ``command line``, or None for a default."""
        return self.lookup(key.split("."))[1]

    def lookup(self, parts: Sequence[str]) -> tuple[Any, str | None]:
        """Return ``(value, source)`` for a key path; ``(UNSET, None)`` when only the default sets it."""
        value = get_path(self.cli, parts)
        if value is not MISSING:
            return value, "command line"
        value = get_path(self.env, parts)
        if value is not MISSING:
            return value, "environment variable " + ENV_PREFIX + ENV_NESTED_DELIMITER.join(parts[:2]).upper()
        if self.yaml_file is not None:
            value = get_path(self.yaml_file.data, parts)
            if value is not MISSING:
                return value, self.yaml_file.source_of(parts)
        return UNSET, None


def _problems(exc: ValidationError, layers: SettingsOrigins) -> list[ConfigProblem]:
    """Translate pydantic errors into one problem per key, merging the branches of union types."""
    merged: dict[str, ConfigProblem] = {}
    for error in exc.errors(include_url=False):
        ctx = error.get("ctx") or {}
        cross = ctx.get("error")
        if isinstance(cross, CrossFieldProblems):
            for key, message in cross.problems:
                value, source = layers.lookup(key.split("."))
                merged.setdefault(key, ConfigProblem(key=key, message=message, value=value, source=source))
            continue
        parts, unknown = _key_parts(error["loc"], error["type"] == "extra_forbidden")
        key = ".".join(parts)
        _, source = layers.lookup(parts)
        if error["type"] == "extra_forbidden":
            parent = "".join(f"{part}." for part in parts[:-1])
            message = "unknown key; " + did_you_mean(unknown, _field_names(parts[:-1]), prefix=parent)
            problem = ConfigProblem(key=key, message=message, source=source)
        else:
            message = _clean_message(error["msg"])
            problem = ConfigProblem(key=key, message=message, value=error.get("input", UNSET), source=source)
        previous = merged.get(key)
        if previous is not None and message not in previous.message:
            problem = ConfigProblem(
                key=key, message=f"{previous.message}, or {message}", value=previous.value, source=previous.source
            )
        elif previous is not None:
            continue
        merged[key] = problem
    return sorted(merged.values(), key=_position_in_file)


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
            parts.append(str(element))
            cursor = None
        elif isinstance(cursor, type) and issubclass(cursor, BaseModel) and element in cursor.model_fields:
            parts.append(element)
            annotation = cursor.model_fields[element].annotation
            cursor = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        elif extra and is_last:
            parts.append(str(element))
        else:
            break  # a union branch tag such as 'int' or 'list[int]'
    return parts, parts[-1] if parts else ""


def _field_names(section_parts: Sequence[str]) -> list[str]:
    cursor: Any = Sam2ToolSettings
    for part in section_parts:
        annotation = cursor.model_fields[part].annotation
        cursor = annotation
    return list(cursor.model_fields)


def _clean_message(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message[:1].lower() + message[1:]
