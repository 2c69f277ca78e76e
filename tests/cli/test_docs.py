"""The documentation stays true: docs/commands.md names every option, commands use real options, links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from sam2tool.cli import COMMANDS, app
from tests.conftest import REPO

COMMANDS_MD = REPO / "docs" / "commands.md"
#: Every Markdown page that documents sam2tool: the README and everything under docs/.
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SECTION_HEADING = re.compile(r"^### `sam2tool ([a-z-]+)`", flags=re.MULTILINE)
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _options(command: str) -> list[str]:
    """Every option string of a command as ``--help`` shows it (long and short forms), less help."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    names: list[str] = []
    for param in group.commands[command].params:
        if param.param_type_name == "option":
            names += [*param.opts, *param.secondary_opts]
    return names


def _sections() -> dict[str, str]:
    """docs/commands.md split at its ``### `sam2tool COMMAND` `` headings: command -> its section."""
    text = COMMANDS_MD.read_text(encoding="utf-8")
    matches = list(SECTION_HEADING.finditer(text))
    ends = [m.start() for m in matches[1:]] + [len(text)]
    return {m.group(1): text[m.start() : end] for m, end in zip(matches, ends, strict=True)}


def _mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_commands_reference_has_one_section_per_command() -> None:
    assert sorted(_sections()) == sorted(COMMANDS)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_of_the_command_is_in_its_section(command: str) -> None:
    section = _sections().get(command, "")
    missing = [option for option in _options(command) if not _mentions(section, option)]
    assert not missing, (
        f"docs/commands.md, section `sam2tool {command}`, does not mention {', '.join(missing)} "
        f"(see `sam2tool {command} --help`)"
    )


def _code_lines(text: str) -> list[str]:
    """The logical lines of every fenced code block (``\\`` continuations and ``[...]`` synopsis lines joined)."""
    lines: list[str] = []
    inside = False
    joining = False
    for raw in text.splitlines():
        if FENCE.match(raw):
            inside, joining = not inside, False
            continue
        if not inside:
            continue
        line = raw.rstrip()
        if lines and (joining or re.match(r"\s+\[", line)):
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
        joining = lines[-1].endswith("\\")
        if joining:
            lines[-1] = lines[-1][:-1]
    return lines


def _documented_invocations() -> list[tuple[str, str, str]]:
    """(page, command, its arguments) for every ``sam2tool COMMAND ...`` in a code block of any page."""
    names = "|".join(re.escape(name) for name in COMMANDS)
    invocation = re.compile(rf"\bsam2tool ({names})(?=\s|$)")
    found = []
    for page in PAGES:
        for line in _code_lines(page.read_text(encoding="utf-8")):
            line = re.sub(r"(^|\s)#.*$", "", line)  # shell comments
            for part in re.split(r"&&|;\s", line):
                matches = list(invocation.finditer(part))
                if not matches:
                    continue
                ends = [m.start() for m in matches[1:]] + [len(part)]
                for match, end in zip(matches, ends, strict=True):
                    found.append((page.name, match.group(1), part[match.end() : end]))
    return found


def test_documented_command_lines_use_only_real_options() -> None:
    invocations = _documented_invocations()
    assert len(invocations) > 40  # the parser found the examples and synopses
    wrong = [
        f"{page}: sam2tool {command} {option}"
        for page, command, arguments in invocations
        for option in OPTION.findall(arguments)
        if option not in _options(command) and option not in ("--help", "-h")
    ]
    assert not wrong, "options the commands do not have:\n" + "\n".join(wrong)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a page (outside code blocks)."""
    anchors: set[str] = set()
    inside = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        heading = re.match(r"#{1,6} (.+)", line)
        if heading and not inside:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            anchor, n = slug, 0
            while anchor in anchors:
                n += 1
                anchor = f"{slug}-{n}"
            anchors.add(anchor)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    inside = False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            inside = not inside
            continue
        if inside:
            continue
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}:{number}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{page.name}:{number}: {target} (no heading #{anchor} in {file.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)
