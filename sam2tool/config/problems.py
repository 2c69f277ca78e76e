"""Configuration problems: what is wrong, where it came from, and how to render it.

A :class:`ConfigError` holds every problem found in one go, so that a user fixes them all in
one edit rather than one per run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sam2tool.errors import Sam2ToolError


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class ConfigProblem:
    """One problem with one setting.

    Attributes:
        key: Dotted key such as ``dataset.image_size``; empty for problems with a whole file.
        message: Why it is wrong and what to do, as one sentence.
        value: The offending value, or ``UNSET`` when there is none to show.
        source: Where the value came from: ``file.yaml:12``, ``environment variable X``,
            ``command line`` or ``default``.

    """

    key: str
    message: str
    value: Any = field(default=UNSET)
    source: str | None = None

    def render(self) -> str:
        """One line for the terminal: ``source: key: message (got value)``."""
        parts = [p for p in (self.source, self.key) if p]
        text = ": ".join([*parts, self.message])
        if self.value is not UNSET:
            text += f" (got {self.value!r})"
        return text

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict with the keys key, message, value, source."""
        value = self.value
        if value is UNSET:
            value = None
        elif not isinstance(value, (str, int, float, bool, type(None), list, dict)):
            value = repr(value)
        return {"key": self.key, "message": self.message, "value": value, "source": self.source}


class ConfigError(Sam2ToolError):
    """One or more configuration problems (exit code 2)."""

    exit_code = 2

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(problem.render() for problem in self.problems))

    @classmethod
    def single(cls, key: str, message: str, *, value: Any = UNSET, source: str | None = None) -> ConfigError:
        """A ConfigError with one problem."""
        return cls([ConfigProblem(key=key, message=message, value=value, source=source)])


def did_you_mean(word: str, candidates: Iterable[str], prefix: str = "", noun: str = "keys here") -> str:
    """Return ``did you mean 'prefix.x'?`` for the closest candidate, or the list of valid names."""
    options = sorted(candidates)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{prefix}{close[0]}'?"
    return f"valid {noun}: " + ", ".join(options)
