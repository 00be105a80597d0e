"""Python source text for `specbuild export --to python` (export/python_code.py).

Expressions are small trees (`Atom`, `Group`, `Kw`, `Star`, `Repeat`) laid out as black
lays them out: on one line when it fits, else the brackets' contents on one indented line,
else one item a line with a trailing comma.  Statements (`Assign`, `If`, `Comment`) render
at an indent.  Values become literals (`float("inf")`, tuples for lists), and a spec's
`${...}` text becomes the Python expression it already is, names renamed by `ast`.
"""
from __future__ import annotations

import ast
import json
import math
import re
import textwrap
from dataclasses import dataclass, field

from ..spec.expressions import CONSTANT_NAMES

WIDTH = 100
INDENT = "    "
WHOLE = re.compile(r"^\$\{([^{}]*)\}$")
ANY = re.compile(r"\$\{([^}]*)\}")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()      # a value a use of a block does not have (a layer `when:` leaves out)


class Expr:
    def flat(self) -> str:
        raise NotImplementedError


@dataclass
class Atom(Expr):
    text: str

    def flat(self) -> str:
        return self.text


@dataclass
class Group(Expr):
    """head(items), or a list / tuple when head is "" and the brackets say so."""
    head: str
    items: list
    brackets: str = "()"
    one_tuple: bool = False          # (x,): a tuple of one

    def flat(self) -> str:
        inner = ", ".join(item.flat() for item in self.items) + ("," if self.one_tuple and len(self.items) == 1 else "")
        return f"{self.head}{self.brackets[0]}{inner}{self.brackets[1]}"


@dataclass
class Kw(Expr):
    name: str
    value: Expr

    def flat(self) -> str:
        return f"{self.name}={self.value.flat()}"


@dataclass
class Star(Expr):
    value: Expr

    def flat(self) -> str:
        return "*" + self.value.flat()


@dataclass
class Repeat(Expr):
    """[value for _ in range(count)]."""
    value: Expr
    count: str

    def flat(self) -> str:
        return f"[{self.value.flat()} for _ in range({self.count})]"


def call(head: str, *items) -> Group:
    return Group(head, [item if isinstance(item, Expr) else Atom(str(item)) for item in items])


def layout(expr: Expr, indent: str, prefix: str = "", suffix: str = "") -> list[str]:
    """The lines of `prefix + expr + suffix` at `indent`, broken as black breaks them."""
    line = indent + prefix + expr.flat() + suffix
    if len(line) <= WIDTH:
        return [line]
    if isinstance(expr, Kw):
        return layout(expr.value, indent, prefix + expr.name + "=", suffix)
    if isinstance(expr, Star):
        return layout(expr.value, indent, prefix + "*", suffix)
    inner = indent + INDENT
    if isinstance(expr, Repeat):
        return ([indent + prefix + "["] + layout(expr.value, inner)
                + [f"{inner}for _ in range({expr.count})", indent + "]" + suffix])
    if not isinstance(expr, Group) or not expr.items:
        return [line]
    opening, closing = indent + prefix + expr.head + expr.brackets[0], indent + expr.brackets[1] + suffix
    together = inner + ", ".join(item.flat() for item in expr.items) + ("," if expr.one_tuple else "")
    if len(together) <= WIDTH:
        return [opening, together, closing]
    lines = [opening]
    for item in expr.items:          # black's trailing comma, but not after a sole argument
        lines += layout(item, inner, "", "," if len(expr.items) > 1 or expr.one_tuple else "")
    return lines + [closing]


# --- statements ----------------------------------------------------------------------------------

@dataclass
class Assign:
    prefix: str          # "self.fc = ", "x = ", "return " or "" (a call on its own)
    value: Expr
    suffix: str = ""


@dataclass
class If:
    condition: str
    body: list
    orelse: list = field(default_factory=list)


@dataclass
class Comment:
    text: str


