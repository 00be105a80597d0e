"""`params:` and `${name}`: a spec's variables.

A string that is exactly `${name}` becomes the variable's value, with its type
(`out_features: ${hidden}` gives an int); inside a longer string the value is
spliced in as text.  `--set name=value` on the command line overrides `params`
(and, with a dotted key such as `train.epochs=3`, any value of the spec).
"""
from __future__ import annotations

import copy
import json
import re

from ..errors import Problem, SpecError, did_you_mean
from .expressions import ExpressionError, UndefinedName, evaluate, names_in
from .loader import load_spec

WHOLE_EXPRESSION = re.compile(r"^\$\{([^{}]*)\}$")
ANY = re.compile(r"\$\{([^}]*)\}")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INDEX = re.compile(r"^[0-9]+$")
# the keys a spec's top level may hold (docs/spec-format.md); a plain --set of one is not a param
TOP_LEVEL = ("specbuild", "name", "doc", "params", "inputs", "layers", "outputs", "blocks", "networks", "train",
             "tune")
SECTIONS = ("params", "inputs", "layers", "blocks", "networks", "train", "tune")


def parse_assignment(text: str) -> tuple[str, object]:
    """`hidden=64` -> ("hidden", 64); the value is read as a spec's value (safe YAML)."""
    if "=" not in text:
        raise ValueError(f"--set takes key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not _good_key(key):
        raise ValueError(f"--set key {key!r} must be a name or a dotted path such as train.epochs")
    try:   # read the value as a spec file's value is read: YAML 1.2 numbers (1e-3) and booleans
        value = load_spec(f"value: {raw}\n").data["value"] if raw.strip() else ""
    except SpecError:
        value = raw
    if isinstance(value, (dict, list)) and not raw.strip().startswith(("[", "{")):
        value = raw
    return key, value


def _good_key(key) -> bool:
    """A name, or a dotted path of names and list indices after a first name: layers.0.out_features."""
    parts = key.split(".") if isinstance(key, str) else [None]
    return bool(NAME.match(parts[0] or "")) and all(NAME.match(p) or INDEX.match(p) for p in parts[1:])


def parse_overrides(assignments) -> dict:
    """Every `--set key=value` of a command line, as the overrides `check` applies."""
    out = {}
    for text in assignments or []:
        try:
            key, value = parse_assignment(text)
        except ValueError as error:
            raise SpecError(str(error), hint="write --set name=value, e.g. --set hidden=64") from None
        out[key] = value
    return out


def apply_overrides(data: dict, overrides: dict) -> dict:
    """A copy of `data` with overrides applied: a plain name sets a param (one declared under
    `params:` or used as `${name}`), a dotted key any value, list items by index
    (`layers.0.out_features`).  A name that is neither, or a path through a value that is no
    mapping or list, or past a list's end, is a SpecError naming the override."""
    data = copy.deepcopy(data)
    if not isinstance(data, dict):
        return data
    problems = []
    for key, value in (overrides or {}).items():
        shown = f"--set {key}={_show(value)}"
        if not _good_key(key):
            problems.append(Problem(f"{shown}: the key must be a name or a dotted path such as train.epochs",
                                    hint="write --set name=value, e.g. --set hidden=64"))
        elif "." not in key:
            problem = _set_param(data, key, value, shown)
            problems += [problem] if problem else []
        else:
            problem = _set_path(data, key.split("."), value, shown)
            problems += [problem] if problem else []
    if problems:
        raise SpecError(problems)
    return data


def _set_param(data: dict, key: str, value, shown: str) -> Problem | None:
    params = data.get("params") if isinstance(data.get("params"), dict) else {}
    used = _variables_used(data)
    if key not in params and key not in used:
        known = sorted(set(params) | used)
        if key in data and not isinstance(data[key], (dict, list)) or key in TOP_LEVEL and key not in SECTIONS:
            hint = f"`{key}` is a part of the spec, not a param: edit it in the spec file"
        elif key in data or key in TOP_LEVEL:
            example = {"train": "train.epochs=3", "layers": "layers.0.out_features=64",
                       "tune": "tune.trials=10"}.get(key, f"{key}.KEY=VALUE")
            hint = (f"`{key}` is a part of the spec, not a param; set a value inside it with a dotted key, "
                    f"e.g. --set {example}")
        else:
            hint = did_you_mean(key, known) or (f"its params are: {', '.join(known)}" if known else
                                                f"declare it under `params:` and use it as ${{{key}}}, or set "
                                                "another value with a dotted key such as train.epochs=3")
        return Problem(f"{shown}: the spec has no param named {key!r}", hint=hint)
    if not isinstance(data.get("params"), dict):
        data["params"] = {}
    data["params"][key] = value
    return None


def _set_path(data: dict, parts: list, value, shown: str) -> Problem | None:
    """Set data[parts[0]][parts[1]]... = value, creating missing mappings (the schema then
    judges their keys); list items are reached by index."""
    target = data
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth])
        if isinstance(target, list):
            problem = _list_index(target, part, where, ".".join(parts[depth + 1:]), shown)
            if problem:
                return problem
            part = int(part)
        elif isinstance(target, dict):
            if part not in target and INDEX.match(part) and int(part) in target:
                part = int(part)         # a mapping with number keys (YAML allows them)
            if depth + 1 < len(parts):
                if where == "train" and part == "data" and isinstance(target.get(part), str):
                    target[part] = {"dataset": target[part]}      # `data: mnist` is short for {dataset: mnist}
                elif part not in target or target[part] is None:
                    target[part] = {}
        else:
            return Problem(f"{shown}: {where} is {_show(target)}, not a mapping or a list, so it has no "
                           f"{part!r} inside", hint=f"set {where} itself, e.g. --set {where}=...")
        if depth + 1 == len(parts):
            target[part] = value
        else:
            if isinstance(target, list) and target[part] is None:
                target[part] = {}
            target = target[part]
    return None


