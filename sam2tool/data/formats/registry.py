"""The formats ``prepare-data`` reads, by name: registering a format is all it takes to offer it.

``--format`` lists the registered formats with their summaries, ``prepare-data`` takes every
option they declare, and the service builds the reader of the format chosen. The built-in formats
are registered by :mod:`sam2tool.data.formats`, so importing this module finds them there.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from sam2tool.data.formats.base import OPTION, OptionSpec, SourceFormat, SourceKind
from sam2tool.errors import UsageError

#: Format name -> its reader class, in the order ``--help`` lists them.
FORMATS: dict[str, type[SourceFormat[Any]]] = {}

FormatT = TypeVar("FormatT", bound=type[SourceFormat[Any]])


def register(format: FormatT) -> FormatT:
    """Offer ``format`` to ``prepare-data`` (also usable as a class decorator).

    Raises:
        ValueError: Another format has its name, or an option of the same name.
        TypeError: It does not describe itself: no name or summary, a source kind that is not
            ``folder``, ``file`` or ``none``, or ``Options`` not a dataclass of :func:`option` fields.

    """
    name = format.name
    if not name or not format.summary:
        raise TypeError(f"{format.__name__} needs a name and a summary to be registered")
    if name in FORMATS:
        raise ValueError(f"format '{name}' is registered already ({FORMATS[name].__name__})")
    if format.source_kind not in typing.get_args(SourceKind):
        raise TypeError(f"{format.__name__}.source_kind is {format.source_kind!r}, not folder, file or none")
    taken = {option: other.name for other in FORMATS.values() for option, _, _ in options_of(other)}
    for option, _, _ in options_of(format):
        if option in taken:
            raise ValueError(f"format '{name}' has the option {option!r} of format '{taken[option]}'")
    FORMATS[name] = format
    return format


def get_format(name: str) -> type[SourceFormat[Any]]:
    """The reader class of the format ``name``.

    Raises:
        UsageError: No format has that name.

    """
    try:
        return FORMATS[name]
    except KeyError:
        raise UsageError(f"unknown format '{name}'; formats: {', '.join(FORMATS)}") from None


def options_of(format: type[SourceFormat[Any]]) -> list[tuple[str, Any, OptionSpec]]:
    """``(field name, type, spec)`` of each option of ``format``, in the order its ``Options`` declares them.

    Raises:
        TypeError: ``Options`` is not a dataclass, or a field of it is not declared with :func:`option`.

    """
    if not dataclasses.is_dataclass(format.Options):
        raise TypeError(f"{format.__name__}.Options is not a dataclass")
    types = typing.get_type_hints(format.Options)
    found = []
    for field in dataclasses.fields(format.Options):
        spec = field.metadata.get(OPTION)
        if not isinstance(spec, OptionSpec):
            raise TypeError(f"{format.__name__}.Options.{field.name} is not declared with option()")
        found.append((field.name, types[field.name], spec))
    return found


def read_options(name: str, values: Mapping[str, Any]) -> Any:
    """The ``Options`` of the format ``name`` from option values as given on the command line.

    Args:
        name: A registered format.
        values: Field name -> value, for the options of any registered format: each is parsed
            (a bad one is an error whatever the format), those of the format ``name`` are kept;
            options not given take their defaults.

    Raises:
        UsageError: A value does not parse.

    """
    parsed = {
        field: spec.parse(values[field]) if spec.parse is not None else values[field]
        for format in FORMATS.values()
        for field, _, spec in options_of(format)
        if field in values
    }
    chosen = get_format(name)
    return chosen.Options(**{field: parsed[field] for field, _, _ in options_of(chosen) if field in parsed})
