"""Validation: the schema, then the graph, then shapes — every problem, pinpointed.

`check()` runs every stage it can and raises one SpecError listing all errors
found (warnings ride along); later stages run only where earlier ones leave
well-formed data, so one typo does not cascade into a page of noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import jsonschema

from .. import registry
from ..errors import Problem, SpecError, did_you_mean
from .graph import SpecGraphs, ancestors_of_outputs, build_graphs
from .loader import Spec, load_spec
from .schema import build_schema
from .schema_errors import node_name, translate, wide_integers
from .train_config import TrainConfig, parse_train
from .variables import apply_overrides, substitute


@dataclass
class Checked:
    spec: Spec                      # as loaded (positions refer to it)
    data: dict                      # overrides applied, variables substituted
    graphs: SpecGraphs
    shapes: dict = field(default_factory=dict)     # network -> {node: Inferred}, filled by shape inference
    warnings: list[Problem] = field(default_factory=list)
    expanded_nodes: int = 0         # layers shape inference visited, blocks expanded
    train: TrainConfig = field(default_factory=TrainConfig)    # the typed `train:` section


def validate(spec, *, overrides: dict | None = None, shapes: bool = True) -> list[Problem]:
    """Check a spec (path, text, dict or Spec); return its warnings or raise SpecError with all errors."""
    return check(spec, overrides=overrides, shapes=shapes).warnings


def check(spec, *, overrides: dict | None = None, shapes: bool = True) -> Checked:
    spec = load_spec(spec)
    problems: list[Problem] = []
    data = apply_overrides(spec.data, overrides) if overrides else spec.data
    data = substitute(data, spec, problems)
    problems += wide_integers(data, spec)
    # the schema's errors for a bad variable or too wide an integer (or the list holding it) repeat them
    covered = {p.key for p in problems} | {p.key[:-1] for p in problems if p.key and isinstance(p.key[-1], int)}
    problems += [p for p in schema_problems(data, spec) if p.key not in covered]
    graphs = SpecGraphs({}, {})
    if not problems:
        graphs = build_graphs(data, spec, problems)
    else:   # still report unknown types, dangling `in:` and cycles, where the structure allows
        try:
            graphs = build_graphs(data, spec, problems)
        except (TypeError, AttributeError, KeyError, ValueError, IndexError):
            pass
    checked = Checked(spec, data, graphs)
    if not problems:
        problems += semantic_problems(checked)
    # a warning (a layer no output uses) must not stop the later stages: only errors do
    if not _has_errors(problems) and shapes:
        from .infer import infer_shapes   # shape rules: pure Python, no torch
        problems += infer_shapes(checked)
    if not _has_errors(problems):
        from .lint import lint
        problems += lint(checked)
    for problem in problems:
        if problem.node is None:
            problem.node = node_name(data, problem.key)[0]
    errors = [p for p in problems if p.severity == "error"]
    checked.warnings = [p for p in problems if p.severity != "error"]
    if errors:
        raise SpecError(_sorted(errors) + checked.warnings)
    return checked


def _has_errors(problems: list[Problem]) -> bool:
    return any(p.severity == "error" for p in problems)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


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
        if type_name not in self.by_type:
            self.by_type[type_name] = _SpecValidator(
                {"$ref": f"#/$defs/layer.{type_name}", "$defs": self.schema["$defs"]})
        return self.by_type[type_name]


@lru_cache(maxsize=4)
def _validators(types_key: tuple) -> _Validators:
    return _Validators()


def schema_problems(data: dict, spec: Spec) -> list[Problem]:
    validators = _validators(tuple(sorted(registry.layer_types())))
    errors = list(validators.whole.iter_errors(data))
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


def semantic_problems(checked: Checked) -> list[Problem]:
    """What the schema cannot say: arity, nested layers, train references, unreachable layers."""
    spec, data, graphs = checked.spec, checked.data, checked.graphs
    problems: list[Problem] = []
    for graph in list(graphs.networks.values()) + list(graphs.blocks.values()):
        for node in graph.nodes.values():
            least, most = _arity(node.type, graphs)
            if node.type and not least <= len(node.inputs) <= most:
                want = str(least) if least == most else f"{least} to {most}" if most < 64 else f"at least {least}"
                problems.append(spec.problem(f"{node.type} takes {want} input(s), but `in:` gives {len(node.inputs)}",
                                             node.path, node=node.name, hint="list its inputs with `in: [a, b]`"))
            if node.repeat > 1 and (least, most) != (1, 1):
                problems.append(spec.problem("`repeat:` chains copies, so the layer must take one input",
                                             node.path + ("repeat",), node=node.name))
            problems += _nested_problems(node.args, node.path, node.name, spec)
            problems += _relation_problems(node.type, node.args, node.path, node.name, spec)
        needed = ancestors_of_outputs(graph)
        for node in graph.nodes.values():
            if node.name not in needed:
                problems.append(spec.problem("layer is not used by any output", node.path, node=node.name,
                                             hint="wire it with `in:` or list it in `outputs:`", severity="warning"))
    for key, entry in (data.get("train") or {}).items():
        if key in ("optimizer", "scheduler") and isinstance(entry, dict):
            problems += _relation_problems(entry["type"], _args_of(entry), ("train", key), entry["type"], spec)
    checked.train = parse_train(data.get("train"), graphs, spec, problems)
    return problems


def _args_of(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "type"}


def _relation_problems(type_name, args: dict, path: tuple, name, spec) -> list[Problem]:
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


def _nested_problems(args: dict, path: tuple, name, spec) -> list[Problem]:
    problems = []
    for key, value in args.items():
        if isinstance(value, list):   # Sequential's layers
            for i, item in enumerate(value):
                if isinstance(item, dict) and "type" in item:
                    problems += _nested_problems({i: item}, path + (key,), name, spec)
            continue
        if isinstance(value, dict) and "type" in value:
            nested_type = registry.lookup(value["type"])
            if nested_type is not None and not nested_type.makes_module:
                problems.append(spec.problem(f"{value['type']!r} is a tensor function, and a layer given as an argument "
                                             "must be a module", path + (key, "type"), node=name,
                                             hint=did_you_mean(value["type"], [t for t, e in registry.layer_types().items()
                                                                               if e.makes_module])))
            for reserved in ("in", "name", "repeat", "share"):
                if reserved in value:
                    problems.append(spec.problem(f"a layer given as an argument takes no `{reserved}:`",
                                                 path + (key, reserved), node=name, hint="the outer layer wires it"))
            if registry.lookup(value["type"]) is None:
                problems.append(spec.problem(f"unknown layer type {value['type']!r}", path + (key, "type"), node=name,
                                             hint=did_you_mean(value["type"], registry.layer_types())))
            problems += _nested_problems(_args_of(value), path + (key,), name, spec)
            problems += _relation_problems(value["type"], _args_of(value), path + (key,), name, spec)
    return problems
