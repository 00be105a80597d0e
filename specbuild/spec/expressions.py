"""`${...}`: a param's name or a small arithmetic expression over params.

`${3 * d}`, `${d // n_head}`, `${stride == 1 and inp == oup}`: numbers, names,
`+ - * // % **`, comparisons, `and or not` and parentheses.  The text is parsed by
Python's own `ast` and walked by a whitelist: any other construct (a call, an
attribute, a subscript, a string, a lambda) is refused, nothing is ever passed to
`eval`, and sizes are bounded so that `${9**9**9}` is an error, not a hang.
"""
from __future__ import annotations

import ast
import operator

MAX_TEXT = 200           # characters inside ${...}
MAX_DEPTH = 24           # nesting of operations
MAX_INT = 2 ** 63 - 1    # torch's integers are 64-bit
CONSTANT_NAMES = {"true": True, "false": False, "True": True, "False": False, "null": None, "None": None}

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
           ast.Div: operator.truediv}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
            ast.Div: "/"}
# what a refused construct is called in the message
_REFUSED = {ast.Call: "a call", ast.Attribute: "attribute access", ast.Subscript: "indexing",
            ast.Lambda: "a lambda", ast.IfExp: "a conditional expression", ast.List: "a list",
            ast.Tuple: "a tuple", ast.Dict: "a mapping", ast.Set: "a set", ast.JoinedStr: "an f-string",
            ast.NamedExpr: "an assignment", ast.Starred: "unpacking", ast.BitAnd: "&", ast.BitOr: "|",
            ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.MatMult: "@", ast.Invert: "~",
            ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}
ALLOWED = "numbers, param names, + - * / // % **, == != < <= > >=, and, or, not, parentheses"


class ExpressionError(ValueError):
    def __init__(self, message: str, hint: str | None = None):
        self.message, self.hint = message, hint
        super().__init__(message)


class UndefinedName(ExpressionError):
    """A name the expression reads that no param defines."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"undefined variable {name!r}")


def names_in(text: str) -> set[str]:
    """The param names an expression reads (empty when it does not parse: `evaluate` says why)."""
    try:
        tree = _parse(text)
    except ExpressionError:
        return set()
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id not in CONSTANT_NAMES}


def evaluate(text: str, values: dict):
    """The value of the expression `text` (what stands inside ${...}) over `values`.
    Raises ExpressionError for anything outside the whitelist, an unknown name (KeyError
    is not used: the message says which), a value out of range or a division by zero."""
    return _Evaluator(values).value(_parse(text).body, 0)


def _parse(text: str) -> ast.Expression:
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("an empty ${}", "write a param's name or an expression, e.g. ${2 * hidden}")
    if len(text) > MAX_TEXT:
        raise ExpressionError(f"the expression is {len(text)} characters long, over the limit of {MAX_TEXT}",
                              "split it into params")
    try:
        return ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        detail = getattr(error, "msg", None) or "it does not parse"
        raise ExpressionError(f"it is no name or expression ({detail})", f"it may use {ALLOWED}") from None


class _Evaluator:
    def __init__(self, values: dict):
        self.values = values

    def value(self, node, depth: int):
        if depth > MAX_DEPTH:
            raise ExpressionError(f"the expression nests deeper than {MAX_DEPTH} levels", "split it into params")
        method = getattr(self, "_" + type(node).__name__.lower(), None)
        if method is None:
            what = _REFUSED.get(type(node), type(node).__name__)
            raise ExpressionError(f"{what} is not allowed in ${{...}}", f"it may use {ALLOWED}")
        return _bounded(method(node, depth + 1))

    def _constant(self, node, depth):
        if isinstance(node.value, bool) or isinstance(node.value, (int, float)):
            return node.value
        what = "a string" if isinstance(node.value, str) else repr(node.value)
        raise ExpressionError(f"{what} is not allowed in ${{...}}", f"it may use {ALLOWED}")

    def _name(self, node, depth):
        if node.id in CONSTANT_NAMES:
            return CONSTANT_NAMES[node.id]
        if node.id not in self.values:
            raise UndefinedName(node.id)
        return self.values[node.id]

    def _unaryop(self, node, depth):
        operand = self.value(node.operand, depth)
        if isinstance(node.op, ast.Not):
            return not _boolean(operand, "not")
        if type(node.op) not in (ast.USub, ast.UAdd):
            raise ExpressionError(f"{_REFUSED.get(type(node.op), 'that operator')} is not allowed in ${{...}}",
                                  f"it may use {ALLOWED}")
        number = _number(operand, "-" if isinstance(node.op, ast.USub) else "+")
        return -number if isinstance(node.op, ast.USub) else number

    def _binop(self, node, depth):
        op = type(node.op)
        if op not in _BINARY:
            raise ExpressionError(f"{_REFUSED.get(op, 'that operator')} is not allowed in ${{...}}",
                                  f"it may use {ALLOWED}")
        left, right = (_number(self.value(side, depth), _SYMBOLS[op]) for side in (node.left, node.right))
        if op is ast.Pow:
            _check_power(left, right)
        if op in (ast.FloorDiv, ast.Mod, ast.Div) and right == 0:
            raise ExpressionError(f"division by zero ({_SYMBOLS[op]} 0)")
        try:
            return _BINARY[op](left, right)
        except OverflowError:
            raise ExpressionError(f"{left} {_SYMBOLS[op]} {right} is out of range") from None

    def _boolop(self, node, depth):
        word = "and" if isinstance(node.op, ast.And) else "or"
        results = [_boolean(self.value(v, depth), word) for v in node.values]
        return all(results) if word == "and" else any(results)

    def _compare(self, node, depth):
        left = self.value(node.left, depth)
        for op, right_node in zip(node.ops, node.comparators):
            if type(op) not in _COMPARE:
                raise ExpressionError(f"{_REFUSED.get(type(op), 'that comparison')} is not allowed in ${{...}}",
                                      f"it may use {ALLOWED}")
            right = self.value(right_node, depth)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True


def _number(value, symbol: str):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExpressionError(f"{symbol} takes numbers, and {value!r} is not one")
    return value


def _boolean(value, word: str) -> bool:
    if not isinstance(value, bool):
        raise ExpressionError(f"`{word}` takes true or false, and {value!r} is neither",
                              "compare it first, e.g. `t != 1`")
    return value


def _check_power(base, exponent) -> None:
    """`**` within 64 bits: checked before computing, so 9**9**9 costs nothing."""
    if isinstance(base, int) and isinstance(exponent, int):
        if exponent < 0:
            return
        if abs(base) > 1 and exponent * (abs(base).bit_length() - 1) > 63:
            raise ExpressionError(f"{base} ** {exponent} is beyond torch's 64-bit integers")
    elif abs(exponent) > 1024 or abs(base) > 2 ** 64:
        raise ExpressionError(f"{base} ** {exponent} is out of range")


def _bounded(value):
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ExpressionError(f"the value {value:,} is beyond torch's 64-bit integers")
    if isinstance(value, complex):
        raise ExpressionError("the value is a complex number")
    return value
