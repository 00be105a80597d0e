"""Checks of single layer nodes: their arguments against the schema (one validator per
type), their number of inputs, their nested layers and the relations between their
arguments.  validate runs them over a spec's graphs, and blocks over each instance of
a block with params (whose values are known only where the block is used)."""
from __future__ import annotations

import math
from functools import lru_cache

import jsonschema

from .. import registry
from ..errors import Problem, did_you_mean
from .loader import Spec
from .schema import build_schema
from .schema_errors import translate


def _is_number(checker, value) -> bool:
    """JSON has no NaN, and no argument torch takes means it: YAML's `.nan` is not a number here."""
    return jsonschema.Draft202012Validator.TYPE_CHECKER.is_type(value, "number") and not (
        isinstance(value, float) and math.isnan(value))


_SpecValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("number", _is_number))


class _Validators:
    """The spec schema without per-type dispatch, plus one validator per layer type's arguments."""

    def __init__(self):
        self.schema = build_schema(dispatch=False)
        self.whole = _SpecValidator(self.schema)
        self.by_type: dict = {}

    def for_type(self, type_name: str):
        return self.for_def(f"layer.{type_name}")

    def for_def(self, name: str):
        """A validator of one of the schema's definitions (`layer.Linear`, `block`)."""
        if name not in self.by_type:
            self.by_type[name] = _SpecValidator({"$ref": f"#/$defs/{name}", "$defs": self.schema["$defs"]})
        return self.by_type[name]


@lru_cache(maxsize=4)
def _validators(types_key: tuple) -> _Validators:
    return _Validators()


def schema_problems(data: dict, spec: Spec, block: str | None = None) -> list[Problem]:
    """The schema's errors for a spec's data; with `block`, for that block of `data` alone
    (an instance: its params' values put in)."""
    validators = _validators(tuple(sorted(registry.layer_types())))
    if block is None:
        errors = list(validators.whole.iter_errors(data))
    else:
        errors = list(validators.for_def("block").iter_errors(data["blocks"][block]))
        for error in errors:
            error.path.extendleft(("blocks", block))
    for path, node in _layer_nodes(data):
        if registry.lookup(node.get("type")) is not None:   # unknown types are reported with the graph
            for error in validators.for_type(node["type"]).iter_errors(node):
                error.path.extendleft(reversed(path))    # make its path the node's place in the spec
                errors.append(error)
    problems, seen = [], set()
    for error in errors:
        for problem in translate(error, data, spec):
            marker = (problem.path, problem.message)
            if marker not in seen:
                seen.add(marker)
                problems.append(problem)
    return problems


def _layer_nodes(data: dict):
    """(path, node) of every layer in the spec: in layers lists, blocks, networks, and nested as arguments."""
    def layers_of(graph, base):
        if isinstance(graph, dict) and isinstance(graph.get("layers"), list):
            for i, node in enumerate(graph["layers"]):
                if isinstance(node, dict):
                    yield base + ("layers", i), node
                    yield from nested(node, base + ("layers", i))

    def nested(node, base):
        for key, value in node.items():
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if isinstance(item, dict) and isinstance(item.get("type"), str):
                    where = base + ((key, i) if isinstance(value, list) else (key,))
                    yield where, item
                    yield from nested(item, where)

    yield from layers_of(data, ())
    for group in ("blocks", "networks"):
        if isinstance(data.get(group), dict):
            for name, graph in data[group].items():
                yield from layers_of(graph, (group, name))


def node_problems(graph, graphs, spec) -> list[Problem]:
    """Each node's arity, `repeat:`, nested layers and argument relations."""
    problems = []
    for node in graph.nodes.values():
        least, most = _arity(node.type, graphs)
        if node.type and not least <= len(node.inputs) <= most:
            want = str(least) if least == most else f"{least} to {most}" if most < 64 else f"at least {least}"
            problems.append(spec.problem(f"{node.type} takes {want} input(s), but `in:` gives {len(node.inputs)}",
                                         node.path, node=node.name, hint="list its inputs with `in: [a, b]`"))
        if node.repeat > 1 and (least, most) != (1, 1):
            problems.append(spec.problem("`repeat:` chains copies, so the layer must take one input",
                                         node.path + ("repeat",), node=node.name))
        if node.forward:
            problems += _forward_problems(node, graphs, spec)
        problems += nested_problems(node.args, node.path, node.name, spec, graphs.blocks, node.type)
        problems += relation_problems(node.type, node.args, node.path, node.name, spec)
    return problems


