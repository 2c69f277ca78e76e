"""The layers a configuration is built from: a YAML file and ``key.path=value`` overrides.

The YAML file is parsed once, keeping the line of every key so that problems can point at it.
:func:`sam2tool.config.loading.load_settings` merges the layers with :func:`merge_layers`
(defaults, then the YAML file, then the environment, then the command line) and validates the
result once; nothing here is global.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sam2tool.config.problems import ConfigError, ConfigProblem

KeyPath = tuple[str, ...]


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass
class YamlLayer:
    """A parsed YAML config file.

    Attributes:
        path: The file, as the user named it.
        data: Its content, a mapping of section name to mapping.
        lines: 1-based line of every key path, e.g. ``("dataset", "image_size") -> 7``.

    """

    path: Path
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def source_of(self, key_path: Sequence[str]) -> str:
        """``file:line`` of the deepest part of ``key_path`` present in the file."""
        for depth in range(len(key_path), 0, -1):
            line = self.lines.get(tuple(key_path[:depth]))
            if line is not None:
                return f"{self.path}:{line}"
        return str(self.path)


def merge_layers(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge nested mappings, each overriding the ones before it.

    Mappings present in both are merged key by key (a layer that sets ``optimizer.lr`` keeps the
    ``optimizer.weight_decay`` of the layers below); any other value replaces what was there.
    The result is a copy: the layers are left as they are.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            below = merged.get(key)
            if isinstance(below, dict) and isinstance(value, dict):
                merged[key] = merge_layers(below, value)
            else:
                merged[key] = copy.deepcopy(value)
    return merged


def read_yaml_config(path: Path) -> YamlLayer:
    """Read and parse a YAML config file, keeping the line of every key.

    Raises:
        ConfigError: The file is missing, unreadable, not YAML, empty, not a mapping, or has a
            key twice. The message names the file (and the line where there is one).

    """
    path = Path(path)
    if not path.exists():
        raise ConfigError.single(
            "", f"config file {path} does not exist; create one with `sam2tool init-config {path}`"
        )
    if path.is_dir():
        raise ConfigError.single("", f"{path} is a folder, not a config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError.single("", f"{path} is not a UTF-8 text file; is it really a YAML config?") from None
    except OSError as exc:
        raise ConfigError.single("", f"cannot read {path}: {exc.strerror or exc}") from None

    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError.single("", _syntax_error(path, exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError.single("", f"{path} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()

    if isinstance(data, dict):
        # A section whose keys are all commented out reads as null: it means "defaults".
        data = {key: ({} if value is None else value) for key, value in data.items()}
    if data is None:
        raise ConfigError.single(
            "", f"{path} is empty; write the settings to change, or run `sam2tool init-config {path} --force`"
        )
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise ConfigError.single(
            "",
            f"{path} holds {kind}, but a config must be a mapping of sections (model:, dataset:, trainer:, ...)",
        )
    assert node is not None  # data is a mapping, so the document has a node
    lines: dict[KeyPath, int] = {}
    problems: list[ConfigProblem] = []
    _index_lines(node, (), lines, problems, path)
    if problems:
        raise ConfigError(problems)
    return YamlLayer(path=path, data=data, lines=lines)


def _syntax_error(path: Path, exc: yaml.MarkedYAMLError) -> str:
    """``YAML syntax error at file:line:col: what (while ... that starts at line N)``."""
    found, start = exc.problem_mark, exc.context_mark
    mark = found or start
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    text = f"YAML syntax error at {where}: {exc.problem or exc.context or 'invalid YAML'}"
    if exc.context and exc.problem:
        text += f" ({exc.context}"
        if start is not None and found is not None and start.line != found.line:
            text += f" that starts at line {start.line + 1}"
        text += ")"
    return text


def _index_lines(
    node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int], problems: list[ConfigProblem], path: Path
) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key_path = (*prefix, str(key_node.value))
        line = key_node.start_mark.line + 1
        if key_node.tag != "tag:yaml.org,2002:str":
            problems.append(
                ConfigProblem(
                    key=".".join(key_path),
                    message="keys must be names such as model or image_size; quote it if it really is one",
                    source=f"{path}:{line}",
                )
            )
            continue
        if key_path in lines:
            problems.append(
                ConfigProblem(
                    key=".".join(key_path),
                    message=f"key appears twice (lines {lines[key_path]} and {line}); keep one",
                    source=f"{path}:{line}",
                )
            )
            continue
        lines[key_path] = line
        _index_lines(value_node, key_path, lines, problems, path)


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "a.c=[x, y]"]`` into ``{"a": {"b": 1, "c": ["x", "y"]}}``.

    Values are parsed as YAML with a safe loader (so ``1e-4`` is a float, ``null`` is None and
    ``[a, b]`` a list); an empty value is None.

    Raises:
        ConfigError: An override is not ``key.path=value`` or its value is not valid YAML.

    """
    result: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not part for part in parts):
            problems.append(
                ConfigProblem(
                    key=key,
                    message=f"override '{item}' must look like section.key=value, e.g. optimizer.lr=3e-5",
                    source="command line",
                )
            )
            continue
        try:
            value = yaml.load(raw, Loader=ConfigLoader)
        except yaml.YAMLError:
            problems.append(
                ConfigProblem(
                    key=key,
                    message=f"cannot parse the value '{raw}' as YAML; quote it if it is text",
                    source="command line",
                )
            )
            continue
        set_path(result, parts, value)
    if problems:
        raise ConfigError(problems)
    return result


def override_keys(overrides: Sequence[str]) -> set[str]:
    """The dotted keys ``key.path=value`` overrides set (``{"a.b", "a.c"}`` for ``["a.b=1", "a.c=x"]``)."""
    return {".".join(path) for path in _leaf_paths(parse_overrides(overrides))}


def _leaf_paths(tree: Mapping[str, Any], prefix: KeyPath = ()) -> list[KeyPath]:
    paths: list[KeyPath] = []
    for key, value in tree.items():
        paths += _leaf_paths(value, (*prefix, key)) if isinstance(value, Mapping) else [(*prefix, key)]
    return paths


def set_path(target: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    """Set ``target[parts[0]][parts[1]]... = value``, creating (or replacing) mappings on the way."""
    cursor = target
    for part in parts[:-1]:
        child = cursor.get(part)
        if not isinstance(child, dict):
            child = cursor[part] = {}
        cursor = child
    cursor[parts[-1]] = value


#: What :func:`get_path` returns when the path is not there (``None`` is a value).
MISSING: Any = object()


def get_path(data: Any, parts: Sequence[str]) -> Any:
    """Return the value at ``parts`` in nested dicts/lists, or a sentinel ``MISSING``."""
    cursor = data
    for part in parts:
        if isinstance(cursor, dict) and part in cursor:
            cursor = cursor[part]
        elif isinstance(cursor, list) and part.isdigit() and int(part) < len(cursor):
            cursor = cursor[int(part)]
        else:
            return MISSING
    return cursor
