"""jsonschema's errors in words: what is wrong with a value, at its place, for its layer.

`translate(error, data, spec)` turns one error of the spec's schema into Problems: an unknown
argument with a did-you-mean, a value that is not of its kind ("`lr` for Adam must be a number >= 0,
not 'fast'"), a number beyond its bounds, an integer beyond torch's 64 bits; in an argument's anyOf,
the branch its value's type fits says what is wrong.  `node_name` finds the layer a path lies in.
"""
from __future__ import annotations

import math

import jsonschema

from ..errors import Problem, did_you_mean
from .graph import default_name
from .schema import INT64


def node_name(data, path) -> tuple[str | None, str | None]:
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
                "#/$defs/tensor_value": "a number, a bool or a (nested) list of them",
                }.get(schema["$ref"], "a " + schema["$ref"].rsplit("/", 1)[-1])
    kind = schema.get("type")
    bounds = [f"{word} {schema[key]:,}" for key, word in _BOUNDS.items()
              if key in schema and schema[key] not in INT64.values()]     # every integer is int64
    if kind in ("integer", "number") and bounds:
        return ("an integer " if kind == "integer" else "a number ") + " and ".join(bounds)
    if kind in ("integer", "number") and "not" in schema:
        return ("an integer" if kind == "integer" else "a number") + f" other than {_describe(schema['not'])}"
    words = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string",
             "null": "null", "object": "a mapping", "array": "a list"}
    if isinstance(kind, list):
        return " or ".join(words.get(k, k) for k in kind)
    if kind == "array" and "items" in schema:
        size = schema.get("minItems") if schema.get("minItems") == schema.get("maxItems") else None
        item, bounds = _describe(schema["items"]), ""
        if " other than " in item or any(f" {word} " in item for word in _BOUNDS.values()):
            item, bounds = item.split(" ", 2)[:2], " " + item.split(" ", 2)[2]   # "integers <= 9"
            item = " ".join(item)
        if item.startswith(("a ", "an ")) and " or " not in item:   # "a node name" -> "node names"
            item = item.split(" ", 1)[1] + ("es" if item.endswith("s") else "s") + bounds
        return f"a list of {size} {item}" if size else f"a list of {item}"
    return words.get(kind, "a value")


_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def _show(value) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else ("a mapping" if isinstance(value, dict) else "a list")
    return text if len(text) < 60 else text[:57] + "..."


def translate(error, data, spec) -> list[Problem]:
    path = tuple(error.absolute_path)
    name, type_name = node_name(data, path)
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
    if kind == "anyOf" and _is_argument(error.schema) and (value_error := _value_error(error)) is not None:
        return translate(value_error, data, spec)   # the branch its type fits refuses its value
    if kind in (*_BOUNDS, "not"):     # a number beyond its bounds: the node's schema says them all
        return [spec.problem(f"{_field(path)}{owner} must be {_describe(error.schema)}, not {_show(error.instance)}",
                             path, node=name, hint=_type_hint(error.instance))]
    if kind == "uniqueItems":
        return [spec.problem(f"{_field(path)}{owner} lists an item twice: {error.instance}", path, node=name,
                             hint="list each once")]
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
    return [p for sub in chosen for p in translate(sub, data, spec)]


def _value_error(error):
    """Inside an argument's anyOf: the error of the branch whose type fits the value, when what that
    branch refuses is the value itself (a bound, an item twice)."""
    branches: dict = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    for errors in branches.values():
        if any(e.validator == "type" and not e.relative_path for e in errors):
            continue                                  # inf is a number, but no integer
        for sub in errors:
            if sub.validator in (*_BOUNDS, "not", "uniqueItems"):
                return sub
            if sub.validator == "anyOf" and (found := _value_error(sub)) is not None:
                return found
    return None


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
    if isinstance(value, float) and math.isnan(value):
        return "NaN is no value torch can use here"
    if isinstance(value, str) and (schema or {}).get("type") == "object" and value.isidentifier():
        return f"write it as a mapping: {{type: {value}}}"
    if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
        return "write the number without quotes"
    if isinstance(value, str) and value.startswith("${"):
        return "a variable is written ${name} and defined under `params:`"
    return None


def wide_integers(data: dict, spec) -> list[Problem]:
    """Every integer a spec gives torch fits in 64 bits, whatever its argument's schema (a number,
    `threshold: 100000000000000000000`, or anything); `params:` are checked where they are used."""
    problems, stack = [], [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, (dict, list)):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((path + (key,), item) for key, item in items if path or key != "params")
        elif isinstance(value, int) and not isinstance(value, bool) and not INT64["minimum"] <= value <= INT64["maximum"]:
            name, type_name = node_name(data, path)
            owner = f" for {type_name}" if type_name else ""
            problems.append(spec.problem(f"{_field(path)}{owner} is {_show(value)}, out of the range of torch's 64-bit "
                                         "integers", path, node=name,
                                         hint=f"torch takes integers from {INT64['minimum']:,} to {INT64['maximum']:,}"))
    return problems