def _forward_problems(node, graphs, spec) -> list[Problem]:
    """`forward:` names parameters of the layer's forward that `in:` does not give already."""
    entry = registry.lookup(node.type)
    if node.type in graphs.blocks or entry is None or entry.call not in ("module", "user"):
        what = "a block" if node.type in graphs.blocks else f"a {entry.call}" if entry else "unknown"
        return [spec.problem(f"`forward:` passes arguments to a layer's forward call, and {node.type} is {what}",
                             node.path + ("forward",), node=node.name,
                             hint="give a tensor function's arguments as the layer's own keys"
                             if entry is not None and not entry.makes_module else "drop `forward:`")]
    problems = []
    for key in node.forward:
        if entry.forward and key not in entry.forward:
            problems.append(spec.problem(f"{node.type}'s forward has no parameter {key!r}", node.path + ("forward", key),
                                         node=node.name, hint=did_you_mean(key, entry.forward)
                                         or "it takes: " + ", ".join(entry.forward)))
        elif key in entry.forward[:len(node.inputs)]:
            problems.append(spec.problem(f"{key!r} is given by `in:` already (its input {entry.forward.index(key)})",
                                         node.path + ("forward", key), node=node.name,
                                         hint="give it once: in `in:` or in `forward:`"))
    return problems


def args_of(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k not in ("type", "when")}


def relation_problems(type_name, args: dict, path: tuple, name, spec) -> list[Problem]:
    """registry.ARG_RELATIONS: what must hold between a type's arguments, reported at the argument."""
    relations = registry.ARG_RELATIONS.get(type_name, ())
    if not relations:
        return []
    entry = registry.lookup(type_name)
    described = entry.args if entry else registry.CATALOG["optimizers"].get(type_name, {}).get("args", {})
    values = {arg: about.get("default") for arg, about in described.items()} | args
    return [spec.problem(message.format(type=type_name, **values), path + next(((a,) for a in names if a in args), ()),
                         node=name, hint=hint) for names, test, message, hint in relations if not test(values, args)]


def _arity(type_name, graphs) -> tuple[int, int]:
    if type_name in graphs.blocks:
        n = len(graphs.blocks[type_name].inputs)
        return n, n
    entry = registry.lookup(type_name)
    return tuple(entry.inputs) if entry else (0, 64)


def nested_problems(args: dict, path: tuple, name, spec, blocks=(), outer: str | None = None) -> list[Problem]:
    """Problems of the layers given as arguments (`module:`, `encoder_layer:`, Sequential's
    `layers:`).  Only a Sequential's layers may be blocks or carry `when:`."""
    problems = []
    entry = registry.lookup(outer) if outer else None
    for key, value in args.items():
        in_sequence = entry is not None and entry.call == "sequential" and key == entry.operand
        if isinstance(value, list):   # Sequential's layers
            for i, item in enumerate(value):
                if isinstance(item, dict) and "type" in item:
                    problems += _nested_layer(item, i, path + (key,), name, spec, blocks, in_sequence)
            continue
        if isinstance(value, dict) and "type" in value:
            problems += _nested_layer(value, key, path, name, spec, blocks, False)
    return problems


def _nested_layer(value: dict, key, path: tuple, name, spec, blocks, in_sequence: bool) -> list[Problem]:
    problems = []
    is_block = value["type"] in blocks
    nested_type = registry.lookup(value["type"])
    if nested_type is not None and not nested_type.makes_module:
        problems.append(spec.problem(f"{value['type']!r} is a tensor function, and a layer given as an argument "
                                     "must be a module", path + (key, "type"), node=name,
                                     hint=did_you_mean(value["type"], [t for t, e in registry.layer_types().items()
                                                                       if e.makes_module])))
    for reserved in ("in", "name", "repeat", "share", "tie") + (() if in_sequence else ("when",)):
        if reserved in value:
            problems.append(spec.problem(f"a layer given as an argument takes no `{reserved}:`",
                                         path + (key, reserved), node=name, hint="the outer layer wires it"))
    if is_block and not in_sequence:
        problems.append(spec.problem(f"block {value['type']!r} cannot be given as `{key}`: torch calls that layer "
                                     "itself, with arguments a block does not take", path + (key, "type"), node=name,
                                     hint="use a torch layer here; blocks may stand in `layers:` lists, "
                                          "in a Sequential and with `repeat:`"))
    elif nested_type is None and not is_block:
        problems.append(spec.problem(f"unknown layer type {value['type']!r}", path + (key, "type"), node=name,
                                     hint=did_you_mean(value["type"], list(registry.layer_types()) + list(blocks))))
    if not is_block:
        problems += nested_problems(args_of(value), path + (key,), name, spec, blocks, value["type"])
        problems += relation_problems(value["type"], args_of(value), path + (key,), name, spec)
    return problems