def _list_index(items: list, part: str, where: str, rest: str, shown: str) -> Problem | None:
    """A problem when `part` is no index of `items` (the list at `where`), else None."""
    span = f"0 to {len(items) - 1}" if items else "none: it is empty"
    if INDEX.match(part):
        if int(part) < len(items):
            return None
        count = f"{len(items)} item{'s' if len(items) != 1 else ''}"
        return Problem(f"{shown}: index {part} is past the end of {where}, which has {count}",
                       hint=f"its indices run from {span}")
    named = [i for i, item in enumerate(items) if isinstance(item, dict) and item.get("name") == part]
    hint = (f"{part!r} is item {named[0]}: --set {where}.{named[0]}{'.' + rest if rest else ''}=..." if named
            else f"give an item's index ({span}), e.g. {where}.0")
    return Problem(f"{shown}: {where} is a list, so its items are reached by index, not {part!r}", hint=hint)


def _variables_used(data) -> set:
    """The names used as `${name}` anywhere in the spec."""
    found: set = set()

    def walk(value):
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and "${" in value:
            for m in ANY.finditer(value):
                found.update(names_in(m.group(1)))

    walk(data)
    return found


def _show(value) -> str:
    """A value as it would be written on the command line."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def substitute(data: dict, spec, problems: list[Problem]) -> dict:
    """A copy of `data` with every `${...}` replaced by its value over the spec's `params`
    (a param's value may read the params declared above it: `head: ${n_embd // 4}`);
    undefined names and refused expressions become problems.  Inside a block that declares
    `params:`, an expression reading a block param is left for each use of the block
    (`instantiate`), after checking that every name it reads is defined."""
    params = {}
    for name, value in (data.get("params") if isinstance(data.get("params"), dict) else {}).items():
        params[name] = _walk(value, ("params", name), params, spec, problems)   # may read the params above it
    out = {}
    for key, value in data.items():
        if key == "params":
            out[key] = params if isinstance(value, dict) else value
        elif key == "blocks" and isinstance(value, dict):
            out[key] = {name: _walk(body, ("blocks", name), params, spec, problems,
                                    deferred=set(block_params(body)))
                        for name, body in value.items()}
        else:
            out[key] = _walk(value, (key,), params, spec, problems)
    return out


def block_params(body) -> dict:
    """A block's declared params and their defaults (REQUIRED where it gives none)."""
    params = body.get("params") if isinstance(body, dict) else None
    if not isinstance(params, dict):
        return {}
    return {name: REQUIRED if value is None else value for name, value in params.items()}


REQUIRED = object()      # a block param declared `~` (null): every use must give it


def instantiate(body: dict, values: dict, base: tuple, spec, problems: list[Problem]) -> dict:
    """A block's body with its params' `values` put in (the globals are in already)."""
    return {key: value if key == "params" else _walk(value, base + (key,), values, spec, problems)
            for key, value in body.items()}


def _walk(value, path: tuple, values: dict, spec, problems: list, deferred: frozenset | set = frozenset()):
    if isinstance(value, dict):
        if path[-1:] == ("params",) and deferred:
            # a block's defaults may read the spec's params, never its own
            return {k: _walk(v, path + (k,), values, spec, problems) for k, v in value.items()}
        return {k: _walk(v, path + (k,), values, spec, problems, deferred) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, path + (i,), values, spec, problems, deferred) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = WHOLE_EXPRESSION.match(value)
    if whole:
        return _value_of(whole.group(1), path, value, values, spec, problems, deferred)
    if any(_reads(m.group(1), deferred) for m in ANY.finditer(value)):
        for m in ANY.finditer(value):
            _value_of(m.group(1), path, value, values, spec, problems, deferred)
        return value
    return ANY.sub(lambda m: str(_value_of(m.group(1), path, value, values, spec, problems)), value)


def _reads(text: str, deferred) -> bool:
    return bool(deferred) and bool(names_in(text) & set(deferred))


def _value_of(text: str, path: tuple, whole: str, values: dict, spec, problems: list, deferred=frozenset()):
    """The value of one `${text}`; `whole` itself when it is deferred or wrong (a problem is added)."""
    if deferred and _reads(text, deferred):
        unknown = sorted(names_in(text) - set(deferred) - set(values))
        for name in unknown:
            problems.append(_undefined(name, path, set(values) | set(deferred), spec))
        return whole
    if NAME.match(text.strip()) and text.strip() in values:
        return values[text.strip()]
    try:
        return evaluate(text, values)
    except UndefinedName as error:
        problems.append(_undefined(error.name, path, set(values) | set(deferred), spec))
        return whole
    except ExpressionError as error:
        problems.append(spec.problem(f"bad variable {whole!r}: {error.message}", path, hint=error.hint))
        return whole


def _undefined(name: str, path: tuple, known: set, spec) -> Problem:
    hint = did_you_mean(name, known) or ("define it under `params:`" if known else
                                         f"add `params: {{{name}: ...}}` or pass --set {name}=...")
    return spec.problem(f"undefined variable ${{{name}}}", path, hint=hint)
