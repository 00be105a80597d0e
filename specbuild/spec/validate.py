"""Validation: the schema, then the graph, then shapes — every problem, pinpointed.

`check()` runs every stage it can and raises one SpecError listing all errors
found (warnings ride along); later stages run only where earlier ones leave
well-formed data, so one typo does not cascade into a page of noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import jsonschema

from .. import registry
from ..errors import Problem, SpecError, did_you_mean
from .graph import SpecGraphs, ancestors_of_outputs, build_graphs, default_name
from .loader import Spec, load_spec
from .schema import build_schema
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
    bad_variables = {p.key for p in problems}   # their schema errors would only repeat them
    problems += [p for p in schema_problems(data, spec) if p.key not in bad_variables]
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
            problem.node = _node_name(data, problem.key)[0]
    errors = [p for p in problems if p.severity == "error"]
    checked.warnings = [p for p in problems if p.severity != "error"]
    if errors:
        raise SpecError(_sorted(errors) + checked.warnings)
    return checked


def _has_errors(problems: list[Problem]) -> bool:
    return any(p.severity == "error" for p in problems)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


class _Validators:
    """The spec schema without per-type dispatch, plus one validator per layer type's arguments."""

    def __init__(self):
        self.schema = build_schema(dispatch=False)
        self.whole = jsonschema.Draft202012Validator(self.schema)
        self.by_type: dict = {}

    def for_type(self, type_name: str):
        if type_name not in self.by_type:
            self.by_type[type_name] = jsonschema.Draft202012Validator(
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
        for problem in _translate(error, data, spec):
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


def _node_name(data, path) -> tuple[str | None, str | None]:
    """(name, type) of the layer (or loss/optimizer) a path lies in."""
    value, name, type_name = data, None, None
    for i, key in enumerate(path):
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(value, dict) and i > 0 and (path[i - 1] == "layers" or key in ("loss", "optimizer", "scheduler")):
            type_name = value.get("type") if isinstance(value.get("type"), str) else None
            given = value.get("name")
            name = given if isinstance(given, str) else (
                default_name(type_name, key) if type_name and isinstance(key, int) else type_name)
    return name, type_name


def _describe(schema: dict) -> str:
    """A schema fragment in words: 'an integer or a list of 2 integers'."""
    if not isinstance(schema, dict):
        return "a value"
    if "anyOf" in schema:
        parts = [_describe(s) for s in schema["anyOf"] if s.get("$ref") != "#/$defs/variable"]
        return " or ".join(dict.fromkeys(parts))
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    if "$ref" in schema:
        return {"#/$defs/identifier": "a name", "#/$defs/ref": "a node name", "#/$defs/refs": "a node name or a list of them",
                "#/$defs/nested_layer": "a layer (a mapping with `type:`)", "#/$defs/shape": "a shape (a list of sizes)",
                }.get(schema["$ref"], "a " + schema["$ref"].rsplit("/", 1)[-1])
    kind = schema.get("type")
    if kind in ("integer", "number") and ("minimum" in schema or "maximum" in schema):
        bounds = [f">= {schema['minimum']}"] if "minimum" in schema else []
        bounds += [f"<= {schema['maximum']:,}"] if "maximum" in schema else []
        return ("an integer " if kind == "integer" else "a number ") + " and ".join(bounds)
    words = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string",
             "null": "null", "object": "a mapping", "array": "a list"}
    if isinstance(kind, list):
        return " or ".join(words.get(k, k) for k in kind)
    if kind == "array" and "items" in schema:
        size = schema.get("minItems") if schema.get("minItems") == schema.get("maxItems") else None
        item = _describe(schema["items"])
        if item.startswith(("a ", "an ")) and " or " not in item:   # "a node name" -> "node names"
            item = item.split(" ", 1)[1] + ("es" if item.endswith("s") else "s")
        return f"a list of {size} {item}" if size else f"a list of {item}"
    return words.get(kind, "a value")


def _show(value) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else ("a mapping" if isinstance(value, dict) else "a list")
    return text if len(text) < 60 else text[:57] + "..."


