"""What one generated class knows: its uses, its names, and how a value becomes code.

A network's class has one use.  A block's class serves every use of the block: `${...}`
over the block's params becomes an expression over the constructor's arguments, and a
size shape inference filled in (in_channels...) is written as one of the block's
expressions when that expression gives it in every use (`nn.BatchNorm2d(planes)`), as a
constant when every use agrees, else as a keyword-only constructor argument that each
call site passes (`in_channels`).  Two such sizes of the same input under the same
argument name are one constructor argument.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import registry
from ..spec.expressions import ExpressionError, evaluate, names_in
from .python_format import MISSING, WHOLE, Atom, Expr, Group, constant, literal, same, text_code

INIT_GLOBALS = frozenset({"self", "torch", "nn", "F", "operator", "super", "range", "float"})
FORWARD_GLOBALS = frozenset({"self", "torch", "nn", "F", "operator", "float"})


@dataclass
class Use:
    values: dict              # the block's params in this use ({} for a network)
    inner: dict               # node name -> NodeShape, as this use inferred it
    shape: object = None      # the use's own NodeShape (None for a network)


@dataclass
class Extra:
    """A keyword-only constructor argument: a size the uses of a block do not agree on."""
    name: str
    values: list              # per use; MISSING where a use lacks the layer
    key: tuple                # (node read, argument) or the layer's own label
    arg: str                  # the argument it fills ("in_channels")
    input: str | None         # the class's input it is a size of, if it is one

    @property
    def optional(self) -> bool:
        return any(value is MISSING for value in self.values)


@dataclass
class Where:
    """Where a layer being written stands, for the names of the arguments it may add."""
    label: str                # "conv1", "layer2_0", "conv_1": joined into argument names
    reads: list | None        # the nodes it reads; None when it reads a neighbour (a later copy or item)
    node: str                 # the spec's node, for errors
    path: tuple               # the spec path, for errors

    def within(self, label, first: bool) -> "Where":
        return Where(f"{self.label}_{label}", self.reads if first else None, self.node, self.path)


_NOT_SIZES = ("name", "in", "when", "repeat", "share", "doc", "tie", "forward")


def _size_texts(value, found: list) -> list:
    """The `${...}` texts a block's layers give as argument values (not `when:` or `repeat:`)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in _NOT_SIZES:
                _size_texts(item, found)
    elif isinstance(value, list):
        for item in value:
            _size_texts(item, found)
    elif isinstance(value, str) and WHOLE.match(value) and WHOLE.match(value).group(1).strip() not in found:
        found.append(WHOLE.match(value).group(1).strip())
    return found


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class Scope:
    graph: object             # the template Graph (a block as declared, `${...}` and `when:` kept)
    uses: list                # [Use]
    params: dict              # param -> default (variables.REQUIRED: none)
    spec_params: dict         # the spec's params, for an expression that reads one
    raw: dict                 # the graph's data as written (a block's body)
    class_name: str
    reserved: set = field(default_factory=set)     # class names, which no local may hide
    extras: list = field(default_factory=list)

    def __post_init__(self):
        self.names = set(INIT_GLOBALS) | set(self.reserved)
        self.locals = {param: self.fresh(param) for param in self.params}
        modules = {n.name for n in self.graph.nodes.values() if n.share is None and not _is_function(n.type)}
        self.taken_attributes = set(registry.MODULE_ATTRIBUTES) | modules
        self.attributes: dict[str, str] = {}       # local -> self.<attribute> that forward reads
        self.index = {id(use.shape): i for i, use in enumerate(self.uses)}
        self.candidates = self._candidates() if self.params else []
        taken = set(FORWARD_GLOBALS)
        self.vars = {}
        for name in list(self.graph.inputs) + list(self.graph.nodes):
            var = name
            while var in taken:
                var += "_"
            self.vars[name] = var
            taken.add(var)

    def fresh(self, name: str) -> str:
        while name in self.names:
            name += "_"
        self.names.add(name)
        return name

    def attribute(self, local: str) -> str:
        """`self.<name>` holding a constructor argument that forward reads."""
        if local not in self.attributes:
            name = local
            while name in self.taken_attributes:
                name += "_"
            self.taken_attributes.add(name)
            self.attributes[local] = name
        return "self." + self.attributes[local]

    def _candidates(self) -> list:
        """Expressions a filled-in size may be, with their value in each use (integers only): the
        `${...}` the block's layers give as arguments, then the params those read (a param only
        `when:` or `repeat:` reads is no size)."""
        texts = _size_texts(self.raw.get("layers"), [])
        out = []
        for text in texts + [p for p in self.params if p not in texts and any(p in names_in(t) for t in texts)]:
            values = []
            for use in self.uses:
                try:
                    values.append(evaluate(text, {**self.spec_params, **use.values}))
                except ExpressionError:
                    break
            if len(values) == len(self.uses) and all(_is_int(v) for v in values):
                out.append((text, values))
        return out

    def name_code(self, forward: bool):
        def code(name):
            if name not in self.locals:
                return None
            return self.attribute(self.locals[name]) if forward else self.locals[name]
        return code

    def value(self, raw, forward: bool = False, tuples: bool = False) -> Expr:
        """A value as the spec writes it, `${...}` over the params included."""
        if isinstance(raw, str) and "${" in raw:
            return Atom(text_code(raw, self.name_code(forward), self.spec_params))
        if isinstance(raw, list):
            items = [self.value(v, forward) for v in raw]
            return Group("", items, "()", one_tuple=True) if tuples else Group("", items, "[]")
        if isinstance(raw, dict):
            return Group("", [Atom(f"{literal(k)}: {self.value(v, forward).flat()}") for k, v in raw.items()], "{}")
        return constant(raw, tuples)

    def condition(self, when, forward: bool) -> str | None:
        """A `when:` as a condition; None when the layer is always there."""
        if when is True or when is None:
            return None
        return text_code(when, self.name_code(forward), self.spec_params)

    def included(self, when, use: int) -> bool:
        if isinstance(when, bool) or when is None:
            return when is not False
        return bool(evaluate(WHOLE.match(when).group(1), {**self.spec_params, **self.uses[use].values}))

    def site(self, where: Where, arg: str, read: int = 0, own: str | None = None) -> tuple:
        """(key, name, input) of a size `where`'s layer takes as `arg` from its input number `read`."""
        own = own or arg
        source = where.reads[read] if where.reads and read < len(where.reads) else None
        if source is not None and source in self.graph.inputs:
            return (source, arg), arg if len(self.graph.inputs) == 1 else f"{source}_{arg}", source
        if source is not None:
            return (source, arg), f"{where.label}_{own}", None
        return (where.label, own), f"{where.label}_{own}", None

    def resolve(self, values: list, site: tuple, forward: bool = False) -> Expr | None:
        """A filled-in value, one per use (MISSING where a use lacks it): None when no use has it."""
        present = [v for v in values if v is not MISSING]
        if not present:
            return None
        if self.candidates and all(_is_int(v) for v in present):
            for text, known in self.candidates:
                if all(v is MISSING or v == k for v, k in zip(values, known)):
                    return self.value("${" + text + "}", forward)
        if all(same(v, present[0]) for v in present):
            return constant(present[0], tuples=True)
        extra = self._extra(values, *site)
        return Atom(self.attribute(extra.name) if forward else extra.name)

    def _extra(self, values: list, key: tuple, name: str, source: str | None) -> Extra:
        for extra in self.extras:
            if extra.key == key and all(a is MISSING or b is MISSING or same(a, b)
                                        for a, b in zip(extra.values, values)):
                extra.values = [a if a is not MISSING else b for a, b in zip(extra.values, values)]
                return extra
        extra = Extra(self.fresh(name), list(values), key, key[1] if len(key) == 2 else name, source)
        self.extras.append(extra)
        return extra


def _is_function(type_name) -> bool:
    entry = registry.lookup(type_name)
    return entry is not None and not entry.makes_module


def collect_uses(checked, networks: list) -> dict:
    """Each block's uses (NodeShapes) reachable from `networks`; blocks before the blocks using them."""
    uses: dict[str, list] = {}

    def visit(shape):
        if shape.graph is not None:
            walk(shape.graph, shape.inner)
            uses.setdefault(shape.type, []).append(shape)
        elif shape.type is not None and _is_sequence(shape.type):
            for item in shape.inner.values():
                visit(item)

    def walk(graph, inner):
        for node in graph.nodes.values():
            shape = inner.get(node.name)
            if node.share is not None or shape is None:
                continue
            units = [shape.inner[str(i)] for i in range(node.repeat)] if node.repeat > 1 else [shape]
            for unit in units:
                visit(unit)

    for name in networks:
        walk(checked.graphs.networks[name], checked.shapes[name])
    return uses


def _is_sequence(type_name) -> bool:
    entry = registry.lookup(type_name)
    return entry is not None and entry.call == "sequential"
