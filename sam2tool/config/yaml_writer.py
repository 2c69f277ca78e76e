"""Write settings as a commented YAML file: every key preceded by its documentation."""

from __future__ import annotations

import textwrap
from typing import Any

import yaml
from pydantic import BaseModel

from sam2tool.config.schema import Sam2ToolSettings

_WIDTH = 96


def render_settings_yaml(settings: Sam2ToolSettings, title: str) -> str:
    """Return ``settings`` as YAML with a comment above every section and key.

    Args:
        settings: The values to write.
        title: First comment line, e.g. which preset this is.

    Returns:
        YAML text that loads back into equal settings.

    """
    lines = [
        *_comment(title, indent=""),
        "#",
        "# Check it with `sam2tool validate-config FILE`. Any key can be overridden with an environment",
        "# variable (SAM2TOOL_OPTIMIZER__LR=3e-5) or, for commands that run a model, a key.path=value argument.",
        "",
    ]
    data = settings.model_dump(mode="json")
    for section_name, section_field in Sam2ToolSettings.model_fields.items():
        section_cls = section_field.annotation
        assert isinstance(section_cls, type) and issubclass(section_cls, BaseModel)
        lines += _comment(_first_paragraph(section_cls.__doc__ or ""), indent="")
        lines.append(f"{section_name}:")
        for name, field in section_cls.model_fields.items():
            lines += _comment(field.description or "", indent="  ")
            lines.append(f"  {name}: {_scalar(data[section_name][name])}")
        lines.append("")
    return "\n".join(lines)


def _first_paragraph(doc: str) -> str:
    return " ".join(doc.strip().split("\n\n")[0].split())


def _comment(text: str, indent: str) -> list[str]:
    text = " ".join(text.split())
    return textwrap.wrap(text, width=_WIDTH, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}# ")


def _scalar(value: Any) -> str:
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)
    return dumped.removesuffix("\n...\n").strip()
