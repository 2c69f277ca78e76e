"""The configuration reference (docs/configuration.md), generated from the settings schema.

Regenerate with ``python -m sam2tool.config.reference > docs/configuration.md``; a test fails
when the committed file is stale.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel

from sam2tool.config.schema import Sam2ToolSettings


def render_reference() -> str:
    """Markdown: one table per section with every key, its type, default and documentation."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the settings schema (`python -m sam2tool.config.reference`); do not edit by hand.",
        "Every key can be set in the YAML file, as an environment variable `SAM2TOOL_<SECTION>__<KEY>`,",
        "or, for commands that run a model, as a `section.key=value` argument.",
        "",
    ]
    defaults = _defaults()
    for section, field in Sam2ToolSettings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        lines += [f"## `{section}`", "", " ".join((model.__doc__ or "").split()), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            kind = _type_name(info.annotation)
            default = json.dumps(defaults[section][name])
            meaning = " ".join((info.description or "").split()).replace("|", "\\|")
            lines.append(f"| `{section}.{name}` | {kind} | `{default}` | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def _defaults() -> dict[str, Any]:
    return Sam2ToolSettings().model_dump(mode="json")


def _type_name(annotation: Any) -> str:
    """A readable type: ``int``, ``float or null``, ``one of "a", "b"``, ``list of str``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin in (list, tuple):
        inner = [_type_name(a) for a in args if a is not Ellipsis]
        return f"{'list' if origin is list else 'tuple'} of {', '.join(inner)}"
    return getattr(annotation, "__name__", str(annotation))


if __name__ == "__main__":
    print(render_reference(), end="")
