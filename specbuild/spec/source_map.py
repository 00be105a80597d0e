"""A loaded spec: its plain data and a source map, where in the text each value is.

`Spec.problem(message, path)` makes a Problem that points at the value's line and column;
`format_path` writes a path as the messages show it, `layers[4].out_features`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import Problem


@dataclass
class Spec:
    data: dict
    file: str | None
    positions: dict[tuple, tuple[int, int]]
    text: str | None = None

    def locate(self, path: tuple) -> tuple[int | None, int | None]:
        """(line, col) of `path`, or of its nearest located ancestor; (None, None) if unknown."""
        path = tuple(path)
        while True:
            if path in self.positions:
                return self.positions[path]
            if not path:
                return (None, None)
            path = path[:-1]

    def problem(self, message, path=(), node=None, hint=None, severity="error") -> Problem:
        """A Problem with file/line/column filled in from `path`."""
        line, column = self.locate(path)
        return Problem(message, file=self.file, line=line, column=column,
                       path=format_path(path), node=node, hint=hint, severity=severity, key=tuple(path))


def format_path(path: tuple) -> str:
    """("layers", 4, "out_features") -> "layers[4].out_features"."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