def _translate(error, data, spec) -> list[Problem]:
    path = tuple(error.absolute_path)
    name, type_name = _node_name(data, path)
    owner = f" for {type_name}" if type_name else ""
    kind = error.validator
    if kind == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extras = [k for k in error.instance if k not in error.schema.get("properties", {})]
        what = "argument" if type_name and len(path) >= 1 else "key"
        allowed = [a for a in allowed if a not in ("doc", "type")]
        return [spec.problem(f"unknown {what} {k!r}{owner}", path + (k,), node=name,
                             hint=did_you_mean(k, allowed) or "expected one of: " + ", ".join(allowed))
                for k in extras]
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        what = "argument" if type_name else "key"
        return [spec.problem(f"missing required {what} {missing!r}{owner}", path, node=name,
                             hint=f"add `{missing}: ...`")]
    if kind in ("enum", "const") and path and path[-1] == "type":
        choices = error.validator_value if kind == "enum" else [error.validator_value]
        what = next((k for k in reversed(path[:-1]) if isinstance(k, str)), "")   # loss[1].type: "loss", not "1"
        return [spec.problem(f"unknown {what} type {error.instance!r}".replace("  ", " "),
                             path, node=name, hint=did_you_mean(error.instance, choices))]
    if kind in ("enum", "const"):
        choices = error.validator_value if kind == "enum" else [error.validator_value]
        return [spec.problem(f"{_field(path)} must be {_describe(error.schema)}, not {_show(error.instance)}", path, node=name,
                             hint=did_you_mean(error.instance, choices) if isinstance(error.instance, str) else None)]
    if kind == "anyOf" and error.context and not _is_argument(error.schema) and not _is_name_schema(error.schema):
        # e.g. `loss:` is one loss or a list: report what is wrong inside the closest branch
        return _translate_branch(error, data, spec)
    if kind in ("anyOf", "type") or (kind == "pattern" and error.schema.get("pattern", "").startswith("^[A-Za-z_]")):
        if kind == "pattern" or (kind == "anyOf" and _is_name_schema(error.schema)):
            if isinstance(error.instance, str):
                return [spec.problem(f"{error.instance!r} is not a valid name", path, node=name,
                                     hint="names are identifiers: letters, digits and _, not starting with a digit")]
        return [spec.problem(f"{_field(path)}{owner} must be {_describe(error.schema)}, not {_show(error.instance)}",
                             path, node=name, hint=_type_hint(error.instance, error.schema))]
    return [spec.problem(f"{_field(path)}{owner}: {error.message}", path, node=name)]


def _translate_branch(error, data, spec) -> list[Problem]:
    """The problems of the anyOf branch meant for this value: one whose type fits it."""
    branches: dict = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [errs for errs in branches.values()
               if not any(e.validator == "type" and not e.relative_path for e in errs)]
    chosen = fitting[0] if fitting else [jsonschema.exceptions.best_match(error.context)]
    return [p for sub in chosen for p in _translate(sub, data, spec)]


def _is_argument(schema) -> bool:
    """An argument schema: its value, or a `${variable}`."""
    branches = schema.get("anyOf", [])
    return len(branches) == 2 and branches[1].get("$ref") == "#/$defs/variable"


def _is_name_schema(schema) -> bool:
    return any(s.get("$ref") in ("#/$defs/ref", "#/$defs/identifier") for s in schema.get("anyOf", []))


def _field(path) -> str:
    for key in reversed(path):
        if isinstance(key, str):
            return f"`{key}`"
    return "the value"


def _type_hint(value, schema=None) -> str | None:
    if isinstance(value, str) and (schema or {}).get("type") == "object" and value.isidentifier():
        return f"write it as a mapping: {{type: {value}}}"
    if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
        return "write the number without quotes"
    if isinstance(value, str) and value.startswith("${"):
        return "a variable is written ${name} and defined under `params:`"
    return None


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
        needed = ancestors_of_outputs(graph)
        for node in graph.nodes.values():
            if node.name not in needed:
                problems.append(spec.problem("layer is not used by any output", node.path, node=node.name,
                                             hint="wire it with `in:` or list it in `outputs:`", severity="warning"))
    checked.train = parse_train(data.get("train"), graphs, spec, problems)
    return problems


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
            problems += _nested_problems({k: v for k, v in value.items() if k != "type"}, path + (key,), name, spec)
    return problems
