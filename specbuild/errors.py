"""Problems found in a spec, and the one exception that carries them.

Every problem knows where it is (file, line, column), which node it concerns
(`layers[4]` and its name `fc1`), what is wrong and how to fix it.  The
validator gathers all problems before raising, so one `SpecError` may carry many.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field


@dataclass
class Problem:
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str = ""              # where in the spec, e.g. "layers[4].out_features"
    node: str | None = None     # the node's name, e.g. "fc1"
    hint: str | None = None
    severity: str = "error"     # "error" or "warning"
    key: tuple = field(default=(), repr=False, compare=False)   # the path as a tuple of keys

    def __str__(self) -> str:
        where = self.file or ("<spec>" if self.line is not None else "")
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = where + ": " if where else ""
        if self.severity == "warning":
            text += "warning: "
        if self.path:
            text += self.path
            if self.node:
                text += f" ({self.node})"
            text += ": "
        text += self.message
        if self.hint:
            text += f" — {self.hint}"
        return text


class SpecError(Exception):
    """A spec is wrong.  `problems` lists every problem found; the attributes
    `file`, `line`, `column`, `path`, `node`, `message` and `hint` are those of
    the first one, for the common case of a single problem."""

    def __init__(self, problems: list[Problem] | str, **where):
        if isinstance(problems, str):
            problems = [Problem(problems, **where)]
        if not problems:
            raise ValueError("SpecError needs at least one problem")
        self.problems: list[Problem] = list(problems)
        first = self.problems[0]
        self.file, self.line, self.column = first.file, first.line, first.column
        self.path, self.node = first.path, first.node
        self.message, self.hint = first.message, first.hint
        super().__init__(str(self))

    def __str__(self) -> str:
        errors = [p for p in self.problems if p.severity == "error"]
        lines = [str(p) for p in self.problems]
        if len(errors) > 1:
            lines.append(f"{len(errors)} problems found")
        return "\n".join(lines)


def did_you_mean(word: str, choices, n: int = 3) -> str | None:
    """A hint naming the closest known names, or None when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=0.6)
    if not close:
        lower = {str(c).lower(): str(c) for c in choices}
        if str(word).lower() in lower:
            close = [lower[str(word).lower()]]
    if not close:
        return None
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"