def render(statements: list, indent: str) -> list[str]:
    lines: list[str] = []
    for statement in statements:
        if isinstance(statement, Assign):
            lines += layout(statement.value, indent, statement.prefix, statement.suffix)
        elif isinstance(statement, If):
            lines.append(f"{indent}if {statement.condition}:")
            lines += render(statement.body, indent + INDENT)
            if statement.orelse:
                lines.append(f"{indent}else:")
                lines += render(statement.orelse, indent + INDENT)
        else:
            width = max(WIDTH - len(indent) - 2, 40)
            lines += [f"{indent}# {line}" for line in textwrap.wrap(statement.text, width, break_long_words=False)]
    return lines


def docstring(text: str, indent: str) -> list[str]:
    """A docstring, wrapped; paragraphs (blank lines) kept."""
    text = (text or "").strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if text.endswith('"'):
        text = text[:-1] + '\\"'     # """... "quoted"""" would end the string early
    if not text:
        return []
    one = f'{indent}"""{" ".join(text.split())}"""'
    if "\n\n" not in text and len(one) <= WIDTH:
        return [one]
    lines = []
    for i, paragraph in enumerate(re.split(r"\n\s*\n", text)):
        first = indent + ('"""' if not i else "")
        lines += ([""] if i else []) + textwrap.wrap(" ".join(paragraph.split()), WIDTH, initial_indent=first,
                                                     subsequent_indent=indent, break_on_hyphens=False,
                                                     break_long_words=False)
    return lines + [f'{indent}"""']


# --- values --------------------------------------------------------------------------------------

def literal(value) -> str:
    """A scalar as Python source."""
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        if math.isnan(value):
            return 'float("nan")'
        if math.isinf(value):
            return 'float("inf")' if value > 0 else 'float("-inf")'
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"no literal for {value!r}")


def constant(value, tuples: bool = False) -> Expr:
    """A value as an expression; `tuples`: a list becomes a tuple (torch takes kernel_size=(3, 3))."""
    if isinstance(value, (list, tuple)):
        items = [constant(v) for v in value]
        return Group("", items, "()", one_tuple=True) if tuples else Group("", items, "[]")
    if isinstance(value, dict):
        return Group("", [Atom(f"{literal(k)}: {constant(v).flat()}") for k, v in value.items()], "{}")
    return Atom(literal(value))


def same(a, b) -> bool:
    """Equal values of the same types (1, 1.0 and True are three values here)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def expression(text: str, name_code, constants: dict) -> str:
    """`${...}`'s text as Python: a name `name_code` knows becomes its code (a parameter, or
    `self.x`), any other (a spec param) its value; true/false/null are True/False/None."""
    tree = ast.parse(text.strip(), mode="eval")

    class Rename(ast.NodeTransformer):
        def visit_Name(self, node):
            if node.id in CONSTANT_NAMES:
                return ast.Constant(CONSTANT_NAMES[node.id])
            code = name_code(node.id)
            return ast.parse(code if code is not None else literal(constants[node.id]), mode="eval").body

    return ast.unparse(ast.fix_missing_locations(Rename().visit(tree)))


def text_code(value: str, name_code, constants: dict) -> str:
    """A string holding `${...}`: the expression, or an f-string when text surrounds it."""
    whole = WHOLE.match(value)
    if whole:
        return expression(whole.group(1), name_code, constants)
    parts, at = [], 0
    for match in ANY.finditer(value):
        if match.start() > at:
            parts.append(ast.Constant(value[at:match.start()]))
        parts.append(ast.FormattedValue(ast.parse(expression(match.group(1), name_code, constants),
                                                  mode="eval").body, -1, None))
        at = match.end()
    if at < len(value):
        parts.append(ast.Constant(value[at:]))
    return ast.unparse(ast.fix_missing_locations(ast.JoinedStr(parts)))


def index_code(index) -> str:
    """A parsed subscript ((slice(None), -1, slice(None)), from shapes.index) as `[:, -1, :]`."""
    def one(item) -> str:
        if item is Ellipsis:
            return "..."
        if isinstance(item, slice):
            bits = ["" if b is None else str(b) for b in (item.start, item.stop, item.step)]
            return ":".join(bits[:2]) + (f":{bits[2]}" if item.step is not None else "")
        return str(item)
    items = index if isinstance(index, tuple) else (index,)
    return "[" + ", ".join(one(item) for item in items) + "]"     # t[(0,)] is t[0]
